"""Benchmark: every registered model with its MNIST recipe, a 600 s budget, time to quality.

Each run is `gankit train MODEL --data mnist --max-seconds S` (the model's grey28 recipe, chosen
automatically) on the 6,000 training digits of ../shared/datasets, one run at a time on both
cores, three training seeds per model. During training G_ema is scored every few kimg
(fd1k_mnistcnn against the 1,000 test digits, `--eval-ref test`; evaluation time is not counted
in the budget), which gives FD against training seconds and the seconds to 3x and 2x the floor
(the first of two consecutive evaluations below the line). After training, the final G_ema is
scored against the test digits: FD and recall in the MNIST classifier's features, the share of
the rarest class, the memorisation ratio (nearest-training-digit distance of samples over that
of held-out digits), class accuracy and within-class variety for conditional models, and the
categorical code's matched accuracy for InfoGAN. The floor is the real training digits against
the same test digits.

Resumable: every finished run is recorded in the JSON at once and skipped on a rerun;
`--only MODEL[,MODEL]` redoes those rows (with `--seeds`, only those seeds' runs);
`--slice-minutes` stops starting runs after that long.

    python benchmarks/family_mnist.py                           # the table: 14 rows x 3 seeds
    python benchmarks/family_mnist.py --only dcgan,wgan         # redo two rows
    python benchmarks/family_mnist.py --split val --seconds 150 --seeds 0 \\
        --out docs/bench_family_trials.json                     # tuning: validation slice
    python benchmarks/family_mnist.py --summarise               # table and figures from the JSON

`--split val` is for tuning recipes: the runs train on the first 5,000 training digits and are
scored against training digits 5,000-5,999, which they never saw; the test digits stay unseen.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from machine_info import machine  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent
VAL_TRAIN = 5000  # --split val: train on the first 5,000 digits, score on the next 1,000
# Extra rows beyond the registry: the saturating (minimax) loss on the DCGAN networks, and the
# anchor: the PyTorch tutorial's DCGAN (64x64, ngf = ndf = 64, batch 128, the paper's setup).
EXTRA = {
    "dcgan-minimax": ("dcgan", ["--objective", "minimax"]),
    "dcgan-tutorial": ("dcgan", ["--preset", "tutorial"]),
}
# In-training evaluation interval (kimg): some 12-15 points in 600 s on two threads, from each
# recipe's measured speed (docs/bench_family_trials.json); scaled with --seconds.
EVAL_KIMG_600 = {"gan": 400, "cgan": 200, "dcgan": 60, "cdcgan": 50, "lsgan": 60, "wgan": 60,
                 "wgan-gp": 40, "began": 30, "lapgan": 60, "stylegan": 30, "infogan": 60,
                 "biggan": 30, "dcgan-minimax": 60, "dcgan-tutorial": 12}  # fmt: skip


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


def train_command(label: str, model: str, extra: list, seed: int, args, run_dir: Path) -> list:
    every = max(1.0, EVAL_KIMG_600.get(label.split("@")[0], 40) * args.seconds / 600)
    cmd = [
        sys.executable, "-m", "gankit", "train", model, "--data", "mnist",
        "--data-root", str(args.data_root), "--no-download", "--kimg", "100000",
        "--max-seconds", str(args.seconds), "--run-dir", str(run_dir), "--overwrite",
        "--no-progress", "--device", "cpu", "--seed", str(seed),
        "--eval-every-kimg", f"{every:g}", "--eval-metrics", "fd1k_mnistcnn",
        "--sample-every-kimg", "1000", *extra,
    ]  # fmt: skip
    if args.split == "val":
        cmd += ["--max-images", str(VAL_TRAIN)]  # in-training FD: against those 5,000
    else:
        cmd += ["--eval-ref", "test"]
    return cmd


def training_facts(run_dir: Path) -> dict:
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steady = sorted(r["img_per_s"] for r in recs[len(recs) // 10 :])
    cfg = json.loads((run_dir / "config.json").read_text())
    return {
        "nimg": recs[-1]["nimg"],
        "steps": recs[-1]["step"],
        "median_img_per_s": round(steady[len(steady) // 2], 1),
        "preset": cfg["run_config"]["train"]["preset"],
        "precision": cfg.get("resolved", {}).get("precision"),
    }


def fd_curve(run_dir: Path) -> list[dict]:
    """(training seconds, kimg, fd1k) of the in-training evaluations; seconds are training
    time only (evaluation excluded), rebuilt from the logged rates."""
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


def seconds_to(curve: list[dict], level: float) -> float | None:
    """Training seconds of the first of two consecutive evaluations below `level`."""
    for a, b in zip(curve[:-1], curve[1:], strict=True):
        if a["fd1k"] <= level and b["fd1k"] <= level:
            return a["seconds"]
    return None


def class_spread(feats: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean pairwise feature distance within a class, averaged over the classes (the
    within-class variety of a set of images, in a feature space)."""
    per = []
    for k in labels.unique().tolist():
        f = feats[labels == k]
        if len(f) >= 2:
            per.append(float(torch.cdist(f, f).sum() / (len(f) * (len(f) - 1))))
    return sum(per) / len(per)


class Scorer:
    """The final scores of a run, against one real reference (test digits or the val slice).

    The real digits go through the same resize as in gankit's protocol: to the model's
    resolution (32 for the power-of-two models) and, in the classifier, back to 28, so that a
    32 px G is not judged against sharper 28 px digits than it was trained on. The floor is
    computed the same way at each resolution."""

    def __init__(self, args: argparse.Namespace) -> None:
        from gankit.data import load_dataset
        from gankit.metrics.classifier import find_classifier

        self.clf = find_classifier("mnist")
        opts = dict(resolution=28, channels=1, root=str(args.data_root), download=False)
        train = load_dataset("mnist", train=True, **opts)
        self.train_labels = train.labels
        if args.split == "val":
            self.train28 = train.images[:VAL_TRAIN]
            self.ref28 = train.images[VAL_TRAIN : VAL_TRAIN + 1000]
            self.ref_labels = train.labels[VAL_TRAIN : VAL_TRAIN + 1000]
        else:
            test = load_dataset("mnist", train=False, **opts)
            self.train28 = train.images
            self.ref28, self.ref_labels = test.images[:1000], test.labels[:1000]
        self.cache: dict[int, dict] = {}

    def at(self, res: int) -> dict:
        """Training and reference digits at `res`, the reference's features and the floor."""
        from gankit.data.transforms import resize_square

        if res not in self.cache:
            train, ref = resize_square(self.train28, res), resize_square(self.ref28, res)
            feats = self.clf(ref).features.double()
            g = torch.Generator().manual_seed(0)
            pick = train[torch.randperm(len(train), generator=g)[:1000]]
            c = {"train": train, "ref": ref, "ref_feats": feats}
            c["floor"] = self._fd(feats, self.clf(pick).features.double())
            self.cache[res] = c
        return self.cache[res]

    @property
    def floor(self) -> float:
        """The floor at 32 px, where most models train."""
        return self.at(32)["floor"]

    @staticmethod
    def _fd(a: torch.Tensor, b: torch.Tensor) -> float:
        from gankit.metrics.maths import frechet_distance, gaussian_stats

        return frechet_distance(gaussian_stats(a), gaussian_stats(b))

    def score(self, run_dir: Path) -> dict:
        from gankit.data.base import to_uint8
        from gankit.metrics.maths import prdc
        from gankit.metrics.neighbours import memorisation_stats
        from gankit.sampling import generate, load

        run = load(run_dir)
        ref = self.at(run.checkpoint.run_config.resolution)
        conditional = run.model.spec.conditional
        labels = torch.arange(1000) % 10 if conditional else None
        fake = to_uint8(generate(run, range(1000), labels))
        feats = self.clf(fake).features.double()
        pred = self.clf.classify(fake).argmax(1)
        shares = pred.bincount(minlength=10).double() / len(pred)
        pr = prdc(ref["ref_feats"].float(), feats.float())
        result = {
            "floor_fd1k": ref["floor"],
            "fd1k": self._fd(ref["ref_feats"], feats),
            "recall": pr["recall"],
            "prdc_precision": pr["precision"],
            "rarest_class_share": float(shares.min()),
            "memo_ratio": memorisation_stats(fake, ref["train"], ref["ref"], extractor=self.clf)[
                "ratio_median"
            ],
        }
        if conditional:
            result["class_acc"] = float((pred == labels).double().mean())
            result["variety"] = class_spread(feats, labels) / class_spread(
                ref["ref_feats"], self.ref_labels
            )
        if run.model.spec.codes:
            result["code_matched_acc"] = code_accuracy(run, self.clf)
        result.update(self.d_overfit(run, ref))
        return result

    @torch.no_grad()
    def d_overfit(self, run, ref: dict) -> dict:
        """D's mean score on 1,000 digits it trained on and on the 1,000 held-out ones: a D
        that memorises its training digits scores them higher (sigmoid for logit objectives)."""
        from gankit.data.base import to_unit_range

        spec = run.model.spec
        if spec.d_output == "reconstruction":
            return {}
        D = run.model.D.eval()
        objective = run.checkpoint.run_config.train.objective or spec.objective
        out = {}
        for name, images, labels in (
            ("d_seen", ref["train"][:1000], self.train_labels[:1000]),
            ("d_heldout", ref["ref"], self.ref_labels),
        ):
            x = to_unit_range(images)
            s = D(x, labels if spec.conditional else None).float()
            s = s.mean(1) if s.dim() == 2 else s
            out[name] = float((s.sigmoid() if objective.startswith(("nonsat", "minimax")) else s)
                              .mean())  # fmt: skip
        return out


def code_accuracy(run, clf) -> float:
    """InfoGAN: accuracy of the best one-to-one map from categorical code to digit."""
    from scipy.optimize import linear_sum_assignment

    from gankit.analysis.infogan import categorical_purity

    res = categorical_purity(run.G, clf.classify, n_per_code=200, seed=0)
    counts = torch.tensor(res["counts"], dtype=torch.float64)  # [codes, classes seen]
    rows, cols = linear_sum_assignment(-counts.numpy())
    return float(counts[rows, cols].sum() / counts.sum())


def passes(row: dict, floor: float) -> dict:
    """The issue's targets for one run."""
    ok = {"fd_3x": row["fd1k"] <= 3 * floor, "recall_0.6": row["recall"] >= 0.6,
          "classes_5pct": row["rarest_class_share"] >= 0.05,
          "memo_0.9": (row["memo_ratio"] or 0) >= 0.9}  # fmt: skip
    if "class_acc" in row:
        ok.update({"acc_97": row["class_acc"] >= 0.97, "variety_0.7": row["variety"] >= 0.7})
    if "code_matched_acc" in row:
        ok["code_90"] = row["code_matched_acc"] >= 0.9
    return ok


def finish(rec: dict) -> None:
    """Time to quality and the targets, against the floor at the run's own resolution."""
    floor = rec["floor_fd1k"]
    rec["fd_over_floor"] = rec["fd1k"] / floor
    rec["seconds_to_3x"] = seconds_to(rec["fd_curve"], 3 * floor)
    rec["seconds_to_2x"] = seconds_to(rec["fd_curve"], 2 * floor)
    rec["passes"] = passes(rec, floor)


def grid(run_dir: Path, path: Path) -> None:
    from gankit.sampling import sample_to_file

    path.parent.mkdir(parents=True, exist_ok=True)
    sample_to_file(run_dir, path)


def save(result: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, path)


def summary_rows(result: dict) -> list[dict]:
    """Per row label: median and range over its seeds."""
    by: dict[str, list[dict]] = {}
    for rec in result["runs"].values():
        by.setdefault(rec["label"], []).append(rec)
    out = []
    for label, recs in by.items():
        recs = [r for r in recs if "fd1k" in r]
        if not recs:
            continue

        def med(key: str, rs=recs) -> float | None:
            vals = [r[key] for r in rs if r.get(key) is not None]
            return statistics.median(vals) if vals else None

        def rng(key: str, rs=recs) -> tuple | None:
            vals = [r[key] for r in rs if r.get(key) is not None]
            return (min(vals), max(vals)) if vals else None

        t3 = [r.get("seconds_to_3x") for r in recs]
        t2 = [r.get("seconds_to_2x") for r in recs]
        out.append({
            "label": label, "seeds": len(recs), "nimg": med("nimg"),
            "img_per_s": med("median_img_per_s"), "fd1k": med("fd1k"), "fd_range": rng("fd1k"),
            "fd_over_floor": med("fd_over_floor"), "recall": med("recall"),
            "rarest": med("rarest_class_share"), "memo": med("memo_ratio"),
            "class_acc": med("class_acc"), "variety": med("variety"),
            "code_acc": med("code_matched_acc"),
            "t3": statistics.median(t3) if all(t is not None for t in t3) else None,
            "t3_reached": sum(t is not None for t in t3),
            "t2": statistics.median(t2) if all(t is not None for t in t2) else None,
            "t2_reached": sum(t is not None for t in t2),
            "preset": recs[0].get("preset"), "precision": recs[0].get("precision"),
        })  # fmt: skip
    return out


def print_table(result: dict) -> None:
    def f(v, fmt="{:.2f}") -> str:
        return "-" if v is None else fmt.format(v)

    peak = result["machine"].get("peak_gflops")
    print(f"floor (real training digits vs the {result['split']} digits): "
          f"FD {result['floor_fd1k']:.1f}; host peak {peak} GFLOP/s")  # fmt: skip
    head = ("| model | setup | seeds | images seen | img/s | FD 1k (range) | / floor | recall | "
            "rarest class | memo | class acc | variety | s to 3x | s to 2x |")  # fmt: skip
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in summary_rows(result):
        lo, hi = r["fd_range"]
        n = r["seeds"]
        t3 = f(r["t3"], "{:.0f}") if r["t3_reached"] == n else f"{r['t3_reached']}/{n} reached"
        t2 = f(r["t2"], "{:.0f}") if r["t2_reached"] == n else f"{r['t2_reached']}/{n} reached"
        acc = f(r["class_acc"] and 100 * r["class_acc"], "{:.1f}%")
        if r["code_acc"] is not None:
            acc = f"code {100 * r['code_acc']:.1f}%"
        print(f"| {r['label']} | {r['preset'] or 'paper'}, {r['precision']} | {n} | "
              f"{r['nimg']:,.0f} | {r['img_per_s']:.0f} | {r['fd1k']:.1f} ({lo:.1f}-{hi:.1f}) | "
              f"{r['fd_over_floor']:.2f} | {f(r['recall'])} | {f(r['rarest'])} | "
              f"{f(r['memo'])} | {acc} | {f(r['variety'])} | {t3} | {t2} |")  # fmt: skip


def plot_curves(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 5.8))
    colours = plt.get_cmap("tab20").colors
    labels = list(dict.fromkeys(r["label"] for r in result["runs"].values()))
    for i, label in enumerate(labels):
        first = True
        for rec in result["runs"].values():
            curve = rec.get("fd_curve") or []
            if rec["label"] != label or not curve:
                continue
            ax.plot([c["seconds"] for c in curve], [c["fd1k"] for c in curve],
                    color=colours[i % 20], linestyle=("-", "--", ":")[i // 10 % 3],
                    marker="os^Dv"[i % 5], markersize=3, linewidth=1,
                    label=label if first else None)  # fmt: skip
            first = False
    floor = result["floor_fd1k"]  # at 32 px, where most models train
    for m, style in ((1, "-"), (2, "--"), (3, ":")):
        ax.axhline(m * floor, color="k", linestyle=style, linewidth=0.8,
                   label=f"{m}x floor" if m > 1 else "floor (real digits)")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel(f"training seconds ({result['threads']} CPU threads; evaluation excluded)")
    ax.set_ylabel(f"FD 1k vs the {result['split']} digits, classifier features")
    ax.set_title("MNIST, every model with its recipe: FD of G_ema against training time")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="training budget per run")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of each run")
    ap.add_argument("--split", choices=["test", "val"], default="test")
    ap.add_argument("--only", help="comma-separated rows to (re)do; default every row")
    ap.add_argument("--extra", default="", help="tuning: more `gankit train` flags for the rows")
    ap.add_argument("--tag", help="tuning: name of the --extra variant (rows become ROW@TAG)")
    ap.add_argument("--slice-minutes", type=float, default=120.0,
                    help="start no run after this many minutes (rerun to go on)")  # fmt: skip
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-family")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_family_recipes.json")
    ap.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures")
    ap.add_argument("--summarise", action="store_true", help="table and figures, no training")
    ap.add_argument("--rescore", action="store_true", help="score the recorded runs again")
    args = ap.parse_args()
    for key in ("data_root", "runs", "out", "figures"):  # the runs start in the repo's root
        setattr(args, key, getattr(args, key).resolve())
    tag = "family" if args.split == "test" else "trials"
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if result.get("split", args.split) != args.split or "runs" not in result:
        result = {}
    if args.summarise:
        print_table(result)
        plot_curves(result, args.figures / f"{tag}-fd-curves.png")
        return

    from eval_mnist import ensure_classifier

    ensure_classifier(args.data_root)
    torch.set_num_threads(args.threads)
    scorer = Scorer(args)
    result.setdefault("runs", {})
    from speed import peak_gflops

    peak = {p: round(peak_gflops(p), 1) for p in ("fp32", "bf16")}  # this host, this run
    print(f"host peak (3x3 conv, {args.threads} threads): {peak} GFLOP/s", flush=True)
    peaks = [*result.get("machine", {}).get("peaks_seen", []), peak]  # one per invocation
    result.update(machine={**machine(), "peak_gflops": peak, "peaks_seen": peaks}, split=args.split,
                  seconds=args.seconds, threads=args.threads, floor_fd1k=scorer.floor)  # fmt: skip
    if args.rescore:
        for key, rec in result["runs"].items():
            if args.only and rec["label"] not in args.only.split(","):
                continue
            rec.update(scorer.score(args.runs / args.split / key))
            finish(rec)
            print(f"[rescored] {key}: FD {rec['fd1k']:.1f} ({rec['fd_over_floor']:.2f}x)")
            save(result, args.out)
        print_table(result)
        plot_curves(result, args.figures / f"{tag}-fd-curves.png")
        return
    rows = rows_to_run(args.only)
    if args.extra and not args.tag:
        raise SystemExit("--extra needs a --tag naming the variant")
    if args.tag:
        rows = {f"{k}@{args.tag}": (m, [*x, *args.extra.split()]) for k, (m, x) in rows.items()}
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if args.only:  # redo those rows for the seeds asked: forget those runs, keep the others
        result["runs"] = {k: v for k, v in result["runs"].items()
                          if v["label"] not in rows or v["seed"] not in seeds}  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    t_start = time.time()
    for seed in seeds:  # a whole seed round first, so a cut-short slice covers every row
        for label, (model, extra) in rows.items():
            key = f"{label}-s{seed}"
            if key in result["runs"]:
                print(f"{key}: done before, skipped", flush=True)
                continue
            if time.time() - t_start > args.slice_minutes * 60:
                print(f"slice of {args.slice_minutes:g} min used: stopping; rerun to go on")
                save(result, args.out)
                print_table(result)
                return
            run_dir = args.runs / args.split / key
            cmd = train_command(label, model, extra, seed, args, run_dir)
            # a run trained before but not yet scored (a slice cut short while scoring). Not
            # under --only: a redo retrains, as the recipe may have changed since, and the
            # command line alone does not show that (the recipe is resolved inside gankit).
            trained = run_dir / "trained.json"
            reuse = not args.only and trained.is_file()
            if reuse and json.loads(trained.read_text())["command"] == cmd[3:]:
                wall = json.loads(trained.read_text())["wall_s"]
                print(f"[train] {key}: trained before, scoring it", flush=True)
            else:
                print(f"[train] {key}: {' '.join(cmd[3:])}", flush=True)
                t0 = time.perf_counter()
                log = run_dir.parent / f"{key}.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                with open(log, "w") as fh:
                    proc = subprocess.run(
                        cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT
                    )
                if proc.returncode != 0:
                    print(f"[train] {key} FAILED ({proc.returncode}):\n{log.read_text()[-2000:]}")
                    continue
                wall = round(time.perf_counter() - t0, 1)
                trained.write_text(json.dumps({"command": cmd[3:], "wall_s": wall}))
            rec = {"label": label, "seed": seed, "command": "gankit " + " ".join(cmd[3:]),
                   "wall_s": wall, **training_facts(run_dir)}  # fmt: skip
            rec["fd_curve"] = fd_curve(run_dir)
            rec.update(scorer.score(run_dir))
            finish(rec)
            fig = args.figures / f"{tag}-{label}.png"
            if seed == 0 or (seed == seeds[0] and not fig.exists()):  # keep seed 0's grid
                grid(run_dir, fig)
            result["runs"][key] = rec
            save(result, args.out)
            print(f"[done] {key}: {rec['nimg']:,} images, FD {rec['fd1k']:.1f} "
                  f"({rec['fd1k'] / rec['floor_fd1k']:.2f}x floor), recall {rec['recall']:.2f}, "
                  f"rarest {rec['rarest_class_share']:.3f}, memo {rec['memo_ratio']:.2f}"
                  + (f", acc {rec['class_acc']:.3f}, variety {rec['variety']:.2f}"
                     if "class_acc" in rec else ""), flush=True)  # fmt: skip
    save(result, args.out)
    print_table(result)
    plot_curves(result, args.figures / f"{tag}-fd-curves.png")


if __name__ == "__main__":
    main()
