"""What the web page can ask of one loaded generator: facts, grids, walks, mixing, losses.

Every request value is checked here against what the model's registry entry declares (class
range, truncation range, latent codes, style inputs); a bad one is a `BadRequest` (HTTP 400).
Images are generated on the CPU one request at a time and kept in a small LRU cache.
"""

from __future__ import annotations

import base64
import io
import json
import math
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .. import viz
from ..latent import prior_of
from ..objectives import create_objective
from ..regularisers import create_regularisers
from ..sampling import LoadedRun, render

MAX_SEED = 2**31 - 1
MAX_GRID = 64  # images in one grid
MAX_WALK = 32  # frames in one walk
CACHE_ITEMS = 256
# Where the page's truncation slider starts, by what a value means for the model: psi 0.7 is
# StyleGAN's customary setting; a threshold of 1 in z keeps about two thirds of z as drawn.
TRUNCATION_START = {"psi": 0.7, "threshold": 1.0}


class BadRequest(Exception):
    """A request the page (or anyone) sent with a value out of range: HTTP 400."""


class _LRU:
    """A tiny thread-safe LRU of PNG bytes keyed by the request's meaning."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[Any, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Any, make: Callable[[], bytes]) -> bytes:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                self.hits += 1
                return self._d[key]
        value = make()
        with self._lock:
            self.misses += 1
            self._d[key] = value
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return value


def png_bytes(images: torch.Tensor, nrow: int) -> bytes:
    """A grid PNG of images in [-1, 1] (small images enlarged 2x, as in the progress grids)."""
    img = viz.grid_image(images, nrow=nrow, padding=2 if images.shape[0] > 1 else 0)
    if images.shape[-1] <= 32:
        img = img.resize((img.width * 2, img.height * 2), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class Explorer:
    """What the page can ask of one loaded generator."""

    def __init__(self, run: LoadedRun, run_dir: Path) -> None:
        self.run = run
        self.run_dir = run_dir
        self.prior = prior_of(run.G)
        self.cache = _LRU(CACHE_ITEMS)
        self._lock = threading.Lock()  # one generation at a time: torch already uses all cores

    # ------------------------------------------------------------------ facts
    def info(self) -> dict[str, Any]:
        meta = self.run.checkpoint.meta
        rc = self.run.checkpoint.run_config
        spec = self.run.model.spec
        prior = self.prior
        codes = None
        if spec.codes:
            codes = {"categorical": list(prior.categorical), "continuous": prior.continuous}
        low, high = spec.truncation_range
        return {
            "model": self.run.model.name,
            "dataset": rc.train.data,  # by its name today (gankit.data.identity)
            "images_seen": int(meta.get("nimg", 0)),
            "step": int(meta.get("step", 0)),
            "resolution": rc.resolution,
            "channels": rc.channels,
            "num_classes": self.run.num_classes,
            "class_names": self.run.class_names,
            "truncation": spec.truncation,  # "z" (resampling) or "w" (psi, StyleGAN)
            # (low, high]: the page's slider spans it, the server refuses values outside it
            "truncation_range": [low, high],
            "truncation_start": min(high, TRUNCATION_START[spec.truncation_parameter]),
            "codes": codes,
            "style_mixing": spec.style_mixing,
            "used_ema": self.run.used_ema,
            "metrics": self.metrics(),
            "limits": {"max_seed": MAX_SEED, "max_grid": MAX_GRID, "max_walk": MAX_WALK},
        }

    def curves(self) -> dict[str, str]:
        """The extra loss-figure curves the run's objective and regularisers declare."""
        train = self.run.checkpoint.run_config.train  # checked by the loader: these build
        objective = create_objective(train.objective or self.run.model.spec.objective)
        return viz.declared_curves([objective, *create_regularisers(train.reg)])

    def metrics(self) -> list[dict[str, Any]]:
        """The latest value of each metric in RUN/eval.jsonl (what `gankit eval` wrote)."""
        path = self.run_dir / "eval.jsonl"
        latest: dict[str, dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and "metric" in rec and "value" in rec:
                    latest[str(rec["metric"])] = {
                        "metric": rec["metric"],
                        "value": rec["value"],
                        "nimg": rec.get("nimg"),
                    }
        return list(latest.values())

    # ------------------------------------------------------------------ checks
    def _labels(self, cls: int | None, n: int) -> torch.Tensor | None:
        k = self.run.num_classes
        if k == 0:
            if cls is not None:
                raise BadRequest(f"{self.run.model.name} is not class-conditional: drop cls")
            return None
        if cls is None:
            return torch.arange(n) % k  # one class per column, cycling
        if not 0 <= cls < k:
            raise BadRequest(f"cls must be in 0..{k - 1} (got {cls})")
        return torch.full((n,), cls, dtype=torch.long)

    def _truncation(self, trunc: float | None) -> float | None:
        spec = self.run.model.spec
        if trunc is None:
            return None
        low, high = spec.truncation_range  # the registry's range: also what the slider offers
        if not (low < trunc <= high):
            raise BadRequest(f"trunc must be in ({low:g}, {high:g}] for {self.run.model.name}")
        return trunc

    def _z(self, seeds: list[int], trunc: float | None, codes: dict[str, float]) -> torch.Tensor:
        z_trunc, _ = self.run.model.spec.split_truncation(trunc)
        z = self.prior.from_seeds(seeds, truncation=z_trunc)
        if codes:
            if not self.run.model.spec.codes:
                raise BadRequest(f"{self.run.model.name} has no latent codes: drop the codes")
            cat, cont = {}, {}
            for name, value in codes.items():
                kind, _, index = name.partition(":")
                i = int(index)
                if kind == "cat":
                    if not 0 <= i < len(self.prior.categorical):
                        raise BadRequest(f"no categorical code {i}")
                    if not (value == int(value) and 0 <= value < self.prior.categorical[i]):
                        raise BadRequest(
                            f"cat:{i} must be an integer in 0..{self.prior.categorical[i] - 1}"
                        )
                    cat[i] = int(value)
                else:
                    if not 0 <= i < self.prior.continuous:
                        raise BadRequest(f"no continuous code {i}")
                    if not -3 <= value <= 3:
                        raise BadRequest(f"cont:{i} must be in [-3, 3] (got {value})")
                    cont[i] = float(value)
            z = self.prior.with_codes(z, categorical=cat, continuous=cont)
        return z

    def _render(self, z: torch.Tensor, labels: torch.Tensor | None, trunc: float | None):
        _, psi = self.run.model.spec.split_truncation(trunc)
        with self._lock:
            return render(self.run, z, labels, psi)

    # ------------------------------------------------------------------ images
    def grid(
        self, seed: int, n: int, cls: int | None, trunc: float | None, codes: dict[str, float]
    ) -> bytes:
        trunc = self._truncation(trunc)
        labels = self._labels(cls, n)
        key = ("grid", seed, n, cls, trunc, tuple(sorted(codes.items())))

        def make() -> bytes:
            seeds = [(seed + i) % (MAX_SEED + 1) for i in range(n)]
            images = self._render(self._z(seeds, trunc, codes), labels, trunc)
            return png_bytes(images, nrow=max(1, math.ceil(math.sqrt(n))))

        return self.cache.get(key, make)

    def walk(self, a: int, b: int, steps: int, cls: int | None, trunc: float | None) -> list[str]:
        """Frames of a latent walk from seed a to seed b, as PNG data URLs."""
        trunc = self._truncation(trunc)
        labels = self._labels(cls, steps)
        if cls is None and labels is not None:
            labels = torch.zeros(steps, dtype=torch.long)  # one class along the whole walk
        key = ("walk", a, b, steps, cls, trunc)

        def make() -> bytes:
            ends = self._z([a, b], trunc, {})
            t = torch.linspace(0, 1, steps)[:, None]
            z = torch.lerp(ends[0:1], ends[1:2], t)
            images = self._render(z, labels, trunc)
            frames = [png_bytes(images[i : i + 1], nrow=1) for i in range(steps)]
            return json.dumps([base64.b64encode(f).decode() for f in frames]).encode()

        return ["data:image/png;base64," + f for f in json.loads(self.cache.get(key, make))]

    def mixing(self, rows: list[int], cols: list[int], crossover: int | None) -> bytes:
        from ..analysis.style_mixing import style_mixing_grid  # analysis: only when asked for

        G = self.run.G
        if not self.run.model.spec.style_mixing:
            raise BadRequest(
                f"{self.run.model.name} has no style inputs: style mixing is StyleGAN's"
            )
        if crossover is not None and not 0 <= crossover <= G.num_ws:
            raise BadRequest(f"crossover must be in 0..{G.num_ws} (got {crossover})")
        key = ("mix", tuple(rows), tuple(cols), crossover)

        def make() -> bytes:
            with self._lock:
                images, layout = style_mixing_grid(G, rows, cols, crossover)
            return png_bytes(images, nrow=layout.nrow)

        return self.cache.get(key, make)

    def losses(self) -> bytes:
        key = ("losses",)

        def make() -> bytes:
            path = self.run_dir / "metrics.jsonl"
            if not path.is_file():
                raise BadRequest("this run has no metrics.jsonl, so no loss curve")
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "losses.png"
                viz.plot_losses(path, out, title=f"{self.run.model.name}", curves=self.curves())
                return out.read_bytes()

        return self.cache.get(key, make)
