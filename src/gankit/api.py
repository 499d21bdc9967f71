"""The layer above training and metrics: what `gankit.train` and `gankit train` call.

Training knows nothing of metrics (data flows data -> models -> training -> checkpoint ->
sampling -> metrics); evaluation during training is a hook that this module builds from the
metric protocols and hands to the trainer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .config import RunConfig
from .device import resolve_device
from .errors import UserError
from .models import MODELS
from .training import run as _run
from .training.loop import TrainResult
from .training.trainer import EvalHook


def train(model: str = "dcgan", data: str = "digits", **options: Any) -> TrainResult | RunConfig:
    """Train a model, scoring it every eval_every_kimg when asked; the Python face of
    `gankit train`.

    Args:
        model, data, **options: as for `gankit.training.train` (outdir, run_dir, resume,
            overwrite, model_overrides, progress, tensorboard, dry_run and TrainConfig fields
            such as kimg, batch_size, eval_every_kimg, eval_metrics, keep_best).
    Returns:
        The TrainResult (or the resolved RunConfig for a dry run).
    """
    return _run.train(model, data, evaluate=eval_hook, **options)


def eval_hook(rc: RunConfig, run_dir: Path) -> EvalHook | None:
    """The evaluation the trainer runs every eval_every_kimg (None when not asked for).

    Metric names and feature extractors are checked here, before any training, so a missing
    domain classifier is reported at once rather than at the first evaluation.
    """
    cfg = rc.train
    if cfg.eval_every_kimg is None or not cfg.eval_metrics:
        return None
    # Imported only when asked for: most runs never evaluate.
    from .metrics.protocol import (
        MIXTURES,
        ExtractorOptions,
        Reference,
        append_jsonl,
        evaluate_generator,
        parse_metrics,
    )

    requests = parse_metrics(cfg.eval_metrics)
    num_classes = rc.num_classes if MODELS.get(rc.model).conditional else 0
    ref = Reference.for_run(rc, split=cfg.eval_ref)
    opts = ExtractorOptions(
        data=cfg.data, download=cfg.download, device=str(resolve_device(cfg.device))
    )
    for feat in dict.fromkeys(r.features for r in requests):
        if feat in MIXTURES:
            if cfg.data != feat:
                raise UserError(f"modes..._{feat} needs training data {feat}, not {cfg.data}")
            continue
        opts.get(feat)

    def hook(G: torch.nn.Module, nimg: int) -> list[dict[str, Any]]:
        records = evaluate_generator(
            G,
            num_classes=num_classes,
            reference=ref,
            metrics=cfg.eval_metrics,
            describe="G_ema" if cfg.ema else "G",
            device=str(next(G.parameters()).device),
            extractors=opts,
        )
        for rec in records:
            rec.update(run=str(run_dir), model=rc.model, nimg=nimg, checkpoint=None)
        append_jsonl(run_dir / "eval.jsonl", records)
        return records

    return hook
