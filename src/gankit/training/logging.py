"""Metrics sinks: a JSONL file in the run folder, and TensorBoard when it is installed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..files import atomic_write_text


class MetricsLogger:
    """Appends one JSON object per line to `metrics.jsonl`; mirrors scalars to TensorBoard."""

    def __init__(self, run_dir: str | os.PathLike, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs `tensorboard`

                self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
            except ImportError:
                self._tb = None

    def truncate_after(self, nimg: int) -> None:
        """On resume, drop records written after the checkpoint we resume from."""
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("nimg", 0) <= nimg:
                keep.append(line)
        atomic_write_text(self.path, "".join(k + "\n" for k in keep))

    def log(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            step = int(record.get("nimg", 0))
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("nimg", "step"):
                    self._tb.add_scalar(k, v, step)

    def event(self, kind: str, **fields: Any) -> None:
        """One line in events.jsonl: rollbacks, stops, diversity, collapse warnings (kept
        across resumes: it is the run's history, not its curves)."""
        rec = {"event": kind, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name("events.jsonl"), "a") as f:
            f.write(json.dumps(rec) + "\n")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
