"""Benchmark: DCGAN on 100 to 6,000 MNIST digits with no augmentation, DiffAugment and ADA.

Each row trains `gankit train dcgan --preset demo --set ngf=32 --set ndf=32 --data mnist
--max-images N --augment A --max-seconds S` (the shipped dcgan-digits' CPU recipe)
(one process each, back to back), then scores G_ema against the 1,000 held-out test digits in
../shared: Frechet distance and recall in the domain classifier's features, memorisation
(nearest training image, generated vs held-out), and how much of the augmentation leaked into
G's samples (the share of samples with a mid-grey cutout block, shifted off the centre, or a
background of another brightness, against the same shares for the real test digits). The
figure is stylegan2-ada's Figure 1: FD against the data set's size, one line per augmentation.

Resumable: each finished row is written to the JSON at once, and a rerun skips the rows it
holds (a row killed mid-training is trained again from scratch; one killed while it was
being scored is only scored again). About 2 hours as published
(4 sizes x 3 augmentations x 2 seeds x 300 s, plus scoring).

    python benchmarks/small_data.py                                 # everything
    python benchmarks/small_data.py --only n500-ada-s0,n500-none-s0  # some rows
    python benchmarks/small_data.py --sizes 100 --augments none,ada --seeds 0 --seconds 15 \
        --features pixel --out /tmp/small                           # a one-minute smoke run

A study beside the published table goes under `--tag` (its own JSON, figures and run
folders), e.g. docs/small_data.md's 400-kimg study with today's recipe and FD curves:

    python benchmarks/small_data.py --recipe grey28 --kimg 400 --eval-every-kimg 50 \
        --ada-kimg 100 --parallel 2 --tag grey28-400k --sizes 500,6000 \
        --augments none,diffaug,ada-xbc --only n500-none-s0,...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from machine_info import machine  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent
SIZES = (100, 500, 2000, 6000)
AUGMENTS = ("none", "diffaug", "ada")


def key(size: int, augment: str, seed: int) -> str:
    return f"n{size}-{augment}-s{seed}"


# --recipe: the training settings every row shares (the augmentation and the data differ)
RECIPES: dict[str, list[str]] = {
    # the first shipped dcgan-digits' CPU recipe: the demo preset (batch 64, short EMA, bf16
    # where this host runs it faster) at half the tutorial's widths. The published table.
    "demo": ["--preset", "demo", "--set", "ngf=32", "--set", "ndf=32"],
    # dcgan's recipe for 28-32 px greyscale digits, picked by `--data mnist` itself (ngf 64,
    # ndf 32, lr_g 1e-3 / lr_d 2e-4, EMA 5 kimg): the shipped generators' recipe.
    "grey28": [],
}
# --augments names -> --augment specs (None: no augmentation)
AUGMENT_SPECS: dict[str, str | None] = {
    "none": None,
    "diffaug": "diffaug",
    "ada": "ada",
    # ADA with the ops that do not resample (benchmarks/ada_ops.py: the resampling ops cost)
    "ada-xbc": "ada:xint,brightness,contrast",
}


def train_command(row: dict, args: argparse.Namespace, run_dir: Path) -> list[str]:
    """The `gankit train` arguments of one row."""
    if args.kimg:
        budget = ["--kimg", f"{args.kimg:g}"]  # an image budget: the host's load changes nothing
    else:
        budget = ["--kimg", "100000", "--max-seconds", str(args.seconds)]
    cmd = [
        "train", "dcgan", "--data", "mnist", "--data-root", str(args.data_root),
        "--no-download", "--max-images", str(row["size"]), "--seed", str(row["seed"]),
        *budget, "--run-dir", str(run_dir),
        "--overwrite", "--no-progress", "--device", "cpu",
        "--batch-size", str(min(64, row["size"])),
        *RECIPES[args.recipe], "--set", "sample_every_kimg=50",
    ]  # fmt: skip
    spec = AUGMENT_SPECS[row["augment"]]
    if spec:
        cmd += ["--augment", spec]
    if spec and spec.startswith("ada") and args.ada_kimg:
        cmd += ["--ada-kimg", f"{args.ada_kimg:g}"]
    if args.eval_every_kimg:  # FD curves, only to look at: no setting is chosen from them
        cmd += ["--eval-every-kimg", f"{args.eval_every_kimg:g}",
                "--eval-metrics", f"fd1k_{args.features}", "--eval-ref", "test"]  # fmt: skip
    return cmd


def train(row: dict, args: argparse.Namespace, run_dir: Path) -> dict:
    cmd = train_command(row, args, run_dir)
    done = run_dir / "bench_train.json"  # a row trained before its scoring was cut short
    if done.is_file() and json.loads(done.read_text()).get("command") == "gankit " + " ".join(cmd):
        return json.loads(done.read_text())
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gankit", *cmd], check=True, cwd=ROOT, env=env)
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    out = {
        "command": "gankit " + " ".join(cmd),
        "wall_s": round(time.perf_counter() - t0, 1),
        "nimg": recs[-1]["nimg"],
    }
    if "ada_p" in recs[-1]:
        out["ada_p_final"] = recs[-1]["ada_p"]
    out["curve"] = curve(run_dir, args.features)
    done.write_text(json.dumps(out))
    return out


def curve(run_dir: Path, features: str) -> list[dict]:
    """The FDs evaluated during training (`--eval-every-kimg`), by thousands of images."""
    path = run_dir / "eval.jsonl"
    out = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        e = json.loads(line)
        if e["metric"] == f"fd1k_{features}" and e.get("checkpoint") is None:
            out.append({"kimg": e["nimg"] / 1000, "fd": e["value"]})
    return out


def leak_shares(images: torch.Tensor) -> dict[str, float]:
    """Shares of images (in [-1, 1], [N, 1, H, W]) that show an augmentation's trace:
    a mid-grey block (cutout and translation fill with 0), ink whose centre of mass is over
    1/10 of the side off the centre (translation), a background off black (brightness)."""
    x = images[:, 0].float()
    n, h, w = x.shape
    side = max(2, h // 5)
    grey = (x.abs() < 0.25).float().unsqueeze(1)
    blocks = torch.nn.functional.avg_pool2d(grey, side, stride=1)  # share grey per window
    ink = (x + 1) / 2
    mass = ink.sum((1, 2)).clamp_min(1e-6)
    cy = (ink.sum(2) * torch.arange(h)).sum(1) / mass - (h - 1) / 2
    cx = (ink.sum(1) * torch.arange(w)).sum(1) / mass - (w - 1) / 2
    background = x.flatten(1).median(1).values
    return {
        "grey_block": float((blocks.flatten(1).amax(1) >= 1.0).float().mean()),
        "off_centre": float(((cy**2 + cx**2).sqrt() > h / 10).float().mean()),
        "background_shift": float(((background + 1).abs() > 0.25).float().mean()),
        **turned_shares(images),
    }


def turned_shares(images: torch.Tensor) -> dict[str, float]:
    """Shares of images that look mirrored or turned (ADA's xflip and rotate90): the digit
    classifier is unsure of the image (p < 0.5) but sure (p > 0.9) of it flipped back or
    turned by 90, 180 or 270 degrees. Also the share the classifier reads as each class, whose
    smallest entry shows a dropped digit."""
    from gankit.data.base import to_uint8
    from gankit.metrics.classifier import find_classifier

    clf = find_classifier("mnist")

    def sure(x: torch.Tensor) -> torch.Tensor:
        return clf.classify(to_uint8(x)).softmax(1)

    p0 = sure(images)
    unsure = p0.amax(1) < 0.5
    turned = torch.zeros_like(unsure)
    for t in (images.flip(3), *(images.rot90(k, (2, 3)) for k in (1, 2, 3))):
        turned |= unsure & (sure(t).amax(1) > 0.9)
    counts = p0.argmax(1).bincount(minlength=10).float() / len(images)
    return {
        "mirrored_or_turned": float(turned.float().mean()),
        "unsure": float(unsure.float().mean()),
        "rarest_class_share": float(counts.min()),
    }


def d_overfit(run_dir: Path, args: argparse.Namespace, size: int) -> dict[str, float]:
    """D's verdict (mean sigmoid of its logit, in eval mode) on the digits it trained on (the
    first min(N, 1,000)), on the 1,000 held-out test digits and on 1,000 G_ema samples: a D
    that memorised its set calls the held-out digits fake (ADA's overfitting signal)."""
    from gankit.data import load_dataset
    from gankit.data.base import to_unit_range
    from gankit.sampling import generate, load

    run = load(run_dir)
    res = run.checkpoint.run_config.resolution

    def digits(train: bool) -> torch.Tensor:
        data = load_dataset(
            "mnist", resolution=res, root=str(args.data_root), train=train, download=False
        )
        return to_unit_range(data.images[: min(size, 1000)] if train else data.images).float()

    D = run.model.D.eval()
    with torch.no_grad():
        verdict = {
            name: float(torch.sigmoid(D(x)).mean())
            for name, x in (
                ("train", digits(True)), ("held_out", digits(False)),
                ("samples", generate(run, range(1000))),
            )
        }  # fmt: skip
    verdict["gap"] = verdict["train"] - verdict["held_out"]
    return verdict


def samples(run_dir: Path, n: int = 1000) -> torch.Tensor:
    from gankit.sampling import generate, load

    return generate(load(run_dir), range(n))


def score(run_dir: Path, args: argparse.Namespace, row_size: int) -> dict:
    from gankit.metrics import evaluate_run

    f = args.features
    out: dict = {}
    t0 = time.perf_counter()
    for metrics, split in (([f"fd1k_{f}", f"prdc1k_{f}"], "test"), ([f"memo1k_{f}"], "train")):
        for rec in evaluate_run(
            run_dir, metrics, data_root=str(args.data_root), download=False, split=split
        ):
            out[rec["metric"]] = rec["values"]
    out["eval_s"] = round(time.perf_counter() - t0, 1)
    out["leaks"] = leak_shares(samples(run_dir))
    out["d_sigmoid"] = d_overfit(run_dir, args, row_size)
    return out


def test_images(args: argparse.Namespace, resolution: int) -> torch.Tensor:
    from gankit.data import load_dataset
    from gankit.data.base import to_unit_range

    test = load_dataset(
        "mnist", resolution=resolution, root=str(args.data_root), train=False, download=False
    )
    return to_unit_range(test.images)


def real_leaks(args: argparse.Namespace, resolution: int) -> dict[str, float]:
    return leak_shares(test_images(args, resolution))


def plot(result: dict, path: Path, features: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for augment in AUGMENT_SPECS:
        rows = [r for r in result["rows"].values() if r["augment"] == augment and "fd" in r]
        sizes = sorted({r["size"] for r in rows})
        if not sizes:
            continue
        fds = [sum(r["fd"] for r in rows if r["size"] == s) / sum(
            r["size"] == s for r in rows) for s in sizes]  # fmt: skip
        (line,) = ax.plot(sizes, fds, marker="o", label=f"{augment} (mean of seeds)")
        ax.scatter([r["size"] for r in rows], [r["fd"] for r in rows], s=12, alpha=0.5,
                   color=line.get_color())  # fmt: skip
    if "floor" in result:
        ax.axhline(result["floor"]["fd"], color="0.5", ls="--", lw=0.8, label="real test digits")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training digits")
    ax.set_ylabel(f"FD to 1,000 test digits ({features} features)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--augments", default=",".join(AUGMENTS))
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--only", default="", help="comma-separated row keys, e.g. n500-ada-s0")
    ap.add_argument("--seconds", type=float, default=300.0, help="training budget per row")
    ap.add_argument("--kimg", type=float, help="an image budget per row instead of --seconds")
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="demo",
                    help="the shared training settings (demo: the published table)")  # fmt: skip
    ap.add_argument("--ada-kimg", type=float, help="--ada-kimg of the ADA rows (default: gankit's)")
    ap.add_argument("--eval-every-kimg", type=float, help="also record FD curves during training")
    ap.add_argument("--parallel", type=int, default=1, help="rows trained at a time")
    ap.add_argument("--tag", default="", help="a study beside the published table: its own "
                    "JSON (bench_small_data-TAG.json), figures and run folders")  # fmt: skip
    ap.add_argument("--features", default="mnistcnn", help="mnistcnn (published) or pixel")
    ap.add_argument(
        "--threads", type=int, default=1,
        help="CPU threads per training run (one leaves a core for other work, evenly for all rows)",
    )  # fmt: skip
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-small-data")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    unknown = set(args.augments.split(",")) - set(AUGMENT_SPECS)
    if unknown:
        ap.error(f"unknown --augments {sorted(unknown)}: choose from {list(AUGMENT_SPECS)}")
    suffix = f"-{args.tag}" if args.tag else ""
    if args.tag:
        args.runs = args.runs / args.tag

    rows = [
        {"size": int(s), "augment": a, "seed": int(seed)}
        for s in args.sizes.split(",")
        for a in args.augments.split(",")
        for seed in args.seeds.split(",")
    ]
    only = {k for k in args.only.split(",") if k}
    rows = [r for r in rows if not only or key(**r) in only]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench_small_data{suffix}.json"
    result = json.loads(path.read_text()) if path.is_file() else {"rows": {}}
    result.update(
        machine=machine(), features=args.features, threads=args.threads, recipe=args.recipe,
        **({"kimg_per_row": args.kimg} if args.kimg else {"seconds_per_row": args.seconds}),
    )  # fmt: skip
    todo = [r for r in rows if key(**r) not in result["rows"]]
    for row in rows:
        if row not in todo:
            print(f"{key(**row)}: done before, skipped")
    # training runs side by side (each on --threads threads); scoring is one row at a time
    with ThreadPoolExecutor(max(1, args.parallel)) as pool:
        trained = pool.map(lambda r: train(r, args, args.runs / key(**r)), todo)
        for row, run in zip(todo, trained, strict=True):
            k = key(**row)
            score_row(row, run, args, result, path, k)
    finish(result, rows, args, path, suffix)


def score_row(
    row: dict, run: dict, args: argparse.Namespace, result: dict, path: Path, k: str
) -> None:
    """Score one trained row and write it to the JSON at once."""
    run_dir = args.runs / k
    info = {**row, **run}
    info.update(score(run_dir, args, row["size"]))
    f = args.features
    info["fd"] = info[f"fd1k_{f}"]["fd"]
    info["recall"] = info[f"prdc1k_{f}"].get("recall")
    info["resolution"] = int(load_run_resolution(run_dir))
    if "real_leaks" not in result:
        result["real_leaks"] = real_leaks(args, info["resolution"])
    result["rows"][k] = info
    path.write_text(json.dumps(result, indent=1))  # each row as soon as it is done
    print(f"{k}: FD {info['fd']:.2f}, recall {info['recall']}, leaks {info['leaks']}")


def finish(
    result: dict, rows: list[dict], args: argparse.Namespace, path: Path, suffix: str
) -> None:
    """Fill in what older rows lack, then the floor, the figures and the table."""
    for k, info in result["rows"].items():  # rows scored before memo used only the N seen
        memo = f"memo1k_{args.features}"
        if info[memo].get("n_train") != info["size"]:
            from gankit.metrics import evaluate_run

            rec = evaluate_run(
                args.runs / k, [memo], data_root=str(args.data_root), download=False,
                split="train", append=False,
            )[0]  # fmt: skip
            info[memo] = rec["values"]
            path.write_text(json.dumps(result, indent=1))
    for k, info in result["rows"].items():  # rows scored before D's verdicts were
        if "d_sigmoid" not in info:
            info["d_sigmoid"] = d_overfit(args.runs / k, args, info["size"])
            path.write_text(json.dumps(result, indent=1))
    for k, info in result["rows"].items():  # rows scored before the classifier's shares
        if "mirrored_or_turned" not in info["leaks"]:
            info["leaks"].update(turned_shares(samples(args.runs / k)))
            info.setdefault("resolution", int(load_run_resolution(args.runs / k)))
            result["real_leaks"].update(turned_shares(test_images(args, info["resolution"])))
            path.write_text(json.dumps(result, indent=1))
    if result["rows"] and "floor" not in result:
        first = args.runs / next(iter(result["rows"]))
        result["floor"] = floor(args, int(load_run_resolution(first)))
        path.write_text(json.dumps(result, indent=1))
    if result["rows"]:
        (args.out / "figures").mkdir(exist_ok=True)
        figures = args.out / "figures"
        plot(result, figures / f"small_data{suffix}.png", args.features)
        sizes = (100, 500) if not args.tag else tuple(sorted({r["size"] for r in rows}))
        sample_rows(result, args.runs, figures / f"small_data{suffix}-samples.png", sizes)
        if any(r.get("curve") for r in result["rows"].values()):
            plot_curves(result, figures / f"small_data{suffix}-curves.png", args.features)
        print(f"real test digits' leak shares: {result.get('real_leaks')}")
        print(f"floor (test digits against the training digits): FD {result['floor']['fd']:.2f}")
        print(table(result))


def floor(args: argparse.Namespace, resolution: int) -> dict:
    """What real digits score: the 1,000 test digits against all 6,000 training digits, in
    the rows' metrics (`evaluate_real`; the rows are 1,000 samples against the test digits)."""
    from gankit.metrics import evaluate_real

    f = args.features
    recs = evaluate_real(
        "mnist", [f"fd1k_{f}", f"prdc1k_{f}"], resolution=resolution, channels=1,
        data_root=str(args.data_root), download=False,
    )  # fmt: skip
    out = {rec["metric"]: rec["values"] for rec in recs}
    return {"fd": out[f"fd1k_{f}"]["fd"], "recall": out[f"prdc1k_{f}"].get("recall"), **out}


def plot_curves(result: dict, path: Path, features: str) -> None:
    """FD against thousands of images seen, one line per row: where D's memorising starts to
    hurt G, the curve of the run without augmentation turns up."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colours = {aug: palette[i % len(palette)] for i, aug in enumerate(AUGMENT_SPECS)}
    styles = {}
    for _, r in sorted(result["rows"].items()):
        if not r.get("curve"):
            continue
        style = styles.setdefault(r["size"], ("-", "--", ":", "-.")[len(styles) % 4])
        ax.plot([c["kimg"] for c in r["curve"]], [c["fd"] for c in r["curve"]], ls=style,
                color=colours[r["augment"]], label=f"{r['size']:,} digits, {r['augment']}, "
                f"seed {r['seed']}")  # fmt: skip
    if "floor" in result:
        ax.axhline(result["floor"]["fd"], color="0.5", ls="--", lw=0.8, label="real test digits")
    ax.set_yscale("log")
    ax.set_xlabel("thousands of images seen")
    ax.set_ylabel(f"FD to 1,000 test digits ({features} features)")
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sample_rows(result: dict, runs: Path, path: Path, sizes: tuple[int, ...] = (100, 500)) -> None:
    """One row of G_ema samples (seeds 0-15) per augmentation and size, of the seed-0 runs:
    docs/figures/small_data-samples.png, rows none / diffaug / ada for each size in turn."""
    from gankit import viz
    from gankit.sampling import generate, load

    rows = [
        generate(load(runs / key(size, aug, 0)), range(16))
        for size in sizes
        for aug in AUGMENT_SPECS
        if key(size, aug, 0) in result["rows"]
    ]
    if rows:
        viz.save_grid(torch.cat(rows), path, nrow=16, scale=2)


def table(result: dict) -> str:
    """The rows as the markdown table docs/small_data.md shows: per size and augmentation,
    the mean over seeds (and each seed's FD)."""
    floor_fd = result.get("floor", {}).get("fd")
    head = (
        "| digits | augment | seeds | FD (each seed) | FD / floor | recall | memo ratio | "
        "D on seen / held-out digits | mirrored or turned | rarest class | images seen |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    cells = sorted({(r["size"], r["augment"]) for r in result["rows"].values()},
                   key=lambda c: (c[0], list(AUGMENT_SPECS).index(c[1])))  # fmt: skip
    for size, aug in cells:
        rows = [r for r in result["rows"].values() if (r["size"], r["augment"]) == (size, aug)]
        rows.sort(key=lambda r: r["seed"])

        def mean(get: Callable[[dict], float], rows: list[dict] = rows) -> float:
            return sum(get(r) for r in rows) / len(rows)

        fd = mean(lambda r: r["fd"])
        ratio = f"{fd / floor_fd:.1f}x" if floor_fd else "-"
        memo = mean(lambda r: r[f"memo1k_{result['features']}"]["ratio_median"])
        d = (
            f"{mean(lambda r: r['d_sigmoid']['train']):.2f} / "
            f"{mean(lambda r: r['d_sigmoid']['held_out']):.2f}"
            if all("d_sigmoid" in r for r in rows) else "-"
        )  # fmt: skip
        turned = mean(lambda r: r["leaks"].get("mirrored_or_turned", float("nan")))
        rare = mean(lambda r: r["leaks"].get("rarest_class_share", float("nan")))
        each = ", ".join(f"{r['fd']:.0f}" for r in rows)
        lines.append(
            f"| {size:,} | {aug} | {len(rows)} | {fd:.1f} ({each}) | {ratio} | "
            f"{mean(lambda r: r['recall']):.2f} | {memo:.2f} | {d} | {turned:.1%} | "
            f"{rare:.1%} | {mean(lambda r: r['nimg']) / 1000:.0f}k |"
        )
    return head + "\n".join(lines)


def load_run_resolution(run_dir: Path) -> int:
    from gankit.checkpoint import load_checkpoint

    return load_checkpoint(run_dir).run_config.resolution


if __name__ == "__main__":
    main()
