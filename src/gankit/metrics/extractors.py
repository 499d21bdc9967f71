"""Feature extractors by name: the `_inception`, `_mnistcnn` and `_pixel` of a metric name.

Each is loaded once per `ExtractorOptions` and kept, so repeated evaluations (the trainer's eval
hook) share their networks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserError
from .classifier import find_classifier
from .features import FeatureExtractor, PixelExtractor
from .inception import InceptionExtractor


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
        """The extractor of feature space `name`, loaded on first use (a UserError if it
        cannot be: a missing classifier file or Inception weights)."""
        if name not in self._cache:
            self._cache[name] = self._make(name)
        return self._cache[name]

    def _make(self, name: str) -> FeatureExtractor:
        if name == "pixel":
            return PixelExtractor()
        if name in ("inception", "inception-custom"):
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
            data = self.data or "mnist"
            # Stacked MNIST is judged one channel at a time by the plain MNIST classifier.
            data = data.removeprefix("stacked-")
            return find_classifier(data, self.evaluator, device=self.device)
        raise UserError(f"unknown feature space {name!r}; choose inception, mnistcnn or pixel")
