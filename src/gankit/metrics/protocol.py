"""Metrics as named protocols: `fd5k_mnistcnn` says what was measured, on how many samples, where.

A metric name (see `kinds`) is KIND + COUNT + "_" + FEATURES. Every result carries its whole
protocol (extractor and its checksum, sample counts, reference split, resize filters, seed,
G or G_ema), so two numbers are comparable exactly when their protocols are equal.

Metrics see a generator and a dataset, never the trainer: `evaluate_generator` takes a network,
`evaluate_run` a run folder (and, with `floor=True`, real held-out data scored the same way),
and `evaluate_real` scores real held-out data alone (the floor).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..checkpoint import run_folder
from ..errors import UserError
from ..pretrained import is_pretrained
from ..sampling import load
from .extractors import ExtractorOptions
from .kinds import MIXTURES, MetricRequest, parse_metrics
from .mixtures import mixture_record
from .reference import Reference, subset
from .report import append_jsonl, stamp
from .scoring import Candidate, generate_images, score

# Kinds the floor leaves out: acc judges the class a generator was asked to draw, and modes
# the triples a generator covers; held-out real images answer neither question.
_NOT_ON_REAL = ("acc", "modes")


def evaluate_run(
    run: str | os.PathLike,
    metrics: str | Sequence[str],
    *,
    ema: bool = True,
    seed: int = 0,
    device: str = "cpu",
    data: str | None = None,
    data_root: str | None = None,
    split: str = "train",
    evaluator: str | None = None,
    inception_weights: str | None = None,
    download: bool | None = None,
    use_cache: bool = True,
    append: bool = True,
    floor: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Score a run folder's newest checkpoint (or a checkpoint file) on the named metrics.

    Args:
        run: run folder or checkpoint file.
        metrics: names such as "fd5k_mnistcnn,kid5k_mnistcnn" (see `parse_metric`).
        ema: judge G_ema (the default, when the checkpoint has it) rather than G.
        seed: first latent seed; also seeds the real subset and KID's subsets.
        data, data_root: reference data other than the run's own training data.
        split: reference split, "train" (the usual FID protocol) or "test".
        evaluator: a domain-classifier file (default: the one trained on the run's data).
        inception_weights: the Inception .pth file (default: torch hub cache, or download).
        download: None: as the run was trained; False: never download reference data.
        append: add the run's records to RUN/eval.jsonl (the floor's are never appended).
        floor: also score the real test split on the same metrics (`evaluate_real`; acc and
            modes left out), its records after the run's.

    Returns:
        One record per metric: metric, value, values, higher_is_better, protocol, run facts.
    """
    if split not in ("train", "test"):
        raise UserError(f"reference split must be train or test, not {split!r}")
    requests = parse_metrics(metrics)
    loaded = load(run, device=device, ema=ema)
    ckpt = loaded.checkpoint
    rc = ckpt.run_config
    # eval.jsonl goes beside the run; a shipped generator's to the current folder (run_folder)
    run_dir = run_folder(run) if is_pretrained(run) else ckpt.path.parent.parent
    describe = "G_ema" if loaded.used_ema else "G"
    records: list[dict[str, Any]] = []
    for r in requests:
        if r.features in MIXTURES:
            trained_on = ckpt.meta.get("data", {}).get("name")
            if trained_on != r.features:
                raise UserError(
                    f"{r.name} needs a run trained on {r.features}, not on {trained_on!r}"
                )
            records.append(mixture_record(loaded.G, r, seed=seed, device=device, describe=describe))
    others = [r for r in requests if r.features not in MIXTURES]
    if others:
        ref = Reference.for_run(rc, data=data, data_root=data_root, split=split, download=download)
        opts = ExtractorOptions(
            data=ref.data,
            evaluator=evaluator,
            inception_weights=inception_weights,
            download=ref.download,
            device=device,
        )
        cand = Candidate(
            describe=describe,
            images=lambda n: generate_images(
                loaded.G, n, num_classes=loaded.num_classes, seed=seed, device=device
            ),
            num_classes=loaded.num_classes,
            conditional=loaded.num_classes > 0,
        )
        records += score(cand, ref, others, opts, seed=seed, use_cache=use_cache, log=log)
    model = ckpt.meta.get("model")
    stamp(
        records,
        run=str(run) if is_pretrained(run) else str(run_dir),
        checkpoint=str(ckpt.path),
        model=model,
        nimg=ckpt.nimg,
    )
    if append:
        append_jsonl(run_dir / "eval.jsonl", records)
    if not floor:
        return records
    on_real = [rec["metric"] for rec in records if not rec["metric"].startswith(_NOT_ON_REAL)]
    real = evaluate_real(
        data or rc.train.data,
        on_real,
        resolution=rc.resolution,
        channels=rc.channels,
        data_root=data_root or rc.train.data_root,
        seed=seed,
        evaluator=evaluator,
        inception_weights=inception_weights,
        download=rc.train.download if download is None else download,
        device=device,
        use_cache=use_cache,
    )
    return records + real


def _count(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def evaluate_real(
    data: str,
    metrics: str | Sequence[str],
    *,
    resolution: int,
    channels: int,
    data_root: str | None = None,
    seed: int = 0,
    evaluator: str | None = None,
    inception_weights: str | None = None,
    download: bool = False,
    device: str = "cpu",
    use_cache: bool = True,
) -> list[dict[str, Any]]:
    """The floor: real held-out (test split) images scored against the training split.

    A generator cannot be expected to beat unseen real data; counts above the held-out split's
    size are capped at it (the record's n_gen says how many were used).
    """
    requests = parse_metrics(metrics)
    ref = Reference(data, data_root, "train", resolution, channels, download=download)
    heldout = ref.load("test")
    num_classes = heldout.num_classes if heldout.labels is not None else 0
    n_cap = len(heldout)

    def images(n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = subset(len(heldout), n, seed)
        return heldout.images[idx], None if heldout.labels is None else heldout.labels[idx]

    capped: list[MetricRequest] = []
    for r in requests:
        if r.kind == "memo":
            continue
        n = min(r.n, n_cap)
        # The name must say how many were really used: fd5k becomes fd1k on 1,000 test images.
        name = r.name if n == r.n else f"{r.kind}{_count(n)}_{r.features}"
        if name not in [c.name for c in capped]:
            capped.append(MetricRequest(name, r.kind, n, r.features))
    opts = ExtractorOptions(
        data=data,
        evaluator=evaluator,
        inception_weights=inception_weights,
        download=download,
        device=device,
    )
    cand = Candidate("real test split", images, num_classes, conditional=num_classes > 0)
    records = score(cand, ref, capped, opts, seed=seed, use_cache=use_cache)
    return stamp(records, run=None, model="real", nimg=None)


def evaluate_generator(
    G: nn.Module,
    *,
    num_classes: int,
    reference: Reference,
    metrics: str | Sequence[str],
    seed: int = 0,
    describe: str = "G_ema",
    evaluator: str | None = None,
    inception_weights: str | None = None,
    device: str = "cpu",
    extractors: ExtractorOptions | None = None,
) -> list[dict[str, Any]]:
    """Score a network in memory (used during training), against `reference`.

    `extractors` lets repeated calls share loaded feature networks.
    """
    requests = parse_metrics(metrics)
    opts = extractors or ExtractorOptions(
        data=reference.data,
        evaluator=evaluator,
        inception_weights=inception_weights,
        download=reference.download,
        device=device,
    )
    records = []
    for r in requests:
        if r.features in MIXTURES:
            if reference.data != r.features:
                raise UserError(f"{r.name} needs a run trained on {r.features}")
            records.append(mixture_record(G, r, seed=seed, device=device, describe=describe))
    others = [r for r in requests if r.features not in MIXTURES]
    if others:
        cand = Candidate(
            describe,
            lambda n: generate_images(G, n, num_classes=num_classes, seed=seed, device=device),
            num_classes,
            conditional=num_classes > 0,
        )
        records += score(cand, reference, others, opts, seed=seed)
    return stamp(records)
