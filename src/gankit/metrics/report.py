"""Metric records out: stamped with the time and version, appended to eval.jsonl, printed.

eval.jsonl is a log: one JSON line per record, appended and never rewritten.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._version import __version__
from .kinds import METRICS


def stamp(records: list[dict[str, Any]], **extra: Any) -> list[dict[str, Any]]:
    """`extra`, the time (UTC) and gankit's version written into each record, in place."""
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    for rec in records:
        rec.update(extra)
        rec["time"] = now
        rec["gankit_version"] = __version__
    return records


def append_jsonl(path: str | os.PathLike, records: Sequence[dict[str, Any]]) -> None:
    """Append one JSON line per record (the file is a log: appends, never rewrites)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def format_value(x: float) -> str:
    """A number for the table: 4 decimals, 2 from 10 on, scientific when tiny or huge."""
    if math.isnan(x) or math.isinf(x):
        return str(x)
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.3e}"
    return f"{x:.4f}" if abs(x) < 10 else f"{x:.2f}"


# Bookkeeping values kept in the JSONL record but left out of the printed table.
_HIDDEN_DETAILS = frozenset(
    {"n", "n_generated", "n_heldout", "n_train", "n_heldout_in_train", "dim", "num_modes"}
)


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """A plain-text table: metric, headline value, the other values, samples and extractor."""
    rows = [("metric", "value", "details", "n gen/real", "features (checksum)", "G")]
    for rec in records:
        p = rec.get("protocol", {})
        kind = METRICS.get(p["kind"]) if p.get("kind") in METRICS else None
        shown = [
            (k, v)
            for k, v in rec.get("values", {}).items()
            if isinstance(v, (int, float))
            and (kind is None or k != kind.primary)
            and not re.search(r"class\d+$", k)
            and k not in _HIDDEN_DETAILS
        ]
        details = ", ".join(f"{k}={format_value(float(v))}" for k, v in shown[:6])
        rows.append(
            (
                rec["metric"],
                format_value(rec["value"]) + (" ^" if rec.get("higher_is_better") else " v"),
                details,
                f"{p.get('n_gen', '?')}/{p.get('n_real', '?')}",
                f"{p.get('extractor', '?')} ({p.get('extractor_checksum', '-')})",
                str(p.get("generator", "")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("(^ higher is better, v lower is better)")
    return "\n".join(lines)
