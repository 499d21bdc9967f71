"""InfoGAN's codes on MNIST: the code-sweep figure and how well the categorical code picks
the digit class (purity, judged by gankit's MNIST classifier), for one trained run.

    gankit train infogan --data mnist --data-root ../shared/datasets --no-download \\
        --kimg 100000 --max-seconds 840 --precision auto --channels-last --run-dir RUN
    python benchmarks/infogan_codes.py RUN            # -> docs/figures/infogan-codes-long.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from machine_info import machine  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--name", default="infogan-codes-long")
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args()

    from gankit.analysis.infogan import categorical_purity, save_code_sweep_figure
    from gankit.metrics import evaluate_run, format_table
    from gankit.metrics.classifier import find_classifier
    from gankit.sampling import load

    run = load(args.run)
    fig = args.out / "figures" / f"{args.name}.png"
    save_code_sweep_figure(run.G, fig, title=f"InfoGAN on MNIST, {run.checkpoint.nimg:,} images")
    purity = categorical_purity(run.G, find_classifier("mnist").classify, n_per_code=1000, seed=0)
    recs = evaluate_run(args.run, ["fd1k_mnistcnn", "prdc1k_mnistcnn"],
                        data_root=str(args.data_root), download=False)  # fmt: skip
    print(format_table(recs))
    print(json.dumps(purity, indent=2))
    result = {"machine": machine(), "run": str(args.run), "nimg": run.checkpoint.nimg,
              "figure": str(fig.relative_to(args.out)), "purity": purity,
              "metrics": [{"metric": r["metric"], "value": r["value"], "values": r["values"]}
                          for r in recs]}  # fmt: skip
    (args.out / f"bench_{args.name.replace('-', '_')}.json").write_text(
        json.dumps(result, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
