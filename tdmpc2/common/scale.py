"""Running scale of Q-values for the policy loss."""

from __future__ import annotations

import torch
from torch import nn


class RunningScale(nn.Module):
    """Tracks the 5th-95th percentile range of Q so the policy loss is scale-free.

    The range is smoothed with rate `tau` and never drops below `floor` (TD-MPC2: 1), so
    tiny early Q-values are not blown up; a lower floor lets a small-valued quantity
    count as much as its spread says.
    """

    def __init__(self, tau: float = 0.01, floor: float = 1.0) -> None:
        super().__init__()
        self.tau, self.floor = tau, floor
        self.register_buffer("percentiles", torch.zeros(2))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @property
    def value(self) -> torch.Tensor:
        return (self.percentiles[1] - self.percentiles[0]).clamp_min(self.floor)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        q = torch.quantile(
            x.detach().flatten().float(), torch.tensor([0.05, 0.95], device=x.device)
        )
        # torch.where instead of a Python branch keeps the update free of host syncs.
        self.percentiles.copy_(torch.where(self.initialised, self.percentiles.lerp(q, self.tau), q))
        self.initialised.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.value
