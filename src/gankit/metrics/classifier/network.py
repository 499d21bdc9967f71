"""The domain classifier's network: a small CNN for 28x28 grey digits, and its config.

Inception's features mean little for 28x28 digits, so the metrics measure MNIST-like data in the
feature space of a classifier trained on that data instead: its 128-d penultimate activations
(after the ReLU) feed Frechet distance, KID and precision/recall, and its logits give the
classifier Inception Score, conditional accuracy and Stacked-MNIST mode counts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

NAME = "mnistcnn"
RESOLUTION = 28


@dataclass(frozen=True)
class ClassifierConfig:
    """The network's shape; saved beside the weights so the file rebuilds its own network.

    Attributes:
        num_classes: size of the logit layer.
        widths: channels of the two 5x5 conv blocks (each conv-BN-ReLU-maxpool2).
        features: width of the penultimate layer, the feature space of the metrics.
        dropout: dropout before the logit layer (a quarter of it before the feature layer).
    """

    num_classes: int = 10
    widths: tuple[int, int] = (32, 64)
    features: int = 128
    dropout: float = 0.5

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ClassifierConfig:
        """Strictly: unknown keys, wrong types and sizes < 1 are a ValueError (a file's
        record is read with this, and it decides what is allocated)."""
        if not isinstance(d, dict):
            raise ValueError(f"the classifier config is a {type(d).__name__}, not an object")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown classifier config keys: {sorted(unknown)}")
        d = dict(d)

        def size(key: str, value: Any) -> int:
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value < 2**63:
                raise ValueError(f"classifier {key} must be an integer >= 1 (got {value!r:.40})")
            return value

        for key in ("num_classes", "features"):
            if key in d:
                size(key, d[key])
        if "widths" in d:
            w = d["widths"]
            if not isinstance(w, (list, tuple)) or len(w) != 2:
                raise ValueError(f"classifier widths must be two integers (got {w!r:.40})")
            d["widths"] = tuple(size("widths", x) for x in w)
        if "dropout" in d:
            p = d["dropout"]
            if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p < 1:
                raise ValueError(f"classifier dropout must be in [0, 1) (got {p!r:.40})")
        return cls(**d)


class DigitCNN(nn.Module):
    """conv5(32)-pool, conv5(64)-pool, fc(128) -> ReLU = features, fc(K) = logits.

    Two 5x5 blocks rather than three 3x3 ones at full resolution: the same accuracy on
    MNIST-sized data at a third of the CPU time. Inputs are 1x28x28 floats in [-1, 1].
    """

    def __init__(self, cfg: ClassifierConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        cin = 1
        for w in cfg.widths:
            # BatchNorm makes a short CPU training run converge; conv bias would be redundant.
            layers += [
                nn.Conv2d(cin, w, 5, padding=2, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            cin = w
        self.conv = nn.Sequential(*layers)
        side = RESOLUTION // 2 ** len(cfg.widths)
        self.drop_conv = nn.Dropout(cfg.dropout / 2)
        self.fc = nn.Linear(cin * side * side, cfg.features)
        self.drop_fc = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.features, cfg.num_classes)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, 1, 28, 28] in [-1, 1] -> (features [B, F] after ReLU, logits [B, K])."""
        h = self.drop_conv(self.conv(x).flatten(1))
        feats = F.relu(self.fc(h))
        return feats, self.head(self.drop_fc(feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[1]
