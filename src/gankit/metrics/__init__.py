"""Metrics: FID/KID/IS, Frechet distance and PRDC in any feature space, class accuracy, mode
coverage and memorisation, each a named protocol (see `protocol`)."""

from .features import FeatureExtractor, Features, PixelExtractor, weights_checksum
from .maths import (
    GaussianStats,
    frechet_distance,
    gaussian_stats,
    inception_score,
    kernel_distance,
    prdc,
)
from .protocol import (
    METRICS,
    MetricRequest,
    Reference,
    evaluate_generator,
    evaluate_real,
    evaluate_run,
    format_table,
    list_metrics,
    parse_metric,
    parse_metrics,
)

__all__ = [
    "METRICS",
    "FeatureExtractor",
    "Features",
    "GaussianStats",
    "MetricRequest",
    "PixelExtractor",
    "Reference",
    "evaluate_generator",
    "evaluate_real",
    "evaluate_run",
    "format_table",
    "frechet_distance",
    "gaussian_stats",
    "inception_score",
    "kernel_distance",
    "list_metrics",
    "parse_metric",
    "parse_metrics",
    "prdc",
    "weights_checksum",
]
