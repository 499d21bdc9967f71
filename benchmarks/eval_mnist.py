"""Benchmark: the core models trained on real MNIST with the CLI defaults, then scored.

For each of dcgan, cdcgan and cgan: `gankit train MODEL --data mnist --max-seconds S` (one
process each, back to back), then `gankit eval`'s metrics in the domain classifier's feature
space (trained first with `gankit evaluator train --data mnist` if it is missing). The floor row
scores the real held-out split (1,000 test digits in ../shared) against the training split with
the same protocol. A Stacked-MNIST DCGAN run measures mode coverage (1,000 modes).

Targets (from the issue, never tuned into the metric): class accuracy >= 95% for cgan and
cdcgan; Frechet distance in classifier features within 3x the real-vs-real floor for dcgan.

    python benchmarks/eval_mnist.py                    # the published numbers (600 s per model)
    python benchmarks/eval_mnist.py --seconds 30 --stacked-seconds 0 --out /tmp/e  # a quick look
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from machine_info import machine  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("dcgan", "cdcgan", "cgan")
# fd1k is the headline: the floor can only use the 1,000 held-out digits, and Frechet distance
# depends on the sample count, so model and floor are compared at the same n.
COMMON = ["fd1k_mnistcnn", "kid1k_mnistcnn", "prdc1k_mnistcnn", "is1k_mnistcnn", "fd5k_mnistcnn"]
CONDITIONAL = ["acc5k_mnistcnn", "pcfd5k_mnistcnn"]
MEMO = ["memo1k_pixel", "memo1k_mnistcnn"]


def gankit(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "gankit", *args], check=True, cwd=ROOT)


def train(model: str, data: str, seconds: float, data_root: Path, run_dir: Path) -> dict:
    cmd = [
        "train", model, "--data", data, "--data-root", str(data_root), "--no-download",
        "--kimg", "100000", "--max-seconds", str(seconds), "--run-dir", str(run_dir),
        "--overwrite", "--no-progress", "--device", "cpu",
    ]  # fmt: skip
    t0 = time.perf_counter()
    gankit(*cmd)
    wall = time.perf_counter() - t0
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steady = sorted(r["img_per_s"] for r in recs[len(recs) // 10 :])
    return {
        "command": "gankit " + " ".join(cmd),
        "wall_s": round(wall, 1),
        "nimg": recs[-1]["nimg"],
        "median_img_per_s": round(steady[len(steady) // 2], 1),
    }


def ensure_classifier(data_root: Path) -> dict:
    from gankit.metrics.classifier import default_classifier_path, find_classifier

    path = default_classifier_path("mnist")
    if not path.is_file():
        gankit("evaluator", "train", "--data", "mnist", "--data-root", str(data_root),
               "--no-download", "--no-progress")  # fmt: skip
    ext = find_classifier("mnist")
    return {"path": str(path), "accuracy": ext.accuracy, "checksum": ext.checksum}


def brief(rec: dict) -> dict:
    return {"metric": rec["metric"], "value": rec["value"], "values": rec["values"],
            "protocol": rec["protocol"]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="training budget per model")
    ap.add_argument("--stacked-seconds", type=float, default=300.0, help="0 skips Stacked MNIST")
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-eval")
    ap.add_argument("--reuse", action="store_true", help="score existing runs, do not train")
    ap.add_argument(
        "--retrain",
        default="",
        help="with --reuse: comma-separated rows to train again (dcgan, cdcgan, cgan, stacked)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args()

    from gankit.analysis.memorisation import memorisation_report
    from gankit.metrics import evaluate_real, evaluate_run, format_table
    from gankit.metrics.classifier import find_classifier

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "figures").mkdir(exist_ok=True)
    # --reuse re-scores existing runs and keeps the training facts of the previous JSON.
    previous: dict = {}
    old_json = args.out / "bench_eval_mnist.json"
    if args.reuse and old_json.is_file():
        old = json.loads(old_json.read_text())
        previous = {(r["model"], r.get("data", "mnist")): r for r in old.get("rows", [])}
        if "stacked" in old:
            previous[("dcgan", "stacked-mnist")] = old["stacked"]
    trained_keys = ("command", "wall_s", "nimg", "median_img_per_s")
    classifier = ensure_classifier(args.data_root)
    print(f"classifier: held-out accuracy {classifier['accuracy']:.4f} ({classifier['path']})")
    result: dict = {"machine": machine(), "seconds_per_model": args.seconds,
                    "classifier": classifier, "rows": []}  # fmt: skip

    floor = evaluate_real("mnist", COMMON, resolution=28, channels=1, data_root=str(args.data_root))
    print(format_table(floor))
    result["floor"] = [brief(r) for r in floor]
    floor_fd = next(r["value"] for r in floor if r["metric"] == "fd1k_mnistcnn")

    for model in MODELS:
        run_dir = args.runs / f"{model}-mnist"
        info = {"model": model, "run": str(run_dir)}
        if not args.reuse or model in args.retrain.split(","):
            info.update(train(model, "mnist", args.seconds, args.data_root, run_dir))
        else:
            old_row = previous.get((model, "mnist"), {})
            info.update({k: old_row[k] for k in trained_keys if k in old_row})
        metrics = COMMON + (CONDITIONAL if model != "dcgan" else []) + MEMO
        t0 = time.perf_counter()
        recs = evaluate_run(run_dir, metrics, data_root=str(args.data_root), download=False)
        info["eval_s"] = round(time.perf_counter() - t0, 1)
        print(format_table(recs))
        info["metrics"] = [brief(r) for r in recs]
        info["nimg"] = recs[0]["nimg"]
        values = {r["metric"]: r["value"] for r in recs}
        info["fd1k_over_floor"] = values["fd1k_mnistcnn"] / floor_fd
        if model == "dcgan":
            info["target"] = "fd1k within 3x floor"
            info["target_met"] = info["fd1k_over_floor"] <= 3.0
        else:
            info["target"] = "class accuracy >= 0.95"
            info["target_met"] = values["acc5k_mnistcnn"] >= 0.95
        gankit("sample", str(run_dir), "--out", str(args.out / "figures" / f"eval-{model}.png"))
        report = memorisation_report(
            run_dir,
            data_root=str(args.data_root),
            n=1000,
            extractor=find_classifier("mnist"),
            out_dir=args.out / "figures" / f"memo-{model}",
        )
        info["memorisation_figures"] = {k: str(v) for k, v in report["figures"].items()}
        result["rows"].append(info)

    if args.stacked_seconds > 0:
        run_dir = args.runs / "dcgan-stacked-mnist"
        info = {"model": "dcgan", "data": "stacked-mnist", "run": str(run_dir)}
        if not args.reuse or "stacked" in args.retrain.split(","):
            info.update(
                train("dcgan", "stacked-mnist", args.stacked_seconds, args.data_root, run_dir)
            )
        else:
            old_row = previous.get(("dcgan", "stacked-mnist"), {})
            info.update({k: old_row[k] for k in trained_keys if k in old_row})
        recs = evaluate_run(run_dir, ["modes10k_mnistcnn"], data_root=str(args.data_root),
                            download=False)  # fmt: skip
        print(format_table(recs))
        info["metrics"] = [brief(r) for r in recs]
        info["nimg"] = recs[0]["nimg"]
        gankit("sample", str(run_dir), "--out", str(args.out / "figures" / "eval-stacked.png"))
        result["stacked"] = info

    (args.out / "bench_eval_mnist.json").write_text(json.dumps(result, indent=2) + "\n")
    print_summary(result, floor)


def get(recs: list[dict], name: str, key: str | None = None) -> str:
    """One table cell: metric `name` (or its detail `key`) from a list of records, or "-"."""
    for r in recs:
        if r["metric"] == name:
            v = r["values"][key] if key else r["value"]
            return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return "-"


def print_summary(result: dict, floor: list[dict]) -> None:
    head = ("| row | images seen | FD 1k | FD 1k / floor | KID 1k | precision | recall | "
            "coverage | classifier IS | class acc | target |")  # fmt: skip
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    print(
        f"| real held-out (floor) | - | {get(floor, 'fd1k_mnistcnn')} | 1.0 | "
        f"{get(floor, 'kid1k_mnistcnn')} | {get(floor, 'prdc1k_mnistcnn', 'precision')} | "
        f"{get(floor, 'prdc1k_mnistcnn', 'recall')} | {get(floor, 'prdc1k_mnistcnn')} | "
        f"{get(floor, 'is1k_mnistcnn')} | - | - |"
    )
    for row in result["rows"]:
        m = row["metrics"]
        acc = get(m, "acc5k_mnistcnn")
        met = "met" if row["target_met"] else "MISSED"
        print(
            f"| {row['model']} | {row['nimg']:,} | {get(m, 'fd1k_mnistcnn')} | "
            f"{row['fd1k_over_floor']:.2f} | {get(m, 'kid1k_mnistcnn')} | "
            f"{get(m, 'prdc1k_mnistcnn', 'precision')} | {get(m, 'prdc1k_mnistcnn', 'recall')} | "
            f"{get(m, 'prdc1k_mnistcnn')} | {get(m, 'is1k_mnistcnn')} | {acc} | "
            f"{row['target']}: {met} |"
        )
    if "stacked" in result:
        s = result["stacked"]["metrics"][0]["values"]
        print(f"\nStacked MNIST dcgan: {s.get('modes')} / 1000 modes, KL {s.get('kl'):.3f}")


if __name__ == "__main__":
    main()
