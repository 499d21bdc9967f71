"""Metric names and the registry of metric kinds: what `fd5k_mnistcnn` asks for.

A metric name is KIND + COUNT + "_" + FEATURES: `fid10k_inception` is the Frechet distance of
10,000 generated images to 10,000 training images in Inception features; `acc5k_mnistcnn` is the
accuracy of the domain classifier on 5,000 class-conditional samples. Each kind is a
`MetricKind` in `METRICS`: how it is computed from a `Batch` and which way is better.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..data.mixtures import MIXTURES as _MIXTURE_DATA
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
from .neighbours import memorisation_stats
from .stacked import count_stacked_modes


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
    if b.heldout_images is None:
        raise UserError("the memorisation check needs a held-out split of the dataset")
    ext = None if isinstance(b.extractor, PixelExtractor) else b.extractor
    stats = memorisation_stats(b.gen_images, b.real_images, b.heldout_images, extractor=ext)
    return {k: float(v) for k, v in stats.items() if isinstance(v, (int, float))}


def _modes(b: Batch) -> dict[str, float]:
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

# The 2D mixtures, measured with modes only (PacGAN's protocol: `mixtures.mixture_record`).
MIXTURES = tuple(_MIXTURE_DATA)


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
