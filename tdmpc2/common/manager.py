"""The Manager: picks a goal code every `goal_interval` steps, trained by actor-critic with GAE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Independent, OneHotCategorical

from tdmpc2.common.layers import mlp


def gae(
    rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns.

    rewards, dones [T, B]; values [T+1, B] with the bootstrap value last. A done at
    step t stops both the bootstrap and the advantage recursion across it.
    """
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        live = 1.0 - dones[t]
        delta = rewards[t] + gamma * live * values[t + 1] - values[t]
        running = delta + gamma * lam * live * running
        advantages[t] = running
    return advantages, advantages + values[:-1]


class Manager(nn.Module):
    """Actor over `n_latents` independent categoricals and a critic V(z)."""

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
        if n_latents < 1 or n_classes < 2:
            raise ValueError(
                f"the manager needs n_latents >= 1 and n_classes >= 2, got {n_latents}, {n_classes}"
            )
        if not (0 <= gamma <= 1 and 0 <= lam <= 1):
            raise ValueError(f"manager.gamma and manager.lam must be in [0, 1], got {gamma}, {lam}")
        self.n_latents, self.n_classes = n_latents, n_classes
        self.gamma, self.lam, self.entropy_coef = gamma, lam, entropy_coef
        self.normalize_advantages, self.grad_clip = normalize_advantages, grad_clip
        self.actor = mlp(latent_dim, [hidden_dim, hidden_dim], n_latents * n_classes)
        self.critic = mlp(latent_dim, [hidden_dim, hidden_dim], 1)
        for head in (self.actor[-1], self.critic[-1]):  # uniform policy, zero value at start
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.to(device)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.critic_optim = torch.optim.Adam(self.critic.parameters(), lr=lr)

    def dist(self, z: torch.Tensor) -> Independent:
        logits = self.actor(z).unflatten(-1, (self.n_latents, self.n_classes))
        return Independent(OneHotCategorical(logits=logits), 1)

    @torch.no_grad()
    def act(self, z: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Codes [B, n_latents, n_classes]: sampled in training, the mode when deterministic."""
        dist = self.dist(z)
        if deterministic:
            probs = dist.base_dist.probs
            return F.one_hot(probs.argmax(-1), self.n_classes).float()
        return dist.sample()

    def value(self, z: torch.Tensor) -> torch.Tensor:
        return self.critic(z).squeeze(-1)

    def update(
        self, z: torch.Tensor, codes: torch.Tensor, rewards: torch.Tensor, dones: torch.Tensor
    ) -> dict[str, float]:
        """One actor and one critic step on a rollout of T manager decisions.

        z [T+1, B, latent] (decision states plus the bootstrap state), codes [T, B, n, k],
        rewards and dones [T, B].
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
            "manager/advantage": float(advantages.mean()),
            "manager/return": float(returns.mean()),
            "manager/value": float(values[:-1].mean()),
        }

    def optim_state_dict(self) -> dict:
        return {"actor": self.actor_optim.state_dict(), "critic": self.critic_optim.state_dict()}

    def load_optim_state_dict(self, state: dict) -> None:
        self.actor_optim.load_state_dict(state["actor"])
        self.critic_optim.load_state_dict(state["critic"])
