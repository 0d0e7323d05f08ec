"""Discrete Goal-VAE: latent states <-> `n_latents x n_classes` one-hot goal codes.

The Manager acts in this small discrete code space instead of the continuous latent
space; decoding a code gives a goal latent that the Worker (the planner) pursues.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tdmpc2.common.layers import SimNorm, mlp


def goal_reward(z: torch.Tensor, goal: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Worker reward for being at latent `z` when the goal is `goal`: [..., 1].

    `l2` is the negative Euclidean distance; `cosine_max` is Director's similarity,
    the dot product divided by the larger of the two squared norms (1 at the goal).
    """
    if kind == "l2":
        return -torch.linalg.vector_norm(z - goal, dim=-1, keepdim=True)
    if kind == "cosine_max":
        dot = (z * goal).sum(-1, keepdim=True)
        norm = torch.maximum(z.pow(2).sum(-1, keepdim=True), goal.pow(2).sum(-1, keepdim=True))
        return dot / norm.clamp_min(1e-8)
    raise ValueError(f"unknown goal reward '{kind}' (expected one of {', '.join(GOAL_REWARDS)})")


GOAL_REWARDS = ("l2", "cosine_max")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def one_hot_straight_through(logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """One-hot of the argmax in the forward pass, gradients of `soft` in the backward pass."""
    hard = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return hard + soft - soft.detach()


class GoalVAE(nn.Module):
    """Encoder to code logits, Gumbel-softmax codes, decoder back to a SimNorm latent."""

    def __init__(
        self,
        latent_dim: int,
        n_latents: int,
        n_classes: int,
        hidden_dim: int = 256,
        kl_weight: float = 1.0,
        temp_start: float = 1.0,
        temp_min: float = 0.1,
        anneal_steps: int = 100_000,
        simnorm_dim: int = 8,
        lr: float = 3e-4,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        _check(n_latents >= 1, f"goal_vae.n_latents must be >= 1, got {n_latents}")
        _check(n_classes >= 2, f"goal_vae.n_classes must be >= 2, got {n_classes}")
        _check(0 < temp_min <= temp_start, "goal_vae needs 0 < temp_min <= temp_start")
        _check(anneal_steps >= 1, f"goal_vae.anneal_steps must be >= 1, got {anneal_steps}")
        _check(kl_weight >= 0, f"goal_vae.kl_weight must be >= 0, got {kl_weight}")
        self.n_latents, self.n_classes = n_latents, n_classes
        self.kl_weight = kl_weight
        self.temp_start, self.temp_min, self.anneal_steps = temp_start, temp_min, anneal_steps
        self.encoder = mlp(latent_dim, [hidden_dim, hidden_dim], n_latents * n_classes)
        self.decoder = mlp(
            n_latents * n_classes, [hidden_dim, hidden_dim], latent_dim, act=SimNorm(simnorm_dim)
        )
        self.to(device)
        self.optim = torch.optim.Adam(self.parameters(), lr=lr)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def temperature(self, step: int) -> float:
        """Exponential anneal from temp_start to temp_min over anneal_steps, then constant.

        temperature(step) = temp_start * (temp_min / temp_start) ** (step / anneal_steps)
        """
        frac = min(step / self.anneal_steps, 1.0)
        return max(self.temp_min, self.temp_start * (self.temp_min / self.temp_start) ** frac)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.encoder(z).unflatten(-1, (self.n_latents, self.n_classes))

    def encode(self, z: torch.Tensor, step: int = 0, sample: bool = True) -> torch.Tensor:
        """One-hot codes [..., n_latents, n_classes] with straight-through gradients."""
        logits = self.logits(z)
        if sample:
            soft = F.gumbel_softmax(logits, tau=self.temperature(step), hard=False, dim=-1)
            return one_hot_straight_through(soft, soft)
        return one_hot_straight_through(logits, logits.softmax(-1))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(codes.flatten(-2))

    def sample_code(
        self, batch_shape: tuple[int, ...] = (), generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Uniformly random one-hot codes (used while the Manager cannot act yet)."""
        idx = torch.randint(
            self.n_classes, (*batch_shape, self.n_latents), generator=generator, device=self.device
        )
        return F.one_hot(idx, self.n_classes).float()

    def loss(self, z: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Reconstruction error plus KL of the code distribution against uniform."""
        z = z.detach()
        logits = self.logits(z)
        soft = F.gumbel_softmax(logits, tau=self.temperature(step), hard=False, dim=-1)
        # Squared error summed over latent features (mean over the batch), so the KL term's
        # weight does not depend on latent_dim.
        recon = (self.decode(one_hot_straight_through(soft, soft)) - z).pow(2).sum(-1).mean()
        # KL of the batch's average code distribution against uniform: it spreads usage over
        # all classes without pushing each state's own code towards noise (which, per
        # sample, collapses the encoder to uniform logits and the decoder to the mean).
        usage = logits.softmax(-1).reshape(-1, self.n_latents, self.n_classes).mean(0)
        kl = (usage * (usage.clamp_min(1e-12).log() + math.log(self.n_classes))).sum()
        total = recon + self.kl_weight * kl
        return total, {
            "goal_vae/total_loss": total.item(),
            "goal_vae/recon_loss": recon.item(),
            "goal_vae/kl_loss": kl.item(),
            "goal_vae/temperature": self.temperature(step),
        }

    def update(self, z: torch.Tensor, step: int) -> dict[str, float]:
        total, metrics = self.loss(z, step)
        self.optim.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(self.parameters(), 20.0)
        self.optim.step()
        return metrics

    @torch.no_grad()
    def recon_error(self, z: torch.Tensor) -> torch.Tensor:
        """Per-sample squared error of the greedy reconstruction: high for rarely seen states."""
        return (self.decode(self.encode(z, sample=False)) - z).pow(2).sum(-1)

    @staticmethod
    def perplexity(codes: torch.Tensor) -> float:
        """exp(entropy) of code usage per slot, averaged: how many classes are in use."""
        usage = codes.detach().reshape(-1, *codes.shape[-2:]).float().mean(0)
        entropy = -(usage * usage.clamp_min(1e-12).log()).sum(-1)
        return float(entropy.exp().mean())

    def optim_state_dict(self) -> dict:
        return self.optim.state_dict()

    def load_optim_state_dict(self, state: dict) -> None:
        self.optim.load_state_dict(state)
