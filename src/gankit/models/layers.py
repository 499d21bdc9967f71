"""Layers shared by several model families."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LabelEmbedding(nn.Embedding):
    """A class embedding that also takes class *weights*: integer labels [N] look up rows as
    usual; float rows [N, K] (one-hot, or a mix of classes) give the weighted sum of the rows.

    Why: walking from class a to class b (`gankit interpolate --class a,b`) needs the
    embedding at (1 - t) e_a + t e_b, i.e. the straight line between the two class vectors; a
    one-hot row gives exactly the integer label's embedding. State dicts are nn.Embedding's.
    """

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if y.is_floating_point():
            if y.dim() != 2 or y.shape[1] != self.num_embeddings:
                raise ValueError(
                    f"class weights must be [N, {self.num_embeddings}], got {list(y.shape)}"
                )
            return y.to(self.weight.dtype) @ self.weight
        return F.embedding(y, self.weight, self.padding_idx, self.max_norm)
