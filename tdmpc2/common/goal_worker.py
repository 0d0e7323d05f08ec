"""The Worker's goal-conditioned half: a goal critic and a goal-conditioned policy prior.

The planner (TD-MPC2's MPPI) stays the Worker that acts. It sees a goal only over its
3-step horizon unless something values goals beyond it: the goal critic Q_g(z, a, g)
gives that value (`value`, the planner's GoalTerm reads it as `goal_value`), and the policy
prior pi_g(z, g) is how the Manager imagines the Worker pursuing a goal. Both learn
from replay transitions with goals relabelled in hindsight (latents reached later in
the same episode, `sample_relabelled`) or decoded from random codes (the goals the
Manager hands out).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tdmpc2.common.buffer import Buffer
from tdmpc2.common.checkpoint import OwnOptimisers
from tdmpc2.common.layers import QEnsemble, mlp
from tdmpc2.common.math import gaussian_logprob, squash
from tdmpc2.common.multitask_buffer import MultitaskBuffer
from tdmpc2.common.planning_terms import goal_similarity


class GoalWorker(OwnOptimisers, nn.Module):
    """pi_g(z, g) and two goal critics with Polyak targets, all scaled to [0, 1].

    Q_g is the (1 - gamma)-weighted discounted sum of future goal similarities
    (`goal_similarity` at `goal_temperature`), so it lies in [0, 1] like them; the
    planner's goal term multiplies it by the goal weight. Create it on the right
    `device`: the optimisers are built in __init__.
    """

    OPTIMISERS = ("pi_optim", "q_optim")

    def __init__(
        self,
        latent_dim: int,
        action_dim: int,
        hidden_dim: int = 256,
        goal_discount: float = 0.9,
        goal_temperature: float = 0.0,
        goal_coef: float = 1.0,
        task_coef: float = 1.0,
        lr: float = 3e-4,
        tau: float = 0.01,
        entropy_coef: float = 1e-4,
        log_std_min: float = -10.0,
        log_std_max: float = 2.0,
        grad_clip: float = 20.0,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        if not 0 <= goal_discount < 1:
            raise ValueError(f"worker.goal_discount must be in [0, 1), got {goal_discount}")
        if hidden_dim < 1 or lr <= 0:
            raise ValueError(f"worker.hidden_dim and worker.lr must be > 0, got {hidden_dim}, {lr}")
        self.action_dim = action_dim
        self.goal_discount, self.goal_coef, self.tau = goal_discount, goal_coef, tau
        self.goal_temperature = goal_temperature
        self.task_coef = task_coef
        self.entropy_coef, self.grad_clip = entropy_coef * action_dim, grad_clip
        self.log_std_min, self.log_std_dif = log_std_min, log_std_max - log_std_min
        self._pi = mlp(2 * latent_dim, [hidden_dim, hidden_dim], 2 * action_dim)
        # Inputs [z, g, a]: the two heads run as batched matmuls, and the policy loss
        # can take d/d action alone (as the world model's critics do).
        self._Qs = QEnsemble(2, 2 * latent_dim + action_dim, hidden_dim, 1)
        nn.init.zeros_(self._Qs.weights[-1])  # start at zero value
        self._target_Qs = copy.deepcopy(self._Qs).requires_grad_(False)
        self.to(device)
        self.pi_optim = torch.optim.Adam(self._pi.parameters(), lr=lr, eps=1e-5, fused=True)
        self.q_optim = torch.optim.Adam(self._Qs.parameters(), lr=lr, fused=True)

    def pi(
        self, z: torch.Tensor, goal: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tanh-Gaussian policy prior given the goal: (mean, sampled action, log-prob).

        `mask` (multi-task: 1 in each row's task's own action dimensions, 0 in the padding)
        zeroes mean, noise and log-std in the padding, as the world model's prior does, so
        the critics only ever see actions a task can take.
        """
        mu, log_std = self._pi(torch.cat([z, goal], -1)).chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * self.log_std_dif * (torch.tanh(log_std) + 1)
        eps = torch.randn_like(mu)
        if mask is not None:
            mu, log_std, eps = mu * mask, log_std * mask, eps * mask
        log_pi = gaussian_logprob(eps, log_std)
        return squash(mu, mu + eps * log_std.exp(), log_pi)

    def q(
        self,
        z: torch.Tensor,
        action: torch.Tensor,
        goal: torch.Tensor,
        target: bool = False,
        detach: bool = False,
    ) -> torch.Tensor:
        """Both critics' values [2, ..., 1]; `detach` freezes them (d/d action only)."""
        qnet = self._target_Qs if target else self._Qs
        return qnet(torch.cat([z, goal], -1), detach=detach, action=action)

    @torch.no_grad()
    def value(
        self, z: torch.Tensor, goal: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Goal value [N, 1] in [0, 1] of latents z under pi_g: the GoalTerm's `goal_value`."""
        mu = self.pi(z, goal.expand_as(z), mask)[0]
        return self.q(z, mu, goal.expand_as(z)).mean(0).clamp(0, 1)

    @torch.no_grad()
    def td_target(
        self,
        next_z: torch.Tensor,
        goal: torch.Tensor,
        mask: torch.Tensor | None = None,
        terminated: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(1 - gamma) * similarity(z', g) + gamma * min target Q_g(z', pi_g(z', g), g),
        without the second term where z' ended the episode (`terminated` [B, 1])."""
        action = self.pi(next_z, goal, mask)[1]
        next_q = self.q(next_z, action, goal, target=True).min(0).values.clamp(0, 1)
        if terminated is not None:
            next_q = next_q * (1 - terminated)
        gamma = self.goal_discount
        similarity = goal_similarity(next_z, goal, self.goal_temperature)
        return (1 - gamma) * similarity + gamma * next_q

    def update(
        self,
        z: torch.Tensor,
        action: torch.Tensor,
        next_z: torch.Tensor,
        goal: torch.Tensor,
        task_value: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        mask: torch.Tensor | None = None,
        terminated: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """One critic step (TD on the relabelled goals) and one policy step.

        The policy maximises what the planner maximises while training, divided by the
        Q range: task_coef * `task_value(z, a)` (the world model's Q over its running
        range, critics frozen) plus goal_coef * Q_g, plus entropy. `mask`: see `pi`;
        `terminated`: see `td_target`.
        """
        z, next_z, goal = z.detach(), next_z.detach(), goal.detach()
        target = self.td_target(next_z, goal, mask, terminated)
        q_loss = F.mse_loss(self.q(z, action, goal), target.expand(2, -1, -1))
        q_loss.backward()
        nn.utils.clip_grad_norm_(self._Qs.parameters(), self.grad_clip)
        self.q_optim.step()
        self.q_optim.zero_grad(set_to_none=True)

        _, pi, log_pi = self.pi(z, goal, mask)
        goal_q = self.q(z, pi, goal, detach=True).mean(0)
        objective = (
            self.task_coef * task_value(z, pi)
            + self.goal_coef * goal_q
            - self.entropy_coef * log_pi
        )
        pi_loss = -objective.mean()
        pi_loss.backward()  # the critics are frozen here: only pi gets gradients
        nn.utils.clip_grad_norm_(self._pi.parameters(), self.grad_clip)
        self.pi_optim.step()
        self.pi_optim.zero_grad(set_to_none=True)
        with torch.no_grad():
            torch._foreach_lerp_(
                list(self._target_Qs.parameters()), list(self._Qs.parameters()), self.tau
            )
        return {
            "worker/goal_q_loss": q_loss.detach(),
            "worker/goal_pi_loss": pi_loss.detach(),
            "worker/goal_value": goal_q.detach().mean(),
        }


def sample_relabelled(
    buffer: Buffer | MultitaskBuffer, max_offset: int, batch_size: int | None = None
) -> dict[str, torch.Tensor]:
    """Replay transitions with hindsight goals, what the goal critic and the Goal-VAE
    learn from: obs, action, next_obs, goal_obs and terminated (1 where next_obs ended
    the episode by a true termination), each [B, ...]; a task set's batch adds `task` [B].

    goal_obs is the observation 1..max_offset steps (uniform) after obs in the same
    episode; an offset past the episode's end falls back to next_obs. It reads the
    buffer's storage and draws from its generator, as `Buffer.sample` does.
    """
    if isinstance(buffer, MultitaskBuffer):  # each row from its own task's replay
        return buffer.draw(batch_size, lambda part, n: sample_relabelled(part, max_offset, n), 0)
    start = buffer._draw_starts(batch_size or buffer.batch_size)
    following = (start + 1) % buffer.capacity
    offset = torch.randint(1, int(max_offset) + 1, start.shape, generator=buffer._generator)
    goal = (start + offset) % buffer.capacity
    same = (buffer._episode[goal] == buffer._episode[start]) & (
        buffer._index[goal] - buffer._index[start] == offset
    )
    goal = torch.where(same, goal, following)
    batch = {
        "obs": buffer._stacked_obs(start),
        "action": buffer._action[start],
        "next_obs": buffer._stacked_obs(following),
        "goal_obs": buffer._stacked_obs(goal),
        "terminated": buffer._terminated[start],
    }
    return {k: v.to(buffer.device) for k, v in batch.items()}
