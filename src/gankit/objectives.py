"""The GAN maths: one class per objective, separate from networks and trainer.

An objective turns discriminator logits into losses. `d_loss` and `g_loss` return the loss
tensor and a dict of detached scalar tensors to log (kept as tensors so the trainer syncs with
the host only at its logging interval). State that an objective keeps between steps (BEGAN's
k_t, for instance) goes through `state_dict`/`load_state_dict` into the checkpoint.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Registry

Logs = dict[str, torch.Tensor]


class Objective(ABC):
    """Base class. Subclasses implement `d_loss` and `g_loss` on logits from D."""

    name: str = "objective"
    description: str = ""
    n_critic: int = 1  # D steps per G step

    @abstractmethod
    def d_loss(
        self,
        D: nn.Module,
        real: torch.Tensor,
        fake: torch.Tensor,
        y_real: torch.Tensor | None,
        y_fake: torch.Tensor | None,
    ) -> tuple[torch.Tensor, Logs]:
        """Discriminator loss on a real batch and a (detached) fake batch."""

    @abstractmethod
    def g_loss(
        self, D: nn.Module, fake: torch.Tensor, y_fake: torch.Tensor | None
    ) -> tuple[torch.Tensor, Logs]:
        """Generator loss on a fake batch that carries G's graph."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{self.name} keeps no state, got {sorted(state)}")


OBJECTIVES: Registry[type[Objective]] = Registry("objective")


def create_objective(name: str) -> Objective:
    """An objective instance by registry name."""
    return OBJECTIVES.get(name)()


def list_objectives() -> list[str]:
    return OBJECTIVES.names()


class _BCEDiscriminator(Objective):
    """D maximises log D(x) + log(1 - D(G(z))): binary cross-entropy on logits."""

    def d_loss(self, D, real, fake, y_real, y_fake):
        l_real = D(real, y_real).float()
        l_fake = D(fake, y_fake).float()
        # -log sigmoid(l) = softplus(-l); -log(1 - sigmoid(l)) = softplus(l)
        loss_real = F.softplus(-l_real).mean()
        loss_fake = F.softplus(l_fake).mean()
        loss = loss_real + loss_fake
        logs = {
            "loss_d": loss.detach(),
            "d_real": torch.sigmoid(l_real.detach()).mean(),
            "d_fake": torch.sigmoid(l_fake.detach()).mean(),
        }
        return loss, logs


@OBJECTIVES.register("nonsaturating")
class NonSaturating(_BCEDiscriminator):
    """G maximises log D(G(z)) (the heuristic of Goodfellow et al.; strong early gradients)."""

    name = "nonsaturating"
    description = "BCE; G minimises -log D(G(z)) (the usual choice, default)"

    def g_loss(self, D, fake, y_fake):
        l_fake = D(fake, y_fake).float()
        loss = F.softplus(-l_fake).mean()
        return loss, {"loss_g": loss.detach(), "d_fake_g": torch.sigmoid(l_fake.detach()).mean()}


@OBJECTIVES.register("minimax")
class Minimax(_BCEDiscriminator):
    """G minimises log(1 - D(G(z))): the value function as written (saturates when D wins)."""

    name = "minimax"
    description = "BCE; G minimises log(1 - D(G(z))), the original minimax game"

    def g_loss(self, D, fake, y_fake):
        l_fake = D(fake, y_fake).float()
        loss = -F.softplus(l_fake).mean()  # log(1 - sigmoid(l)) = -softplus(l)
        return loss, {"loss_g": loss.detach(), "d_fake_g": torch.sigmoid(l_fake.detach()).mean()}
