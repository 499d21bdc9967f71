"""A run's training state as a checkpoint holds it: packed, restored, and kept for rollback.

The tensors are the weights of G, D and G_ema, both optimisers' states and the RNG states; the
JSON half holds the counters (G updates, real batches consumed), the objective's own state
(BEGAN's k_t), the augmentation's (ADA's p), the best score so far, the rollback bookkeeping
and the collapse watch's peak.
Restoring all of it is what makes a resumed run take the uninterrupted run's steps bit for bit.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..augment import Augmentation
from ..checkpoint import Checkpoint, pack_optimizer, pack_rng, unpack_optimizer, unpack_rng
from ..config import RunConfig
from ..data.base import ImageDataset
from ..data.identity import data_record
from ..errors import UserError
from ..objectives import Objective
from .guards import CollapseWatch

# (tensors, meta): what a checkpoint file holds, or an in-memory copy of it.
Snapshot = tuple[dict[str, torch.Tensor], dict[str, Any]]


class TrainState:
    """The counters of a run, and the one place that packs and restores its whole state.

    Args:
        run_config: the run's configuration (written into every checkpoint).
        dataset: the training data (its name, size and classes are recorded).
        nets: "G", "D" and "G_ema" -> network (None: no EMA kept).
        optimizers: "G" and "D" -> optimiser.
        objective: the GAN objective, whose state (BEGAN's k_t) is saved with the rest.
        watch: the mode-collapse watch, whose peak diversity is kept across resumes.
        augment: the augmentation D's inputs go through, if any (ADA's p and its sums).
    """

    def __init__(
        self,
        run_config: RunConfig,
        dataset: ImageDataset,
        nets: dict[str, nn.Module | None],
        optimizers: dict[str, torch.optim.Optimizer],
        objective: Objective,
        watch: CollapseWatch,
        augment: Augmentation | None = None,
    ) -> None:
        self.run_config = run_config
        self.data = data_record(dataset)
        self.nets = {name: net for name, net in nets.items() if net is not None}
        self.optimizers = optimizers
        self.objective = objective
        self.watch = watch
        self.augment = augment
        self.step = 0  # G updates so far
        self.batch_index = 0  # real batches consumed so far
        self.best: dict[str, Any] | None = None  # the keep_best record, kept across resumes
        self.lr_scale = 1.0  # product of the nan_lr_factor of every rollback so far
        self.rollbacks = 0
        # The last good state (the last checkpoint's), which a rollback returns to.
        self.good: Snapshot | None = None

    @property
    def nimg(self) -> int:
        """Real images shown to D so far."""
        return self.batch_index * self.run_config.train.batch_size

    def pack(self) -> Snapshot:
        """(tensors, meta) of a checkpoint of the current step; the tensors are live views."""
        tensors: dict[str, torch.Tensor] = {}
        for name, net in self.nets.items():
            tensors.update({f"{name}.{k}": v for k, v in net.state_dict().items()})
        optim = {}
        for name, opt in self.optimizers.items():
            part, optim[name] = pack_optimizer(f"optim.{name}", opt)
            tensors.update(part)
        tensors.update(pack_rng())
        meta = {
            "model": self.run_config.model,
            "run_config": self.run_config.to_json(),
            "step": self.step,
            "nimg": self.nimg,
            "batch_index": self.batch_index,
            "objective": self.objective.name,
            "objective_state": self.objective.state_dict(),
            "optim": optim,
            "data": dict(self.data),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "best": self.best,
            "lr_scale": self.lr_scale,
            "rollbacks": self.rollbacks,
            "peak_diversity": self.watch.peak,
        }
        if self.augment is not None:  # runs without one keep the metadata they always had
            meta["augment_state"] = self.augment.state_dict()
        return tensors, meta

    def remember(self) -> Snapshot:
        """Keep a copy of the current state (on the CPU) as the last good one, and return it."""
        tensors, meta = self.pack()
        self.good = {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()}, meta
        return self.good

    def restore(self, ck: Checkpoint) -> None:
        """Continue exactly from `ck`: weights, optimisers, objective, counters and RNG."""
        for name, net in self.nets.items():
            if not ck.has(name):
                raise UserError(f"{ck.path} has no {name} weights; cannot resume from it")
            try:
                net.load_state_dict(ck.part(name))
            except RuntimeError as exc:
                raise UserError(
                    f"{ck.path} does not fit {self.run_config.model}'s networks: "
                    f"{str(exc).splitlines()[0]}"
                ) from None
        # The loader has checked all of this against the networks; what still does not fit
        # (another optimiser layout than this trainer's) is the file's fault, said in one line.
        try:
            for name, opt in self.optimizers.items():
                unpack_optimizer(f"optim.{name}", opt, ck.tensors, ck.meta["optim"][name])
            self.objective.load_state_dict(ck.meta.get("objective_state", {}))
            self.step = int(ck.meta["step"])
            self.batch_index = int(ck.meta["batch_index"])
            self.best = ck.meta.get("best")
            self.lr_scale = float(ck.meta.get("lr_scale", 1.0))
            self.rollbacks = int(ck.meta.get("rollbacks", 0))
            self.watch.peak = float(ck.meta.get("peak_diversity", 0.0))
            if self.augment is not None:
                self.augment.load_state_dict(ck.meta.get("augment_state", {}))
            unpack_rng(ck.tensors)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            detail = " ".join(str(exc).split())[:120]
            raise UserError(f"{ck.path} cannot be resumed: {detail}") from None

    def roll_back(self, lr_factor: float) -> None:
        """Return to the last good state with both learning rates times `lr_factor` (on top of
        the earlier rollbacks' factors); counts one rollback more."""
        assert self.good is not None
        tensors, meta = self.good
        rollbacks, scale = self.rollbacks + 1, self.lr_scale * lr_factor
        state = Checkpoint(
            path=Path("<last good state>"),
            meta=copy.deepcopy(meta),
            tensors={k: v.clone() for k, v in tensors.items()},  # keep the snapshot pristine
        )
        self.restore(state)
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = group["lr"] * scale / float(meta.get("lr_scale", 1.0))
        self.rollbacks, self.lr_scale = rollbacks, scale
