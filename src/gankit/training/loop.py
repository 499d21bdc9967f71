"""When things happen in a run: after each of the trainer's steps, what falls due.

The trainer (training/trainer.py) knows how to take one step, save, roll back and draw; this
loop decides when: a rollback when a step went non-finite, a log line every log_every steps,
a frame every sample_every_kimg, an evaluation every eval_every_kimg, a checkpoint every
ckpt_every_kimg, and a clean stop on SIGINT / SIGTERM or at max_seconds.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..checkpoint import list_checkpoints
from ..distributed import any_rank, any_rank_each, average
from .guards import (
    StopRequest,
    TrainingDiverged,
    TrainingInterrupted,
    describe_nonfinite,
    remove_stale_temp_files,
)

if TYPE_CHECKING:
    from .trainer import Trainer


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


class Loop:
    """One `Trainer.train` call: steps until the run's length, with what falls due after each.

    Args:
        trainer: the run being trained.
        stop: the SIGINT / SIGTERM flag, read between steps.
    """

    def __init__(self, trainer: Trainer, stop: StopRequest) -> None:
        self.tr = trainer
        self.stop = stop
        self.start_nimg = trainer.nimg
        # The clock starts once the first frame is drawn; time spent evaluating is added to
        # t0, so that it counts in neither img/s nor max_seconds.
        self.t0 = time.perf_counter()
        self._new_interval(self.t0)
        self.last_ckpt: Path | None = None
        self.saved_at = -1  # nimg of the last checkpoint
        self.out_of_time = False

    def _new_interval(self, now: float) -> None:
        """Start a log interval: its summed step logs, step count, start time and nimg."""
        self.logs: dict[str, torch.Tensor] = {}
        self.steps, self.t_last, self.n_last = 0, now, self.tr.nimg

    def run(self) -> TrainResult:
        from tqdm.auto import tqdm

        tr = self.tr
        self._begin()
        self.bar = tqdm(
            total=tr.total_nimg, initial=self.start_nimg, unit="img", unit_scale=True,
            disable=not tr.progress, dynamic_ncols=True, desc=f"{tr.run_config.model}",
        )  # fmt: skip
        self.t0 = self.t_last = time.perf_counter()
        tr.state.remember()  # what a NaN in the first interval rolls back to
        try:
            while tr.nimg < tr.total_nimg and not self.out_of_time:
                self._iteration()
        except KeyboardInterrupt:  # a second signal, mid-step: the state may be torn; no save
            self.bar.close()
            last = list_checkpoints(tr.run_dir)
            raise TrainingInterrupted(
                last[-1] if last else None, self.stop.signum or signal.SIGINT, saved=False
            ) from None
        self.bar.close()
        if tr.is_main:
            if self.saved_at != tr.nimg:
                self.last_ckpt = tr.checkpoint()
            tr.refresh_figures()
        return TrainResult(
            tr.run_dir, tr.nimg, tr.step, time.perf_counter() - self.t0, self.last_ckpt,
            self.start_nimg, self.out_of_time,
        )  # fmt: skip

    def _begin(self) -> None:
        """Say what precision=auto chose; draw the data and the first frame of a new run, or
        forget what a resumed one logged or drew after its checkpoint (rank 0 only)."""
        tr = self.tr
        if not tr.is_main:
            return
        p = tr.precision
        if p.requested == "auto":
            tr.logger.event("precision", **p.event())
            if p.cpu_bf16_speedup is not None:
                tr.say(f"gankit: precision auto -> {p.chosen} (bf16 measured at "
                       f"{p.cpu_bf16_speedup:g}x fp32 on this CPU)")  # fmt: skip
        tr.figures.samples.mkdir(parents=True, exist_ok=True)
        if self.start_nimg == 0:
            tr.figures.draw_reals()
            tr.draw_frame()
        else:
            tr.forget_after(self.start_nimg)
            remove_stale_temp_files(tr.run_dir)

    def _due(self, before: int, every_kimg: float | None) -> bool:
        """Whether the last step crossed a multiple of `every_kimg` (never, for None)."""
        if every_kimg is None:
            return False
        every = max(1, int(every_kimg * 1000))
        return self.tr.nimg // every > before // every

    def _iteration(self) -> None:
        """One training step, then what falls due: a rollback, a log line, a frame, an
        evaluation, a checkpoint, a stop."""
        tr, cfg, before = self.tr, self.tr.cfg, self.tr.nimg
        logs = tr.train_step()
        log_now = tr.step % cfg.log_every == 0
        self.out_of_time = self._out_of_time(log_now)
        ckpt_now = self._due(before, cfg.ckpt_every_kimg)
        done = tr.nimg >= tr.total_nimg or self.out_of_time
        stop_now, bad = self._poll(cfg.nan_check == "step" or log_now or ckpt_now or done)
        if any(bad):  # never log, draw or save a diverged state: go back instead
            tr.roll_back(describe_nonfinite(bad))
            self._new_interval(time.perf_counter())
            self.out_of_time = False
            self.bar.n = tr.nimg
            self.bar.refresh()
            return
        for k, v in logs.items():
            self.logs[k] = self.logs[k] + v if k in self.logs else v.clone()
        self.steps += 1
        if log_now or done:
            self._log_line()
        self.bar.update(tr.nimg - before)
        if tr.is_main and (self._due(before, cfg.sample_every_kimg) or done):
            tr.draw_frame()
            tr.refresh_figures(final=done)
        evaluates = cfg.eval_every_kimg is not None and tr.evaluate is not None and tr.is_main
        if evaluates and (self._due(before, cfg.eval_every_kimg) or done):
            self._evaluate()  # before the checkpoint, so that it records the best score so far
        if ckpt_now or done or stop_now:
            self.last_ckpt, self.saved_at = tr.checkpoint(), tr.nimg
        if stop_now and not done:
            self.bar.close()
            if tr.is_main:
                tr.refresh_figures()
                tr.logger.event("stopped", nimg=tr.nimg, signal=self.stop.name)
            raise TrainingInterrupted(self.last_ckpt, self.stop.signum or signal.SIGINT)

    def _out_of_time(self, log_now: bool) -> bool:
        """Whether max_seconds has passed; with several processes the ranks agree on it, at
        log steps."""
        tr, limit = self.tr, self.tr.cfg.max_seconds
        over = limit is not None and time.perf_counter() - self.t0 >= limit
        if tr.world.distributed:
            over = log_now and any_rank(over, tr.world, tr.device)
        return over

    def _poll(self, check_nan: bool) -> tuple[bool, list[bool]]:
        """(stop requested, the four non-finite flags of the step) agreed by every rank.

        The signal flag is host state and costs nothing; reading the NaN flags is the one
        device sync of a step (nan_check=step) or of a log interval (nan_check=log).
        """
        tr, asked = self.tr, self.stop.signum is not None
        if not tr.world.distributed and not check_nan:  # no device work at all
            return asked, [False] * 4
        flags = tr.nonfinite if check_nan else torch.zeros_like(tr.nonfinite)
        vec = torch.cat([torch.tensor([asked], device=tr.device), flags])
        if tr.world.distributed:
            vec = any_rank_each(vec, tr.world)
        values = vec.tolist()
        return bool(values[0]), [bool(v) for v in values[1:]]

    def _log_line(self) -> None:
        """The interval's metrics record, and the progress bar's summary of it."""
        now, tr = time.perf_counter(), self.tr
        rec = self._record(now - self.t_last, tr.nimg - self.n_last)
        self._new_interval(now)
        self.bar.set_postfix_str(
            f"D {rec.get('loss_d', 0):.3f} G {rec.get('loss_g', 0):.3f} "
            f"D(x) {rec.get('d_real', 0):.2f} D(G(z)) {rec.get('d_fake', 0):.2f} "
            f"{rec['img_per_s']:.0f} img/s"
            + (f" | COLLAPSE? diversity {tr.watch.value:.2f}" if tr.watch.collapsing else ""),
            refresh=False,
        )

    def _record(self, seconds: float, images: int) -> dict[str, Any]:
        """The interval's summed logs as one metrics record (the only host sync).

        With several processes the values are averaged over the ranks (every rank calls this
        at the same steps) and only rank 0 writes the record.
        """
        tr, n, keys = self.tr, self.steps, sorted(self.logs)
        values = []
        if keys:
            stacked = torch.stack([self.logs[k].float() for k in keys]).div(max(n, 1))
            values = average(stacked, tr.world).tolist()
        rec: dict[str, Any] = {
            "step": tr.step,
            "nimg": tr.nimg,
            "kimg": round(tr.nimg / 1000, 3),
            "epoch": round(tr.nimg / tr.images_per_epoch, 3),
        }
        rec.update(zip(keys, values, strict=True))
        rec["img_per_s"] = images / seconds if seconds > 0 else 0.0
        rec["sec_per_step"] = seconds / max(n, 1)
        if tr.is_main:
            tr.logger.log(rec)
        bad = [k for k in keys if not math.isfinite(rec[k])]
        if bad:
            last = list_checkpoints(tr.run_dir)
            hint = f"the last checkpoint is {last[-1]}" if last else "no checkpoint was written"
            raise TrainingDiverged(
                f"training diverged at step {tr.step} ({', '.join(bad)} not finite); {hint}; "
                "try a lower --lr or another --objective"
            )
        return rec

    def _evaluate(self) -> None:
        """Score the generator now; its time is taken off the run's clock."""
        t_eval, tr = time.perf_counter(), self.tr
        records = tr.run_evaluation()
        spent = time.perf_counter() - t_eval
        self.t0 += spent
        self.t_last += spent
        best = tr.state.best
        self.bar.write(
            f"gankit: eval at {tr.nimg / 1000:g} kimg: "
            + ", ".join(f"{r['metric']}={r['value']:.4g}" for r in records)
            + (f" (best {best['value']:.4g})" if best else "")
        )
