"""Discrete Goal-VAE: world-model latents <-> `n_latents x n_classes` one-hot goal codes.

The Manager chooses among this small discrete set of codes instead of acting in the
continuous latent space; decoding a code gives a goal latent on the same SimNorm
simplices as z, which the Worker (the planner) is rewarded for reaching.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tdmpc2.common.checkpoint import OwnOptimisers
from tdmpc2.common.layers import SimNorm, mlp
from tdmpc2.common.math import gumbel_noise


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _straight_through(index: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """Exact one-hot of `index` in the forward pass, the gradient of `soft` in the backward.

    `soft - soft.detach()` is exactly zero, so the forward values are exactly 0 or 1.
    """
    hard = F.one_hot(index, soft.shape[-1]).to(soft.dtype)
    return hard + (soft - soft.detach())


def _gumbel_softmax(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """A relaxed one-hot sample over the last dimension (F.gumbel_softmax, hard=False)."""
    return F.softmax((logits + gumbel_noise(logits.shape, logits.device)) / tau, dim=-1)


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1)


class GoalVAE(OwnOptimisers, nn.Module):
    """Encoder to categorical code logits, Gumbel-softmax codes, decoder back to a latent.

    Create it with the right `device`: the optimiser is built in __init__ and `.to()`
    afterwards would leave its state on the old device.
    """

    OPTIMISERS = ("optim",)

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
        _require(n_latents >= 1, f"goal_vae.n_latents must be >= 1, got {n_latents}")
        _require(n_classes >= 2, f"goal_vae.n_classes must be >= 2, got {n_classes}")
        _require(temp_start > 0, f"goal_vae.temp_start must be > 0, got {temp_start}")
        _require(temp_min > 0, f"goal_vae.temp_min must be > 0, got {temp_min}")
        _require(
            temp_min <= temp_start,
            f"goal_vae.temp_min must be <= goal_vae.temp_start, got {temp_min} > {temp_start}",
        )
        _require(anneal_steps >= 1, f"goal_vae.anneal_steps must be >= 1, got {anneal_steps}")
        _require(kl_weight >= 0, f"goal_vae.kl_weight must be >= 0, got {kl_weight}")
        _require(lr > 0, f"goal_vae.lr must be > 0, got {lr}")
        _require(
            latent_dim % simnorm_dim == 0,
            f"latent_dim ({latent_dim}) must be a multiple of simnorm_dim ({simnorm_dim})",
        )
        self.n_latents, self.n_classes = n_latents, n_classes
        self.kl_weight = kl_weight
        self.temp_start, self.temp_min, self.anneal_steps = temp_start, temp_min, anneal_steps
        self.encoder = mlp(latent_dim, [hidden_dim, hidden_dim], n_latents * n_classes)
        self.decoder = mlp(
            n_latents * n_classes, [hidden_dim, hidden_dim], latent_dim, act=SimNorm(simnorm_dim)
        )
        self.to(device)
        self.optim = torch.optim.Adam(self.parameters(), lr=lr, fused=True)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def temperature(self, step: int) -> float:
        """Gumbel-softmax temperature: exponential anneal, then held at temp_min.

        max(temp_min, temp_start * (temp_min / temp_start) ** (step / anneal_steps)): temp_start
        at step 0, their geometric mean at anneal_steps / 2, temp_min from anneal_steps on.
        Warm samples early give smooth gradients; cold ones later match the one-hot codes.
        """
        ratio = self.temp_min / self.temp_start
        return max(self.temp_min, self.temp_start * ratio ** (step / self.anneal_steps))

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Code logits [..., n_latents, n_classes]."""
        return self.encoder(z).unflatten(-1, (self.n_latents, self.n_classes))

    def encode(self, z: torch.Tensor, step: int = 0, sample: bool = True) -> torch.Tensor:
        """One-hot codes [..., n_latents, n_classes] with straight-through gradients.

        sample=True draws a Gumbel-softmax sample at temperature(step) and takes its argmax;
        sample=False takes the argmax of the logits (gradients from the softmax probabilities).
        """
        logits = self.logits(z)
        soft = _gumbel_softmax(logits, self.temperature(step)) if sample else logits.softmax(-1)
        return _straight_through(soft.argmax(-1), soft)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Goal latent [..., latent_dim] on the SimNorm simplices, like z."""
        return self.decoder(codes.flatten(-2))

    def sample_code(
        self, batch_shape: tuple[int, ...] = (), generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Uniformly random one-hot codes [*batch_shape, n_latents, n_classes].

        Used before the Manager acts; `generator` must live on the module's device.
        """
        index = torch.randint(
            self.n_classes,
            (*batch_shape, self.n_latents),
            generator=generator,
            device=self.device,
        )
        return F.one_hot(index, self.n_classes).float()

    def loss(self, z: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Reconstruction plus kl_weight * KL of the batch's code usage against uniform.

        The reconstruction error is summed over latent features (Director's Gaussian
        log-likelihood up to constants), so its weight against the KL does not shrink
        with latent_dim. The KL is taken on the code usage averaged over the batch: it
        spreads the batch over all classes, so uniformly sampled codes decode to
        realistic goals. A per-state KL to uniform would instead price every nat a code
        carries about z, and at kl_weight ~1 it collapses the encoder to uniform logits
        and the decoder to the mean latent on SimNorm latents.
        """
        z = z.detach()
        logits = self.logits(z)
        soft = _gumbel_softmax(logits, self.temperature(step))
        goal = self.decode(_straight_through(soft.argmax(-1), soft))
        recon = (goal - z).pow(2).sum(-1).mean()
        usage = logits.softmax(-1).reshape(-1, self.n_latents, self.n_classes).mean(0)
        kl = (math.log(self.n_classes) - _entropy(usage)).sum()
        total = recon + self.kl_weight * kl
        return total, {
            "goal_vae/total_loss": total.item(),
            "goal_vae/recon_loss": recon.item(),
            "goal_vae/kl_loss": kl.item(),
            "goal_vae/temperature": self.temperature(step),
        }

    def update(self, z: torch.Tensor, step: int) -> dict[str, float]:
        """One Adam step on a batch of latents; returns the loss metrics."""
        total, metrics = self.loss(z, step)
        self.optim.zero_grad(set_to_none=True)
        total.backward()
        nn.utils.clip_grad_norm_(self.parameters(), 20.0)
        self.optim.step()
        return metrics

    @torch.no_grad()
    def recon_error(self, z: torch.Tensor) -> torch.Tensor:
        """Squared error [...] of the greedy reconstruction, summed over features like the loss.

        High for states the VAE has rarely seen: the Manager's exploration bonus.
        """
        return (self.decode(self.encode(z, sample=False)) - z).pow(2).sum(-1)

    @staticmethod
    def perplexity(codes: torch.Tensor) -> float:
        """exp(entropy) of the class usage of each slot, averaged over slots.

        The effective number of classes in use: 1 when every code is the same, n_classes
        when all classes are used equally.
        """
        usage = codes.detach().float().reshape(-1, *codes.shape[-2:]).mean(0)
        return _entropy(usage).exp().mean().item()
