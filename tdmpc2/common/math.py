"""Numerical helpers shared by the world model and the agent.

Reward and value heads regress discretised (two-hot) symlog targets: cross-entropy
over bins is scale-free, so one set of hyperparameters works across tasks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def symlog(x: torch.Tensor) -> torch.Tensor:
    """Compresses large magnitudes so rewards of any scale fit the same bins."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


class TwoHot:
    """Two-hot encoding of scalars over `num_bins` evenly spaced symlog bins."""

    def __init__(self, num_bins: int, vmin: float, vmax: float) -> None:
        if num_bins < 2:
            raise ValueError(f"num_bins must be at least 2, got {num_bins}")
        self.num_bins = num_bins
        self.vmin = vmin
        self.vmax = vmax
        self.bin_size = (vmax - vmin) / (num_bins - 1)
        self._bins: dict[torch.device, torch.Tensor] = {}

    def bins(self, device: torch.device) -> torch.Tensor:
        """Bin centres [num_bins, 1], cached per device.

        Built outside inference mode even when planning asks first: autograd cannot save
        an inference tensor, and the update's losses decode with the same cache.
        """
        if device not in self._bins:
            with torch.inference_mode(False):
                bins = torch.linspace(self.vmin, self.vmax, self.num_bins, device=device)
            self._bins[device] = bins.unsqueeze(-1)
        return self._bins[device]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Scalars [..., 1] -> two-hot targets [..., num_bins].

        A NaN scalar gives a NaN target (a NaN loss the update can skip), not a bad index.
        """
        x = symlog(x.squeeze(-1)).clamp(self.vmin, self.vmax)
        pos = (x - self.vmin) / self.bin_size
        lo = pos.nan_to_num(0).floor().clamp(max=self.num_bins - 2)
        frac = (pos - lo).unsqueeze(-1)
        lo = lo.long().unsqueeze(-1)
        out = torch.zeros(*x.shape, self.num_bins, device=x.device, dtype=x.dtype)
        out.scatter_(-1, lo, 1 - frac)
        out.scatter_add_(-1, lo + 1, frac)
        return out

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits [..., num_bins] -> expected value [..., 1] in the original scale."""
        probs = F.softmax(logits, dim=-1)
        return symexp(probs @ self.bins(logits.device))

    def cross_entropy(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample cross-entropy [..., 1] between logits and the two-hot of `target`."""
        log_probs = F.log_softmax(logits, dim=-1)
        return -(self.encode(target) * log_probs).sum(-1, keepdim=True)


def gaussian_logprob(eps: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Log-density of a diagonal Gaussian sample given its standardised noise."""
    return (-0.5 * eps.pow(2) - log_std - LOG_SQRT_2PI).sum(-1, keepdim=True)


def squash(
    mu: torch.Tensor, pi: torch.Tensor, log_pi: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Applies tanh and the change-of-variables correction to the log-density."""
    mu = torch.tanh(mu)
    pi = torch.tanh(pi)
    log_pi = log_pi - torch.log(F.relu(1 - pi.pow(2)) + 1e-6).sum(-1, keepdim=True)
    return mu, pi, log_pi


def discount_for(episode_length: int, denom: float, low: float, high: float) -> float:
    """Heuristic discount: longer episodes plan further ahead, within [low, high]."""
    frac = episode_length / denom
    return float(min(max((frac - 1) / frac, low), high))


def gumbel_noise(
    shape: torch.Size, device: torch.device | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Standard Gumbel samples -log(-log(U)): on the CPU about five times cheaper than the
    -log(Exponential) that F.gumbel_softmax draws, which ATen samples element by element."""
    u = torch.rand(shape, device=device, generator=generator)
    return -torch.log(-torch.log(u.clamp_min(1e-20)))


def gumbel_sample(scores: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Index drawn with probability proportional to `scores` (non-negative weights)."""
    gumbel = gumbel_noise(scores.shape, scores.device, generator)
    return (torch.log(scores.clamp_min(1e-20)) + gumbel).argmax(-1)
