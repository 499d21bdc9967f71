"""`gankit ablate` on a saved run: the experiment, its figure and a JSON report."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ...checkpoint import run_folder
from ...data.base import to_uint8
from ...errors import UserError
from ...files import atomic_write_json
from ...metrics.classifier import find_classifier
from ...sampling import check_class, load
from ..attributes import make_attribute, parse_attribute
from .experiment import FINDER_SEED0, ablation_experiment, summary_lines
from .figure import ablation_figure
from .layers import GLayer, generator_layers, get_layer


def parse_int_list(text: str, what: str) -> list[int]:
    """'3,7,12' -> [3, 7, 12] (a UserError naming `what` otherwise)."""
    try:
        vals = [int(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise UserError(f"bad {what} {text!r}: use comma-separated whole numbers") from None
    if not vals:
        raise UserError(f"no {what} given")
    return vals


def ablate_run(
    run_or_ckpt: str | os.PathLike,
    layer: int,
    *,
    channels: Sequence[int] | None = None,
    region: Sequence[int] | None = None,
    attribute: str | None = None,
    label: int | None = None,
    top: int = 10,
    n: int = 500,
    seeds: Sequence[int] = tuple(range(32)),
    causal: bool = False,
    out: str | os.PathLike | None = None,
    data: str | None = None,
    evaluator: str | os.PathLike | None = None,
    ema: bool = True,
    device: str = "cpu",
) -> dict[str, Any]:
    """`gankit ablate`: run `ablation_experiment` on a saved run and write the figure and a
    JSON report (default RUN/ablation-layerN.png and .json; `out` may be a folder or a .png).

    `attribute` is a spec of `analysis.attributes` (class=K, bold, thin, class=K:bold|thin).
    A class uses the domain classifier of the run's training data (or `data`, or the file
    `evaluator`): the attribute is then p(class K) and the class share argmax = K.
    Returns:
        the report (as written), with "figure" and "report" paths.
    """
    run = load(run_or_ckpt, device=device, ema=ema)
    lay = get_layer(run.G, layer)
    check_class(run, label)
    score = class_share = None
    attr_name = "attribute"
    clf_info: dict[str, Any] | None = None
    if attribute is not None:
        spec = parse_attribute(attribute)
        attr_name = spec.text
        ex = None
        if spec.needs_classifier:
            ex = find_classifier(
                data or run.checkpoint.run_config.train.data, evaluator, device=device
            )
            clf_info = {"path": str(ex.path), "checksum": ex.checksum, "data": ex.data}
        score = make_attribute(spec, ex and ex.classify, ex and ex.num_classes)
        if ex is not None and spec.style is None:
            k = int(spec.cls)  # type: ignore[arg-type]

            def class_share(images: torch.Tensor) -> torch.Tensor:
                return ex.classify(to_uint8(images)).argmax(1) == k

            attr_name = f"p(class {ex.class_names[k]})"
    result = ablation_experiment(
        run.G,
        lay,
        channels=channels,
        region=region,
        attribute=score,
        class_share=class_share,
        labels=label,
        top=top,
        n=n,
        seeds=seeds,
        causal=causal,
    )
    base = Path(run_or_ckpt)
    folder = run_folder(base)
    stem = f"ablation-layer{lay.index}"
    if out is None:
        png = folder / f"{stem}.png"
    elif Path(out).suffix.lower() == ".png":
        png = Path(out)
    elif Path(out).suffix:
        raise UserError(f"--out must be a folder or a .png file (got {out})")
    else:
        png = Path(out) / f"{stem}.png"
    mode = "channels" if channels is not None else ("region" if region is not None else "attribute")
    title = f"{run.model.name}: ablating {len(result.channels)} feature maps of layer {lay.index}"
    if mode == "attribute":
        title += f" chosen by {result.finder.method if result.finder else ''} with {attr_name}"
    elif mode == "region":
        title += " that fire in the red box"
    ablation_figure(result, png, title=title, attribute_name=attr_name)
    report = {
        "run": str(run_or_ckpt),
        "checkpoint": str(run.checkpoint.path),
        "nimg": run.checkpoint.nimg,
        "model": run.model.name,
        "ema": run.used_ema,
        "mode": mode,
        "attribute": attribute,
        "attribute_name": attr_name if attribute is not None else None,
        "classifier": clf_info,
        "class": label,
        "causal": causal,
        "finder_seeds": f"{FINDER_SEED0}-{FINDER_SEED0 + n - 1}" if result.finder else None,
        "measured_seeds": f"0-{n - 1}",
        **result.describe(),
        "summary": summary_lines(result, attr_name),
    }
    json_path = png.with_suffix(".json")
    report["figure"], report["report"] = str(png), str(json_path)
    atomic_write_json(json_path, report)
    return report


def ablation_lines(report: dict[str, Any]) -> list[str]:
    """What `gankit ablate` prints for a report of `ablate_run`."""
    out = []
    if report["finder"]:
        f = report["finder"]
        pairs = zip(f["channels"], f["scores"], strict=True)
        out.append(
            f"top channels by {f['method']}: " + ", ".join(f"{c} ({s:.3g})" for c, s in pairs)
        )
    return [*out, *report["summary"], f"figure: {report['figure']}", f"report: {report['report']}"]


def run_layers(run_or_ckpt: str | os.PathLike, *, ema: bool = True) -> list[GLayer]:
    """The ablatable layers of a saved run's G (`gankit ablate --list`; see `format_layers`)."""
    return generator_layers(load(run_or_ckpt, ema=ema).G)
