"""The GAN maths: one class per objective, separate from networks and trainer.

An objective turns discriminator logits into losses. `d_loss` and `g_loss` return the loss
tensor and a dict of detached scalar tensors to log (kept as tensors so the trainer syncs with
the host only at its logging interval). State that an objective keeps between steps (BEGAN's
k_t, for instance) goes through `state_dict`/`load_state_dict` into the checkpoint.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Configurable, Registry, build_from_spec

Logs = dict[str, torch.Tensor]


class Objective(Configurable, ABC):
    """Base class. Subclasses implement `d_loss` and `g_loss` on D's outputs.

    Options (class attribute `options`) are set from a spec string such as
    "began:gamma=0.7"; how many D steps come per G step is a training setting (`n_critic`),
    not the objective's.
    """

    name: str = "objective"
    # Whether D's output is a logit whose sign says real (> 0) or fake (< 0), as ADA's
    # overfitting heuristic E[sign(D(real))] needs; not a critic's score or a reconstruction.
    sign_means_real: ClassVar[bool] = False

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

    def average_state(self, mean: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Under data parallelism: replace state that the last D loss updated from this rank's
        slice of the batch by `mean` over the ranks (stateless objectives have none)."""


OBJECTIVES: Registry[type[Objective]] = Registry("objective")


def create_objective(spec: str) -> Objective:
    """An objective from its registry name and options, e.g. "hinge" or "began:gamma=0.7"."""
    return build_from_spec(OBJECTIVES, spec)


def list_objectives() -> list[str]:
    return OBJECTIVES.names()


class _BCEDiscriminator(Objective):
    """D maximises log D(x) + log(1 - D(G(z))): binary cross-entropy on logits."""

    sign_means_real = True

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


def _raw_logs(prefix: str, loss: torch.Tensor, out_real: torch.Tensor | None, out_fake):
    """Logs for objectives whose D output is a score, not a probability: its mean as is."""
    logs = {prefix: loss.detach()}
    if out_real is not None:
        logs["d_real"] = out_real.detach().mean()
    if out_fake is not None:
        logs["d_fake" if prefix == "loss_d" else "d_fake_g"] = out_fake.detach().mean()
    return logs


@OBJECTIVES.register("least-squares")
class LeastSquares(Objective):
    """LSGAN (Mao et al. 2017) with a, b, c = 0, 1, 1: D regresses fakes to 0 and reals to 1,
    G pushes D(G(z)) to 1. The squared error keeps giving gradients to samples that are on the
    right side of the boundary but far from the data, which BCE lets saturate."""

    name = "least-squares"
    description = (
        "LSGAN, a, b, c = 0, 1, 1: 1/2 (D(x) - 1)^2 + 1/2 D(G(z))^2; G: 1/2 (D(G(z)) - 1)^2"
    )
    a, b, c = 0.0, 1.0, 1.0
    # sign_means_real stays False: D's boundary between fakes (0) and reals (1) is at 0.5

    def d_loss(self, D, real, fake, y_real, y_fake):
        o_real = D(real, y_real).float()
        o_fake = D(fake, y_fake).float()
        loss = 0.5 * ((o_real - self.b) ** 2).mean() + 0.5 * ((o_fake - self.a) ** 2).mean()
        return loss, _raw_logs("loss_d", loss, o_real, o_fake)

    def g_loss(self, D, fake, y_fake):
        o_fake = D(fake, y_fake).float()
        loss = 0.5 * ((o_fake - self.c) ** 2).mean()
        return loss, _raw_logs("loss_g", loss, None, o_fake)


@OBJECTIVES.register("hinge")
class Hinge(Objective):
    """Hinge loss (Lim & Ye 2017; SAGAN, BigGAN): D pays only inside the margin, so scores of
    samples it already separates well stop growing; G raises D's score of its samples."""

    name = "hinge"
    description = "hinge: D relu(1 - D(x)) + relu(1 + D(G(z))); G -D(G(z)) (BigGAN, SAGAN)"
    sign_means_real = True  # the margins sit at +1 and -1 around 0

    def d_loss(self, D, real, fake, y_real, y_fake):
        o_real = D(real, y_real).float()
        o_fake = D(fake, y_fake).float()
        loss = F.relu(1.0 - o_real).mean() + F.relu(1.0 + o_fake).mean()
        return loss, _raw_logs("loss_d", loss, o_real, o_fake)

    def g_loss(self, D, fake, y_fake):
        o_fake = D(fake, y_fake).float()
        loss = -o_fake.mean()
        return loss, _raw_logs("loss_g", loss, None, o_fake)


@OBJECTIVES.register("wasserstein")
class Wasserstein(Objective):
    """WGAN (Arjovsky et al. 2017): the critic's score has no sigmoid; D maximises
    E[D(x)] - E[D(G(z))], an estimate of the Wasserstein-1 distance when D is 1-Lipschitz.

    The objective alone does not make D Lipschitz: pair it with weight clipping
    (`--reg clip`, the WGAN paper) or a gradient penalty (`--reg gp`, WGAN-GP).
    """

    name = "wasserstein"
    description = "WGAN: D max E[D(x)] - E[D(G(z))], G max E[D(G(z))]; needs --reg clip or gp"
    curves = {"w_dist": "critic's W estimate"}

    def d_loss(self, D, real, fake, y_real, y_fake):
        o_real = D(real, y_real).float()
        o_fake = D(fake, y_fake).float()
        w_dist = o_real.mean() - o_fake.mean()
        loss = -w_dist
        logs = _raw_logs("loss_d", loss, o_real, o_fake)
        logs["w_dist"] = w_dist.detach()
        return loss, logs

    def g_loss(self, D, fake, y_fake):
        o_fake = D(fake, y_fake).float()
        loss = -o_fake.mean()
        return loss, _raw_logs("loss_g", loss, None, o_fake)


@OBJECTIVES.register("began")
class BEGAN(Objective):
    """BEGAN (Berthelot et al. 2017) for an autoencoder D that returns reconstructions.

    With L(v) = mean |v - D(v)| (per pixel, per sample, then over the batch), D minimises
    L(x) - k_t L(G(z)) and G minimises L(G(z)). The equilibrium variable k_t steers D's effort
    towards the fakes only as far as keeps E[L(G(z))] = gamma E[L(x)]: after every D loss,
    k <- clip(k + lambda_k (gamma L(x) - L(G(z))), 0, 1), from detached values. Lower gamma
    asks D to favour reconstructing reals, which trades diversity for sharpness.

    k stays a tensor on the losses' device (no host sync per step) and is saved with the
    checkpoint, so a resumed run continues with the same k_t. m_global = L(x) +
    |gamma L(x) - L(G(z))| is the paper's convergence measure.
    """

    name = "began"
    description = "BEGAN: L1 autoencoder D; D L(x) - k L(G(z)), G L(G(z)); k_t keeps gamma"
    options = {"gamma": 0.5, "lambda_k": 0.001}
    curves = {"k": "BEGAN k_t", "m_global": "BEGAN M_global"}

    def __init__(self, **values: float) -> None:
        from .errors import UserError

        super().__init__(**values)
        if not 0.0 < self.gamma <= 1.0:
            raise UserError(f"began's gamma must be in (0, 1] (got {self.gamma:g})")
        if not self.lambda_k >= 0.0:
            raise UserError(f"began's lambda_k must be >= 0 (got {self.lambda_k:g})")
        self.k = torch.zeros(())  # k_0 = 0, as in the paper

    @staticmethod
    def reconstruction_error(D: nn.Module, v: torch.Tensor, y: torch.Tensor | None):
        """L(v) per sample: the mean absolute error of D's reconstruction, shape [N]."""
        out = D(v, y).float()
        return (v.float() - out).abs().flatten(1).mean(1)

    def d_loss(self, D, real, fake, y_real, y_fake):
        l_real = self.reconstruction_error(D, real, y_real).mean()
        l_fake = self.reconstruction_error(D, fake, y_fake).mean()
        k = self.k.to(l_real.device)
        loss = l_real - k * l_fake  # the k_t of before this step's update
        with torch.no_grad():
            balance = self.gamma * l_real - l_fake
            # a new tensor, not an in-place update: `loss` keeps the old k for its backward
            self.k = (k + self.lambda_k * balance).clamp(0.0, 1.0)
            logs = {
                "loss_d": loss.detach(),
                "d_real": l_real.detach(),
                "d_fake": l_fake.detach(),
                "k": self.k,
                "m_global": l_real + balance.abs(),
            }
        return loss, logs

    def g_loss(self, D, fake, y_fake):
        loss = self.reconstruction_error(D, fake, y_fake).mean()
        return loss, {"loss_g": loss.detach()}

    def average_state(self, mean: Callable[[torch.Tensor], torch.Tensor]) -> None:
        # k is linear in the batch means, so the mean of the ranks' k is the global batch's k
        self.k = mean(self.k)

    def state_dict(self) -> dict[str, Any]:
        return {"k": float(self.k)}  # float32 -> Python float is exact, and so is the way back

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"k"}:
            raise ValueError(f"began's state is {{'k': float}}, got {sorted(state)}")
        self.k = torch.tensor(float(state["k"]), dtype=torch.float32)
