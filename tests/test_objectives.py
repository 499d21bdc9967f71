"""The GAN maths, checked against the formulas on known discriminator outputs."""

from __future__ import annotations

import math

import pytest
import torch

from gankit.errors import UserError
from gankit.objectives import OBJECTIVES, create_objective, list_objectives
from tests.conftest import SignD


def test_registry():
    assert {"nonsaturating", "minimax"} <= set(list_objectives())
    with pytest.raises(UserError, match="unknown objective"):
        create_objective("wasserstein-ish")


@pytest.mark.parametrize("name", ["nonsaturating", "minimax"])
def test_d_loss_is_binary_cross_entropy(name):
    real_p = torch.tensor([0.9, 0.6, 0.99])
    fake_p = torch.tensor([0.2, 0.5, 0.01])
    logit = lambda p: torch.log(p / (1 - p))  # noqa: E731
    D = SignD(logit(real_p), logit(fake_p))
    loss, logs = create_objective(name).d_loss(D, torch.ones(3), -torch.ones(3), None, None)
    # D maximises E log D(x) + E log(1 - D(G(z))); the loss is the negative of that
    expected = -(torch.log(real_p).mean() + torch.log(1 - fake_p).mean())
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(logs["d_real"], real_p.mean())
    torch.testing.assert_close(logs["d_fake"], fake_p.mean())


def test_generator_losses_match_their_definitions():
    p = torch.tensor([0.1, 0.3, 0.7])
    logits = torch.log(p / (1 - p))
    D = SignD(logits, logits)
    ns, _ = create_objective("nonsaturating").g_loss(D, torch.ones(3), None)
    mm, _ = create_objective("minimax").g_loss(D, torch.ones(3), None)
    torch.testing.assert_close(ns, -torch.log(p).mean())
    torch.testing.assert_close(mm, torch.log(1 - p).mean())


def test_minimax_saturates_where_nonsaturating_does_not():
    """When D confidently rejects fakes, log(1 - D) gives G almost no gradient."""
    grads = {}
    for name in ("nonsaturating", "minimax"):
        logit = torch.tensor([-8.0], requires_grad=True)
        D = SignD(logit, logit)
        loss, _ = create_objective(name).g_loss(D, torch.ones(1), None)
        (g,) = torch.autograd.grad(loss, logit)
        grads[name] = g.abs().item()
    assert grads["minimax"] < 1e-3
    assert grads["nonsaturating"] > 0.99


def test_losses_are_stable_for_extreme_logits():
    big = torch.tensor([80.0, -80.0])
    D = SignD(big, -big)
    for name in ("nonsaturating", "minimax"):
        obj = create_objective(name)
        ld, _ = obj.d_loss(D, torch.ones(2), -torch.ones(2), None, None)
        lg, _ = obj.g_loss(D, -torch.ones(2), None)
        assert math.isfinite(ld.item()) and math.isfinite(lg.item())


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_state_round_trip(name):
    obj = create_objective(name)
    state = obj.state_dict()
    create_objective(name).load_state_dict(state)
    assert create_objective(obj.spec()).spec() == obj.spec()  # options survive a round trip


def test_least_squares_matches_its_definition():
    real_out = torch.tensor([1.0, 0.5, 2.0])
    fake_out = torch.tensor([0.0, -1.0, 0.25])
    D = SignD(real_out, fake_out)
    obj = create_objective("least-squares")
    ld, logs = obj.d_loss(D, torch.ones(3), -torch.ones(3), None, None)
    # 1/2 mean((x - 1)^2) + 1/2 mean(f^2), written out
    want_d = 0.5 * (0 + 0.25 + 1) / 3 + 0.5 * (0 + 1 + 0.0625) / 3
    torch.testing.assert_close(ld, torch.tensor(want_d))
    torch.testing.assert_close(logs["d_real"], real_out.mean())
    lg, _ = obj.g_loss(D, -torch.ones(3), None)
    torch.testing.assert_close(lg, torch.tensor(0.5 * (1 + 4 + 0.5625) / 3))
    # The optimum D of the paper's a, b = 0, 1 outputs exactly b on reals and a on fakes: loss 0.
    perfect = SignD(torch.ones(3), torch.zeros(3))
    assert obj.d_loss(perfect, torch.ones(3), -torch.ones(3), None, None)[0].item() == 0.0


def test_hinge_only_penalises_inside_the_margin():
    D = SignD(torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-3.0, 0.0, 1.0]))
    obj = create_objective("hinge")
    ld, _ = obj.d_loss(D, torch.ones(3), -torch.ones(3), None, None)
    # relu(1 - x): 0, 0.5, 2 ; relu(1 + f): 0, 1, 2
    torch.testing.assert_close(ld, torch.tensor((0 + 0.5 + 2) / 3 + (0 + 1 + 2) / 3))
    lg, _ = obj.g_loss(D, -torch.ones(3), None)
    torch.testing.assert_close(lg, torch.tensor(-(-3.0 + 0.0 + 1.0) / 3))
    # Beyond the margin D gets no gradient: scores of well-separated samples stop growing.
    out = torch.tensor([5.0], requires_grad=True)
    obj.d_loss(SignD(out, torch.tensor([-5.0])), torch.ones(1), -torch.ones(1), None, None)[
        0
    ].backward()
    assert out.grad is not None and out.grad.item() == 0.0


def test_the_loss_figure_draws_the_curves_a_piece_declares(tmp_path):
    """A new objective's logged scalars reach the figure through its `curves`, with no edit
    of viz: the third panel appears for a declared key and only then."""
    import json

    from PIL import Image

    from gankit import viz

    class Custom(create_objective("hinge").__class__):
        curves = {"my_scalar": "my objective's scalar"}

    log = tmp_path / "metrics.jsonl"
    row = {"loss_d": 1.0, "loss_g": 2.0, "d_real": 0.5, "d_fake": 0.4}
    rows = [{"kimg": i / 10, **row, "my_scalar": float(i)} for i in range(5)]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert viz.declared_curves([Custom()]) == {"my_scalar": "my objective's scalar"}
    widths = {}
    for what, curves in (("declared", viz.declared_curves([Custom()])), ("none", None)):
        out = viz.plot_losses(log, tmp_path / f"{what}.png", curves=curves)
        assert out is not None
        widths[what] = Image.open(out).width
    assert widths == {"declared": 1600, "none": 1100}  # three panels against two
