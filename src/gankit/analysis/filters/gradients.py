"""Gradients of one unit of D with respect to its input, under chosen activation rules.

Activation rules are applied with a `TorchFunctionMode` that intercepts ReLU and LeakyReLU
calls (modules and functional forms) for the duration of a `with` block, so the network is
never modified: nothing to restore, and in-place activations (DCGAN's) behave as before.
Guided backpropagation (Springenberg et al. 2015) lets through only positive gradients where
the input was positive, which leaves a sharp picture of the pattern a unit detects; the
"linear" rule finds a unit's whole receptive field from the support of its gradient.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ...errors import UserError
from ...modes import eval_mode
from .layers import _one, _run_to, conv_layers

RULES = ("guided", "linear")

_RELU = {torch.relu, torch.Tensor.relu, F.relu}
_LEAKY = {F.leaky_relu}
_INPLACE = {torch.relu_, torch.Tensor.relu_, F.relu_, F.leaky_relu_}


class _RuleActivation(torch.autograd.Function):
    """Leaky ReLU forward (slope 0: ReLU) with a replaced backward rule."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, slope: float, rule: str) -> torch.Tensor:
        ctx.rule = rule
        ctx.positive = x > 0  # an intermediate, not an input: kept on ctx, not saved tensors
        return F.leaky_relu(x, slope) if slope else F.relu(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        if ctx.rule == "guided":  # positive gradients through positive inputs only
            return grad.clamp(min=0) * ctx.positive, None, None
        return grad, None, None  # "linear": every path counts, whatever the input's sign


class _ActivationRule(TorchFunctionMode):
    """Routes every ReLU / LeakyReLU call through `_RuleActivation` while active."""

    def __init__(self, rule: str) -> None:
        super().__init__()
        self.rule = rule

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func in _RELU or func in _LEAKY or func in _INPLACE:
            x = args[0]
            if func is F.leaky_relu or func is F.leaky_relu_:
                slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
            else:
                slope = 0.0
            out = _RuleActivation.apply(x, float(slope), self.rule)
            if func in _INPLACE or kwargs.get("inplace", False):
                return x.copy_(out)  # callers of in-place forms may rely on x being changed
            return out
        return func(*args, **kwargs)


@contextmanager
def activation_rule(rule: str) -> Iterator[None]:
    """Within the block, ReLU / LeakyReLU backward passes follow `rule`; forward is unchanged.

    "guided": Springenberg et al.'s guided backpropagation (grad.clamp(min=0) where the
    forward input was > 0, else 0). "linear": gradients pass unchanged, so that the support
    of an input gradient is a unit's whole receptive field even where activations are off.
    Nothing in the network is modified; leaving the block ends the rule.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES} (got {rule!r})")
    with _ActivationRule(rule):
        yield


def guided_backprop() -> Any:
    """`activation_rule("guided")`: a context in which gradients are guided."""
    return activation_rule("guided")


def unit_gradient(
    D: nn.Module,
    image: torch.Tensor,  # [C, H, W] in [-1, 1]
    layer: int,  # index into feature_layers(D)
    channel: int,
    y: int,  # position in the layer's output map
    x: int,
    label: torch.Tensor | int | None = None,  # for a conditional D
    rule: str | None = None,  # None: the plain gradient; "guided" or "linear"
) -> torch.Tensor:
    """d activation[channel, y, x] / d image, [C, H, W] on the CPU (D in eval mode).

    D's parameters get no gradient (only the input is differentiated).
    """
    module = conv_layers(D)[layer]
    device = next(D.parameters()).device
    inp = image[None].to(device).float().clone().requires_grad_(True)
    with torch.enable_grad(), eval_mode(D):
        if rule is None:
            out = _run_to(D, module, inp, _one(label, device))
        else:
            with activation_rule(rule):
                out = _run_to(D, module, inp, _one(label, device))
        if out.dim() != 4:
            raise UserError(f"layer {layer} is not convolutional (output {list(out.shape)})")
        (grad,) = torch.autograd.grad(out[0, channel, y, x], inp)
    return grad[0].detach().float().cpu()


def receptive_field(
    D: nn.Module,
    image: torch.Tensor,
    layer: int,
    y: int,
    x: int,
    channel: int = 0,
    label: torch.Tensor | int | None = None,
) -> tuple[int, int, int, int]:
    """The input pixels unit (channel, y, x) of `layer` depends on, as (top, left, bottom,
    right), bottom/right exclusive, clipped to the image.

    The bounding box of the input gradient's support, with activations made linear so that
    switched-off units do not hide parts of the field. Right for any stack of convolutions,
    strides, paddings and normalisations, unlike a formula over known kernel sizes.
    """
    g = unit_gradient(D, image, layer, channel, y, x, label, rule="linear")
    support = g.abs().sum(0) > 0
    rows = torch.nonzero(support.any(1)).flatten()
    cols = torch.nonzero(support.any(0)).flatten()
    if rows.numel() == 0:
        raise UserError(f"unit ({channel}, {y}, {x}) of layer {layer} does not see the input")
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1
