"""ADA's p controller (Karras et al. 2020, section 2.3): the overfitting heuristic
r_t = E[sign(D(real))] over the last `interval` D steps moves p by
sign(r_t - target) * (batch * interval) / (kimg * 1000), clipped to [0, 1].

So p can go from 0 to 1 in `kimg` thousand real images. Everything stays a tensor on the
device between updates (no host sync per step); `state_dict` gives exact JSON for checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..config import TrainConfig

# The defaults are the settings' (why 20 kimg: beside TrainConfig.ada_kimg).
DEFAULT_KIMG: float = TrainConfig.ada_kimg
DEFAULT_TARGET: float = TrainConfig.ada_target  # the paper's
INTERVAL = 4  # D steps between updates, as in stylegan2-ada


class AdaController:
    """Adjusts ADA's augmentation probability p from D's outputs on real images.

    Args:
        batch_size: real images per D step (all processes together).
        kimg: thousands of real images for p to go from 0 to 1.
        target: the r_t that p holds D at.
        interval: D steps between updates of p.
    """

    def __init__(
        self,
        batch_size: int,
        kimg: float = DEFAULT_KIMG,
        target: float = DEFAULT_TARGET,
        interval: int = INTERVAL,
    ) -> None:
        # a step beyond 1 crosses the whole range anyway; capped, it cannot be inf
        self.rate = min(batch_size * interval / (kimg * 1000), 1.0)
        self.target = target
        self.interval = interval
        self.p = torch.zeros(())  # p_0 = 0, as in the paper
        self.r_t = torch.zeros(())  # the last update's r_t (logged)
        self.sign_sum = torch.zeros(())  # sum of sign(D(real)) since the last update
        self.count = torch.zeros(())  # how many outputs that sum is over
        self.d_steps = 0  # D steps since the last update

    def to(self, device: torch.device | str) -> AdaController:
        for key in ("p", "r_t", "sign_sum", "count"):
            setattr(self, key, getattr(self, key).to(device))
        return self

    def observe(self, real_out: torch.Tensor) -> None:
        """Add one D step's outputs on the real batch (logits whose sign means real/fake)."""
        out = real_out.detach().float()
        self.sign_sum = self.sign_sum.to(out.device) + out.sign().sum()
        self.count = self.count.to(out.device) + out.numel()

    def after_d_step(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Count a D step; every `interval` of them, move p. `reduce` averages a tensor over
        the processes (data parallel), so that every rank moves p alike."""
        self.d_steps += 1
        if self.d_steps < self.interval:
            return
        sums = torch.stack([self.sign_sum, self.count.to(self.sign_sum.device)])
        if reduce is not None:
            sums = reduce(sums)
        seen = sums[1] > 0
        r_t = sums[0] / sums[1].clamp_min(1)
        step = torch.sign(r_t - self.target) * self.rate
        p = self.p.to(r_t.device)
        self.p = torch.where(seen, (p + step).clamp(0.0, 1.0), p)
        self.r_t = torch.where(seen, r_t, self.r_t.to(r_t.device))
        self.sign_sum = torch.zeros_like(self.sign_sum)
        self.count = torch.zeros_like(self.count)
        self.d_steps = 0

    def state_dict(self) -> dict[str, Any]:
        # float32 -> Python float is exact, and so is the way back
        return {
            "p": float(self.p),
            "r_t": float(self.r_t),
            "sign_sum": float(self.sign_sum),
            "count": float(self.count),
            "d_steps": self.d_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        keys = {"p", "r_t", "sign_sum", "count", "d_steps"}
        if set(state) != keys:
            raise ValueError(f"ADA's state has the keys {sorted(keys)}, got {sorted(state)}")
        values = [state[k] for k in ("p", "r_t", "sign_sum", "count", "d_steps")]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ValueError(f"ADA's state must hold numbers, got {state}")
        p, r_t, sign_sum, count, d_steps = values
        if not (0 <= p <= 1 and -1 <= r_t <= 1 and count >= 0 and abs(sign_sum) <= count):
            raise ValueError(f"ADA's state is out of range: {state}")
        if not 0 <= d_steps < self.interval or d_steps != int(d_steps):
            raise ValueError(f"ADA's d_steps must be a count below {self.interval}: {state}")
        device = self.p.device
        for key in ("p", "r_t", "sign_sum", "count"):
            setattr(self, key, torch.tensor(float(state[key]), dtype=torch.float32, device=device))
        self.d_steps = int(state["d_steps"])
