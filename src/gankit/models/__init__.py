"""The model registry: every GAN gankit can train, with its constructor config.

A model is a pair of networks (G, D) built from a typed config dataclass. Networks only
compute forward: G(z, y) -> images in [-1, 1], D(x, y) -> one logit per image (the sigmoid of
the papers is folded into the objective, where it is numerically stable). The GAN maths lives
in `gankit.objectives`; training in `gankit.training`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module

from ..config import apply_overrides, to_dict
from ..errors import UserError
from ..registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows of a model family.

    Attributes:
        name: registry name.
        description: one line for `gankit models`.
        config_cls: dataclass whose fields are the networks' constructor arguments. Every
            image model has `resolution`, `channels`, `nz` and `num_classes` (0 = unconditional).
        build: config -> (G, D).
        conditional: whether G and D take class labels.
        train_defaults: the customary training setup (TrainConfig overrides) for this model.
        objective: the default objective's registry name.
        presets: named settings (`--preset NAME`): model or training fields -> values, applied
            over the defaults and under the user's own overrides.
        recipes: settings tuned for one kind of data (a key of `DATA_KINDS`), applied like a
            preset when a fresh run on such data names none (`--preset paper` keeps the
            paper's setup, the defaults). A recipe changes widths, batch size, learning rates,
            EMA, augmentation and precision; what defines the variant stays (`defining`).
        defining: training fields that make the variant what it is (WGAN's optimiser and
            n_critic); with the objective and the regulariser names, no recipe changes them
            (a registry-wide test checks each recipe).
        d_output: what D returns: "logit" (one score per image, [N]), "levels" (one score per
            image and pyramid level, [N, L]; the objectives average over all of them) or
            "reconstruction" (an autoencoder's output, the shape of its input: BEGAN).
        objectives: the objectives D's output makes sense with (None: any score-based one).
        truncation: what `--trunc` means for this model: "z" (components of z beyond the
            threshold are redrawn: BigGAN's trick) or "w" (StyleGAN: w is pulled towards the
            average w by a factor psi, passed to G as `G(z, y, truncation=psi)`).
        truncation_range: (low, high): the values `truncation` takes, low < value <= high.
            The one statement of the range: the web page's checks and slider read it. A
            threshold of 2 in z already keeps 95% of the components as drawn; psi above 1 in
            w extrapolates away from the average, so StyleGAN's entry stops at 1.
        style_mixing: whether G exposes StyleGAN's style inputs (`mapping(z) -> w`,
            `synthesis(ws, noises=)`, `num_ws`, `w_avg`, `noise_shapes`), so that styles of
            two latents can be mixed and images projected into w.
        codes: whether G's prior carries InfoGAN latent codes (`prior_of(G)` has
            `categorical`, `continuous`, `with_codes` and `split`) and D a Q head (`D.q`).

    The CLI, the web page, sampling and the plots ask these fields what a model can do,
    never its networks (the tests check each entry's fields against what it builds).
    """

    name: str
    description: str
    config_cls: type
    build: Callable[[Any], tuple[nn.Module, nn.Module]]
    conditional: bool = False
    train_defaults: Mapping[str, Any] = field(default_factory=dict)
    objective: str = "nonsaturating"
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    recipes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    defining: tuple[str, ...] = ()
    d_output: str = "logit"
    objectives: tuple[str, ...] | None = None
    truncation: str = "z"
    truncation_range: tuple[float, float] = (0.0, 2.0)
    style_mixing: bool = False
    codes: bool = False

    def __post_init__(self) -> None:
        low, high = self.truncation_range
        if not 0 <= low < high:  # a registration mistake: fail at import, not on a request
            raise ValueError(f"{self.name}: truncation_range needs 0 <= low < high")

    @property
    def setups(self) -> list[str]:
        """Every name `--preset` takes for this model: its presets, its recipes and paper."""
        return [*self.presets, *self.recipes, PAPER]

    def setup(self, name: str) -> Mapping[str, Any]:
        """The values of preset, recipe or `paper` (none: the defaults) `name`."""
        if name == PAPER:
            return {}
        if name in self.presets:
            return self.presets[name]
        if name in self.recipes:
            return self.recipes[name]
        raise UserError(
            f"unknown preset {name!r} for {self.name}; choose one of: {', '.join(self.setups)}"
        )

    def recipe_for(self, data: str) -> str | None:
        """The recipe a fresh run on dataset `data` starts from (None: the paper's setup)."""
        kind = data_kind(data)
        return kind if kind in self.recipes else None

    def split_truncation(self, value: float | None) -> tuple[float | None, float | None]:
        """One `--trunc` value as (threshold for the prior's z, psi for G's w).

        Exactly one of the two is `value` (the other None), by the model's truncation space,
        so that callers never compare `truncation` themselves.
        """
        return (value, None) if self.truncation != "w" else (None, value)

    @property
    def truncation_parameter(self) -> str:
        """What a `--trunc` value is for this model, for messages: "psi" or "threshold"."""
        return "threshold" if self.split_truncation(1.0)[0] is not None else "psi"

    def check_objective(self, objective: str) -> None:
        """A UserError when this model's D cannot be trained with `objective`."""
        if self.objectives is not None and objective not in self.objectives:
            raise UserError(
                f"{self.name} trains only with the {' or '.join(self.objectives)} objective "
                f"(its D returns a {self.d_output}, got --objective {objective})"
            )


MODELS: Registry[ModelSpec] = Registry("model")

# `--preset paper`: the model's defaults, its paper's setup, whatever recipe the data has.
PAPER = "paper"

# Kinds of data a model may carry a recipe for: name -> (what it is, the datasets of that kind).
DATA_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "grey28": (
        "28-32 px greyscale images (digits, mnist, fashion-mnist), tuned for a 2-core CPU",
        ("digits", "sklearn-digits", "mnist", "fashion-mnist"),
    ),
}


def data_kind(data: str) -> str | None:
    """The kind of dataset `data` (a key of DATA_KINDS), None for any other data."""
    for kind, (_, names) in DATA_KINDS.items():
        if data in names:
            return kind
    return None


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model family to the registry."""
    return MODELS.add(spec.name, spec)


@dataclass
class Model:
    """A built model: the spec, its resolved config and the two networks."""

    spec: ModelSpec
    config: Any
    G: nn.Module
    D: nn.Module

    @property
    def name(self) -> str:
        return self.spec.name

    def config_dict(self) -> dict[str, Any]:
        return to_dict(self.config)


def make_config(name: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """The config dataclass of model `name` with strict overrides applied."""
    spec = MODELS.get(name)
    cfg = apply_overrides(spec.config_cls(), overrides or {}, what=f"{name} option")
    for f in fields(cfg):  # sizes <= 0 would fail deep inside torch, or train nothing
        value = getattr(cfg, f.name)
        low = 0 if f.name == "num_classes" and not spec.conditional else 1
        if isinstance(value, int) and not isinstance(value, bool) and value < low:
            raise UserError(f"{f.name} must be >= {low} for {name} (got {value})")
        if f.name == "num_classes" and not spec.conditional and value != 0:
            raise UserError(
                f"{name} is unconditional: num_classes must stay 0 (got {value}); "
                "use a conditional model such as cdcgan or cgan"
            )
        if f.name == "dropout" and not 0.0 <= value < 1.0:
            raise UserError(f"dropout must be in [0, 1) (got {value})")
    return cfg


class PackedDiscriminator(nn.Module):
    """PacGAN (Lin et al. 2018): D scores `pack` samples at once, stacked along channels.

    A batch of N images [N, C, H, W] becomes N / pack packs [N / pack, pack * C, H, W] of
    consecutive samples, and the inner D (the model's own, built for pack * C channels) gives
    one score per pack. A D that sees several samples together can tell a collapsed G's
    look-alike packs from real ones, which penalises mode collapse; the objectives are unchanged.
    """

    def __init__(self, inner: nn.Module, pack: int) -> None:
        super().__init__()
        self.inner, self.pack, self.num_classes = inner, pack, 0

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        if n % self.pack:
            raise ValueError(f"a D packing {self.pack} samples needs a batch divisible by it")
        return self.inner(x.reshape(n // self.pack, self.pack * x.shape[1], *x.shape[2:]))


def batch_spread(x: torch.Tensor, y: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """How much the images of a batch vary: one image-sized plane per sample, [N, 1, H, W].

    The per-pixel std over the batch (or, given labels, over the samples of the same label),
    averaged over pixels and channels: ProGAN's minibatch standard deviation on the input.
    A generator that draws one image per class makes its plane ~0 where real digits of a class
    keep theirs, which D can see; a sample alone in its label's group gets ~0 too.
    """
    n = x.shape[0]
    flat = x.float().flatten(1)
    if y is None:
        spread = (flat - flat.mean(0)).square().mean(0).add(1e-8).sqrt().mean().expand(n)
    else:
        onehot = nn.functional.one_hot(y.long(), num_classes).float()  # [N, K]
        count = onehot.sum(0).clamp_min(1.0)[:, None]
        mean = onehot.T @ flat / count  # [K, P]
        var = onehot.T @ (flat - mean[y]).square() / count
        spread = var.add(1e-8).sqrt().mean(1)[y]  # [N]
    plane = spread.to(x.dtype).view(n, 1, 1, 1).expand(n, 1, *x.shape[2:])
    last = x.dim() == 4 and not x.is_contiguous()
    last = last and x.is_contiguous(memory_format=torch.channels_last)
    return plane.contiguous(memory_format=torch.channels_last if last else torch.contiguous_format)


class SpreadDiscriminator(nn.Module):
    """D that also sees `batch_spread` of its batch as one more input channel (`--mbstd`).

    Per label for a conditional D, against the collapse within each class that an image-wise
    D cannot see (each sample looks like a real digit of its class); over the whole batch for
    an unconditional one. The objectives call D on real and fake batches apart, so a plane
    never mixes the two. The inner D is the model's own, built for one more channel.
    """

    def __init__(self, inner: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.inner, self.num_classes = inner, num_classes
        self.conditional = num_classes > 0

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        plane = batch_spread(x, y if self.conditional else None, self.num_classes)
        return self.inner(torch.cat([x, plane], dim=1), y)

    def q(self, x: torch.Tensor) -> Any:
        """InfoGAN's Q head on the same input D's score sees (only where the inner D has one)."""
        return self.inner.q(torch.cat([x, batch_spread(x, None, 0)], dim=1))


def check_mbstd(spec: ModelSpec, mbstd: bool, pack: int) -> None:
    """A UserError when `spec`'s D cannot take the spread plane (`--mbstd`)."""
    if not mbstd:
        return
    if spec.d_output != "logit":
        ok = ", ".join(n for n, s in MODELS.items() if s.d_output == "logit")
        raise UserError(
            f"--mbstd needs a D that scores images; {spec.name}'s D returns a "
            f"{spec.d_output} (models that take it: {ok})"
        )
    if pack > 1:
        raise UserError("--mbstd and --pack both show D the batch's variety: choose one")


def check_pack(spec: ModelSpec, pack: int) -> None:
    """A UserError when `spec`'s D cannot judge packs of `pack` samples."""
    if pack < 1:
        raise UserError(f"pack must be >= 1 (got {pack})")
    if pack > 1 and not packable(spec):
        ok = ", ".join(n for n, s in MODELS.items() if packable(s))
        raise UserError(
            f"pack={pack} needs an unconditional model whose D gives one score per image; "
            f"{spec.name}'s D {'takes labels' if spec.conditional else 'does more'} "
            f"(PacGAN packs {ok})"
        )


def packable(spec: ModelSpec) -> bool:
    """Whether PacGAN's packing fits `spec`'s D: unlabelled images in, one score each out."""
    return not (spec.conditional or spec.codes or spec.d_output != "logit")


def create_model(name: str, *, pack: int = 1, mbstd: bool = False, **overrides: Any) -> Model:
    """Build model `name` from its default config updated by `overrides`.

    `pack` > 1 wraps a D built for pack x the channels in a `PackedDiscriminator` (PacGAN);
    `mbstd` one built for one more channel in a `SpreadDiscriminator`.

    Example: `create_model("dcgan", resolution=32, channels=1)`.
    """
    spec = MODELS.get(name)
    cfg = make_config(name, overrides)
    check_pack(spec, pack)
    check_mbstd(spec, mbstd, pack)
    G, D = spec.build(cfg)
    if pack > 1:
        _, inner = spec.build(replace(cfg, channels=cfg.channels * pack))
        D = PackedDiscriminator(inner, pack)
    if mbstd:
        _, inner = spec.build(replace(cfg, channels=cfg.channels + 1))
        D = SpreadDiscriminator(
            inner, int(getattr(cfg, "num_classes", 0)) if spec.conditional else 0
        )
    return Model(spec=spec, config=cfg, G=G, D=D)


def list_models() -> list[str]:
    """Names of all registered models."""
    return MODELS.names()


# At most this many parameters and sub-modules in one meta build (`meta_model`): a config
# field that counts layers (StyleGAN's mapping_layers=10**7) costs memory and minutes in Python
# objects even on the meta device. The largest built-in model at its defaults has about 300.
MAX_MODULES = 20_000


class _TooManyModules(Exception):
    """Raised inside a meta build once it has registered more than its limit."""


@contextlib.contextmanager
def _at_most_modules(limit: int) -> Iterator[None]:
    """Stop a build in this thread once it registers more than `limit` parameters and modules.

    Global hooks, filtered by thread, so that another thread building its own model (the web
    page) is neither counted nor stopped.
    """
    me, count = threading.get_ident(), 0

    def hook(*_: Any) -> None:
        nonlocal count
        if threading.get_ident() == me:
            count += 1
            if count > limit:
                raise _TooManyModules

    handles = [
        _module.register_module_parameter_registration_hook(hook),
        _module.register_module_module_registration_hook(hook),
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def meta_model(
    name: str,
    config: Mapping[str, Any],
    *,
    max_modules: int = MAX_MODULES,
    pack: int = 1,
    mbstd: bool = False,
) -> Model:
    """Model `name` built on the meta device: every shape, no memory for any weight.

    What a config asks for is checked here before anything real is built from it (training a
    new run, loading a checkpoint's metadata).

    Args:
        name: registry name.
        config: model config fields (strictly parsed, as `create_model` does).
        max_modules: refuse builds registering more parameters and sub-modules than this.
        pack, mbstd: D's options (see `create_model`).
    Raises:
        UserError: an unknown name, a bad config, a build over `max_modules`, or weights
            whose size overflows; other exceptions of the networks' constructors pass through.
    """
    try:
        with torch.device("meta"), _at_most_modules(max_modules):
            return create_model(name, pack=pack, mbstd=mbstd, **config)
    except _TooManyModules:
        raise UserError(
            f"{name} with this config has more than {max_modules:,} layers and weights; "
            "lower the layer counts (e.g. mapping_layers)"
        ) from None
    except (RuntimeError, TypeError, OverflowError) as exc:  # a weight of 2^39 x 2^38 elements:
        if "overflow" not in str(exc).lower():  # its size fits in no 64-bit integer
            raise
        raise UserError(
            f"{name} with this config needs weights too large to count "
            f"({' '.join(str(exc).split())[:100]}); lower the resolution or the widths"
        ) from None


def count_parameters(model: Model) -> int:
    """Parameters of G and D together."""
    return sum(p.numel() for net in (model.G, model.D) for p in net.parameters())


def check_size(
    name: str,
    config: Mapping[str, Any],
    *,
    strict: bool = False,
    max_modules: int = MAX_MODULES,
    advice: str = "lower ngf/ndf (or hidden)",
    pack: int = 1,
    mbstd: bool = False,
) -> Model | None:
    """Refuse networks whose training state cannot fit in memory (`--set ngf=100000`),
    counted on the meta device so that nothing is allocated. `train` and the checkpoint
    loader share this one limit.

    Args:
        name: registry name.
        config: model config fields.
        strict: a config that cannot be built on the meta device is a UserError (a loaded
            file must be checkable); otherwise None is returned and the real build decides.
        max_modules: see `meta_model`.
        advice: what to do about a model that is too big (the end of the message).
        pack, mbstd: D's options (see `create_model`).
    Returns:
        The model built on the meta device (None when not strict and it could not be built).
    """
    from ..data.common import memory_budget

    try:
        m = meta_model(name, config, max_modules=max_modules, pack=pack, mbstd=mbstd)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 (a constructor's own failure, reported in one line)
        if not strict:
            return None
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise UserError(f"{name} cannot be built with this config ({first})") from None
    n = count_parameters(m)
    need = 4 * 5 * n  # fp32 weights, gradients, two Adam moments and G's EMA, roughly
    if need > memory_budget():
        raise UserError(
            f"{name} with these widths has {n / 1e6:,.0f}M parameters, about "
            f"{need / 2**30:,.0f} GiB to train, more than this machine can hold "
            f"({memory_budget() / 2**30:.0f} GiB budget); {advice}"
        )
    return m


def check_resolution_pow2(name: str, resolution: int, minimum: int = 8) -> int:
    """Number of stride-2 stages for a power-of-two `resolution`; a UserError otherwise."""
    if resolution < minimum or resolution & (resolution - 1):
        nearest = 1 << max(minimum.bit_length() - 1, max(resolution, 1).bit_length())
        raise UserError(
            f"{name} needs a power-of-two resolution >= {minimum} (got {resolution}); "
            f"pass --resolution {nearest}"
        )
    return resolution.bit_length() - 1


# Register the built-in families (import for their side effect).
# isort: off
from . import gan  # noqa: E402,F401  (registration order is the listing order)
from . import dcgan  # noqa: E402,F401
from . import cgan  # noqa: E402,F401
from . import began  # noqa: E402,F401
from . import lapgan  # noqa: E402,F401
from . import stylegan  # noqa: E402,F401
from . import infogan  # noqa: E402,F401
from . import biggan  # noqa: E402,F401
# isort: on

__all__ = [
    "MODELS",
    "Model",
    "ModelSpec",
    "check_size",
    "count_parameters",
    "create_model",
    "list_models",
    "make_config",
    "meta_model",
    "register_model",
    "UserError",
]
