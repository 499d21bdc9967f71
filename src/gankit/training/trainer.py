"""The one generic trainer: the networks, their optimisers and one training step.

It knows nothing of any particular GAN: the networks come from the model registry, the maths
from an objective object, and a step alternates D and G updates and keeps the EMA of G. When
to log, draw a frame (training/figures.py), evaluate or write a checkpoint
(training/state.py) is the loop's business (training/loop.py). Progress is counted in real
images shown to D (`nimg`), so runs with different batch sizes compare.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import viz
from ..augment import Augmentation, create_augmentation
from ..checkpoint import CKPT_DIR, Checkpoint, checkpoint_path, list_checkpoints, save_checkpoint
from ..config import RunConfig, TrainConfig
from ..data.base import ImageDataset
from ..device import use_deterministic_kernels
from ..distributed import World, average, average_gradients, convert_sync_batchnorm, current_world
from ..errors import UserError
from ..latent import prior_of
from ..models import create_model
from ..objectives import create_objective
from ..regularisers import Step, create_regularisers
from .build import data_on_device, make_optimizer, run_precision, training_device, wrap_networks
from .ema import ema_beta, make_ema, update_ema
from .figures import ProgressFigures
from .guards import (
    CollapseWatch,
    StopRequest,
    TrainingDiverged,
    TrainingInterrupted,
    diverged,
    nonfinite_flags,
    write_error,
)
from .logging import MetricsLogger
from .loop import Loop, TrainResult
from .state import TrainState

__all__ = ["Trainer", "TrainResult", "TrainingDiverged", "TrainingInterrupted"]

# What the trainer calls every eval_every_kimg: (G or G_ema, images seen) -> metric records.
EvalHook = Callable[[nn.Module, int], list[dict[str, Any]]]


def check_batch_size(batch_size: int, n: int) -> None:
    """A UserError when one batch needs more images than the dataset has."""
    if batch_size > n:
        raise UserError(
            f"batch size {batch_size} is larger than the dataset ({n} "
            f"images); pass --batch-size {min(n, 64)} or less"
        )


def total_images(cfg: TrainConfig, n: int) -> int:
    """The run length in real images: `kimg`, else `epochs` (default 25) of full batches."""
    if cfg.kimg is not None:
        return int(round(cfg.kimg * 1000))
    return int(round((cfg.epochs or 25) * (n // cfg.batch_size) * cfg.batch_size))


class Trainer:
    """Trains one model on one in-memory dataset into a run folder.

    Args:
        run_config: the resolved configuration (model name + config, training config).
        run_dir: the run folder (exists; config.json already written by the caller).
        dataset: the training images.
        resume: a checkpoint to continue from exactly.
        progress: show a progress bar.
        tensorboard: also log to TensorBoard when it is installed.
        evaluate: scores a generator at an image count; built by the caller, so that
            training never imports the metrics (they sit above it in the data flow).
    """

    def __init__(
        self,
        run_config: RunConfig,
        run_dir: str | Path,
        dataset: ImageDataset,
        *,
        resume: Checkpoint | None = None,
        progress: bool = True,
        tensorboard: bool = True,
        evaluate: EvalHook | None = None,
    ) -> None:
        self.run_config = run_config
        self.evaluate = evaluate
        self.cfg = cfg = run_config.train
        self.run_dir = Path(run_dir)
        # Several processes (torchrun): each trains its slice of every global batch; only
        # rank 0 writes to the run folder.
        self.world: World = current_world()
        self.is_main = self.world.is_main
        self.progress = progress and self.is_main
        self.device = training_device(cfg, self.world)
        if cfg.deterministic:
            use_deterministic_kernels()
        torch.manual_seed(cfg.seed)  # initial weights depend on the seed only
        self._build()
        self.local_batch = self._check_data(dataset)
        self.dataset = data_on_device(dataset, self.device, cfg.data_device)
        self.wrapped = wrap_networks(
            self.G, self.D, world=self.world, device=self.device,
            regularisers=self.regularisers, compile=cfg.compile,
        )  # fmt: skip
        self.steps_per_epoch = len(dataset) // cfg.batch_size  # the last partial batch is dropped
        self.images_per_epoch = self.steps_per_epoch * cfg.batch_size
        self.total_nimg = total_images(cfg, len(dataset))
        self._perm: torch.Tensor | None = None
        self._perm_epoch = -1
        self.logger = MetricsLogger(self.run_dir, tensorboard=tensorboard and self.is_main)
        # Divergence guard: four flags per step (D loss, D grads, G loss, G grads) set on the
        # device and read every step (nan_check=step) or at log steps.
        self.nonfinite = torch.zeros(4, dtype=torch.bool, device=self.device)
        # Mode-collapse watch: diversity of the fixed-noise samples / that of real images.
        self.watch = CollapseWatch(cfg.collapse_threshold)
        self.state = TrainState(
            run_config, self.dataset, {"G": self.G, "D": self.D, "G_ema": self.G_ema},
            {"G": self.opt_G, "D": self.opt_D}, self.objective, self.watch, self.augment,
        )  # fmt: skip
        pieces = [self.objective, *self.regularisers, *([self.augment] if self.augment else [])]
        self.figures = ProgressFigures(
            self.run_dir, self.dataset, self.prior,
            title=f"{run_config.model} on {self.dataset.name}", grid_size=cfg.grid_size,
            num_classes=self.num_classes if self.conditional else 0,
            curves=viz.declared_curves(pieces),
        )  # fmt: skip
        if resume is not None:
            self.state.restore(resume)

    def _build(self) -> None:
        """G, D (and G_ema) on the device, the precision, objective, regularisers, optimisers."""
        cfg, rc = self.cfg, self.run_config
        self.model = create_model(rc.model, **cfg.d_options(), **rc.model_config)
        self.conditional = self.model.spec.conditional
        self.num_classes = int(self.model.config.num_classes)
        self.precision = run_precision(cfg, self.device, self.world)
        self.amp_dtype = self.precision.dtype
        memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
        if cfg.sync_bn and self.world.distributed:
            self.model.G = convert_sync_batchnorm(self.model.G, self.device)
            self.model.D = convert_sync_batchnorm(self.model.D, self.device)
        self.G = self.model.G.to(self.device, memory_format=memory_format).train()
        self.D = self.model.D.to(self.device, memory_format=memory_format).train()
        self.G_ema = make_ema(self.G) if cfg.ema else None
        self.objective = create_objective(cfg.objective or self.model.spec.objective)
        self.model.spec.check_objective(self.objective.name)
        self.regularisers = create_regularisers(cfg.reg, model=self.model.spec)
        self.augment: Augmentation | None = create_augmentation(cfg, self.objective)
        if self.augment is not None:
            self.augment.to(self.device)
        self.opt_G = make_optimizer(cfg, self.G, cfg.lr_g)
        self.opt_D = make_optimizer(cfg, self.D, cfg.lr_d)
        self.prior = prior_of(self.G)

    def _check_data(self, dataset: ImageDataset) -> int:
        """This rank's share of each batch; a UserError for data the run cannot train on."""
        cfg, size = self.cfg, self.world.size
        check_batch_size(cfg.batch_size, len(dataset))
        if cfg.batch_size % size:
            raise UserError(
                f"the global batch ({cfg.batch_size}) must split evenly over "
                f"{size} processes; pass a --batch-size divisible by {size}"
            )
        if self.conditional and dataset.labels is None:
            raise UserError(
                f"{self.run_config.model} is class-conditional but {dataset.name} has no "
                "labels; use labelled data (e.g. folder:PATH with --folder-labels)"
            )
        if self.augment is not None and dataset.resolution < 4:
            raise UserError(
                f"--augment works on images; {dataset.name} gives D "
                f"{dataset.resolution}x{dataset.resolution} inputs"
            )
        if (cfg.batch_size // size) % cfg.pack:
            raise UserError(
                f"each process's batch ({cfg.batch_size // size}) must be a multiple of "
                f"pack ({cfg.pack}); pass a --batch-size divisible by {size * cfg.pack}"
            )
        return cfg.batch_size // size

    # ------------------------------------------------------------------ state
    @property
    def step(self) -> int:
        """G updates so far."""
        return self.state.step

    @property
    def nimg(self) -> int:
        """Real images shown to D so far."""
        return self.state.nimg

    def save(self) -> Path:
        """Write a checkpoint for the current step and prune old ones."""
        return self._write(*self.state.pack())

    def _write(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
        # The new file is complete (renamed into place) before any old one is deleted.
        path = save_checkpoint(checkpoint_path(self.run_dir, self.nimg), tensors, meta)
        for old in list_checkpoints(self.run_dir)[: -self.cfg.keep_checkpoints]:
            old.unlink(missing_ok=True)
        return path

    def checkpoint(self) -> Path | None:
        """Remember the current state as the last good one; rank 0 also writes it to disk."""
        good = self.state.remember()
        return self._write(*good) if self.is_main else None

    def roll_back(self, what: str) -> None:
        """Return to the last good state with both learning rates times nan_lr_factor, or
        raise TrainingDiverged when nan_retries rollbacks were not enough."""
        cfg, state = self.cfg, self.state
        at_step, where = state.step, f"step {state.step} ({self.nimg / 1000:g} kimg)"
        if state.rollbacks >= cfg.nan_retries or state.good is None:
            last = list_checkpoints(self.run_dir)
            raise diverged(where, what, state.rollbacks, state.lr_scale, last)
        state.roll_back(cfg.nan_lr_factor)
        self.nonfinite.zero_()
        scale, n = state.lr_scale, state.rollbacks
        if self.is_main:
            self.forget_after(self.nimg)
            self.logger.event(
                "rollback", nimg=self.nimg, at_step=at_step, reason=what,
                lr_scale=scale, rollback=n, of=cfg.nan_retries,
            )  # fmt: skip
        self.say(
            f"gankit: warning: {what} at {where}; rolled back to {self.nimg / 1000:g} kimg with "
            f"the learning rates x{scale:g} (rollback {n} of {cfg.nan_retries})"
        )

    def forget_after(self, nimg: int) -> None:
        """Drop the metrics and sample frames recorded after `nimg` (resume, rollback)."""
        self.logger.truncate_after(nimg)
        self.figures.forget_after(nimg)

    # ------------------------------------------------------------------ one step
    def _real_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next real batch: a fresh permutation per epoch, derived from (seed, epoch).

        Deriving the order from the epoch number (instead of carrying an RNG) is what makes a
        resumed run draw exactly the batches the uninterrupted run would have drawn.
        """
        epoch, pos = divmod(self.state.batch_index, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(len(self.dataset), generator=g)
            self._perm_epoch = epoch
        assert self._perm is not None
        b = self.cfg.batch_size
        self.state.batch_index += 1
        index = self._perm[pos * b : (pos + 1) * b]
        if self.world.distributed:  # this rank's slice of the global batch
            index = index[self.world.rank * self.local_batch :][: self.local_batch]
        x, y = self.dataset.batch(index, self.device)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def _autocast(self) -> torch.autocast:
        """bf16 autocast for the forward passes when asked; losses are reduced in fp32."""
        return torch.autocast(
            self.device.type,
            dtype=self.amp_dtype or torch.bfloat16,
            enabled=self.amp_dtype is not None,
        )

    def _noise(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Latents (and labels) for this rank: every rank draws the same global batch from the
        same generator and keeps its slice, so N processes see what one process would."""
        n = self.cfg.batch_size
        z = self.prior.sample(n, self.device)
        y = torch.randint(self.num_classes, (n,), device=self.device) if self.conditional else None
        if self.world.distributed:
            lo = self.world.rank * self.local_batch
            part = slice(lo, lo + self.local_batch)
            z = z[part]
            y = None if y is None else y[part]
        return z, y

    def _shown(self, x: torch.Tensor) -> torch.Tensor:
        """A batch as D is shown it, real or fake, in either update: through the run's
        augmentation (differentiable, so G learns through it), or as it is without one."""
        return x if self.augment is None else self.augment(x)

    def _add_terms(
        self,
        which: str,
        loss: torch.Tensor,
        logs: dict[str, torch.Tensor],
        real: torch.Tensor | None,
        y_real: torch.Tensor | None,
        fake: torch.Tensor,
        y_fake: torch.Tensor | None,
        z: torch.Tensor,
        index: int,
    ) -> torch.Tensor:
        """Add each regulariser's D or G term to `loss`. They run outside autocast, so they
        get the fake in fp32 (it is bf16 under autocast; the cast keeps G's graph). `index`
        numbers this kind of update since the run began, for terms that run every k-th."""
        if not self.regularisers:
            return loss
        step = Step(self.G, self.D, real, y_real, fake.float(), y_fake, z, index)
        for reg in self.regularisers:
            term = reg.d_term(step) if which == "d" else reg.g_term(step)
            if term is not None:
                value, reg_logs = term
                loss = loss + value
                logs.update(reg_logs)
        return loss

    def train_step(self) -> dict[str, torch.Tensor]:
        """n_critic D updates then one G update; returns detached scalars (no host sync)."""
        G, D, obj = self.wrapped.G, self.D, self.objective
        n_critic = self.cfg.n_critic
        reuse = n_critic == 1  # as in the DCGAN tutorial: G's forward serves both updates
        D.requires_grad_(True)
        logs: dict[str, torch.Tensor] = {}
        for i in range(n_critic):
            real, y_real = self._real_batch()
            z, y_fake = self._noise()
            with self._autocast():
                if reuse:
                    fake = G(z, y_fake)
                else:
                    with torch.no_grad():
                        fake = G(z, y_fake)
                real_d, fake_d = self._shown(real), self._shown(fake.detach())
                D_d = self.wrapped.D
                if self.augment is not None:  # ADA notes D's outputs on real_d (its r_t)
                    D_d = self.augment.watch(D_d, real_d)
                loss_d, logs_d = obj.d_loss(D_d, real_d, fake_d, y_real, y_fake)
            if self.world.distributed:  # batch-dependent state (BEGAN's k_t): the global value
                obj.average_state(lambda t: average(t, self.world))
            d_index = self.state.step * n_critic + i
            loss_d = self._add_terms(
                "d", loss_d, logs_d, real_d, y_real, fake_d, y_fake, z, d_index
            )
            self.opt_D.zero_grad(set_to_none=True)
            loss_d.backward()
            if self.wrapped.average_d_by_hand:
                average_gradients(self.D, self.world)
            self.nonfinite[:2] |= nonfinite_flags(loss_d, self.D.parameters())
            self.opt_D.step()
            for reg in self.regularisers:
                reg.after_d_step(D)
            if self.augment is not None:  # ADA: p moves every few D steps, alike on every rank
                mean = (lambda t: average(t, self.world)) if self.world.distributed else None
                self.augment.after_d_step(mean)
            logs.update(logs_d)
        D.requires_grad_(False)  # G's update needs gradients through D, not of D's weights
        with self._autocast():
            if not reuse:
                z, y_fake = self._noise()
                fake = G(z, y_fake)
            fake_g = self._shown(fake)  # drawn afresh, as DiffAugment's G step does
            loss_g, logs_g = obj.g_loss(self.wrapped.D_for_g, fake_g, y_fake)
        loss_g = self._add_terms(
            "g", loss_g, logs_g, None, None, fake_g, y_fake, z, self.state.step
        )
        self.opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        self.nonfinite[2:] |= nonfinite_flags(loss_g, self.G.parameters())
        self.opt_G.step()
        D.requires_grad_(True)
        logs.update(logs_g)
        if self.augment is not None:
            logs.update(self.augment.logs())
        if self.G_ema is not None:
            beta = ema_beta(self.cfg.batch_size, self.nimg, self.cfg.ema_kimg, self.cfg.ema_rampup)
            update_ema(self.G_ema, self.G, beta)
        self.state.step += 1
        return logs

    # ------------------------------------------------------------------ pictures, evaluation
    def draw_frame(self) -> None:
        """The fixed-noise frame of now, and the collapse watch on its samples."""
        G = self.G_ema if self.G_ema is not None else self.G
        fakes, labels = self.figures.draw_fakes(G, self.nimg, self.device)
        self.watch.observe(fakes, labels, self.dataset)
        if self.watch.value is None:
            return
        value = self.watch.value
        self.logger.event("diversity", nimg=self.nimg, value=round(value, 4))
        if self.watch.collapsing:
            self.logger.event("collapse_warning", nimg=self.nimg, diversity=value)
            self.say(
                f"gankit: warning: possible mode collapse at {self.nimg / 1000:g} kimg: the "
                f"fixed-noise samples vary {value:.2f}x as much as real images "
                f"(threshold {self.cfg.collapse_threshold:g}); look at "
                f"samples/fakes{self.nimg:09d}.png"
            )

    def refresh_figures(self, final: bool = True) -> None:
        self.figures.refresh(self.logger.path, final=final)

    def run_evaluation(self) -> list[dict[str, Any]]:
        """Score G_ema (else G) now; keep checkpoints/best.safetensors if it is the best yet."""
        if self.evaluate is None:
            return []
        G = self.G_ema if self.G_ema is not None else self.G
        records = self.evaluate(G, self.nimg)
        key, best = self.cfg.keep_best, self.state.best
        for rec in records:
            if rec["metric"] != key:
                continue
            value, higher = float(rec["value"]), bool(rec["higher_is_better"])
            old = None if best is None else float(best["value"])
            if old is None or (value > old if higher else value < old):
                best = self.state.best = {"metric": key, "value": value, "nimg": self.nimg}
                path = self.run_dir / CKPT_DIR / "best.safetensors"
                save_checkpoint(path, *self.state.pack())
        return records

    # ------------------------------------------------------------------ the loop
    def train(self) -> TrainResult:
        """Run until `total_nimg` real images have been shown to D.

        SIGINT / SIGTERM end the current step, write a checkpoint and raise
        TrainingInterrupted; a write error (disk full, read-only folder) becomes a
        RunFolderError that names the intact last checkpoint.
        """
        try:
            with StopRequest() as stop:
                return Loop(self, stop).run()
        except OSError as exc:
            last = list_checkpoints(self.run_dir)
            err = write_error(exc, self.run_dir, last[-1] if last else None)
            if err is None:
                raise
            raise err from None
        finally:
            self.logger.close()

    def say(self, message: str) -> None:
        """A line for the user (rank 0 only), above the progress bar."""
        if self.is_main:
            from tqdm.auto import tqdm

            tqdm.write(message, file=sys.stderr)
