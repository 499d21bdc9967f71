"""Regularisers: reusable terms and constraints that any model can add to any objective.

A regulariser sees one training step (`Step`) and may add a term to D's loss (`d_term`), add a
term to G's loss (`g_term`), or change D after its optimiser step (`after_d_step`, e.g. weight
clipping). The trainer runs them outside autocast, in fp32, because penalties on gradients are
sensitive to rounding. Pick them with `--reg NAME[:key=value...][,NAME...]`, e.g.
`gankit train dcgan --objective hinge --reg r1:gamma=5`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from .errors import UserError
from .latent import prior_of
from .models import ModelSpec
from .models.infogan import InfoPrior
from .registry import Configurable, Registry, build_from_spec

Logs = dict[str, torch.Tensor]


@dataclass
class Step:
    """What a regulariser may look at in one D or G update.

    `fake` is detached in D's update and carries G's graph in G's; `z` are the latents that
    made it (the InfoGAN codes live there). `index` counts the updates of this kind since the
    run began (D updates for `d_term`, G updates for `g_term`), resumes included, so that a
    term can run every k-th update (lazy R1).
    """

    G: nn.Module
    D: nn.Module
    real: torch.Tensor | None
    y_real: torch.Tensor | None
    fake: torch.Tensor
    y_fake: torch.Tensor | None
    z: torch.Tensor
    index: int = 0


class Regulariser(Configurable):
    """Base class: every hook is optional and does nothing by default."""

    name = "regulariser"
    # Whether the term trains parts of D that D's forward does not use (InfoGAN's Q head):
    # DistributedDataParallel cannot average those, so the trainer averages D's gradients itself.
    trains_outside_forward = False

    def d_term(self, step: Step) -> tuple[torch.Tensor, Logs] | None:
        """A term added to D's loss in each D update."""
        return None

    def g_term(self, step: Step) -> tuple[torch.Tensor, Logs] | None:
        """A term added to G's loss in each G update."""
        return None

    @torch.no_grad()
    def after_d_step(self, D: nn.Module) -> None:
        """Called after each D optimiser step."""

    def check_model(self, spec: ModelSpec) -> None:
        """A UserError when the model `spec` declares cannot be trained with this term."""


REGULARISERS: Registry[type[Regulariser]] = Registry("regulariser")


def create_regularisers(spec: str | None, model: ModelSpec | None = None) -> list[Regulariser]:
    """Regularisers from a comma-separated list of specs; "", "none" or None gives none.

    With `model`, each is checked against what the model declares it can do (`check_model`),
    so that a term the model cannot take fails before training starts.
    """
    if spec is None or spec.strip().lower() in ("", "none"):
        return []
    regs = [build_from_spec(REGULARISERS, part) for part in spec.split(",") if part.strip()]
    names = [r.name for r in regs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise UserError(f"regulariser {', '.join(sorted(dup))} is given twice in {spec!r}")
    for reg in regs if model is not None else ():
        reg.check_model(model)
    return regs


def list_regularisers() -> list[str]:
    return REGULARISERS.names()


def input_gradients(D: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """dD(x)/dx per sample, with a graph so that a penalty on it can be minimised.

    D's outputs are summed over the batch (samples do not interact in D, so each sample's
    gradient is its own) and over any extra output dimensions (LapGAN's per-level logits).
    """
    x = x.detach().float().requires_grad_(True)
    out = D(x, y).float()
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad


@REGULARISERS.register("gp")
class GradientPenalty(Regulariser):
    """WGAN-GP (Gulrajani et al. 2017): weight * E[(||grad D(x_hat)||_2 - 1)^2] on random
    interpolates x_hat = e x + (1 - e) G(z), e ~ U[0, 1] per sample, the norm taken per sample
    over all non-batch dimensions. Makes D softly 1-Lipschitz along those lines."""

    name = "gp"
    description = "gradient penalty on interpolates (WGAN-GP), weight=10"
    options = {"weight": 10.0}
    curves = {"gp": "gradient penalty", "grad_norm": "||grad D|| on interpolates"}
    weight: float

    def penalty(
        self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(penalty, mean gradient norm) for one real and one fake batch."""
        e = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
        x_hat = torch.lerp(fake.detach().float(), real.detach().float(), e)
        grad = input_gradients(D, x_hat, y)
        norm = grad.flatten(1).norm(2, dim=1)
        return ((norm - 1.0) ** 2).mean(), norm.detach().mean()

    def d_term(self, step: Step) -> tuple[torch.Tensor, Logs]:
        assert step.real is not None
        # One label per interpolate: the real batch's (a conditional critic is penalised
        # where it is evaluated on real data; the fake batch's labels are random).
        pen, norm = self.penalty(step.D, step.real, step.fake, step.y_real)
        return self.weight * pen, {"gp": pen.detach(), "grad_norm": norm}


@REGULARISERS.register("r1")
class R1(Regulariser):
    """R1 (Mescheder et al. 2018; StyleGAN): gamma / 2 * E[||grad D(x)||^2] on real data only,
    which stops D from pushing its gradient off the data manifold.

    `every=k` is StyleGAN2's lazy R1: the term runs on one D update in k, scaled by k so that
    its weight per update is unchanged, and the double backward costs 1/k as much.
    """

    name = "r1"
    description = "R1 penalty on real data (StyleGAN), gamma=10; every=k runs it lazily"
    options = {"gamma": 10.0, "every": 1.0}
    curves = {"r1": "R1"}
    gamma: float
    every: float

    def __init__(self, **kwargs: float) -> None:
        super().__init__(**kwargs)
        if self.every < 1 or self.every != int(self.every):
            raise UserError(f"r1's every must be a whole number >= 1, not {self.every:g}")
        self._last: torch.Tensor | None = None

    def d_term(self, step: Step) -> tuple[torch.Tensor, Logs] | None:
        assert step.real is not None
        k = int(self.every)
        if step.index % k:  # a lazy step: nothing to add; the curve shows the last value
            if self._last is None:
                return None
            return step.real.new_zeros((), dtype=torch.float32), {"r1": self._last}
        grad = input_gradients(step.D, step.real, step.y_real)
        pen = grad.flatten(1).pow(2).sum(1).mean()
        self._last = pen.detach()
        return 0.5 * self.gamma * k * pen, {"r1": self._last}


@REGULARISERS.register("clip")
class WeightClip(Regulariser):
    """Weight clipping (WGAN): after each D step every parameter of D is clamped to [-c, c],
    a crude way to keep D K-Lipschitz."""

    name = "clip"
    description = "clamp D's weights to [-c, c] after each D step (WGAN), c=0.01"
    options = {"c": 0.01}
    c: float

    @torch.no_grad()
    def after_d_step(self, D: nn.Module) -> None:
        params = [p for p in D.parameters()]
        if params:
            torch._foreach_clamp_min_(params, -self.c)
            torch._foreach_clamp_max_(params, self.c)


def ortho_weights(net: nn.Module) -> Iterable[torch.Tensor]:
    """The weights orthogonal regularisation applies to: every conv and linear weight (not
    embeddings, biases or norm gains). Under spectral norm it is the raw parameter, as in
    BigGAN, not the normalised weight that the forward pass uses."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if parametrize.is_parametrized(module, "weight"):
                yield module.parametrizations["weight"].original
            else:
                yield module.weight


def orthogonality(w: torch.Tensor) -> torch.Tensor:
    """||W W^T * (1 - I)||_F^2 with W reshaped to [out, in*k*k]: BigGAN's off-diagonal form,
    which decorrelates the filters without constraining their norms."""
    w = w.float().flatten(1)
    gram = w @ w.t()
    off = gram * (1.0 - torch.eye(gram.shape[0], device=w.device))
    return off.pow(2).sum()


@REGULARISERS.register("ortho")
class Orthogonal(Regulariser):
    """Orthogonal regularisation of G's weights (BigGAN, Brock et al. 2019): makes G amenable
    to the truncation trick. weight=1e-4 as in the paper."""

    name = "ortho"
    description = "BigGAN's orthogonal regularisation of G's weights, weight=1e-4"
    options = {"weight": 1e-4}
    curves = {"ortho": "orthogonality"}
    weight: float

    def g_term(self, step: Step) -> tuple[torch.Tensor, Logs]:
        total = sum((orthogonality(w) for w in ortho_weights(step.G)), torch.zeros(()))
        total = total.to(step.fake.device)
        return self.weight * total, {"ortho": total.detach()}


_NEEDS_CODES = (
    "the info regulariser needs a model with latent codes and a Q head (infogan); drop --reg info"
)


@REGULARISERS.register("info")
class MutualInformation(Regulariser):
    """InfoGAN's mutual-information term (Chen et al. 2016): minus a variational lower bound
    of I(c; G(z, c)), i.e. Q's negative log-likelihood of the codes that made each fake.

    Both updates minimise it, as in the paper: in D's (fake detached) it trains Q and the body
    Q shares with D; in G's it trains G to make its codes recoverable. The categorical codes
    give a cross-entropy each; the continuous ones a Gaussian NLL with fixed unit variance,
    1/2 (c - mu)^2 summed over the codes (the constant 1/2 log 2 pi left out), weighted by
    `cont_weight`. The codes come from `prior_of(G).split(z)`; Q's guesses from `D.q(fake)`.
    """

    name = "info"
    trains_outside_forward = True
    description = (
        "InfoGAN mutual-information term (needs an infogan model), weight=1, cont_weight=0.1"
    )
    options = {"weight": 1.0, "cont_weight": 0.1}
    curves = {"info_cat": "InfoGAN categorical CE", "info_cont": "InfoGAN continuous NLL"}
    weight: float
    cont_weight: float

    def check_model(self, spec: ModelSpec) -> None:
        if not spec.codes:
            raise UserError(_NEEDS_CODES)

    def loss(self, step: Step) -> tuple[torch.Tensor, Logs]:
        """(weight * (CE + cont_weight * NLL), logs) for one step's fakes."""
        prior = prior_of(step.G)
        if not isinstance(prior, InfoPrior):  # G declares its codes by its prior's type
            raise UserError(_NEEDS_CODES)
        _, codes, cont = prior.split(step.z)
        cat_logits, cont_mean = step.D.q(step.fake)
        ce = torch.zeros((), device=step.fake.device)
        correct = []
        for logits, onehot in zip(cat_logits, codes, strict=True):
            target = onehot.argmax(1)
            ce = ce + torch.nn.functional.cross_entropy(logits.float(), target)
            correct.append((logits.detach().argmax(1) == target).float().mean())
        nll = 0.5 * (cont.float() - cont_mean.float()).pow(2).sum(1).mean()
        logs = {"info_cat": ce.detach(), "info_cont": nll.detach()}
        if correct:
            logs["q_acc"] = torch.stack(correct).mean()
        return self.weight * (ce + self.cont_weight * nll), logs

    def d_term(self, step: Step) -> tuple[torch.Tensor, Logs]:
        return self.loss(step)

    def g_term(self, step: Step) -> tuple[torch.Tensor, Logs]:
        value, logs = self.loss(step)
        return value, {f"{k}_g": v for k, v in logs.items()}
