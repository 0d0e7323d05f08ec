"""The Manager: picks a goal code every `goal_interval` steps, trained by actor-critic with GAE.

It only sees latents, codes and rewards; the caller adds any exploration bonus (e.g.
the Goal-VAE's reconstruction error) to the rewards, so it stays ignorant of the VAE.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Independent, OneHotCategorical

from tdmpc2.common.layers import mlp


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


class Manager(nn.Module):
    """Actor over `n_latents` independent categoricals of `n_classes`, and a critic V(z).

    Create it with the right `device`: the optimisers are built in __init__ and `.to()`
    afterwards would leave their state on the old device.
    """

    def __init__(
        self,
        latent_dim: int,
        n_latents: int,
        n_classes: int,
        hidden_dim: int = 256,
        lr: float = 3e-4,
        gamma: float = 0.99,
        lam: float = 0.95,
        entropy_coef: float = 1e-2,
        normalize_advantages: bool = True,
        grad_clip: float = 20.0,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        checks = [
            (n_latents >= 1, f"manager.n_latents must be >= 1, got {n_latents}"),
            (n_classes >= 2, f"manager.n_classes must be >= 2, got {n_classes}"),
            (lr > 0, f"manager.lr must be > 0, got {lr}"),
            (0 <= gamma <= 1, f"manager.gamma must be in [0, 1], got {gamma}"),
            (0 <= lam <= 1, f"manager.lam must be in [0, 1], got {lam}"),
            (entropy_coef >= 0, f"manager.entropy_coef must be >= 0, got {entropy_coef}"),
            (grad_clip > 0, f"manager.grad_clip must be > 0, got {grad_clip}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.n_latents, self.n_classes = n_latents, n_classes
        self.gamma, self.lam, self.entropy_coef = gamma, lam, entropy_coef
        self.normalize_advantages, self.grad_clip = normalize_advantages, grad_clip
        self.actor = mlp(latent_dim, [hidden_dim, hidden_dim], n_latents * n_classes)
        self.critic = mlp(latent_dim, [hidden_dim, hidden_dim], 1)
        for head in (self.actor[-1], self.critic[-1]):  # uniform policy and zero value at start
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.to(device)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.critic_optim = torch.optim.Adam(self.critic.parameters(), lr=lr)

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

    def value(self, z: torch.Tensor) -> torch.Tensor:
        """V(z) [B]."""
        return self.critic(z).squeeze(-1)

    def update(
        self, z: torch.Tensor, codes: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor
    ) -> dict[str, float]:
        """One actor and one critic step on a rollout of T manager decisions.

        z [T+1, B, latent_dim] (the decision states plus the bootstrap state),
        codes [T, B, n_latents, n_classes], rewards and dones [T, B].
        """
        z = z.detach()
        with torch.no_grad():
            values = self.value(z)
            advantages, returns = gae(rewards, values, dones, self.gamma, self.lam)
        adv = advantages
        if self.normalize_advantages and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)

        dist = self.dist(z[:-1])
        entropy = dist.entropy()
        actor_loss = -(dist.log_prob(codes) * adv).mean() - self.entropy_coef * entropy.mean()
        self.actor_optim.zero_grad(set_to_none=True)
        actor_loss.backward()
        nn.utils.clip_grad_norm_(self.actor.parameters(), self.grad_clip)
        self.actor_optim.step()

        critic_loss = 0.5 * F.mse_loss(self.value(z[:-1]), returns)
        self.critic_optim.zero_grad(set_to_none=True)
        critic_loss.backward()
        nn.utils.clip_grad_norm_(self.critic.parameters(), self.grad_clip)
        self.critic_optim.step()

        return {
            "manager/actor_loss": actor_loss.item(),
            "manager/critic_loss": critic_loss.item(),
            "manager/entropy": entropy.mean().item(),
            "manager/advantage": advantages.mean().item(),
            "manager/return": returns.mean().item(),
            "manager/value": values[:-1].mean().item(),
        }

    def optim_state_dict(self) -> dict:
        """Both optimisers' states, which `state_dict()` leaves out."""
        return {"actor": self.actor_optim.state_dict(), "critic": self.critic_optim.state_dict()}

    def load_optim_state_dict(self, state: dict) -> None:
        """Loads a copy: torch's loader would otherwise share (and step) the given tensors."""
        state = copy.deepcopy(state)
        self.actor_optim.load_state_dict(state["actor"])
        self.critic_optim.load_state_dict(state["critic"])
