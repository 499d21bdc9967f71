"""Train/eval mode switches that put every module back as it was.

Sampling, evaluation and analysis run networks in eval mode (batch norm on its running
statistics, StyleGAN's constant noise) while a training run may hold the same networks in
train mode; one context manager keeps that save-and-restore in one place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(*nets: nn.Module) -> Iterator[None]:
    """Every module of `nets` in eval mode for the block, then each back to its own mode.

    Each sub-module's flag is restored, not the top one's, so a network a caller had left
    partly frozen (a batch-norm layer kept in eval) comes back exactly as it was.
    """
    saved = [(m, m.training) for net in nets for m in net.modules()]
    for net in nets:
        net.eval()
    try:
        yield
    finally:
        for m, was in saved:
            m.training = was
