"""Metrics as named protocols: `fd5k_mnistcnn` says what was measured, on how many samples, where.

A metric name is KIND + COUNT + "_" + FEATURES: `fid10k_inception` is the Frechet distance of
10,000 generated images to 10,000 training images in Inception features; `acc5k_mnistcnn` is the
accuracy of the domain classifier on 5,000 class-conditional samples. Every result carries its
whole protocol (extractor and its checksum, sample counts, reference split, resize filters,
seed, G or G_ema), so two numbers are comparable exactly when their protocols are equal.

Metrics see a generator and a dataset, never the trainer: `evaluate_generator` takes a network,
`evaluate_run` a run folder, and `evaluate_real` scores real held-out data (the floor).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..registry import Registry
from .features import FeatureExtractor, Features, PixelExtractor
from .maths import (
    GaussianStats,
    frechet_distance,
    gaussian_stats,
    inception_score,
    kernel_distance,
    prdc,
)

# ---------------------------------------------------------------------------------------------
# The registry of metric kinds


@dataclass
class Batch:
    """Everything a metric kind may need, already cut to the requested counts."""

    gen: Features
    gen_images: torch.Tensor  # uint8
    gen_labels: torch.Tensor | None
    real: Features
    real_images: torch.Tensor  # uint8
    real_labels: torch.Tensor | None
    extractor: FeatureExtractor
    num_classes: int
    seed: int
    real_stats: GaussianStats | None = None
    heldout_images: torch.Tensor | None = None  # memorisation only


@dataclass(frozen=True)
class MetricKind:
    """One kind of metric: how to compute it and which way is better."""

    name: str
    description: str
    primary: str  # the key of the headline value
    higher_is_better: bool
    compute: Callable[[Batch], dict[str, float]]
    needs_logits: bool = False
    conditional_only: bool = False
    real_count: str = "n"  # "n": n real images; "all": the whole reference split


METRICS: Registry[MetricKind] = Registry("metric")


def _register(kind: MetricKind) -> None:
    METRICS.add(kind.name, kind)


def _fd(b: Batch) -> dict[str, float]:
    real = b.real_stats if b.real_stats is not None else gaussian_stats(b.real.features)
    return {"fd": frechet_distance(gaussian_stats(b.gen.features), real)}


def _fid(b: Batch) -> dict[str, float]:
    if not b.extractor.name.startswith("inception"):
        raise UserError("fid is measured in Inception features: use fd for other extractors")
    return {"fid": _fd(b)["fd"]}


def _kid(b: Batch) -> dict[str, float]:
    mean, std = kernel_distance(b.gen.features, b.real.features, seed=b.seed)
    return {"kid": mean, "kid_std": std}


def _is(b: Batch) -> dict[str, float]:
    assert b.gen.logits is not None
    mean, std = inception_score(b.gen.logits, seed=b.seed)
    return {"is": mean, "is_std": std}


def _prdc(b: Batch) -> dict[str, float]:
    return prdc(b.real.features, b.gen.features, k=5)


def _check_classes(b: Batch) -> None:
    k = b.gen.logits.shape[1] if b.gen.logits is not None else 0
    if k != b.num_classes:
        raise UserError(
            f"the classifier knows {k} classes but the model draws {b.num_classes}: "
            "use a classifier trained on the model's dataset"
        )


def _acc(b: Batch) -> dict[str, float]:
    _check_classes(b)
    assert b.gen.logits is not None and b.gen_labels is not None
    pred = b.gen.logits.argmax(1)
    out = {"acc": float((pred == b.gen_labels).double().mean())}
    for c in range(b.num_classes):
        mask = b.gen_labels == c
        if mask.any():
            out[f"acc_class{c}"] = float((pred[mask] == c).double().mean())
    return out


def _pcfd(b: Batch) -> dict[str, float]:
    if b.real_labels is None or b.gen_labels is None:
        raise UserError("per-class Frechet distance needs labelled real data")
    out: dict[str, float] = {}
    for c in range(b.num_classes):
        g = b.gen.features[b.gen_labels == c]
        r = b.real.features[b.real_labels == c]
        if len(g) < 2 or len(r) < 2:
            raise UserError(f"class {c} has fewer than 2 samples; raise the sample count")
        out[f"fd_class{c}"] = frechet_distance(gaussian_stats(g), gaussian_stats(r))
    out["pcfd"] = sum(out.values()) / b.num_classes
    return out


def _memo(b: Batch) -> dict[str, float]:
    from .neighbours import memorisation_stats

    if b.heldout_images is None:
        raise UserError("the memorisation check needs a held-out split of the dataset")
    ext = None if isinstance(b.extractor, PixelExtractor) else b.extractor
    stats = memorisation_stats(b.gen_images, b.real_images, b.heldout_images, extractor=ext)
    return {k: float(v) for k, v in stats.items() if isinstance(v, (int, float))}


def _modes(b: Batch) -> dict[str, float]:
    from .stacked import count_stacked_modes

    if b.gen_images.shape[1] != 3:
        raise UserError("stacked-MNIST mode counting needs a 3-channel generator")
    stats = count_stacked_modes(b.gen_images, b.extractor)
    return {k: float(stats[k]) for k in ("modes", "kl", "num_modes")}


for _kind in (
    MetricKind("fid", "Frechet Inception distance (Heusel et al. 2017)", "fid", False, _fid),
    MetricKind("fd", "Frechet distance in the named feature space", "fd", False, _fd),
    MetricKind("kid", "kernel distance, unbiased MMD^2, cubic kernel (Binkowski 2018)", "kid",
               False, _kid),
    MetricKind("is", "Inception Score (or classifier score) from the extractor's logits", "is",
               True, _is, needs_logits=True),
    MetricKind("prdc", "precision, recall, density, coverage, k=5 (Kynkaanniemi; Naeem)",
               "coverage", True, _prdc),
    MetricKind("acc", "classifier accuracy on class-conditional samples: right class drawn",
               "acc", True, _acc, needs_logits=True, conditional_only=True),
    MetricKind("pcfd", "per-class Frechet distance, mean over classes", "pcfd", False, _pcfd,
               conditional_only=True),
    MetricKind("memo", "nearest-training-image distance, generated vs held-out real",
               "ratio_median", True, _memo, real_count="all"),
    MetricKind("modes", "stacked MNIST: digit triples covered (of 1,000) and KL to uniform",
               "modes", True, _modes, needs_logits=True),
):  # fmt: skip
    _register(_kind)

MIXTURES = ("ring8", "grid25")


def list_metrics() -> list[tuple[str, str]]:
    """(kind, description) of every metric kind, for `gankit eval --list`."""
    return [(name, kind.description) for name, kind in METRICS.items()]


@dataclass(frozen=True)
class MetricRequest:
    """A parsed metric name."""

    name: str
    kind: str
    n: int
    features: str

    @property
    def spec(self) -> MetricKind:
        return METRICS.get(self.kind)


# The most samples one metric may ask for: 50k is the standard FID count, and every sample is
# held in memory as uint8 (50k RGB images at 64 px: 600 MB).
MAX_SAMPLES = 50_000

_NAME = re.compile(r"^(?P<kind>[a-z]+?)(?P<n>\d+(?:\.\d+)?)(?P<k>k?)_(?P<feat>[a-z0-9][a-z0-9-]*)$")


def parse_metric(name: str) -> MetricRequest:
    """'fd5k_mnistcnn' -> MetricRequest(kind='fd', n=5000, features='mnistcnn')."""
    m = _NAME.match(name.strip())
    if not m:
        raise UserError(
            f"bad metric name {name!r}: write KIND COUNT _ FEATURES, e.g. fd5k_mnistcnn, "
            f"fid10k_inception, acc2k_mnistcnn (kinds: {', '.join(METRICS.names())})"
        )
    n = float(m.group("n")) * (1000 if m.group("k") else 1)
    if n != int(n) or n < 2:
        raise UserError(f"bad sample count in {name!r}: need a whole number >= 2")
    if n > MAX_SAMPLES:
        raise UserError(
            f"{name!r} asks for {int(n):,} samples; gankit measures at most {MAX_SAMPLES:,} "
            f"(fid50k, the standard count, is the largest)"
        )
    req = MetricRequest(name.strip(), m.group("kind"), int(n), m.group("feat"))
    if req.features in MIXTURES:
        if req.kind != "modes":
            raise UserError(f"{req.features} is measured with modes, e.g. modes2500_{req.features}")
        return req
    req.spec  # noqa: B018  (raises a UserError listing the kinds)
    return req


def parse_metrics(text: str | Sequence[str]) -> list[MetricRequest]:
    """A comma-separated list (or a sequence) of metric names, parsed; duplicates dropped."""
    names = text.split(",") if isinstance(text, str) else list(text)
    out: list[MetricRequest] = []
    for name in names:
        if name.strip() and name.strip() not in [r.name for r in out]:
            out.append(parse_metric(name))
    if not out:
        raise UserError("no metrics given; e.g. --metrics fd5k_mnistcnn,kid5k_mnistcnn")
    return out


# ---------------------------------------------------------------------------------------------
# Feature extractors by name


@dataclass
class ExtractorOptions:
    """Where extractors come from. `data` picks the domain classifier (trained on it)."""

    data: str | None = None
    evaluator: str | None = None  # path of a domain classifier file
    inception_weights: str | None = None
    download: bool = True
    device: str = "cpu"
    _cache: dict[str, FeatureExtractor] = field(default_factory=dict)

    def get(self, name: str) -> FeatureExtractor:
        if name not in self._cache:
            self._cache[name] = self._make(name)
        return self._cache[name]

    def _make(self, name: str) -> FeatureExtractor:
        if name == "pixel":
            return PixelExtractor()
        if name in ("inception", "inception-custom"):
            from .inception import InceptionExtractor

            ext = InceptionExtractor(
                self.inception_weights, download=self.download, device=self.device
            )
            if ext.name != name:
                raise UserError(
                    f"{ext.weights_path} is not the standard Inception file (sha256 "
                    f"{ext.file_sha256[:8]}...): name the metric with _{ext.name}"
                )
            return ext
        if name == "mnistcnn":
            from .classifier import find_classifier

            data = self.data or "mnist"
            # Stacked MNIST is judged one channel at a time by the plain MNIST classifier.
            data = data.removeprefix("stacked-")
            return find_classifier(data, self.evaluator, device=self.device)
        raise UserError(f"unknown feature space {name!r}; choose inception, mnistcnn or pixel")


# ---------------------------------------------------------------------------------------------
# Real data: loading and the feature cache


def cache_dir() -> Path:
    """$GANKIT_CACHE (default ~/.cache/gankit): classifiers and real-data statistics."""
    from .classifier import cache_root

    return cache_root()


@dataclass
class Reference:
    """The real images a metric compares against."""

    data: str
    root: str | None
    split: str  # "train" or "test"
    resolution: int
    channels: int
    folder_labels: bool = False
    download: bool = False

    def load(self, split: str | None = None) -> Any:
        from ..data import load_dataset

        return load_dataset(
            self.data,
            resolution=self.resolution,
            channels=self.channels,
            root=self.root,
            train=(split or self.split) == "train",
            download=self.download,
            folder_labels=self.folder_labels,
        )


def _subset(n_total: int, n: int, seed: int) -> torch.Tensor:
    """The first n of a seeded permutation (all, in order, when n covers the split)."""
    if n >= n_total:
        return torch.arange(n_total)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=g)[:n].sort().values


def real_features(
    images: torch.Tensor,
    extractor: FeatureExtractor,
    key: dict[str, Any],
    *,
    use_cache: bool = True,
) -> Features:
    """Features of real images, cached on disk by a hash of the data, its spec and the network.

    The hash covers the image bytes themselves, so an edited dataset never reuses stale
    statistics. Files are safetensors, written atomically.
    """
    from safetensors.torch import load_file, save

    from ..files import atomic_write_bytes

    h = hashlib.sha256()
    h.update(json.dumps(key, sort_keys=True).encode())
    h.update(extractor.checksum.encode())
    h.update(images.contiguous().numpy().tobytes())
    digest = h.hexdigest()[:24]
    path = cache_dir() / "stats" / f"{extractor.name}-{digest}.safetensors"
    if use_cache and path.is_file():
        try:
            t = load_file(str(path))
            return Features(features=t["features"], logits=t.get("logits"))
        except Exception:  # a damaged cache entry is recomputed, never trusted
            pass
    feats = extractor(images)
    if use_cache:
        tensors = {"features": feats.features.contiguous()}
        if feats.logits is not None:
            tensors["logits"] = feats.logits.contiguous()
        meta = {"gankit": json.dumps({**key, "extractor_checksum": extractor.checksum})}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, save(tensors, metadata=meta))
        except OSError:
            pass  # a read-only cache only costs time
    return feats


# ---------------------------------------------------------------------------------------------
# Generated images


@torch.no_grad()
def generate_images(
    G: nn.Module,
    n: int,
    *,
    num_classes: int = 0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = 250,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n uint8 images from seeds seed..seed+n-1; class (seed + i) % K for conditional models."""
    from ..data.base import to_uint8
    from ..latent import prior_of

    was_training = G.training
    G.eval()
    prior = prior_of(G)
    labels = (torch.arange(n) + seed) % num_classes if num_classes else None
    out = []
    for i in range(0, n, batch_size):
        seeds = range(seed + i, seed + min(n, i + batch_size))
        z = prior.from_seeds(list(seeds)).to(device)
        y = None if labels is None else labels[i : i + len(seeds)].to(device)
        out.append(to_uint8(G(z, y)))
    G.train(was_training)
    return torch.cat(out), labels


# ---------------------------------------------------------------------------------------------
# Evaluation


@dataclass
class Candidate:
    """What is being judged: a generator, or real held-out images (the floor)."""

    describe: str  # "G_ema", "G" or "real test split"
    images: Callable[[int], tuple[torch.Tensor, torch.Tensor | None]]
    num_classes: int
    conditional: bool


def _evaluate(
    cand: Candidate,
    ref: Reference,
    requests: Sequence[MetricRequest],
    opts: ExtractorOptions,
    *,
    seed: int,
    use_cache: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    for r in requests:
        if r.features in MIXTURES:
            raise UserError(f"{r.name} applies to runs trained on {r.features}")
        if r.spec.conditional_only and not cand.conditional:
            raise UserError(f"{r.name} needs a class-conditional model")
    # Every precondition before the first generated image: the reference data, each feature
    # extractor (a missing classifier file or Inception weights), the held-out split for memo.
    reference = ref.load()
    for r in requests:
        extractor = opts.get(r.features)  # loaded (and cached) now: a missing file fails here
        if r.spec.needs_logits and not extractor.has_logits:
            raise UserError(f"{r.name}: {r.features} features have no class logits")
    heldout = None
    if any(r.spec.name == "memo" for r in requests):
        name = next(r.name for r in requests if r.spec.name == "memo")
        try:
            heldout = ref.load("test" if ref.split == "train" else "train").images
        except UserError as exc:
            raise UserError(f"{name}: no held-out split ({exc})") from None
    n_max = max(r.n for r in requests)
    t0 = time.perf_counter()
    if log:
        log(f"generating {n_max:,} images")
    gen_images, gen_labels = cand.images(n_max)
    records = []
    for feat_name in dict.fromkeys(r.features for r in requests):
        extractor = opts.get(feat_name)
        mine = [r for r in requests if r.features == feat_name]
        if log:
            log(f"features: {feat_name} on {len(gen_images)} generated images")
        n_gen_feats = max(r.n for r in mine)
        gen_all = extractor(gen_images[:n_gen_feats])
        for r in mine:
            kind = r.spec
            t1 = time.perf_counter()
            n_total = len(reference)
            n_real = n_total if kind.real_count == "all" else min(r.n, n_total)
            idx = _subset(n_total, n_real, seed)
            real_images = reference.images[idx]
            real_labels = None if reference.labels is None else reference.labels[idx]
            key = {
                "data": ref.data,
                "split": ref.split,
                "resolution": ref.resolution,
                "channels": ref.channels,
                "n": n_real,
                "seed": seed,
            }
            if kind.name == "memo":
                real = Features(features=torch.empty(0))
            elif kind.name in ("acc", "is", "modes"):
                real = Features(features=torch.empty(0))  # generated side only
            else:
                if log:
                    log(f"features: {feat_name} on {n_real} real images ({ref.split})")
                real = real_features(real_images, extractor, key, use_cache=use_cache)
            gen = Features(
                features=gen_all.features[: r.n],
                logits=None if gen_all.logits is None else gen_all.logits[: r.n],
            )
            if kind.needs_logits and gen.logits is None:
                raise UserError(f"{r.name}: {feat_name} features have no class logits")
            batch = Batch(
                gen=gen,
                gen_images=gen_images[: r.n],
                gen_labels=None if gen_labels is None else gen_labels[: r.n],
                real=real,
                real_images=real_images,
                real_labels=real_labels,
                extractor=extractor,
                num_classes=cand.num_classes,
                seed=seed,
                heldout_images=heldout,
            )
            values = kind.compute(batch)
            uses_real = kind.name not in ("acc", "is", "modes")
            records.append(
                {
                    "metric": r.name,
                    "value": values[kind.primary],
                    "higher_is_better": kind.higher_is_better,
                    "values": values,
                    "protocol": {
                        "kind": kind.name,
                        "description": kind.description,
                        "n_gen": r.n,
                        "n_real": n_real if uses_real else 0,
                        "reference": f"{ref.data} {ref.split} split" if uses_real else None,
                        "reference_size": n_total,
                        "data_resolution": ref.resolution,
                        "data_resize": "antialiased bilinear to the model's resolution",
                        "seed": seed,
                        "generator": cand.describe,
                        **extractor.describe(),
                    },
                    "seconds": round(time.perf_counter() - t1, 3),
                }
            )
    for rec in records:
        rec["seconds_total"] = round(time.perf_counter() - t0, 3)
    return records


def _reference_for(
    meta: dict[str, Any],
    *,
    data: str | None,
    data_root: str | None,
    split: str,
    download: bool | None,
) -> Reference:
    rc = meta["run_config"]
    train = rc["train"]
    mc = rc["model_config"]
    return Reference(
        data=data or train["data"],
        root=data_root if data_root is not None else train.get("data_root"),
        split=split,
        resolution=int(mc["resolution"]),
        channels=int(mc["channels"]),
        folder_labels=bool(train.get("folder_labels", False)) and data is None,
        download=bool(train.get("download", True)) if download is None else download,
    )


def _stamp(records: list[dict[str, Any]], **extra: Any) -> list[dict[str, Any]]:
    from .._version import __version__

    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    for rec in records:
        rec.update(extra)
        rec["time"] = now
        rec["gankit_version"] = __version__
    return records


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
        append: add the records to RUN/eval.jsonl.

    Returns:
        One record per metric: metric, value, values, higher_is_better, protocol, run facts.
    """
    from ..sampling import load

    if split not in ("train", "test"):
        raise UserError(f"reference split must be train or test, not {split!r}")
    requests = parse_metrics(metrics)
    loaded = load(run, device=device, ema=ema)
    meta = loaded.checkpoint.meta
    run_dir = loaded.checkpoint.path.parent.parent
    records: list[dict[str, Any]] = []
    mixture = [r for r in requests if r.features in MIXTURES]
    others = [r for r in requests if r.features not in MIXTURES]
    for r in mixture:
        records.append(_mixture_record(loaded, r, seed=seed, ema=ema, device=device))
    if others:
        ref = _reference_for(meta, data=data, data_root=data_root, split=split, download=download)
        opts = ExtractorOptions(
            data=ref.data,
            evaluator=evaluator,
            inception_weights=inception_weights,
            download=ref.download if download is None else download,
            device=device,
        )
        cand = Candidate(
            describe="G_ema" if loaded.used_ema else "G",
            images=lambda n: generate_images(
                loaded.G, n, num_classes=loaded.num_classes, seed=seed, device=device
            ),
            num_classes=loaded.num_classes,
            conditional=loaded.num_classes > 0,
        )
        records += _evaluate(cand, ref, others, opts, seed=seed, use_cache=use_cache, log=log)
    _stamp(
        records,
        run=str(run_dir),
        checkpoint=str(loaded.checkpoint.path),
        model=meta.get("model"),
        nimg=loaded.checkpoint.nimg,
    )
    if append:
        append_jsonl(run_dir / "eval.jsonl", records)
    return records


def _mixture_record(
    loaded: Any, req: MetricRequest, *, seed: int, ema: bool, device: str
) -> dict[str, Any]:
    """modesN_ring8 / modesN_grid25 of a saved run as a standard record."""
    data = loaded.checkpoint.meta.get("data", {}).get("name")
    if data != req.features:
        raise UserError(f"{req.name} needs a run trained on {req.features}, not on {data!r}")
    return mixture_record(loaded.G, req, seed=seed, device=device,
                          describe="G_ema" if loaded.used_ema else "G")  # fmt: skip


@torch.no_grad()
def mixture_record(
    G: nn.Module, req: MetricRequest, *, seed: int, device: str, describe: str
) -> dict[str, Any]:
    """The PacGAN protocol's numbers for a generator of 2D points (seeds seed..seed+n-1)."""
    from ..data.mixtures import to_points
    from ..latent import prior_of
    from .mixtures import mode_stats

    t0 = time.perf_counter()
    was_training = G.training
    G.eval()
    z = prior_of(G).from_seeds(list(range(seed, seed + req.n))).to(device)
    x = torch.cat([G(z[i : i + 1000]).float().cpu() for i in range(0, req.n, 1000)])
    G.train(was_training)
    out = mode_stats(to_points(x, req.features), req.features)
    kl = out["kl_to_uniform"]
    return {
        "metric": req.name,
        "value": float(out["modes_covered"]),
        "higher_is_better": True,
        "values": {
            "modes_covered": float(out["modes_covered"]),
            "num_modes": float(out["num_modes"]),
            "high_quality_fraction": out["high_quality_fraction"],
            "kl_to_uniform": kl,  # None when no sample is high quality (JSON null)
        },
        "per_mode_counts": out["per_mode_counts"],
        "protocol": {
            "kind": "modes",
            "description": "2D mixture: modes with a high-quality sample, HQ share, KL to uniform",
            "n_gen": req.n,
            "n_real": 0,
            "reference": f"{req.features} means and std",
            "threshold_std": out["threshold_std"],
            "min_count": out["min_count"],
            "seed": seed,
            "generator": describe,
            "extractor": req.features,
            "extractor_checksum": "none",
            "resize_filter": "none",
        },
        "seconds": round(time.perf_counter() - t0, 3),
    }


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
        idx = _subset(len(heldout), n, seed)
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
    records = _evaluate(cand, ref, capped, opts, seed=seed, use_cache=use_cache)
    return _stamp(records, run=None, model="real", nimg=None)


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
        records += _evaluate(cand, reference, others, opts, seed=seed)
    return _stamp(records)


def append_jsonl(path: str | os.PathLike, records: Sequence[dict[str, Any]]) -> None:
    """Append one JSON line per record (the file is a log: appends, never rewrites)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def format_value(x: float) -> str:
    if math.isnan(x) or math.isinf(x):
        return str(x)
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.3e}"
    return f"{x:.4f}" if abs(x) < 10 else f"{x:.2f}"


# Bookkeeping values kept in the JSONL record but left out of the printed table.
_HIDDEN_DETAILS = frozenset(
    {"n", "n_generated", "n_heldout", "n_train", "n_heldout_in_train", "dim", "num_modes"}
)


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """A plain-text table: metric, headline value, the other values, samples and extractor."""
    rows = [("metric", "value", "details", "n gen/real", "features (checksum)", "G")]
    for rec in records:
        p = rec.get("protocol", {})
        kind = METRICS.get(p["kind"]) if p.get("kind") in METRICS else None
        shown = [
            (k, v)
            for k, v in rec.get("values", {}).items()
            if isinstance(v, (int, float))
            and (kind is None or k != kind.primary)
            and not re.search(r"class\d+$", k)
            and k not in _HIDDEN_DETAILS
        ]
        details = ", ".join(f"{k}={format_value(float(v))}" for k, v in shown[:6])
        rows.append(
            (
                rec["metric"],
                format_value(rec["value"]) + (" ^" if rec.get("higher_is_better") else " v"),
                details,
                f"{p.get('n_gen', '?')}/{p.get('n_real', '?')}",
                f"{p.get('extractor', '?')} ({p.get('extractor_checksum', '-')})",
                str(p.get("generator", "")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("(^ higher is better, v lower is better)")
    return "\n".join(lines)
