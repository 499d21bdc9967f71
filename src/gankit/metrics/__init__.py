"""Metrics: FID/KID/IS, Frechet distance and PRDC in any feature space, class accuracy, mode
coverage and memorisation, each a named protocol (see `protocol`)."""

from .extractors import ExtractorOptions
from .features import FeatureExtractor, Features, PixelExtractor, weights_checksum
from .kinds import METRICS, MIXTURES, MetricRequest, list_metrics, parse_metric, parse_metrics
from .maths import (
    GaussianStats,
    frechet_distance,
    gaussian_stats,
    inception_score,
    kernel_distance,
    prdc,
)
from .protocol import evaluate_generator, evaluate_real, evaluate_run
from .reference import Reference
from .report import append_jsonl, format_table

__all__ = [
    "METRICS",
    "MIXTURES",
    "ExtractorOptions",
    "FeatureExtractor",
    "Features",
    "GaussianStats",
    "MetricRequest",
    "PixelExtractor",
    "Reference",
    "append_jsonl",
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
