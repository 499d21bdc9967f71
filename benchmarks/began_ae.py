"""Diagnostic: can BEGAN's discriminator, an autoencoder, learn to reconstruct MNIST digits?

In the family trials BEGAN's k_t fell to 0 at once, so D trained as a plain autoencoder on the
real digits (its loss L(x) - k L(G(z)) with k = 0), and its reconstruction error L(x) stayed at
~0.25 for 800 steps: the L1 error of drawing the per-pixel median digit (0.238) or an all-black
image (0.263). This trains the same D alone, as an L1 autoencoder, for a fixed number of steps
(not seconds), at BEGAN's learning rate and higher ones, and prints L(x) on digits it never saw.

The first version of this script found it stuck there at lr 1e-4; the cause was the init:
at PyTorch's default init each of the 16 convs shrinks the spread of its input by about
half, so D's output hardly depended on its input. `--inits signal,default` compares
gankit's signal-preserving init with PyTorch's default (each layer's `reset_parameters`).

    python benchmarks/began_ae.py [--steps 600] [--lrs 1e-4,1e-3] [--inits signal,default]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    from gankit.data import load_dataset
    from gankit.data.base import to_unit_range
    from gankit.models import create_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lrs", default="1e-4,1e-3")
    ap.add_argument(
        "--inits",
        default="signal,default",
        help="signal: the model's own init; default: PyTorch's layer defaults",
    )
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_began_ae.json")
    args = ap.parse_args()
    ds = load_dataset("mnist", resolution=32, channels=1, root=str(args.data_root),
                      download=False)  # fmt: skip
    train, val = to_unit_range(ds.images[:5000]), to_unit_range(ds.images[5000:6000])
    median = train.median(0, keepdim=True).values
    base = {"median_digit": float((val - median).abs().mean()),
            "all_black": float((val + 1).abs().mean())}  # fmt: skip
    print(f"L1 of trivial answers on the held-out digits: {base}")
    result: dict = {"baselines": base, "steps": args.steps, "batch": args.batch, "runs": {}}
    runs = [(i, float(x)) for i in args.inits.split(",") for x in args.lrs.split(",")]
    for init, lr in runs:
        torch.manual_seed(0)
        D = create_model("began", resolution=32, channels=1).D.train()
        if init == "default":
            for layer in D.modules():
                if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
                    layer.reset_parameters()
        opt = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
        g = torch.Generator().manual_seed(0)
        curve = []
        for step in range(1, args.steps + 1):
            x = train[torch.randint(len(train), (args.batch,), generator=g)]
            loss = (D(x) - x).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % 100 == 0 or step == 1:
                with torch.no_grad():
                    held = float((D(val) - val).abs().mean())
                curve.append({"step": step, "train_l1": float(loss), "heldout_l1": held})
        result["runs"][f"{init}-lr{lr:g}"] = curve
        held = ", ".join(f"{c['heldout_l1']:.3f}" for c in curve)
        print(f"{init} init, lr {lr:g}: held-out L1 {held}")
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
