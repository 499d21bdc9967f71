"""Remake docs/inside.md's walk between two real digits and its arithmetic on real digits.

    .venv/bin/python scripts/projected_walk.py [--model pretrained:dcgan-digits]

Takes held-out test digits of `--data digits` (the first 3 and 7 of the test split and its
first two 1s), writes them as PNGs, and runs the three commands docs/inside.md shows, through
gankit's CLI: `project` them, `interpolate` from the 3 to the 7, and `arithmetic` 7 - the two
real 1s + three bold generated 1s. The figures are copied to docs/figures/ and each command's
report is printed, so the numbers in the docs come from here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from PIL import Image

from gankit.cli import main as gankit
from gankit.data import load_dataset

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pretrained:dcgan-digits")
    ap.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures")
    args = ap.parse_args()
    args.figures = args.figures.resolve()
    stem = args.model.replace("pretrained:", "")
    test = load_dataset("digits", resolution=32, train=False)
    labels = test.labels.tolist()
    picks = {"three": labels.index(3), "seven": labels.index(7), "one": labels.index(1)}
    picks["one_b"] = labels.index(1, picks["one"] + 1)
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # the figures' labels then read held.npz:1, not a temporary path
        images = []
        for name, i in picks.items():
            Image.fromarray(test.images[i, 0].numpy()).save(f"{name}.png")  # uint8 already
            images.append(f"{name}.png")
            print(f"{name}.png: test digit #{i} (label {labels[i]})")
        gankit(["project", args.model, *images, "--out", "held"])
        gankit(["interpolate", args.model, "--seeds", "held.npz:0,1", "--steps", "10",
                "--out", "walk"])  # fmt: skip
        gankit(["arithmetic", args.model, "--a", "held.npz:1", "--b", "held.npz:2,3",
                "--c", "class=1:bold", "--out", "arith"])  # fmt: skip
        for src, name in (("walk", "interpolate"), ("arith", "arithmetic")):
            dest = args.figures / f"{name}-projected-{stem}.png"
            shutil.copyfile(f"{src}.png", dest)
            print(f"wrote {dest}")


if __name__ == "__main__":
    main()
