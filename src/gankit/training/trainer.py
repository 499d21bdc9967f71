"""The one generic training loop.

It knows nothing of any particular GAN: the networks come from the model registry, the maths
from an objective object, and the loop only alternates D and G updates, keeps the EMA of G,
logs, draws the fixed-noise grids and writes checkpoints. Progress is counted in real images
shown to D (`nimg`), so runs with different batch sizes compare.
"""

from __future__ import annotations

import math
import signal
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import viz
from ..checkpoint import CKPT_DIR, Checkpoint, checkpoint_path, list_checkpoints, save_checkpoint
from ..config import RunConfig, TrainConfig, to_dict
from ..data.base import ImageDataset
from ..device import Precision, choose_precision, resolve_device, use_deterministic_kernels
from ..distributed import (
    World,
    any_rank,
    any_rank_each,
    average,
    average_gradients,
    broadcast_object,
    convert_sync_batchnorm,
    current_world,
    rank_device,
)
from ..errors import UserError
from ..latent import prior_of
from ..models import create_model
from ..objectives import create_objective
from ..regularisers import Step, create_regularisers
from .ema import ema_beta, make_ema, update_ema
from .figures import ProgressFigures
from .guards import (
    SIGNAL_NAMES,
    CollapseWatch,
    StopRequest,
    describe_nonfinite,
    nonfinite_flags,
    remove_stale_temp_files,
    write_error,
)
from .logging import MetricsLogger
from .state import TrainState


class TrainingInterrupted(Exception):
    """Raised when SIGINT / SIGTERM stopped training: after a checkpoint of the last complete
    step (`saved`), or at once on a second signal (`saved` False: the newest checkpoint on
    disk, if any, is `checkpoint`)."""

    def __init__(self, checkpoint: Path | None, signum: int, saved: bool = True) -> None:
        name = SIGNAL_NAMES.get(signum, f"signal {signum}")
        super().__init__(f"stopped by {name}; state saved to {checkpoint}")
        self.checkpoint = checkpoint
        self.signum = signum
        self.saved = saved


class TrainingDiverged(UserError):
    """Losses became NaN or infinite."""


def make_optimizer(cfg: TrainConfig, net: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam with (beta1, beta2), or RMSprop as in the WGAN paper (momentum-free).

    `optimizer_impl` picks torch's implementation, which changes speed, not the maths: `fused`
    (one kernel for all weights; RMSprop has none and uses `foreach`), `foreach` (batched
    tensor ops) or `loop` (one weight at a time, torch's default on the CPU).
    """
    impl = cfg.optimizer_impl
    kw: dict[str, Any] = {"foreach": impl != "loop"}
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(net.parameters(), lr=lr, **kw)
    if impl == "fused":
        kw = {"fused": True}
    return torch.optim.Adam(net.parameters(), lr=lr, betas=(cfg.beta1, cfg.beta2), **kw)


def run_precision(cfg: TrainConfig, device: torch.device, world: World) -> Precision:
    """What cfg.precision comes to on `device`; with several processes, rank 0's choice on
    every rank (the ranks must compute alike, and auto's measurement may differ between them)."""
    precision = choose_precision(cfg.precision, device)
    if cfg.precision == "auto" and world.distributed:
        precision = broadcast_object(precision, world)
    return precision


def data_on_device(dataset: ImageDataset, device: torch.device, how: str) -> ImageDataset:
    """The dataset with its uint8 images on the training device when that is worthwhile.

    Batches are then cut by indexing on the device, with no host-to-device copy per step. On
    a GPU the images must take under a quarter of its free memory; the CPU needs no move.
    """
    if how == "cpu" or device.type == "cpu" or dataset.images.device == device:
        return dataset
    size = dataset.images.numel() + (0 if dataset.labels is None else 8 * len(dataset))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if size > free // 4:
            return dataset
    return dataset.to(device)


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


@dataclass
class TrainResult:
    run_dir: Path
    nimg: int  # images seen in total (including before a resume)
    steps: int  # G updates in total
    seconds: float  # wall time of this call
    checkpoint: Path | None
    start_nimg: int = 0  # images seen when this call started
    stopped_early: bool = False  # the max_seconds budget ended the run

    @property
    def img_per_s(self) -> float:
        return (self.nimg - self.start_nimg) / max(self.seconds, 1e-9)


class Trainer:
    """Trains one model on one in-memory dataset into a run folder.

    Args:
        run_config: the resolved configuration (model name + config, training config).
        run_dir: the run folder (exists; config.json already written by the caller).
        dataset: the training images.
        resume: a checkpoint to continue from exactly.
        progress: show a progress bar.
        tensorboard: also log to TensorBoard when it is installed.
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
        evaluate: Callable[[nn.Module, int], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.run_config = run_config
        # Scores a generator at an image count; built by the caller so that training never
        # imports the metrics (they sit above it in the data flow).
        self.evaluate = evaluate
        self.cfg = cfg = run_config.train
        self.run_dir = Path(run_dir)
        self.dataset = dataset
        # Several processes (torchrun): each trains its slice of every global batch; only
        # rank 0 writes to the run folder.
        self.world: World = current_world()
        self.is_main = self.world.is_main
        self.progress = progress and self.is_main
        self.device = rank_device(resolve_device(cfg.device), self.world)
        if cfg.deterministic:
            use_deterministic_kernels()
        torch.manual_seed(cfg.seed)  # initial weights depend on the seed only

        self.model = create_model(run_config.model, **run_config.model_config)
        self.precision = run_precision(cfg, self.device, self.world)
        self.amp_dtype = self.precision.dtype
        self.memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
        if cfg.sync_bn and self.world.distributed:
            self.model.G = convert_sync_batchnorm(self.model.G, self.device)
            self.model.D = convert_sync_batchnorm(self.model.D, self.device)
        self.G = self.model.G.to(self.device, memory_format=self.memory_format).train()
        self.D = self.model.D.to(self.device, memory_format=self.memory_format).train()
        self.G_ema = make_ema(self.G) if cfg.ema else None
        self.objective = create_objective(cfg.objective or self.model.spec.objective)
        self.model.spec.check_objective(self.objective.name)
        self.regularisers = create_regularisers(cfg.reg)
        self.opt_G = make_optimizer(cfg, self.G, cfg.lr_g)
        self.opt_D = make_optimizer(cfg, self.D, cfg.lr_d)
        self.prior = prior_of(self.G)
        self.nz = self.prior.nz
        self.num_classes = int(getattr(self.model.config, "num_classes", 0) or 0)
        self.conditional = self.model.spec.conditional

        n = len(dataset)
        check_batch_size(cfg.batch_size, n)
        if cfg.batch_size % self.world.size:
            raise UserError(
                f"the global batch ({cfg.batch_size}) must split evenly over "
                f"{self.world.size} processes; pass a --batch-size divisible by {self.world.size}"
            )
        self.local_batch = cfg.batch_size // self.world.size
        self.dataset = data_on_device(dataset, self.device, cfg.data_device)
        self._wrap_networks()
        if self.conditional and dataset.labels is None:
            raise UserError(
                f"{run_config.model} is class-conditional but {dataset.name} has no "
                "labels; use labelled data (e.g. folder:PATH with --folder-labels)"
            )
        self.steps_per_epoch = n // cfg.batch_size  # the last partial batch is dropped
        self.images_per_epoch = self.steps_per_epoch * cfg.batch_size
        self.total_nimg = total_images(cfg, n)
        self._perm: torch.Tensor | None = None
        self._perm_epoch = -1
        self.logger = MetricsLogger(self.run_dir, tensorboard=tensorboard and self.is_main)
        # Divergence guard: four flags per step (D loss, D grads, G loss, G grads) set on the
        # device and read every step (nan_check=step) or at log steps.
        self._flags = torch.zeros(4, dtype=torch.bool, device=self.device)
        # Mode-collapse watch: diversity of the fixed-noise samples / that of real images.
        self.watch = CollapseWatch(cfg.collapse_threshold)
        # Counters, packing, restoring and the last good state a rollback returns to.
        self.state = TrainState(
            run_config, self.dataset, {"G": self.G, "D": self.D, "G_ema": self.G_ema},
            {"G": self.opt_G, "D": self.opt_D}, self.objective, self.watch,
        )  # fmt: skip
        self.figures = ProgressFigures(
            self.run_dir, self.dataset, self.prior,
            title=f"{run_config.model} on {self.dataset.name}", grid_size=cfg.grid_size,
            num_classes=self.num_classes if self.conditional else 0,
            curves=viz.declared_curves([self.objective, *self.regularisers]),
        )  # fmt: skip
        if resume is not None:
            self.state.restore(resume)

    def _wrap_networks(self) -> None:
        """The callables the training step runs: G and D themselves, or wrapped by
        DistributedDataParallel (gradients averaged over the ranks) and/or torch.compile.

        G's update runs D without DDP (`D_for_g`): D's weights take no gradient there, and a
        DDP module whose parameters get no gradient would wait for them forever.
        """
        G_step, D_step, D_for_g = self.G, self.D, self.D
        # A regulariser that trains parts of D outside D's forward (InfoGAN's Q head) leaves
        # DDP waiting for gradients it never sees; such a D's gradients are averaged by hand.
        self.average_d_by_hand = self.world.distributed and any(
            r.trains_outside_forward for r in self.regularisers
        )
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            # 1-channel weights are both NCHW and NHWC; their gradients may come in either
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
            G_step = DDP(self.G, device_ids=ids)
            if not self.average_d_by_hand:
                D_step = DDP(self.D, device_ids=ids)
        if self.cfg.compile:
            G_step, D_step = torch.compile(G_step), torch.compile(D_step)
            D_for_g = D_step if not self.world.distributed else torch.compile(self.D)
        self.G_step, self.D_step, self.D_for_g = G_step, D_step, D_for_g

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

    def _roll_back(self, what: str) -> None:
        """Return to the last good state with both learning rates times nan_lr_factor, or
        raise TrainingDiverged when nan_retries rollbacks were not enough."""
        cfg, state = self.cfg, self.state
        at_step, where = state.step, f"step {state.step} ({self.nimg / 1000:g} kimg)"
        if state.rollbacks >= cfg.nan_retries or state.good is None:
            last = list_checkpoints(self.run_dir)
            tried = (
                f"still diverging after {state.rollbacks} rollback(s) with the learning rates "
                f"down to x{state.lr_scale:g}"
                if state.rollbacks
                else "rollback is off (nan_retries=0)"
            )
            raise TrainingDiverged(
                f"training diverged at {where}: {what}; {tried}; "
                + (f"the last good checkpoint is {last[-1]}" if last else "no checkpoint yet")
                + "; try a lower --lr, another --objective or a regulariser (--reg r1)"
            )
        state.roll_back(cfg.nan_lr_factor)
        self._flags.zero_()
        scale, n = state.lr_scale, state.rollbacks
        if self.is_main:
            self._forget_after(self.nimg)
            self.logger.event(
                "rollback", nimg=self.nimg, at_step=at_step, reason=what,
                lr_scale=scale, rollback=n, of=cfg.nan_retries,
            )  # fmt: skip
        self._say(
            f"gankit: warning: {what} at {where}; rolled back to {self.nimg / 1000:g} kimg with "
            f"the learning rates x{scale:g} (rollback {n} of {cfg.nan_retries})"
        )

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
    ) -> torch.Tensor:
        """Add each regulariser's D or G term to `loss`. They run outside autocast, so they
        get the fake in fp32 (it is bf16 under autocast; the cast keeps G's graph)."""
        if not self.regularisers:
            return loss
        step = Step(self.G, self.D, real, y_real, fake.float(), y_fake, z)
        for reg in self.regularisers:
            term = reg.d_term(step) if which == "d" else reg.g_term(step)
            if term is not None:
                value, reg_logs = term
                loss = loss + value
                logs.update(reg_logs)
        return loss

    def train_step(self) -> dict[str, torch.Tensor]:
        """n_critic D updates then one G update; returns detached scalars (no host sync)."""
        G, D, obj = self.G_step, self.D, self.objective
        n_critic = self.cfg.n_critic
        reuse = n_critic == 1  # as in the DCGAN tutorial: G's forward serves both updates
        D.requires_grad_(True)
        logs: dict[str, torch.Tensor] = {}
        for _ in range(n_critic):
            real, y_real = self._real_batch()
            z, y_fake = self._noise()
            with self._autocast():
                if reuse:
                    fake = G(z, y_fake)
                else:
                    with torch.no_grad():
                        fake = G(z, y_fake)
                loss_d, logs_d = obj.d_loss(self.D_step, real, fake.detach(), y_real, y_fake)
            if self.world.distributed:  # batch-dependent state (BEGAN's k_t): the global value
                obj.average_state(lambda t: average(t, self.world))
            loss_d = self._add_terms("d", loss_d, logs_d, real, y_real, fake.detach(), y_fake, z)
            self.opt_D.zero_grad(set_to_none=True)
            loss_d.backward()
            if self.average_d_by_hand:
                average_gradients(self.D, self.world)
            self._flags[:2] |= nonfinite_flags(loss_d, self.D.parameters())
            self.opt_D.step()
            for reg in self.regularisers:
                reg.after_d_step(D)
            logs.update(logs_d)
        D.requires_grad_(False)  # G's update needs gradients through D, not of D's weights
        with self._autocast():
            if not reuse:
                z, y_fake = self._noise()
                fake = G(z, y_fake)
            loss_g, logs_g = obj.g_loss(self.D_for_g, fake, y_fake)
        loss_g = self._add_terms("g", loss_g, logs_g, None, None, fake, y_fake, z)
        self.opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        self._flags[2:] |= nonfinite_flags(loss_g, self.G.parameters())
        self.opt_G.step()
        D.requires_grad_(True)
        logs.update(logs_g)
        if self.G_ema is not None:
            beta = ema_beta(self.cfg.batch_size, self.nimg, self.cfg.ema_kimg, self.cfg.ema_rampup)
            update_ema(self.G_ema, self.G, beta)
        self.state.step += 1
        return logs

    # ------------------------------------------------------------------ pictures, evaluation
    def _draw_frame(self) -> None:
        """The fixed-noise frame of now, and the collapse watch on its samples."""
        G = self.G_ema if self.G_ema is not None else self.G
        fakes, labels = self.figures.draw_fakes(G, self.nimg, self.device)
        self.watch.observe(fakes, labels, self.dataset)
        self._report_diversity()

    def run_evaluation(self) -> list[dict[str, Any]]:
        """Score G_ema (else G) now; keep checkpoints/best.safetensors if it is the best yet."""
        if self.evaluate is None:
            return []
        G = self.G_ema if self.G_ema is not None else self.G
        records = self.evaluate(G, self.nimg)
        key = self.cfg.keep_best
        for rec in records:
            if rec["metric"] != key:
                continue
            value, higher = float(rec["value"]), bool(rec["higher_is_better"])
            best = self.state.best
            old = None if best is None else float(best["value"])
            if old is None or (value > old if higher else value < old):
                self.state.best = {"metric": key, "value": value, "nimg": self.nimg}
                path = self.run_dir / CKPT_DIR / "best.safetensors"
                save_checkpoint(path, *self.state.pack())
        return records

    def _forget_after(self, nimg: int) -> None:
        """Drop the metrics and sample frames recorded after `nimg` (resume, rollback)."""
        self.logger.truncate_after(nimg)
        self.figures.forget_after(nimg)

    def refresh_figures(self, final: bool = True) -> None:
        self.figures.refresh(self.logger.path, final=final)

    # ------------------------------------------------------------------ the loop
    def train(self) -> TrainResult:
        """Run until `total_nimg` real images have been shown to D.

        SIGINT / SIGTERM end the current step, write a checkpoint and raise
        TrainingInterrupted; a write error (disk full, read-only folder) becomes a
        RunFolderError that names the intact last checkpoint.
        """
        try:
            with StopRequest() as stop:
                return self._train(stop)
        except OSError as exc:
            last = list_checkpoints(self.run_dir)
            err = write_error(exc, self.run_dir, last[-1] if last else None)
            if err is None:
                raise
            raise err from None
        finally:
            self.logger.close()

    def _say(self, message: str) -> None:
        """A line for the user (rank 0 only), above the progress bar."""
        if self.is_main:
            from tqdm.auto import tqdm

            tqdm.write(message, file=sys.stderr)

    def _poll(self, stop: StopRequest, check_nan: bool) -> tuple[bool, list[bool]]:
        """(stop requested, the four non-finite flags) agreed by every rank.

        The signal flag is host state and costs nothing; reading the NaN flags is the one
        device sync of a step (nan_check=step) or of a log interval (nan_check=log).
        """
        if not self.world.distributed and not check_nan:  # no device work at all
            return stop.signum is not None, [False] * 4
        flags = self._flags if check_nan else torch.zeros_like(self._flags)
        vec = torch.cat([torch.tensor([stop.signum is not None], device=self.device), flags])
        if self.world.distributed:
            vec = any_rank_each(vec, self.world)
        values = vec.tolist()
        return bool(values[0]), [bool(v) for v in values[1:]]

    def _train(self, stop: StopRequest) -> TrainResult:
        from tqdm.auto import tqdm

        cfg = self.cfg
        main = self.is_main  # the only rank that writes to the run folder
        if main and self.precision.requested == "auto":  # what it chose, and on what grounds
            p = self.precision
            self.logger.event("precision", **p.event())
            if p.cpu_bf16_speedup is not None:
                self._say(f"gankit: precision auto -> {p.chosen} (bf16 measured at "
                          f"{p.cpu_bf16_speedup:g}x fp32 on this CPU)")  # fmt: skip
        samples = self.run_dir / "samples"
        start_nimg = self.nimg
        if not main:
            pass
        elif start_nimg == 0:
            samples.mkdir(parents=True, exist_ok=True)
            self.figures.draw_reals()
            self._draw_frame()
        else:  # resuming: forget what was logged or drawn after the checkpoint
            samples.mkdir(parents=True, exist_ok=True)
            self._forget_after(start_nimg)
            remove_stale_temp_files(self.run_dir)
        sample_every = max(1, int(cfg.sample_every_kimg * 1000))
        eval_every = (
            max(1, int(cfg.eval_every_kimg * 1000))
            if cfg.eval_every_kimg is not None and self.evaluate is not None and main
            else None
        )
        ckpt_every = max(1, int(cfg.ckpt_every_kimg * 1000))
        bar = tqdm(
            total=self.total_nimg,
            initial=start_nimg,
            unit="img",
            unit_scale=True,
            disable=not self.progress,
            dynamic_ncols=True,
            desc=f"{self.run_config.model}",
        )
        acc: dict[str, torch.Tensor] = {}
        acc_n = 0
        t0 = t_last = time.perf_counter()
        n_last = start_nimg
        last_ckpt: Path | None = None
        saved_at = -1
        out_of_time = False
        self.state.remember()  # what a NaN in the first interval rolls back to
        try:
            while self.nimg < self.total_nimg and not out_of_time:
                before = self.nimg
                logs = self.train_step()
                log_now = self.step % cfg.log_every == 0
                out_of_time = (
                    cfg.max_seconds is not None and time.perf_counter() - t0 >= cfg.max_seconds
                )
                if self.world.distributed:  # the ranks agree on when to stop, at log steps
                    out_of_time = log_now and any_rank(out_of_time, self.world, self.device)
                ckpt_now = self.nimg // ckpt_every > before // ckpt_every
                done = self.nimg >= self.total_nimg or out_of_time
                stop_now, bad = self._poll(
                    stop, cfg.nan_check == "step" or log_now or ckpt_now or done
                )
                if any(bad):  # never log, draw or save a diverged state: go back instead
                    self._roll_back(describe_nonfinite(bad))
                    acc, acc_n, t_last, n_last = {}, 0, time.perf_counter(), self.nimg
                    out_of_time = False
                    bar.n = self.nimg
                    bar.refresh()
                    continue
                for k, v in logs.items():
                    acc[k] = acc[k] + v if k in acc else v.clone()
                acc_n += 1
                if log_now or done:
                    now = time.perf_counter()
                    rec = self._flush(acc, acc_n, now - t_last, self.nimg - n_last)
                    acc, acc_n, t_last, n_last = {}, 0, now, self.nimg
                    bar.set_postfix_str(
                        f"D {rec.get('loss_d', 0):.3f} G {rec.get('loss_g', 0):.3f} "
                        f"D(x) {rec.get('d_real', 0):.2f} D(G(z)) {rec.get('d_fake', 0):.2f} "
                        f"{rec['img_per_s']:.0f} img/s"
                        + (
                            f" | COLLAPSE? diversity {self.watch.value:.2f}"
                            if self.watch.collapsing
                            else ""
                        ),
                        refresh=False,
                    )
                bar.update(self.nimg - before)
                if main and (self.nimg // sample_every > before // sample_every or done):
                    self._draw_frame()
                    self.refresh_figures(final=done)
                if eval_every is not None and (
                    self.nimg // eval_every > before // eval_every or done
                ):
                    # Before the checkpoint, so that it records the best score so far.
                    t_eval = time.perf_counter()
                    records = self.run_evaluation()
                    spent = time.perf_counter() - t_eval
                    t0 += spent  # evaluation time counts against neither img/s nor max_seconds
                    t_last += spent
                    bar.write(
                        f"gankit: eval at {self.nimg / 1000:g} kimg: "
                        + ", ".join(f"{r['metric']}={r['value']:.4g}" for r in records)
                        + (f" (best {self.state.best['value']:.4g})" if self.state.best else "")
                    )
                if ckpt_now or done or stop_now:
                    last_ckpt = self.checkpoint()
                    saved_at = self.nimg
                if stop_now and not done:
                    bar.close()
                    if main:
                        self.refresh_figures()
                        self.logger.event("stopped", nimg=self.nimg, signal=stop.name)
                    raise TrainingInterrupted(last_ckpt, stop.signum or signal.SIGINT)
        except KeyboardInterrupt:  # a second signal, mid-step: the state may be torn; no save
            bar.close()
            last = list_checkpoints(self.run_dir)
            raise TrainingInterrupted(
                last[-1] if last else None, stop.signum or signal.SIGINT, saved=False
            ) from None
        bar.close()
        if main:
            if saved_at != self.nimg:
                last_ckpt = self.checkpoint()
            self.refresh_figures()
        return TrainResult(
            self.run_dir,
            self.nimg,
            self.step,
            time.perf_counter() - t0,
            last_ckpt,
            start_nimg,
            out_of_time,
        )

    def _report_diversity(self) -> None:
        """Record the sample diversity; say so when it looks like mode collapse."""
        value = self.watch.value
        if value is None:
            return
        self.logger.event("diversity", nimg=self.nimg, value=round(value, 4))
        if self.watch.collapsing:
            self.logger.event("collapse_warning", nimg=self.nimg, diversity=value)
            self._say(
                f"gankit: warning: possible mode collapse at {self.nimg / 1000:g} kimg: the "
                f"fixed-noise samples vary {value:.2f}x as much as real images "
                f"(threshold {self.cfg.collapse_threshold:g}); look at "
                f"samples/fakes{self.nimg:09d}.png"
            )

    def _flush(
        self, acc: dict[str, torch.Tensor], n: int, seconds: float, images: int
    ) -> dict[str, Any]:
        """Turn accumulated tensors into one metrics record (the only host sync).

        With several processes the values are averaged over the ranks (every rank calls this
        at the same steps) and only rank 0 writes the record.
        """
        keys = sorted(acc)
        values = []
        if keys:
            stacked = torch.stack([acc[k].float() for k in keys]).div(max(n, 1))
            values = average(stacked, self.world).tolist()
        rec: dict[str, Any] = {
            "step": self.step,
            "nimg": self.nimg,
            "kimg": round(self.nimg / 1000, 3),
            "epoch": round(self.nimg / self.images_per_epoch, 3),
        }
        rec.update(zip(keys, values, strict=True))
        rec["img_per_s"] = images / seconds if seconds > 0 else 0.0
        rec["sec_per_step"] = seconds / max(n, 1)
        if self.is_main:
            self.logger.log(rec)
        bad = [k for k in keys if not math.isfinite(rec[k])]
        if bad:
            last = list_checkpoints(self.run_dir)
            hint = f"the last checkpoint is {last[-1]}" if last else "no checkpoint was written"
            raise TrainingDiverged(
                f"training diverged at step {self.step} ({', '.join(bad)} not finite); {hint}; "
                "try a lower --lr or another --objective"
            )
        return rec


def config_summary(run_config: RunConfig) -> dict[str, Any]:
    return {"model": run_config.model, **run_config.model_config, **to_dict(run_config.train)}


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
