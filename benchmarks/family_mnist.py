"""Benchmark: every registered model trained on real MNIST with one equal CPU budget, scored.

Each row is `gankit train MODEL --data mnist --max-seconds S` with the model's own defaults
(its objective, regularisers, optimiser and learning rates) on one CPU thread; two rows train
side by side, so a 2-core machine runs the whole table in about rows / 2 * S seconds. Every
run also scores fd1k_mnistcnn every few kimg during training (evaluation time is excluded from
the budget), which gives the FD-against-time curves. After all training the final G_ema of each
run is scored alone with the classifier-feature protocol of docs/evaluation.md (the floor row is
real held-out data), and the figures are drawn: a sample grid per model, InfoGAN's code sweeps
and categorical purity, StyleGAN's style mixing, BigGAN's truncation sweep.

    python benchmarks/family_mnist.py                        # the published table (360 s each)
    python benchmarks/family_mnist.py --seconds 20 --rows dcgan,wgan --out /tmp/f   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from machine_info import machine  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent
METRICS = ["fd1k_mnistcnn", "kid1k_mnistcnn", "prdc1k_mnistcnn", "is1k_mnistcnn"]
CONDITIONAL = ["acc1k_mnistcnn"]
# Extra rows beyond the registry: the saturating (minimax) loss on the DCGAN networks, to
# compare with LSGAN's stability claim.
EXTRA = {"dcgan-minimax": ("dcgan", ["--objective", "minimax"])}
# In-training evaluation interval (kimg): about 6-8 points over a 360 s single-thread run, from
# each model's measured single-thread speed; 10 for a model not listed.
EVAL_KIMG = {"gan": 300, "cgan": 80, "dcgan": 10, "cdcgan": 10, "lsgan": 10, "wgan": 12,
             "wgan-gp": 8, "began": 5, "lapgan": 12, "stylegan": 6, "infogan": 10,
             "biggan": 5}  # fmt: skip


def rows_to_run(selected: str | None) -> dict[str, tuple[str, list[str]]]:
    from gankit.models import list_models

    rows = {name: (name, []) for name in list_models()}
    rows.update(EXTRA)
    if selected:
        names = [s.strip() for s in selected.split(",") if s.strip()]
        unknown = [n for n in names if n not in rows]
        if unknown:
            raise SystemExit(f"unknown rows {unknown}; choose from {sorted(rows)}")
        rows = {n: rows[n] for n in names}
    return rows


def train_command(model: str, extra: list[str], args: argparse.Namespace, run_dir: Path) -> list:
    every = EVAL_KIMG.get(model, 10)
    return [
        sys.executable, "-m", "gankit", "train", model, "--data", "mnist",
        "--data-root", str(args.data_root), "--no-download", "--kimg", "100000",
        "--max-seconds", str(args.seconds), "--run-dir", str(run_dir), "--overwrite",
        "--no-progress", "--device", "cpu", "--seed", "0",
        "--eval-every-kimg", str(every), "--eval-metrics", "fd1k_mnistcnn", *extra,
    ]  # fmt: skip


def train_all(rows: dict, args: argparse.Namespace) -> dict[str, dict]:
    """Train the rows `args.parallel` at a time, each process on `args.threads` threads."""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    pending = list(rows.items())
    running: list[tuple[str, subprocess.Popen, float, list, Path]] = []
    facts: dict[str, dict] = {}
    args.runs.mkdir(parents=True, exist_ok=True)
    while pending or running:
        while pending and len(running) < args.parallel:
            label, (model, extra) = pending.pop(0)
            run_dir = args.runs / label
            cmd = train_command(model, extra, args, run_dir)
            log = open(args.runs / f"{label}.log", "w")  # noqa: SIM115 (closed with the process)
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            running.append((label, proc, time.perf_counter(), cmd, run_dir))
            print(f"[train] {label} started", flush=True)
        time.sleep(2)
        for item in list(running):
            label, proc, t0, cmd, run_dir = item
            if proc.poll() is None:
                continue
            running.remove(item)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                tail = (args.runs / f"{label}.log").read_text()[-2000:]
                print(f"[train] {label} FAILED (exit {proc.returncode}):\n{tail}", flush=True)
                facts[label] = {"failed": proc.returncode}
                continue
            facts[label] = {"command": "gankit " + " ".join(map(str, cmd[3:])),
                            "wall_s": round(wall, 1), **training_facts(run_dir)}  # fmt: skip
            print(f"[train] {label} done: {facts[label]['nimg']:,} images, "
                  f"{facts[label]['median_img_per_s']} img/s", flush=True)  # fmt: skip
    return facts


def training_facts(run_dir: Path) -> dict:
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steady = sorted(r["img_per_s"] for r in recs[len(recs) // 10 :])
    return {
        "nimg": recs[-1]["nimg"],
        "steps": recs[-1]["step"],
        "median_img_per_s": round(steady[len(steady) // 2], 1),
    }


def fd_curve(run_dir: Path) -> list[dict]:
    """(training seconds, kimg, fd1k) from the in-training evaluations.

    Seconds are training time only (evaluation excluded), rebuilt from the logged rates."""
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    clock, seconds, last = [], 0.0, 0
    for r in recs:
        if r["img_per_s"] > 0:
            seconds += (r["nimg"] - last) / r["img_per_s"]
        last = r["nimg"]
        clock.append((r["nimg"], seconds))
    out = []
    path = run_dir / "eval.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        e = json.loads(line)
        if e["metric"] != "fd1k_mnistcnn" or e.get("checkpoint") is not None:
            continue  # only the evaluations made during training
        t = next((s for n, s in clock if n >= e["nimg"]), seconds)
        out.append({"seconds": round(t, 1), "kimg": e["nimg"] / 1000, "fd1k": e["value"]})
    return out


def figures(label: str, run_dir: Path, out: Path, info: dict) -> None:
    """Sample grid for every row; the structured-latent figures where they apply."""
    from gankit.sampling import load, sample_to_file

    fig = out / "figures"
    sample_to_file(run_dir, fig / f"family-{label}.png")
    info["figures"] = [f"figures/family-{label}.png"]
    run = load(run_dir)
    if run.model.name == "infogan":
        from gankit.analysis.infogan import categorical_purity, save_code_sweep_figure
        from gankit.metrics.classifier import find_classifier

        save_code_sweep_figure(run.G, fig / "infogan-codes.png")
        info["figures"].append("figures/infogan-codes.png")
        clf = find_classifier("mnist")
        info["infogan_purity"] = categorical_purity(run.G, clf.classify, n_per_code=500, seed=0)
    if run.model.name == "stylegan":
        from gankit.analysis.style_mixing import save_style_mixing_figure

        save_style_mixing_figure(run.G, [0, 1, 2, 3], [4, 5, 6, 7, 8], fig / "stylegan-mixing.png")
        info["figures"].append("figures/stylegan-mixing.png")
    if run.model.name == "biggan":
        for t in (2.0, 1.0, 0.5, 0.25):
            name = f"biggan-trunc{t:g}.png"
            sample_to_file(run_dir, fig / name, seeds="0-7", truncation=t)
            info["figures"].append(f"figures/{name}")


def plot_curves(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    colours = plt.get_cmap("tab20").colors
    for i, row in enumerate(result["rows"]):
        curve = row.get("fd_curve") or []
        if curve:
            ax.plot([c["seconds"] for c in curve], [c["fd1k"] for c in curve],
                    marker="os^Dv"[i % 5], markersize=4, color=colours[(2 * i) % 20 + i // 10],
                    linestyle=("-", "--")[i % 2], label=row["label"])  # fmt: skip
    floor = next((r["value"] for r in result["floor"] if r["metric"] == "fd1k_mnistcnn"), None)
    if floor is not None:
        ax.axhline(floor, color="k", linestyle=":", label="real held-out (floor)")
    ax.set_yscale("log")
    ax.set_xlabel("training seconds (one CPU thread; evaluation excluded)")
    ax.set_ylabel("FD 1k in classifier features (lower is better)")
    ax.set_title("MNIST, equal budgets: FD of G_ema during training")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def first_below(curve: list[dict], level: float) -> float | None:
    """Training seconds at which FD first fell below `level` (None: never)."""
    return next((c["seconds"] for c in curve if c["fd1k"] < level), None)


def rises(curve: list[dict], by: float = 0.10) -> int:
    """How many evaluations scored more than `by` worse than the one before (instability)."""
    return sum(b["fd1k"] > a["fd1k"] * (1 + by) for a, b in zip(curve[:-1], curve[1:], strict=True))


def published_checks(result: dict, runs: Path) -> dict:
    """The table's evidence on behaviours the papers report, computed from the runs."""
    from scipy.stats import spearmanr

    rows = {r["label"]: r for r in result["rows"] if not r.get("failed")}
    out: dict = {}

    def curve_facts(label: str, level: float) -> dict | None:
        row = rows.get(label)
        if row is None or not row.get("fd_curve"):
            return None
        c = row["fd_curve"]
        return {"final_fd1k": c[-1]["fd1k"], "best_fd1k": min(x["fd1k"] for x in c),
                f"seconds_to_fd_below_{level:g}": first_below(c, level),
                "rises_over_10pct": rises(c), "evaluations": len(c)}  # fmt: skip

    out["wgan_vs_wgan_gp"] = {k: curve_facts(k, 300) for k in ("wgan", "wgan-gp")}
    out["lsgan_vs_saturating"] = {k: curve_facts(k, 300) for k in ("lsgan", "dcgan-minimax",
                                                                    "dcgan")}  # fmt: skip
    if "began" in rows and rows["began"].get("fd_curve"):
        logs = [json.loads(x) for x in (runs / "began" / "metrics.jsonl").read_text().splitlines()]
        pairs = []
        for c in rows["began"]["fd_curve"]:
            near = [r["m_global"] for r in logs if abs(r["kimg"] - c["kimg"]) <= 1.0]
            if near:
                pairs.append((sum(near) / len(near), c["fd1k"]))
        if len(pairs) >= 3:
            rho = spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic
            out["began_m_global_vs_fd"] = {"points": len(pairs), "spearman": round(float(rho), 3),
                                           "pairs": pairs}  # fmt: skip
    return out


def brief(rec: dict) -> dict:
    return {"metric": rec["metric"], "value": rec["value"], "values": rec["values"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=360.0, help="training budget per row")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per training process")
    ap.add_argument("--parallel", type=int, default=2, help="training processes at a time")
    ap.add_argument("--rows", help="comma-separated rows (default: every model + dcgan-minimax)")
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-family")
    ap.add_argument("--reuse", action="store_true", help="score existing runs, do not train")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument(
        "--summarise",
        action="store_true",
        help="only redo the checks, curves and table from the existing JSON and runs",
    )
    args = ap.parse_args()
    if args.summarise:
        result = json.loads((args.out / "bench_family_mnist.json").read_text())
        result["checks"] = published_checks(result, args.runs)
        plot_curves(result, args.out / "figures" / "family-fd-curves.png")
        (args.out / "bench_family_mnist.json").write_text(json.dumps(result, indent=2) + "\n")
        print_table(result)
        print(json.dumps(result["checks"], indent=2))
        return

    from eval_mnist import ensure_classifier
    from gankit.metrics import evaluate_real, evaluate_run, format_table
    from gankit.models import MODELS

    rows = rows_to_run(args.rows)
    (args.out / "figures").mkdir(parents=True, exist_ok=True)
    classifier = ensure_classifier(args.data_root)
    t0 = time.perf_counter()
    facts = {} if args.reuse else train_all(rows, args)
    train_wall = time.perf_counter() - t0
    result: dict = {
        "machine": machine(),
        "budget": {"seconds_per_row": args.seconds, "threads_per_row": args.threads,
                   "rows_in_parallel": args.parallel, "wall_s": round(train_wall, 1)},
        "classifier": classifier,
        "rows": [],
    }  # fmt: skip
    floor = evaluate_real(
        "mnist", METRICS, resolution=28, channels=1, data_root=str(args.data_root)
    )
    print(format_table(floor))
    result["floor"] = [brief(r) for r in floor]
    floor_fd = next(r["value"] for r in floor if r["metric"] == "fd1k_mnistcnn")
    for label, (model, extra) in rows.items():
        run_dir = args.runs / label
        info: dict = {"label": label, "model": model, "extra_args": extra, "run": str(run_dir)}
        info.update(facts.get(label) or training_facts(run_dir))
        if info.get("failed"):
            result["rows"].append(info)
            continue
        spec = MODELS.get(model)
        metrics = METRICS + (CONDITIONAL if spec.conditional else [])
        recs = evaluate_run(run_dir, metrics, data_root=str(args.data_root), download=False)
        print(format_table(recs))
        info["metrics"] = [brief(r) for r in recs]
        values = {r["metric"]: r["value"] for r in recs}
        info["fd1k_over_floor"] = round(values["fd1k_mnistcnn"] / floor_fd, 3)
        info["fd_curve"] = fd_curve(run_dir)
        figures(label, run_dir, args.out, info)
        result["rows"].append(info)
    result["checks"] = published_checks(result, args.runs)
    plot_curves(result, args.out / "figures" / "family-fd-curves.png")
    (args.out / "bench_family_mnist.json").write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)


def print_table(result: dict) -> None:
    from eval_mnist import get

    head = ("| model | images seen | img/s | FD 1k | / floor | best FD 1k in training | KID 1k | "
            "precision | recall | coverage | classifier IS | class acc |")  # fmt: skip
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for row in result["rows"]:
        if row.get("failed"):
            print(f"| {row['label']} | failed (exit {row['failed']}) |")
            continue
        m = row["metrics"]
        best = min((c["fd1k"] for c in row["fd_curve"]), default=float("nan"))
        print(
            f"| {row['label']} | {row['nimg']:,} | {row['median_img_per_s']:.0f} | "
            f"{get(m, 'fd1k_mnistcnn')} | {row['fd1k_over_floor']:.2f} | {best:.1f} | "
            f"{get(m, 'kid1k_mnistcnn')} | {get(m, 'prdc1k_mnistcnn', 'precision')} | "
            f"{get(m, 'prdc1k_mnistcnn', 'recall')} | {get(m, 'prdc1k_mnistcnn')} | "
            f"{get(m, 'is1k_mnistcnn')} | {get(m, 'acc1k_mnistcnn')} |"
        )


if __name__ == "__main__":
    main()
