"""Train the generators gankit ships for the embedded digits (`gankit models` lists them).

    .venv/bin/python scripts/pretrain_digits.py [--kimg 400] [--only cgan-digits]

Each recipe trains for an image budget (the same on every host; --seconds sets a time budget
instead) on `--data digits` (the 4,000 training digits) into runs/pretrained/NAME, then its
newest checkpoint is written, through gankit's own checkpoint writer, to
src/gankit/pretrained/NAME.safetensors with what sampling needs: G_ema and D (not G) in
float16 (the networks load them into float32), the run's config and data record, and no
optimiser moments or RNG states (it cannot be resumed, only sampled, served and evaluated).
A grid of its samples is written beside the run (runs/pretrained/NAME/samples.png): look at it.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

from gankit import train
from gankit.checkpoint import load_checkpoint, save_checkpoint
from gankit.pretrained import PRETRAINED, folder
from gankit.sampling import sample_to_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from speed import peak_gflops  # noqa: E402  (the benchmarks' measure of the host)

# name -> (model, model options, training options). Empty: each model's own grey28 recipe
# (32x32, ngf 64 / ndf 32; the CGAN with minibatch std), which gankit picks for --data digits.
# docs/pretrained.md compares them with the earlier ngf = ndf = 32 recipes and other trials.
RECIPES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "dcgan-digits": ("dcgan", {}, {}),
    "cgan-digits": ("cdcgan", {}, {}),
}


def pack(run_dir: Path, out: Path, name: str, trained: dict[str, Any]) -> Path:
    """The newest checkpoint of `run_dir` as a sampling-only file at `out`."""
    ck = load_checkpoint(run_dir)
    tensors = {
        k: v.half() if v.is_floating_point() else v
        for k, v in ck.tensors.items()
        if k.startswith(("G_ema.", "D."))  # G itself is left out: sampling uses G_ema
    }
    meta = {k: v for k, v in ck.meta.items() if k not in ("format", "format_version", "sha256")}
    meta["optim"] = {  # its settings, without per-parameter state: nothing to resume from
        net: {"param_groups": doc["param_groups"], "scalars": {}}
        for net, doc in ck.meta["optim"].items()
    }
    meta["pretrained"] = {
        "name": name,
        "trained_by": "scripts/pretrain_digits.py",
        **trained,
        "dtype": "float16",
    }
    return save_checkpoint(out, tensors, meta)


def _cpu_seconds() -> float:
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kimg", type=float, default=400.0, help="thousand images per model")
    ap.add_argument("--seconds", type=float, help="a wall-time budget per model instead")
    ap.add_argument("--only", help="comma-separated recipe names (default: all)")
    ap.add_argument("--options", default="{}", help="JSON training options added (trials)")
    ap.add_argument("--pack-to", type=Path, help="write the file here, not into the package")
    ap.add_argument("--runs", default="runs/pretrained", help="where the training runs go")
    # One thread: on the shared 2-core machine these were trained on, two threads ran 7x
    # slower than one (1,408 against 10,112 images in 20 s, measured).
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(RECIPES)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    peak = {p: round(peak_gflops(p), 1) for p in ("fp32", "bf16")}  # this host, now
    print(f"host peak (3x3 conv, {args.threads} thread(s)): {peak} GFLOP/s", flush=True)
    for name in names:
        model, model_options, options = RECIPES[name]
        options = {**options, **json.loads(args.options)}
        run_dir = Path(args.runs) / name
        started, cpu = time.perf_counter(), _cpu_seconds()
        result = train(
            model,
            "digits",
            run_dir=run_dir,
            overwrite=True,
            model_overrides=model_options,
            max_seconds=args.seconds,
            kimg=10_000 if args.seconds else args.kimg,
            seed=0,
            **options,
        )
        seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
        trained = {
            "seconds": round(seconds),
            "cpu_seconds": round(cpu),
            "threads": args.threads,
            "images": result.nimg,
            "options": options,
            "peak_gflops": peak,
        }
        out = pack(run_dir, (args.pack_to or folder()) / f"{name}.safetensors", name, trained)
        grid = sample_to_file(out, run_dir / "samples.png")
        print(
            f"{name}: {model}, {result.nimg} images in {seconds:.0f} s ({cpu:.0f} s of CPU, "
            f"{args.threads} thread(s)) -> {out} "
            f"({out.stat().st_size / 2**20:.2f} MiB); grid {grid['written'][0]}"
        )
        assert name in PRETRAINED


if __name__ == "__main__":
    main()
