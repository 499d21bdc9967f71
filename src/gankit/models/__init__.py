"""The model registry: every GAN gankit can train, with its constructor config.

A model is a pair of networks (G, D) built from a typed config dataclass. Networks only
compute forward: G(z, y) -> images in [-1, 1], D(x, y) -> one logit per image (the sigmoid of
the papers is folded into the objective, where it is numerically stable). The GAN maths lives
in `gankit.objectives`; training in `gankit.training`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from torch import nn

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
    """

    name: str
    description: str
    config_cls: type
    build: Callable[[Any], tuple[nn.Module, nn.Module]]
    conditional: bool = False
    train_defaults: Mapping[str, Any] = field(default_factory=dict)
    objective: str = "nonsaturating"
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    d_output: str = "logit"
    objectives: tuple[str, ...] | None = None
    truncation: str = "z"
    truncation_range: tuple[float, float] = (0.0, 2.0)

    def __post_init__(self) -> None:
        low, high = self.truncation_range
        if not 0 <= low < high:  # a registration mistake: fail at import, not on a request
            raise ValueError(f"{self.name}: truncation_range needs 0 <= low < high")

    def check_objective(self, objective: str) -> None:
        """A UserError when this model's D cannot be trained with `objective`."""
        if self.objectives is not None and objective not in self.objectives:
            raise UserError(
                f"{self.name} trains only with the {' or '.join(self.objectives)} objective "
                f"(its D returns a {self.d_output}, got --objective {objective})"
            )


MODELS: Registry[ModelSpec] = Registry("model")


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


def create_model(name: str, **overrides: Any) -> Model:
    """Build model `name` from its default config updated by `overrides`.

    Example: `create_model("dcgan", resolution=32, channels=1)`.
    """
    spec = MODELS.get(name)
    cfg = make_config(name, overrides)
    G, D = spec.build(cfg)
    return Model(spec=spec, config=cfg, G=G, D=D)


def list_models() -> list[str]:
    """Names of all registered models."""
    return MODELS.names()


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
    "create_model",
    "list_models",
    "make_config",
    "register_model",
    "UserError",
]
