"""Attributes of generated images: scoring callables that pick seeds for latent arithmetic and
channels for feature-map ablation.

An attribute maps images in [-1, 1] ([N, C, H, W]) to one score per image, higher meaning more
of it. The specs the commands take: `class=K` (a domain classifier's probability of class K),
`bold` / `thin` (ink: the mean brightness, i.e. stroke weight for white-on-black digits), and
`class=K:bold` / `class=K:thin` (the boldest or thinnest of the samples the classifier is sure
are class K).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..data.base import to_uint8
from ..errors import UserError

Attribute = Callable[[torch.Tensor], torch.Tensor]  # images [N, C, H, W] in [-1, 1] -> [N]
Classify = Callable[[torch.Tensor], torch.Tensor]  # uint8 images -> logits [N, K]
CONFIDENT = 0.9  # class=K:bold|thin ranks by ink only the samples with p(K) above this
HELP = "class=K, bold, thin or class=K:bold|thin"


def ink(images: torch.Tensor) -> torch.Tensor:
    """Mean brightness in [0, 1]: for white-on-black digits, how bold the stroke is."""
    return images.float().add(1).div(2).flatten(1).mean(1)


def thin(images: torch.Tensor) -> torch.Tensor:
    """Minus the ink: higher for thinner strokes."""
    return -ink(images)


@dataclass(frozen=True)
class AttributeSpec:
    """A parsed attribute: a class to look for (or None) and a stroke style (or None)."""

    text: str
    cls: int | None
    style: str | None  # "bold" or "thin"

    @property
    def needs_classifier(self) -> bool:
        return self.cls is not None


def parse_attribute(text: str) -> AttributeSpec:
    """Check an attribute spec (see the module docstring) without building anything."""
    cls: int | None = None
    style: str | None = None
    parts = text.replace(" ", "").split(":")
    for part in parts:
        if part.startswith("class=") and cls is None:
            value = part[len("class=") :]
            if not value.isdigit():
                raise UserError(f"bad attribute {text!r}: class=K needs a class number K >= 0")
            cls = int(value)
        elif part in ("bold", "thin") and style is None:
            style = part
        else:
            raise UserError(f"unknown attribute {text!r}; use {HELP}")
    return AttributeSpec(text, cls, style)


def class_probability(classify: Classify, k: int, num_classes: int | None = None) -> Attribute:
    """images -> p(class k) under a classifier (uint8 images -> logits)."""
    if num_classes is not None and not 0 <= k < num_classes:
        raise UserError(f"class {k} is outside the classifier's range 0..{num_classes - 1}")

    def score(images: torch.Tensor) -> torch.Tensor:
        return classify(to_uint8(images)).softmax(1)[:, k]

    return score


def make_attribute(
    spec: AttributeSpec, classify: Classify | None = None, num_classes: int | None = None
) -> Attribute:
    """The scoring callable of a parsed spec; `classify` is needed when the spec names a class."""
    style = ink if spec.style == "bold" else thin
    if spec.cls is None:
        return style
    if classify is None:
        raise UserError(f"attribute {spec.text!r} needs a domain classifier")
    prob = class_probability(classify, spec.cls, num_classes)
    if spec.style is None:
        return prob

    def combined(images: torch.Tensor) -> torch.Tensor:
        s = style(images)
        # samples the classifier is sure are class K rank by ink; the rest come after them
        return torch.where(prob(images) > CONFIDENT, s, s - 10.0)

    return combined
