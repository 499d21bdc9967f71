"""Stacked MNIST mode counting (VEEGAN / PacGAN protocol): how many of 1,000 modes a generator
reaches, and how far its mode histogram is from uniform.

Each channel of a generated 3-channel image is classified on its own by the digit classifier
(see `gankit.metrics.classifier`); the triple of predicted digits is the image's mode. A mode
counts as covered when at least `min_count` images land in it (1 in both papers).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from ..data.stacked import NUM_MODES, stack_labels
from ..errors import UserError
from .features import Features


class DigitClassifier(Protocol):
    """Anything that maps uint8 [B, 1, H, W] images to Features with 10 digit logits."""

    def __call__(self, images: torch.Tensor) -> Features: ...


def count_stacked_modes(
    images: torch.Tensor,
    classifier: DigitClassifier,
    *,
    min_count: int = 1,  # images a mode needs to count as covered
    batch_size: int = 2000,
) -> dict[str, Any]:
    """Count the Stacked MNIST modes among `images`.

    Args:
        images: uint8 [N, 3, H, W]; each channel one digit.
        classifier: a digit classifier (e.g. `find_classifier("mnist")`) returning 10 logits.
        min_count: images a digit triple needs before it counts as a covered mode.
        batch_size: images classified at a time (bounds memory for large N).
    Returns:
        modes: covered digit triples (of 1,000); kl: KL(p_model || uniform) of the predicted
        triple histogram in nats (0 for perfectly uniform, log(1000/k) for k equally filled
        modes); n: images counted; num_modes: 1000; channel_counts: per channel, how often each
        digit was predicted; min_count as given. (The caller records which classifier.)
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 images [N, 3, H, W], got {images.dtype} {images.shape}")
    if images.shape[1] != 3:
        raise UserError(
            f"Stacked MNIST mode counting needs 3-channel images, not {images.shape[1]}; "
            "train the model on stacked-mnist (3 channels)"
        )
    n = int(images.shape[0])
    if n == 0:
        raise UserError("no images to count modes in")
    digits = torch.empty(n, 3, dtype=torch.int64)
    for start in range(0, n, batch_size):
        chunk = images[start : start + batch_size]
        for c in range(3):
            logits = classifier(chunk[:, c : c + 1]).logits
            if logits is None or logits.dim() != 2 or logits.shape[1] != 10:
                shape = None if logits is None else tuple(logits.shape)
                raise UserError(
                    f"mode counting needs a 10-class digit classifier; this one gives logits "
                    f"of shape {shape}: use the mnist classifier"
                )
            digits[start : start + len(chunk), c] = logits.argmax(1).cpu()
    hist = torch.bincount(stack_labels(digits), minlength=NUM_MODES).double()
    p = hist[hist > 0] / n
    kl = float((p * (p * NUM_MODES).log()).sum())
    result: dict[str, Any] = {
        "modes": int((hist >= min_count).sum()),
        "num_modes": NUM_MODES,
        "kl": max(0.0, kl),  # exact 0 for uniform; clip the -1e-16 that rounding can give
        "n": n,
        "min_count": min_count,
        "channel_counts": [torch.bincount(digits[:, c], minlength=10).tolist() for c in range(3)],
    }
    return result
