"""Latent walks and arithmetic: endpoints, norms, the a - b + c identity."""

from __future__ import annotations

import torch

from gankit.analysis.latent_walks import (
    arithmetic,
    lerp,
    slerp,
    smoothness,
    walk_latents,
)
from gankit.latent import prior_of
from gankit.models import create_model
from tests.conftest import tiny_overrides


def _g():
    torch.manual_seed(0)
    return create_model("dcgan", **tiny_overrides("dcgan")).G.eval()


def test_walk_endpoints_are_the_seeds_samples():
    G = _g()
    for spherical in (False, True):
        z = walk_latents(G, [3, 17, 42], steps=5, spherical=spherical)
        assert z.shape == (9, 8)
        seeds = prior_of(G).from_seeds([3, 17, 42])
        torch.testing.assert_close(z[[0, 4, 8]], seeds, rtol=1e-5, atol=1e-5)
        with torch.no_grad():
            torch.testing.assert_close(G(z[[0, 4, 8]]), G(seeds), rtol=1e-4, atol=1e-5)


def test_slerp_keeps_the_norm_and_lerp_does_not():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, generator=g), torch.randn(64, generator=g)
    b = b / b.norm() * a.norm()  # equal norms
    t = torch.linspace(0, 1, 11)
    norms = slerp(a, b, t).norm(dim=1)
    torch.testing.assert_close(norms, torch.full_like(norms, float(a.norm())), rtol=1e-5, atol=0)
    assert lerp(a, b, t).norm(dim=1)[5] < 0.9 * a.norm()  # the straight line cuts inside
    c = 2 * b  # unequal norms: the norm moves linearly
    torch.testing.assert_close(slerp(a, c, t).norm(dim=1), a.norm() + t * (c.norm() - a.norm()))


def test_arithmetic_with_b_equal_c_returns_a_mean():
    G = _g()
    out = arithmetic(G, [1, 2, 3], [4, 5, 6], [4, 5, 6])
    torch.testing.assert_close(out, prior_of(G).from_seeds([1, 2, 3]).mean(0))
    other = arithmetic(G, [1, 2, 3], [4, 5, 6], [7, 8, 9])
    assert not torch.allclose(out, other)


def test_smoothness_finds_a_jump():
    frames = torch.linspace(0, 1, 10)[:, None, None, None].expand(10, 1, 4, 4).clone()
    even = smoothness(frames)
    assert abs(even.max_over_mean - 1.0) < 1e-5  # equal steps
    frames[5:] += 2.0  # a jump between frames 4 and 5
    assert smoothness(frames).max_over_mean > 5
