"""Diagnostic: why do a BigGAN run's samples barely depend on z?

For a trained BigGAN run this measures, for G_ema (and G), where z could enter and how much
each input moves G's features:

- the input linear: the spread over z of W z_0 (the only place z_0 enters) against the size of
  the bias, which is the same for every sample;
- each conditional batch norm: the spread over z of its gain and bias (the z chunk's part)
  against the spread over classes (the shared class embedding's part);
- the outcome: within-class variety of the samples (mean pairwise distance in the MNIST
  classifier's features over that of real test digits of the class; 1 = as varied as real).

    python benchmarks/biggan_z.py RUN [RUN ...]      # prints a table, writes --out JSON
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


@torch.no_grad()
def z_paths(G: torch.nn.Module, n: int = 512, seed: int = 0) -> dict:
    """Spread of what z and what the class put into G's input linear and conditional BNs."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=g)
    y = torch.arange(n) % G.num_classes
    z0, conds = G.conditions(z, y)
    lin = G.linear
    wz = torch.nn.functional.linear(z0, lin.weight)  # the spectral-normed weight, no bias
    out = {
        "input_wz_std": float(wz.std(0).mean()),
        "input_bias_rms": float(lin.bias.pow(2).mean().sqrt()),
        "shared_row_norm": float(G.shared.weight.norm(dim=1).mean()),
        "blocks": [],
    }
    shared_dim = G.shared.embedding_dim
    for k, block in enumerate(G.blocks):
        c = conds[k]
        only_z = torch.cat([torch.zeros_like(c[:, :shared_dim]), c[:, shared_dim:]], 1)
        only_y = torch.cat([c[:, :shared_dim], torch.zeros_like(c[:, shared_dim:])], 1)
        row = {}
        for name, bn in (("bn1", block.bn1), ("bn2", block.bn2)):
            for part in ("gain", "bias"):
                layer = getattr(bn, part)
                row[f"{name}_{part}_from_z"] = float(layer(only_z).std(0).mean())
                row[f"{name}_{part}_from_class"] = float(layer(only_y).std(0).mean())
        out["blocks"].append(row)
    return out


def variety(run_dir: Path, ema: bool) -> float:
    """Within-class variety of 1,000 samples against the MNIST test digits (1 = as real)."""
    from family_mnist import class_spread  # benchmarks/ is on sys.path when a script runs
    from gankit.data import load_dataset
    from gankit.data.base import to_uint8
    from gankit.metrics.classifier import find_classifier
    from gankit.sampling import generate, load

    clf = find_classifier("mnist")
    run = load(run_dir, ema=ema)
    labels = torch.arange(1000) % 10
    fake = clf(to_uint8(generate(run, range(1000), labels))).features.double()
    test = load_dataset("mnist", train=False, resolution=28, channels=1,
                        root=str(ROOT.parent / "shared" / "datasets"), download=False)  # fmt: skip
    real = clf(test.images[:1000]).features.double()

    return class_spread(fake, labels) / class_spread(real, test.labels[:1000])


def main() -> None:
    from gankit.sampling import load

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_biggan_z.json")
    args = ap.parse_args()
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for run_dir in args.runs:
        rec = {}
        for ema in (True, False):
            run = load(run_dir, ema=ema)
            rec["G_ema" if ema else "G"] = {**z_paths(run.G), "variety": variety(run_dir, ema)}
        result[str(run_dir)] = rec
        for which, r in rec.items():
            print(f"{run_dir} {which}: variety {r['variety']:.2f}; input linear: W z spread "
                  f"{r['input_wz_std']:.3f}, bias rms {r['input_bias_rms']:.3f}; shared "
                  f"embedding row norm {r['shared_row_norm']:.2f}")  # fmt: skip
            for k, b in enumerate(r["blocks"]):
                print(f"  block {k}: gain spread from z {b['bn1_gain_from_z']:.3f} / from class "
                      f"{b['bn1_gain_from_class']:.3f}; bias from z {b['bn1_bias_from_z']:.3f} / "
                      f"from class {b['bn1_bias_from_class']:.3f}")  # fmt: skip
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
