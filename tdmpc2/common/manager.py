"""The Manager: picks a goal code every `goal_interval` steps, trained by actor-critic with GAE.

It learns in imagination, as Director's does: from replay latents it samples codes and
lets the caller play each goal interval in the world model. It only sees latents,
codes and per-term rewards, so it stays ignorant of the Goal-VAE and the Worker.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Independent, OneHotCategorical

from tdmpc2.common.checkpoint import OwnOptimisers
from tdmpc2.common.layers import mlp
from tdmpc2.common.scale import RunningScale


def gae(
    rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and lambda-returns, both [T, B].

    rewards, dones [T, B] (dones as floats, 1 = the episode ended after step t);
    values [T+1, B] with the bootstrap value last. A done cuts both the bootstrap and
    the advantage recursion, so nothing leaks across episodes.
    """
    if values.shape[0] != rewards.shape[0] + 1:
        raise ValueError(
            f"gae needs T+1 values for T rewards, got {values.shape[0]} and {rewards.shape[0]}"
        )
    advantages = torch.empty_like(rewards)
    next_adv = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        live = 1.0 - dones[t]
        delta = rewards[t] + gamma * live * values[t + 1] - values[t]
        next_adv = delta + gamma * lam * live * next_adv
        advantages[t] = next_adv
    return advantages, advantages + values[:-1]


class Manager(OwnOptimisers, nn.Module):
    """Actor over `n_latents` independent categoricals of `n_classes`, and one critic V(z)
    with its own return normaliser per reward term.

    Director's terms: the task's reward (weight 1) and an exploration bonus (weight
    `exploration_weight`). Each term's lambda-returns are divided by that term's running
    5th-95th percentile range (at least `return_floor`) before the advantages are summed,
    so neither term's units drown the other; `advantage_norm` then scales the sum to zero
    mean and unit spread per batch, as Director does. A floor of 1 mutes a term whose
    returns span less than 1, as the Goal-VAE's reconstruction error does (measured on
    cup-catch: 0.2-0.4); Director divides by the spread itself.

    With `entropy_target` (a share of the maximum entropy, Director: 0.5) the entropy
    coefficient adapts instead of staying fixed: it grows by `ENTROPY_RATE` per update
    while the policy's entropy is below the target and shrinks while above, so a bonus
    that pulls hard towards one code cannot collapse the policy. Create it with the right
    `device`: the optimisers are built in __init__ and `.to()` afterwards would leave
    their state on the old device.
    """

    OPTIMISERS = ("actor_optim", "critic_optim")

    TERMS = ("extrinsic", "exploration")
    ENTROPY_RATE = 0.01  # multiplicative step of the adaptive coefficient per update
    ENTROPY_BOUNDS = (1e-5, 1e2)

    def __init__(
        self,
        latent_dim: int,
        n_latents: int,
        n_classes: int,
        hidden_dim: int = 256,
        lr: float = 3e-4,
        gamma: float = 0.92,
        lam: float = 0.95,
        entropy_coef: float = 0.017,
        exploration_weight: float = 0.1,
        return_floor: float = 1.0,
        advantage_norm: bool = False,
        entropy_target: float | None = None,
        grad_clip: float = 20.0,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        checks = [
            (n_latents >= 1, f"goal_vae.n_latents must be >= 1, got {n_latents}"),
            (n_classes >= 2, f"goal_vae.n_classes must be >= 2, got {n_classes}"),
            (lr > 0, f"manager.lr must be > 0, got {lr}"),
            (0 <= gamma <= 1, f"manager.gamma must be in [0, 1], got {gamma}"),
            (0 <= lam <= 1, f"manager.lam must be in [0, 1], got {lam}"),
            (entropy_coef >= 0, f"manager.entropy_coef must be >= 0, got {entropy_coef}"),
            (
                exploration_weight >= 0,
                f"manager.exploration_weight must be >= 0, got {exploration_weight}",
            ),
            (
                entropy_target is None or 0 < entropy_target < 1,
                f"manager.entropy_target must be null or in (0, 1), got {entropy_target}",
            ),
            (return_floor > 0, f"manager.return_floor must be > 0, got {return_floor}"),
            (grad_clip > 0, f"Manager grad_clip must be > 0, got {grad_clip}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.n_latents, self.n_classes = n_latents, n_classes
        self.gamma, self.lam, self.entropy_target = gamma, lam, entropy_target
        self.weights = (1.0, exploration_weight)
        self.advantage_norm = advantage_norm
        self.grad_clip = grad_clip
        self.actor = mlp(latent_dim, [hidden_dim, hidden_dim], n_latents * n_classes)
        self.critics = nn.ModuleList(
            mlp(latent_dim, [hidden_dim, hidden_dim], 1) for _ in self.TERMS
        )
        self.scales = nn.ModuleList(RunningScale(floor=return_floor) for _ in self.TERMS)
        self.register_buffer("entropy_coef", torch.tensor(float(entropy_coef)))
        for head in (self.actor[-1], *(c[-1] for c in self.critics)):  # uniform, zero value
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.to(device)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=lr, fused=True)
        self.critic_optim = torch.optim.Adam(self.critics.parameters(), lr=lr, fused=True)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # Checkpoints from before the adaptive coefficient kept it in the config only.
        state_dict.setdefault(prefix + "entropy_coef", self.entropy_coef.clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Policy logits [..., n_latents, n_classes]."""
        return self.actor(z).unflatten(-1, (self.n_latents, self.n_classes))

    def dist(self, z: torch.Tensor) -> Independent:
        """The policy: independent categoricals, one per code slot."""
        return Independent(OneHotCategorical(logits=self.logits(z)), 1)

    @torch.no_grad()
    def act(self, z: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """One-hot float codes [B, n_latents, n_classes]: a sample, or the mode if deterministic."""
        if deterministic:
            return F.one_hot(self.logits(z).argmax(-1), self.n_classes).float()
        return self.dist(z).sample()

    def max_entropy(self) -> float:
        """Entropy of the uniform policy: n_latents * log(n_classes)."""
        return self.n_latents * math.log(self.n_classes)

    @torch.no_grad()
    def imagine(
        self,
        z: torch.Tensor,
        interval: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]],
        decisions: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rolls `decisions` Manager decisions forward from latents z [B, latent].

        `interval(z, codes)` plays one goal interval in the world model and returns
        (latents at its end, extrinsic return, exploration bonus, ended), the last three
        [B]; `ended` is 1 where the world model predicted the episode's end in the
        interval (episodic tasks). Returns latents [D+1, B, latent], codes
        [D, B, n_latents, n_classes], rewards [terms, D, B] and dones [D, B].
        """
        zs, codes, rewards, dones = [z], [], [], []
        ended = torch.zeros(len(z), device=z.device)
        for _ in range(decisions):
            code = self.dist(z).sample()
            z, extrinsic, exploration, done = interval(z, code)
            zs.append(z)
            codes.append(code)
            alive = 1 - ended  # after an end, nothing more is earned
            rewards.append(torch.stack([extrinsic * alive, exploration * alive]))
            ended = torch.maximum(ended, done)
            dones.append(ended)
        return torch.stack(zs), torch.stack(codes), torch.stack(rewards, 1), torch.stack(dones)

    def update(
        self, z: torch.Tensor, codes: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """One actor (REINFORCE + entropy) and one critic step on imagined decisions.

        z [D+1, B, latent] (decision states and the bootstrap state), codes
        [D, B, n_latents, n_classes], rewards [terms, D, B], dones [D, B] (1 from the
        decision whose interval ended the episode on): returns bootstrap from the
        critics except after an end.
        """
        z = z.detach()
        values = torch.stack([critic(z).squeeze(-1) for critic in self.critics])
        advantage = torch.zeros_like(dones)
        returns = []
        for i, scale in enumerate(self.scales):
            adv, ret = gae(rewards[i], values[i].detach(), dones, self.gamma, self.lam)
            scale.update(ret)
            advantage = advantage + self.weights[i] * adv / scale.value
            returns.append(ret)
        returns = torch.stack(returns)
        if self.advantage_norm:
            advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)

        # The distribution's log-prob and entropy by hand: torch.distributions validates
        # its arguments on every call, a third of this update's time on the CPU.
        log_probs = F.log_softmax(self.logits(z[:-1]), -1)
        entropy = -(log_probs.exp() * log_probs).sum((-2, -1))
        log_prob = (codes * log_probs).sum((-2, -1))
        # Decisions after an imagined end are not the Manager's to learn from.
        live = torch.cat([torch.ones_like(dones[:1]), 1 - dones[:-1]])
        # Entropy as a share of its maximum (Director's normalised entropy bonus): the
        # coefficient means the same for every code shape.
        share = (entropy * live).mean() / self.max_entropy()
        bonus = self.entropy_coef * share
        actor_loss = -(log_prob * advantage * live).mean() - bonus
        self.actor_optim.zero_grad(set_to_none=True)
        actor_loss.backward()
        nn.utils.clip_grad_norm_(self.actor.parameters(), self.grad_clip)
        self.actor_optim.step()

        if self.entropy_target is not None:
            self._adapt_entropy_coef(share.detach())

        critic_loss = 0.5 * F.mse_loss(values[:, :-1] * live, returns * live)
        self.critic_optim.zero_grad(set_to_none=True)
        critic_loss.backward()
        nn.utils.clip_grad_norm_(self.critics.parameters(), self.grad_clip)
        self.critic_optim.step()
        metrics = {
            "manager/actor_loss": actor_loss.detach(),
            "manager/critic_loss": critic_loss.detach(),
            "manager/entropy": entropy.detach().mean(),
            "manager/advantage": advantage.mean(),
            "manager/entropy_coef": self.entropy_coef.clone(),
        }
        for term, ret in zip(self.TERMS, returns, strict=True):
            metrics[f"manager/return_{term}"] = ret.mean()
        return metrics

    @torch.no_grad()
    def _adapt_entropy_coef(self, share: torch.Tensor) -> None:
        """Director's multiplicative rule; torch.where keeps it free of host syncs."""
        step = torch.where(
            share < self.entropy_target, 1 + self.ENTROPY_RATE, 1 / (1 + self.ENTROPY_RATE)
        )
        self.entropy_coef.mul_(step).clamp_(*self.ENTROPY_BOUNDS)
