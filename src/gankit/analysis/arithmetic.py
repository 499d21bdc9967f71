"""Vector arithmetic on G's latents (the DCGAN paper's section 6.3, its Figure 7).

The paper averaged the z of three samples per concept (one sample's z was unstable), formed
mean(a) - mean(b) + mean(c) and showed G at that vector plus eight draws with uniform noise of
scale 0.25 added to it. Groups are given as seeds, or picked by an attribute: a scoring
callable (images in [-1, 1] -> one score per image, higher = more of it) ranks a pool of
candidate seeds and the best k form the group (see `attributes` for the specs the command
takes, such as `class=7:bold`: the boldest samples that the classifier is sure are 7s).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data.base import to_uint8
from ..errors import UserError
from ..files import atomic_write_json
from ..latent import prior_of
from ..metrics.classifier import find_classifier
from ..sampling import check_class, generate, load, parse_seeds
from ..viz import save_figure, show_image
from .attributes import Attribute, AttributeSpec, ink, make_attribute, parse_attribute
from .latent_files import LatentSet, is_latent_file, latent_size, read_latents, render_latents
from .paths import figure_prefix

NOISE_SCALE = 0.25  # the paper's uniform noise around the result


def pick_seeds(
    render: Callable[[list[int]], torch.Tensor],
    attribute: Attribute,
    candidates: Sequence[int],
    k: int,
    batch_size: int = 256,
) -> tuple[list[int], list[float]]:
    """The k candidate seeds whose samples score highest on `attribute`, with their scores.

    Args:
        render: seeds -> images in [-1, 1] (e.g. `sampling.generate` for a loaded run).
        attribute: images -> scores, higher = more of the attribute.
        candidates: the pool of seeds to search.
        k: how many to keep.
    """
    candidates = list(candidates)
    if k > len(candidates):
        raise UserError(f"cannot pick {k} seeds out of {len(candidates)} candidates")
    scores = torch.cat(
        [
            attribute(render(candidates[i : i + batch_size])).float().cpu()
            for i in range(0, len(candidates), batch_size)
        ]
    )
    top = torch.topk(scores, k).indices.tolist()
    return [candidates[i] for i in top], [float(scores[i]) for i in top]


def noise_around(
    z: torch.Tensor, n: int, scale: float = NOISE_SCALE, seed: int = 0
) -> torch.Tensor:
    """[n, nz]: z itself, then n - 1 draws of z + U(-scale, scale) (the paper's figure)."""
    g = torch.Generator().manual_seed(seed)
    noise = (torch.rand(n - 1, z.shape[-1], generator=g) * 2 - 1) * scale
    return torch.cat([z[None], z[None] + noise])


@dataclass
class ArithmeticResult:
    """Everything a figure or a report needs: the groups, their images and the result."""

    groups: dict[str, list[int]] | dict[str, list[str]]  # seeds, or "FILE.npz:i" names
    scores: dict[str, list[float]]  # attribute scores of picked seeds (empty for given seeds)
    members: dict[str, torch.Tensor]  # the group members' images
    means: dict[str, torch.Tensor]  # G(mean z) of each group, [1, C, H, W]
    result: torch.Tensor  # G(a - b + c) first, then the noise draws around it
    z: torch.Tensor  # the result's latent
    noise: float = NOISE_SCALE  # scale of the uniform noise of the draws after the first
    notes: list[str] = field(default_factory=list)


def run_arithmetic(
    G: Any,
    render_z: Callable[[torch.Tensor], torch.Tensor],
    groups: dict[str, list[int]],
    draws: int = 8,
    noise: float = NOISE_SCALE,
    seed: int = 0,
    scores: dict[str, list[float]] | None = None,
    latents: dict[str, torch.Tensor] | None = None,
    render_members: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
) -> ArithmeticResult:
    """a - b + c on averaged latents, rendered with its group members and noise draws.

    Args:
        G: the generator (its prior turns seeds into latents).
        render_z: latents [N, nz] -> images in [-1, 1].
        groups: seeds of "a", "b" and "c".
        draws: images of the result, the first without noise.
        noise: scale of the uniform noise of the other draws.
        latents: the latents of groups given as projected images ([k, nz] each), used
            instead of their seeds' z.
        render_members: how a group's own members are drawn, where not by `render_z` (a
            conditional model's projected digits, each in the class it was found in).
    """
    prior = prior_of(G)
    latents, render_members = latents or {}, render_members or {}
    members, means, mean_z = {}, {}, {}
    for name in ("a", "b", "c"):
        zs = latents[name] if name in latents else prior.from_seeds(groups[name])
        members[name] = render_members.get(name, render_z)(zs)
        mean_z[name] = zs.mean(0)
        means[name] = render_z(mean_z[name][None])
    z = mean_z["a"] - mean_z["b"] + mean_z["c"]  # `arithmetic`, on whatever latents were given
    result = render_z(noise_around(z, draws, noise, seed))
    return ArithmeticResult(groups, scores or {}, members, means, result, z, noise)


def save_arithmetic_figure(
    res: ArithmeticResult, path: str | os.PathLike, titles: dict[str, str] | None = None
) -> Path:
    """The paper's layout: a row per group (members, then G at the group's mean z), and the
    result row (G at a - b + c, then the noise draws around it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = titles or {}
    k = max(len(v) for v in res.groups.values())
    cols = max(k + 2, res.result.shape[0])
    fig, axes = plt.subplots(4, cols, figsize=(1.1 * cols, 4.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")

    signs = {"a": "", "b": "-", "c": "+"}
    for r, name in enumerate(("a", "b", "c")):
        for i, img in enumerate(res.members[name]):
            show_image(axes[r, i], img)
        show_image(axes[r, k + 1], res.means[name][0])
        axes[r, k + 1].set_title("mean z", fontsize=7)
        label = f"{signs[name]} {name}: {titles.get(name, '')}".strip()
        axes[r, 0].set_title(label, fontsize=8, loc="left")
    for i, img in enumerate(res.result):
        show_image(axes[3, i], img)
    axes[3, 0].set_title("= a - b + c", fontsize=8, loc="left")
    if res.result.shape[0] > 1:
        axes[3, 1].set_title(f"noise +-{res.noise:g} ...", fontsize=7, loc="left")
    fig.tight_layout()

    save_figure(fig, path, dpi=110)
    return Path(path)


# ----------------------------------------------------------------------------- a saved run


@dataclass
class ArithmeticRun:
    """What `arithmetic_run` computed and wrote."""

    result: ArithmeticResult
    titles: dict[str, str]  # "a", "b", "c" -> how each group was given (and its seeds)
    report: dict[str, Any]  # as written to `report_path`
    figure: Path
    report_path: Path

    def lines(self) -> list[str]:
        """What `gankit arithmetic` prints."""
        out = []
        counts = self.report.get("result_classes")
        if counts is not None:
            named = ", ".join(f"{c}: {n}" for c, n in enumerate(counts) if n)
            out.append(f"classifier on the {self.report['draws']} result images: {named}")
        for name in ("a", "b", "c"):
            ink_mean = self.report["ink"][f"mean z of {name}"]
            out.append(f"  {name}: {self.titles[name]}; ink of G(mean z) {ink_mean:.3f}")
        out.append(f"  a - b + c: ink {self.report['ink']['result']:.3f}")
        out.append(f"figure: {self.figure}")
        return out


def arithmetic_run(
    run: str | os.PathLike,
    *,
    a: str | None,  # each group: seeds ("1,2,3") or an attribute ("class=7", "bold", ...)
    b: str | None,
    c: str | None,
    per_group: int = 3,  # seeds an attribute picks
    pool: str | Sequence[int] = "0-499",  # the candidates an attribute picks from
    draws: int = 8,  # result images, the first noise-free
    noise: float = NOISE_SCALE,
    label: int | None = None,  # the class of a conditional model (default 0)
    evaluator: str | None = None,  # domain classifier file for class=K
    out: str | os.PathLike | None = None,  # path without suffix; default RUN/arithmetic
    ema: bool = True,
    device: str = "cpu",
) -> ArithmeticRun:
    """mean(a) - mean(b) + mean(c) on a saved run's latents: PREFIX.png and PREFIX.json."""
    loaded = load(run, device=device, ema=ema)
    check_class(loaded, label)
    label = label if label is not None else (0 if loaded.num_classes else None)

    def labels_for(n: int) -> list[int] | None:
        return None if label is None else [label] * n

    given = {"a": a, "b": b, "c": c}
    specs: dict[str, AttributeSpec | None] = {}
    projected: dict[str, LatentSet] = {}
    for name, text in given.items():
        if text is None:
            raise UserError(f"give --{name} (seeds such as 1,2,3 or an attribute such as class=7)")
        if is_latent_file(text):
            projected[name] = read_latents(text, loaded.model.name, latent_size(loaded))
            specs[name] = None
            continue
        specs[name] = None if text[:1].isdigit() else parse_attribute(text)
    spaces = {p.space for p in projected.values()}
    if spaces - {"z"} and (len(spaces) > 1 or len(projected) < 3):
        raise UserError("latents projected into w add up only with other w latents: give all "
                        "three groups as w projections, or project into z")  # fmt: skip
    space = spaces.pop() if spaces else "z"
    classifier = None
    if any(s is not None and s.needs_classifier for s in specs.values()):
        data = loaded.checkpoint.run_config.train.data
        classifier = find_classifier(data, evaluator, device=loaded.device)
    candidates = parse_seeds(pool)
    groups, scores, titles = {}, {}, {}
    for name, spec in specs.items():
        text = str(given[name])
        if name in projected:
            groups[name] = projected[name].names
            titles[name] = f"projected {text}"
            continue
        if spec is None:
            groups[name] = parse_seeds(text)
            titles[name] = f"seeds {text}"
            continue
        attr = make_attribute(
            spec, classifier and classifier.classify, classifier and classifier.num_classes
        )
        groups[name], scores[name] = pick_seeds(
            lambda s: generate(loaded, s, labels_for(len(s))), attr, candidates, per_group
        )
        titles[name] = f"{text} (seeds {','.join(map(str, groups[name]))})"

    def own_classes(p: LatentSet) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda z: render_latents(loaded, z, p.labels and torch.tensor(p.labels), p.space)

    res = run_arithmetic(
        loaded.G,
        lambda z: render_latents(loaded, z, labels_for(z.shape[0]), space),
        groups, draws, noise,
        latents={k: p.latents for k, p in projected.items()},
        render_members={k: own_classes(p) for k, p in projected.items() if p.labels},
    )  # fmt: skip
    prefix = figure_prefix(run, out, "arithmetic")
    fig = save_arithmetic_figure(res, prefix.with_name(prefix.name + ".png"), titles)
    report = {
        "run": str(run), "nimg": loaded.checkpoint.nimg, "groups": groups, "scores": scores,
        "titles": titles, "draws": draws, "noise": noise, "figure": str(fig),
        "ink": {**{f"mean z of {k}": float(ink(v)[0]) for k, v in res.means.items()},
                "result": float(ink(res.result[:1])[0]),
                "result draws (mean)": float(ink(res.result).mean())},
    }  # fmt: skip
    if classifier is not None:
        logits = classifier.classify(to_uint8(res.result))
        report["result_classes"] = logits.argmax(1).bincount(minlength=logits.shape[1]).tolist()
    report_path = prefix.with_name(prefix.name + ".json")
    atomic_write_json(report_path, report)
    return ArithmeticRun(res, titles, report, fig, report_path)
