"""`gankit probe` and `gankit features`: a saved run's D as a feature extractor of real data.

Each function loads the run and the data it was trained on (or `data`), computes, writes its
files and returns what it wrote with the lines the command prints (`lines()`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import load_dataset
from ..data.base import ImageDataset
from ..errors import UserError
from ..files import atomic_write_bytes, atomic_write_json
from ..sampling import LoadedRun, load
from .dfeatures import (
    C_GRID,
    ProbeResult,
    discriminator_features,
    format_probe,
    probe_report,
    random_discriminator,
    save_probe_figure,
)
from .paths import probe_path


def _with_d(run: str | os.PathLike, device: str) -> LoadedRun:
    loaded = load(run, device=device)
    if not loaded.checkpoint.has("D"):
        raise UserError(f"{loaded.checkpoint.path} has no D weights to take features from")
    return loaded


def _dataset(
    loaded: LoadedRun, data: str, data_root: str | None, download: bool, train: bool
) -> ImageDataset:
    """`data` at the run's resolution and channels (root: the run's unless given)."""
    rc = loaded.checkpoint.run_config
    return load_dataset(
        data,
        train=train,
        resolution=rc.resolution,
        channels=rc.channels,
        root=data_root or rc.train.data_root,
        download=download,
    )


@dataclass
class ProbeRun:
    """What `probe_run` measured and wrote."""

    results: list[ProbeResult]  # trained D, random D, pixels
    random_seed: int  # the random D's initialisation seed
    report: dict[str, Any]  # as written to `path`
    path: Path  # the JSON report
    figure: Path  # the bar chart

    def lines(self) -> list[str]:
        """What `gankit probe` prints."""
        return [
            *format_probe(self.results).split("\n"),
            f"(random D: the same architecture initialised with seed {self.random_seed})",
            f"report: {self.path}  figure: {self.figure}",
        ]


def probe_run(
    run: str | os.PathLike,
    *,
    data: str | None = None,  # labelled data; default: the run's
    data_root: str | None = None,  # default: the run's
    download: bool = True,
    per_class: int = 100,  # labelled training images per class
    seed: int = 0,  # which labelled images are drawn
    C: float | Sequence[float] | None = None,  # None: chosen from C_GRID by cross-validation
    test: int | None = None,  # only the first N test images
    random_seed: int | None = None,  # the random D's; default: the training seed + 1
    out: str | os.PathLike | None = None,  # the JSON report; default RUN/probe.json
    device: str = "cpu",
) -> ProbeRun:
    """The DCGAN paper's linear probe of a run's D against a random D and raw pixels.

    Writes the JSON report (see `paths.probe_path`) and a bar chart beside it (.png).
    """
    loaded = _with_d(run, device)
    ck = loaded.checkpoint
    data = data or ck.run_config.train.data
    tr = _dataset(loaded, data, data_root, download, train=True)
    te = _dataset(loaded, data, data_root, download, train=False)
    if tr.labels is None or te.labels is None:
        raise UserError(f"{data} has no class labels; a probe needs labelled data")
    n_test = len(te) if test is None else min(test, len(te))
    random_d, random_seed = random_discriminator(loaded, random_seed)
    results = probe_report(
        loaded.model.D,
        random_d,
        tr.batch(torch.arange(len(tr)))[0],
        tr.labels,
        te.batch(torch.arange(n_test))[0],
        te.labels[:n_test],
        per_class=per_class,
        seed=seed,
        C=C_GRID if C is None else C,
        fixed_label=0 if loaded.model.spec.conditional else None,
    )
    path = probe_path(run, out)
    report = {"run": str(run), "nimg": ck.nimg, "data": data, "per_class": per_class,
              "label_seed": seed, "random_d_seed": random_seed,
              "results": [asdict(r) for r in results]}  # fmt: skip
    atomic_write_json(path, report)
    title = f"{loaded.model.name} D ({ck.nimg:,} images) as features, {data}"
    figure = save_probe_figure(results, path.with_suffix(".png"), title)
    return ProbeRun(results, random_seed, report, path, figure)


@dataclass
class FeaturesRun:
    """What `features_run` extracted and wrote."""

    n: int  # images described
    split: str  # "train" or "test"
    data: str
    dims: int  # features per image
    random_d: bool  # a freshly initialised D instead of the run's
    path: Path  # the .npz written (x [n, dims], y the labels or empty)

    def lines(self) -> list[str]:
        """What `gankit features` prints."""
        which = "randomly initialised D" if self.random_d else "trained D"
        return [
            f"{self.n} {self.split} images of {self.data} -> {self.dims} features each "
            f"({which}): {self.path}"
        ]


def features_run(
    run: str | os.PathLike,
    *,
    data: str | None = None,  # images to describe; default: the run's data
    split: str = "test",  # "train" or "test"
    n: int | None = None,  # only the first N images
    random_d: bool = False,  # a freshly initialised D instead of the run's
    seed: int | None = None,  # the random D's; default: the training seed + 1
    data_root: str | None = None,
    download: bool = True,
    out: str | os.PathLike | None = None,  # an .npz; default features.npz
    device: str = "cpu",
) -> FeaturesRun:
    """D's features (every conv layer max-pooled to 4x4, concatenated) of real images, as
    an .npz with x [N, F] and the labels y."""
    loaded = _with_d(run, device)
    data = data or loaded.checkpoint.run_config.train.data
    ds = _dataset(loaded, data, data_root, download, train=split == "train")
    count = len(ds) if n is None else min(n, len(ds))
    images, labels = ds.batch(torch.arange(count))
    D = loaded.model.D
    if random_d:
        D, _ = random_discriminator(loaded, seed)
    # A conditional D gets label 0 for every image: its true label would leak into the features.
    fixed = torch.zeros(count, dtype=torch.long) if loaded.model.spec.conditional else None
    feats = discriminator_features(D, images, fixed)
    path = Path(out or "features.npz")
    if path.suffix != ".npz":
        raise UserError(f"--out must end in .npz (got {path.name})")
    buf = io.BytesIO()
    np.savez_compressed(
        buf, x=feats.numpy(),
        y=np.asarray([] if labels is None else labels.numpy(), dtype=np.int64),
    )  # fmt: skip
    atomic_write_bytes(path, buf.getvalue())
    return FeaturesRun(count, split, data, int(feats.shape[1]), random_d, path)
