"""eval_mode: eval inside the block, every sub-module's own flag back after, even on error."""

import pytest
import torch
from torch import nn

from gankit.modes import eval_mode


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))


def test_eval_inside_and_mixed_flags_restored():
    a, b = _net(), _net()
    a.train()
    a[1].eval()  # a frozen batch norm inside a training net
    b.eval()
    before = [m.training for m in (*a.modules(), *b.modules())]
    with eval_mode(a, b):
        assert not any(m.training for m in (*a.modules(), *b.modules()))
    assert [m.training for m in (*a.modules(), *b.modules())] == before
    assert before[:3] == [True, True, False]


def test_restored_when_the_block_raises():
    a = _net().train()
    with pytest.raises(RuntimeError, match="boom"), eval_mode(a):
        raise RuntimeError("boom")
    assert all(m.training for m in a.modules())


def test_eval_output_uses_running_statistics():
    a = _net().train()
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    with eval_mode(a):
        first = a(x)
    a.eval()
    torch.testing.assert_close(first, a(x))
