"""What keeps a long run safe: signals become a clean stop, NaNs a rollback, write errors a
clear message, and a collapsing generator a warning.

These are the small pieces the trainer's loop calls; the policy (when to check, how often to
roll back) lives in the loop and in `TrainConfig` (nan_check, nan_retries, nan_lr_factor,
collapse_threshold).
"""

from __future__ import annotations

import errno
import signal
import threading
from collections.abc import Iterable
from pathlib import Path
from types import FrameType

import torch
from torch import nn

from ..data.base import ImageDataset
from ..errors import UserError
from ..terminal import SIGNAL_NAMES


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


def diverged(
    where: str, what: str, rollbacks: int, lr_scale: float, last: list[Path]
) -> TrainingDiverged:
    """The error when rollbacks did not help: `what` went non-finite at `where` after
    `rollbacks` rollbacks, down to learning rates x`lr_scale`; `last`: the checkpoints on disk."""
    tried = (
        f"still diverging after {rollbacks} rollback(s) with the learning rates "
        f"down to x{lr_scale:g}"
        if rollbacks
        else "rollback is off (nan_retries=0)"
    )
    return TrainingDiverged(
        f"training diverged at {where}: {what}; {tried}; "
        + (f"the last good checkpoint is {last[-1]}" if last else "no checkpoint yet")
        + "; try a lower --lr, another --objective or a regulariser (--reg r1)"
    )


# The four checks of one training step, in the order of `nonfinite_flags`.
NONFINITE_WHAT = ("D's loss", "D's gradients", "G's loss", "G's gradients")


class StopRequest:
    """Turns SIGINT and SIGTERM into a flag the training loop reads between steps.

    Stopping at a step boundary is what makes the checkpoint written on the way out exact: a
    signal handled in the middle of a step could leave D updated and G not. A second signal
    while the loop is finishing its step stops at once (KeyboardInterrupt), without a new
    checkpoint. Handlers are installed only in the main thread (Python allows no other).
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNAL_NAMES:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
        self._old.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    @property
    def name(self) -> str:
        return SIGNAL_NAMES.get(self.signum or 0, f"signal {self.signum}")


def nonfinite_flags(loss: torch.Tensor, params: Iterable[nn.Parameter]) -> torch.Tensor:
    """[loss not finite, gradients not finite] as a bool tensor on the loss's device.

    No host sync: the caller decides when to read it. The gradient check is one fused norm
    over all gradients (a NaN or Inf anywhere makes the norm non-finite).
    """
    grads = [p.grad for p in params if p.grad is not None]
    bad_loss = ~torch.isfinite(loss.detach()).all()
    if not grads:
        return torch.stack([bad_loss, torch.zeros_like(bad_loss)])
    norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0, error_if_nonfinite=False)
    return torch.stack([bad_loss, ~torch.isfinite(norm).to(bad_loss.device)])


def describe_nonfinite(flags: list[bool]) -> str:
    """'D's loss and D's gradients are not finite' from the four step flags."""
    what = [w for w, bad in zip(NONFINITE_WHAT, flags, strict=False) if bad]
    if not what:
        return "no value is non-finite"
    plural = len(what) > 1 or what[0].endswith("gradients")
    return " and ".join(what) + (" are" if plural else " is") + " not finite"


def diversity(images: torch.Tensor, labels: torch.Tensor | None = None) -> float:
    """Mean pairwise L2 distance between images (within each class when labels are given).

    Cheap (one matrix of distances over at most a few hundred images) and scale-free once
    divided by the same statistic of real images: near 0 means the samples are nearly alike,
    the signature of mode collapse; about 1 means they vary as much as the data does.
    """
    x = images.detach().float().flatten(1)
    groups = [x] if labels is None else [x[labels == c] for c in labels.unique()]
    total, pairs = 0.0, 0
    for g in groups:
        n = g.shape[0]
        if n < 2:
            continue
        # cdist's matrix-product shortcut scores identical images at ~1e-2 apart on 784-pixel
        # digits; the direct difference gives 0 for copies, which the collapse watch relies on
        d = torch.cdist(g, g, compute_mode="donot_use_mm_for_euclid_dist")
        total += float(d.sum()) / 2  # each pair counted once
        pairs += n * (n - 1) // 2
    return total / pairs if pairs else 0.0


class CollapseWatch:
    """Mode-collapse alarm on the sample diversity (fixed-noise samples / real images).

    It fires when the diversity *drops* below `threshold` after having reached twice that:
    early in training (and while the EMA of G warms up) samples are alike for a while, which
    is not collapse; a run whose samples never grow diverse is not judged (its diversity is
    logged all the same). `threshold` 0 turns the alarm off.
    """

    def __init__(self, threshold: float, peak: float = 0.0) -> None:
        self.threshold = threshold
        self.peak = peak
        self.value: float | None = None
        self.real: float | None = None  # the diversity of real images, measured once

    def observe(
        self, fakes: torch.Tensor, labels: torch.Tensor | None, dataset: ImageDataset
    ) -> None:
        """Update with the diversity of `fakes` relative to as many real images of `dataset`
        (within each class when the samples are labelled)."""
        if self.real is None:
            n = min(len(dataset), fakes.shape[0])
            reals, real_labels = dataset.batch(torch.arange(n))
            self.real = diversity(reals, None if labels is None else real_labels)
        if self.real > 0:
            self.update(diversity(fakes, labels) / self.real)

    def update(self, value: float) -> bool:
        self.value = value
        self.peak = max(self.peak, value)
        return self.collapsing

    @property
    def armed(self) -> bool:
        return self.threshold > 0 and self.peak >= 2 * self.threshold

    @property
    def collapsing(self) -> bool:
        return self.armed and self.value is not None and self.value < self.threshold


WRITE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EFBIG: "the file is larger than this process may write (ulimit -f)",
    errno.EIO: "an I/O error",
}


class RunFolderError(UserError):
    """The run folder could not be written (disk full, read-only, no permission)."""


def write_error(exc: OSError, run_dir: Path, last_checkpoint: Path | None) -> RunFolderError | None:
    """A clear RunFolderError for an OSError that came from writing the run folder, else None."""
    if exc.errno not in WRITE_ERRNOS:
        return None
    where = exc.filename or run_dir
    keep = (
        f"the last complete checkpoint, {last_checkpoint}, is intact; "
        if last_checkpoint is not None
        else "no checkpoint had been written yet; "
    )
    fix = (
        "free some space"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        else ("make the folder writable")
    )
    resume = f"continue with: gankit train --resume {run_dir}" if last_checkpoint else "start again"
    return RunFolderError(
        f"cannot write to the run folder ({WRITE_ERRNOS[exc.errno]}: {where}); {keep}{fix} and "
        f"{resume}"
    )


TEMP_GLOB = ".*.tmp"  # what files.atomic_write_bytes names a file before its rename


def remove_stale_temp_files(run_dir: Path) -> list[Path]:
    """Delete temp files a killed process left behind in a run folder (never loaded: only
    renamed files count as written). Call it only when no process is writing the folder."""
    removed = []
    for folder in (run_dir, run_dir / "checkpoints", run_dir / "samples"):
        if folder.is_dir():
            for f in folder.glob(TEMP_GLOB):
                f.unlink(missing_ok=True)
                removed.append(f)
    return removed
