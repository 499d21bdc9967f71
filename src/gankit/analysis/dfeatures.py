"""The discriminator as a feature extractor, the way the DCGAN paper used it.

Radford et al. took every convolutional layer's activations of a trained D, max-pooled each to
a 4x4 grid, flattened and concatenated them, and trained a regularised linear L2-SVM on top
with few labels. `discriminator_features` does the extraction for any convolutional D (the
activation modules' outputs are taken, so the features are what the next layer sees), and
`linear_probe` trains scikit-learn's `LinearSVC` (squared hinge loss with an L2 penalty: the
L2-SVM) on k labelled examples per class. `probe_report` runs the paper's comparison in one
call: trained D against the same architecture freshly initialised, and raw pixels.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..modes import eval_mode

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU)
GRID = 4  # each layer is max-pooled to GRID x GRID, as in the paper


def feature_layers(D: nn.Module) -> list[nn.Module]:
    """The modules whose outputs are D's features: its activation modules (in order).

    A D without activation modules (functional activations) falls back to its convolutions:
    the leaf modules with a 4D kernel, so equalised-learning-rate convolutions (StyleGAN's)
    count as well as `nn.Conv2d`.
    """
    acts = [m for m in D.modules() if isinstance(m, ACTIVATIONS)]
    if acts:
        return acts
    convs = [
        m
        for m in D.modules()
        if not any(True for _ in m.children())
        and isinstance(getattr(m, "weight", None), torch.Tensor)
        and m.weight.dim() == 4
    ]
    if not convs:
        raise UserError(f"{type(D).__name__} has no convolutional layers to take features from")
    return convs


@torch.no_grad()
def discriminator_features(
    D: nn.Module,
    images: torch.Tensor,
    y: torch.Tensor | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """[N, F] features: every feature layer's 4D output max-pooled to 4x4, flattened, joined.

    Args:
        D: a discriminator (put in eval mode here, so batch norm uses its running statistics).
        images: float images in [-1, 1], [N, C, H, W], on D's device or the CPU.
        y: class labels for a conditional D (its forward needs them).
    Returns:
        float32 CPU tensor; F = sum over feature layers of channels x 16.
    """
    layers = feature_layers(D)
    grabbed: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        if output.dim() == 4:  # skip dense layers (MLP heads); the paper used conv layers
            grabbed.append(F.adaptive_max_pool2d(output.float(), GRID).flatten(1))

    handles = [m.register_forward_hook(hook) for m in layers]
    device = next(D.parameters()).device
    out = []
    try:
        with eval_mode(D):
            for i in range(0, images.shape[0], batch_size):
                grabbed.clear()
                x = images[i : i + batch_size].to(device).float()
                D(x, None if y is None else y[i : i + batch_size].to(device))
                if not grabbed:
                    raise UserError(f"{type(D).__name__} produced no convolutional feature maps")
                out.append(torch.cat(grabbed, dim=1).cpu())
    finally:
        for h in handles:
            h.remove()
    return torch.cat(out)


def feature_size(D: nn.Module, channels: int, resolution: int) -> int:
    """The length of `discriminator_features` for one image, by the formula (channels x 16)."""
    sizes: list[int] = []
    hooks = [
        m.register_forward_hook(
            lambda _m, _i, o: sizes.append(o.shape[1]) if o.dim() == 4 else None
        )
        for m in feature_layers(D)
    ]
    try:
        with eval_mode(D), torch.no_grad():
            D(torch.zeros(1, channels, resolution, resolution, device=next(D.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return sum(sizes) * GRID * GRID


def few_labels(labels: torch.Tensor, per_class: int, seed: int = 0) -> torch.Tensor:
    """Indices of `per_class` examples of each class, drawn with `seed` (sorted)."""
    g = torch.Generator().manual_seed(seed)
    picked = []
    for c in labels.unique().tolist():
        idx = torch.nonzero(labels == c).flatten()
        if idx.numel() < per_class:
            raise UserError(f"class {c} has only {idx.numel()} examples; lower --per-class")
        picked.append(idx[torch.randperm(idx.numel(), generator=g)[:per_class]])
    return torch.cat(picked).sort().values


C_GRID = (0.001, 0.01, 0.1)  # searched by cross-validation on the labelled set only


@dataclass
class ProbeResult:
    name: str
    accuracy: float
    features: int
    train_examples: int
    test_examples: int
    C: float
    cv_accuracy: float | None = None  # mean cross-validated accuracy of the chosen C


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    C: float | Sequence[float] = C_GRID,
    name: str = "features",
    n_jobs: int | None = None,
) -> ProbeResult:
    """Test accuracy of an L2-regularised linear L2-SVM on standardised features.

    Args:
        C: the inverse regularisation strength, or several to choose from by stratified
            3-fold cross-validation on the *training* examples (the test set is never used to
            choose), so that each feature set gets its best regularisation fairly. The search
            fits at a looser tolerance (1e-3); the final fit at scikit-learn's default.
        n_jobs: parallel fits of the search (scikit-learn's meaning).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    clf = make_pipeline(StandardScaler(), LinearSVC(C=1.0, max_iter=5000, random_state=0))
    x, y = train_x.numpy(), train_y.numpy()
    cv_acc = search = None
    chosen = 1.0
    if isinstance(C, (int, float)):
        chosen = float(C)
    else:
        folds = min(3, int(np.bincount(y).min()))
        if folds < 2:
            raise UserError("choosing C needs at least 2 labelled examples per class")
        search = GridSearchCV(
            make_pipeline(
                StandardScaler(), LinearSVC(C=1.0, max_iter=5000, tol=1e-3, random_state=0)
            ),
            {"linearsvc__C": [float(c) for c in C]},
            cv=StratifiedKFold(folds, shuffle=True, random_state=0),
            n_jobs=n_jobs,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a near-converged SVM is fine here
        if search is not None:
            search.fit(x, y)
            chosen = float(search.best_params_["linearsvc__C"])
            cv_acc = float(search.best_score_)
        clf.set_params(linearsvc__C=chosen)
        clf.fit(x, y)
    acc = float(np.mean(clf.predict(test_x.numpy()) == test_y.numpy()))
    return ProbeResult(name, acc, int(x.shape[1]), len(y), len(test_y), chosen, cv_acc)


def probe_report(
    D_trained: nn.Module,
    D_random: nn.Module,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    per_class: int = 100,
    seed: int = 0,
    C: float | Sequence[float] = C_GRID,
    fixed_label: int | None = None,
) -> list[ProbeResult]:
    """The paper's comparison: the same probe on trained-D features, random-D features and
    raw pixels, with `per_class` labelled training images per class. Images are in [-1, 1].

    `fixed_label`: a conditional D needs a label in its forward pass; every image gets this one
    (never its true label, which would hand the answer to the probe).
    """
    idx = few_labels(train_labels, per_class, seed)
    xs, ys = train_images[idx], train_labels[idx]

    def const(n: int) -> torch.Tensor | None:
        return None if fixed_label is None else torch.full((n,), fixed_label, dtype=torch.long)

    results = []
    for name, D in (("trained D", D_trained), ("random D", D_random)):
        f_tr = discriminator_features(D, xs, const(len(xs)))
        f_te = discriminator_features(D, test_images, const(len(test_images)))
        results.append(linear_probe(f_tr, ys, f_te, test_labels, C=C, name=name))
    results.append(
        linear_probe(xs.flatten(1), ys, test_images.flatten(1), test_labels, C=C, name="pixels")
    )
    return results


def format_probe(results: Sequence[ProbeResult]) -> str:
    """A small text table of probe results."""
    head = f"{'features':<10}  {'accuracy':>8}  {'dims':>6}  {'train':>5}  {'test':>5}  {'C':>6}"
    lines = [head]
    for r in results:
        lines.append(
            f"{r.name:<10}  {r.accuracy:>8.2%}  {r.features:>6}  {r.train_examples:>5}  "
            f"{r.test_examples:>5}  {r.C:>6g}"
        )
    return "\n".join(lines)


def random_discriminator(run: Any, seed: int | None = None) -> tuple[nn.Module, int]:
    """A freshly initialised D of the run's architecture, the baseline of every D analysis.

    Args:
        run: a `sampling.LoadedRun`.
        seed: the initialisation seed; default: the run's training seed + 1. The trainer seeds
            and then builds its model, so the training seed itself would give back this run's
            own starting D; the default is an independent draw instead.
    Returns:
        (D in eval mode on the run's device, the seed used). The global RNG is left as it was.
    """
    from ..models import create_model

    if seed is None:
        seed = run.checkpoint.run_config.train.seed + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # the config the loader checked and the run was built from, never the raw metadata
        options = run.checkpoint.run_config.train.d_options()
        D = create_model(run.model.name, **options, **run.model.config_dict()).D
    return D.to(run.device).eval(), seed


def save_probe_figure(results: Sequence[ProbeResult], path: str | Any, title: str) -> Any:
    """A bar chart of probe accuracies (trained D, random D, pixels), for people who would
    rather look than read the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..viz import save_figure

    fig, ax = plt.subplots(figsize=(4.8, 3.0))
    names = [r.name for r in results]
    accs = [100 * r.accuracy for r in results]
    bars = ax.bar(names, accs, color=["tab:blue", "tab:gray", "tab:orange"][: len(results)])
    for bar, acc in zip(bars, accs, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, acc + 0.5, f"{acc:.1f}%", ha="center",
                fontsize=9)  # fmt: skip
    low = min(accs)
    ax.set_ylim(max(0.0, low - 15), 100)
    ax.set_ylabel("test accuracy (%)")
    r0 = results[0]
    ax.set_title(f"{title}\n{r0.train_examples} labels, {r0.test_examples} test images",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    return save_figure(fig, path)
