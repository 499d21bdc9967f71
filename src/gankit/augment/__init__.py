"""Augmentation of every image D sees, for training on small data sets.

`--augment diffaug[:color,translation,cutout]` is DiffAugment (Zhao et al. 2020): fixed,
differentiable ops on reals and fakes in both updates. `--augment ada[:OPS]` is adaptive
discriminator augmentation (Karras et al. 2020): each op applied with a probability p that
the overfitting heuristic r_t = E[sign(D(real))] steers. Both are differentiable in the
images, so G's update learns through them. `parse_augment` builds one from its spec.

kornia 0.9's AdaptiveDiscriminatorAugmentation was weighed and not used: its p picks which
images get its whole fixed stack (the paper draws each op per image with p), p follows an EMA
of D's accuracy towards 0.85 in fixed steps of 0.01 (not r_t against 0.6 at a rate in kimg),
its default stack fails on 1-channel images (hue), its colour ops expect [0, 1], it draws
from the global RNG only, and it took 4x our time per 128x1x32x32 batch (9x for 3 channels)
on one CPU thread, forward and backward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from ..config import TrainConfig
from ..errors import UserError
from ..objectives import OBJECTIVES, Objective
from ..registry import Configurable
from .ada import GROUPS, OPS, ada_augment
from .controller import DEFAULT_KIMG, DEFAULT_TARGET, AdaController
from .diffaug import POLICY, diff_augment

__all__ = [
    "ADA",
    "Augmentation",
    "DiffAugment",
    "DEFAULT_KIMG",
    "DEFAULT_TARGET",
    "AdaController",
    "create_augmentation",
    "ada_augment",
    "diff_augment",
    "parse_augment",
]

# averages a tensor over the processes (data parallel)
Reduce = Callable[[torch.Tensor], torch.Tensor]

USAGE = "diffaug[:color,translation,cutout] or ada[:bgc or ops such as xflip,rotate90,xint]"


class Augmentation(Configurable):
    """What the trainer asks of an augmentation; DiffAugment and ADA fill it in.

    `needs_sign_logit`: only for a D whose output is a logit whose sign says real or fake
    (the objective's `sign_means_real`); `curves`: the scalars `logs` gives, for the loss figure.
    """

    needs_sign_logit: ClassVar[bool] = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def watch(self, D: nn.Module, real: torch.Tensor) -> nn.Module:
        """D for one D step on the (augmented) batch `real`: D itself, or, where `observe_real`
        needs D's outputs on `real`, D that passes them on."""
        return D

    def observe_real(self, out: torch.Tensor) -> None:
        """D's outputs on this D step's (augmented) real batch."""

    def after_d_step(self, reduce: Reduce | None = None) -> None:
        """Called after each D update; `reduce` averages a tensor over the processes."""

    def logs(self) -> dict[str, torch.Tensor]:
        return {}

    def to(self, device: torch.device | str) -> Augmentation:
        return self

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{self.name} keeps no state, got {sorted(state)}")


class RealTap(nn.Module):
    """D, handing its outputs on one batch (the real one) to `note`.

    The objective calls D on the real batch exactly as it was given (every objective with
    `sign_means_real` does), so the outputs its loss uses are the ones ADA's r_t counts,
    with no second forward of D.
    """

    def __init__(self, D: nn.Module, real: torch.Tensor, note: Callable[[torch.Tensor], None]):
        super().__init__()
        self.D, self.real, self.note = D, real, note

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        out = self.D(x, y)
        if x is self.real:
            self.note(out)
        return out


class DiffAugment(Augmentation):
    """DiffAugment with the policy's ops (default all three); `strength` scales their ranges."""

    name = "diffaug"

    def __init__(
        self,
        policy: tuple[str, ...] = tuple(POLICY),
        generator: torch.Generator | None = None,
        strength: float = 1.0,
    ) -> None:
        super().__init__()
        self.policy, self.generator, self.strength = tuple(policy), generator, strength

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.policy, self.generator, self.strength)

    def spec(self) -> str:
        return f"diffaug:{','.join(self.policy)}"


class ADA(Augmentation):
    """ADA's pipeline of `ops` at the controller's p (start 0), with its state and curves."""

    name = "ada"
    needs_sign_logit = True
    curves: ClassVar[dict[str, str]] = {"ada_p": "ADA p", "ada_rt": "ADA r_t"}

    def __init__(
        self,
        ops: tuple[str, ...],
        controller: AdaController,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.ops, self.controller, self.generator = tuple(ops), controller, generator

    @property
    def p(self) -> torch.Tensor:
        return self.controller.p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return ada_augment(x, self.controller.p, self.ops, self.generator)

    def spec(self) -> str:
        return "ada" if self.ops == GROUPS["bgc"] else f"ada:{','.join(self.ops)}"

    def watch(self, D: nn.Module, real: torch.Tensor) -> nn.Module:
        return RealTap(D, real, self.controller.observe)

    def observe_real(self, out: torch.Tensor) -> None:
        self.controller.observe(out)

    def after_d_step(self, reduce: Reduce | None = None) -> None:
        self.controller.after_d_step(reduce)

    def logs(self) -> dict[str, torch.Tensor]:
        return {"ada_p": self.controller.p, "ada_rt": self.controller.r_t}

    def to(self, device: torch.device | str) -> ADA:
        self.controller.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        return self.controller.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state)


def _names(text: str, rest: str, known: tuple[str, ...], groups: dict[str, tuple[str, ...]]):
    """'a,b,group' -> the ops in their canonical order; a one-line UserError otherwise."""
    names = [part.strip() for part in rest.split(",")]
    chosen: set[str] = set()
    for part in names:
        if part in groups:
            chosen.update(groups[part])
        elif part in known:
            if part in chosen:
                raise UserError(f"{part!r} is given twice in --augment {text!r}")
            chosen.add(part)
        else:
            valid = ", ".join([*groups, *known])
            raise UserError(f"unknown op {part!r} in --augment {text!r}; choose from {valid}")
    return tuple(op for op in known if op in chosen)


def parse_augment(
    text: str | None,
    *,
    batch_size: int = 64,
    ada_kimg: float = DEFAULT_KIMG,
    ada_target: float = DEFAULT_TARGET,
    generator: torch.Generator | None = None,
) -> Augmentation | None:
    """The augmentation a spec names ("diffaug", "diffaug:color,cutout", "ada", "ada:xflip,
    rotate90"); None for None, "" or "none". Unknown names are one-line UserErrors.

    Args:
        text: the spec (TrainConfig.augment).
        batch_size: real images per D step, for ADA's rate of change of p.
        ada_kimg: thousands of real images for ADA's p to go from 0 to 1.
        ada_target: ADA's target r_t.
        generator: where the ops draw their randomness (None: the global RNG).
    """
    if text is None or text.strip().lower() in ("", "none"):
        return None
    name, sep, rest = text.strip().partition(":")
    name = name.strip()
    if sep and not rest.strip():
        raise UserError(f"--augment {text!r} names no ops after ':'; use {USAGE}")
    if name == "diffaug":
        policy = _names(text, rest, tuple(POLICY), {}) if sep else tuple(POLICY)
        return DiffAugment(policy, generator)
    if name == "ada":
        ops = _names(text, rest, OPS, GROUPS) if sep else GROUPS["bgc"]
        controller = AdaController(batch_size, kimg=ada_kimg, target=ada_target)
        return ADA(ops, controller, generator)
    raise UserError(f"unknown augmentation {name!r} in --augment {text!r}; use {USAGE}")


def create_augmentation(cfg: TrainConfig, objective: Objective) -> Augmentation | None:
    """The run's augmentation (None without --augment), checked against its objective: ADA
    reads the sign of D's output, which only a logit objective gives a meaning."""
    augment = parse_augment(
        cfg.augment, batch_size=cfg.batch_size, ada_kimg=cfg.ada_kimg, ada_target=cfg.ada_target
    )
    if augment is not None and augment.needs_sign_logit and not objective.sign_means_real:
        fits = ", ".join(sorted(n for n, c in OBJECTIVES.items() if c.sign_means_real))
        raise UserError(
            f"--augment {cfg.augment} steers p by the sign of D's output, which means nothing "
            f"for the {objective.name} objective; use --augment diffaug, or an objective "
            f"whose D gives logits ({fits})"
        )
    return augment
