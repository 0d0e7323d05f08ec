"""Planning terms: what a hierarchy adds to the TD-MPC2 planner's value of each candidate.

The flat planner ranks MPPI's candidate action sequences by the task value alone (the
discounted imagined reward plus Q at the end). A planning term adds one more quantity
to that value: the agent calls `step` at each imagined latent of a rollout and sums the
parts, then `value` turns the sum (with the rollout's last latents) into what the term
adds to each candidate. Flat TD-MPC2 plans with no terms; the Director hierarchy plans
with a `GoalTerm` (pursue the Manager's goal) and, optionally, a `NoveltyTerm` (seek
states the Goal-VAE reconstructs badly). A new term is one class here; the agent does
not change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from tdmpc2.common.scale import RunningScale

# (latents, goal, action mask) -> [N, 1] in [0, 1]: the discounted goal similarity still to
# come beyond the planning horizon; the mask (None in a single-task run) marks the planned
# task's own action dimensions.
GoalValue = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
# latents [N, latent] -> [N]: how unlike the replay they are.
Novelty = Callable[[torch.Tensor], torch.Tensor]
Scalar = float | torch.Tensor  # a discount or alive mask: a number, or one per rollout [N, 1]
# A term whose spread over the candidates is below this counts as this spread.
TERM_SPREAD_FLOOR = 0.01


class PlanningTerm(Protocol):
    """One quantity the planner adds to the task value of each candidate.

    `task_weight` is what the task value counts for while this term plans (1: as in
    flat TD-MPC2); the agent multiplies the terms' weights.
    """

    name: str
    task_weight: float

    def step(self, t: int, z: torch.Tensor, discount: Scalar, alive: Scalar) -> torch.Tensor:
        """The part [N, 1] at the t-th imagined latents z; `discount` and `alive` are the
        task reward's at that step (alive: 0 after a predicted termination)."""
        ...

    def value(
        self,
        inside: torch.Tensor,
        z: torch.Tensor,
        alive: Scalar,
        task_value: torch.Tensor,
        task: torch.Tensor | None,
    ) -> torch.Tensor:
        """What the term adds to each candidate's value [N, 1], from the sum of its steps'
        parts (`inside`), the last latents z, and the candidates' task values."""
        ...


Terms = Sequence[PlanningTerm]  # what the agent's act, _plan and _estimate_value take


def cosine_max(z: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """Director's goal similarity [..., 1]: z.g over the larger squared norm.

    1 at the goal and in [0, 1] for non-negative (SimNorm) latents, so a goal term built
    on it keeps its size whatever the latent width or model size.
    """
    dot = (z * goal).sum(-1, keepdim=True)
    norm = torch.maximum(z.pow(2).sum(-1, keepdim=True), goal.pow(2).sum(-1, keepdim=True))
    return dot / norm.clamp_min(1e-8)


def goal_similarity(z: torch.Tensor, goal: torch.Tensor, temperature: float = 0.0) -> torch.Tensor:
    """What the Worker is paid for being at z when heading for `goal` [..., 1]: `cosine_max`
    (temperature 0, Director), or exp((cosine_max - 1) / temperature), which is still 1 at
    the goal but near 0 a few cells away. On a maze's latents `cosine_max` falls from 0.99
    in the goal's cell to 0.93 three cells away and rises back to 0.97 five cells away, so
    the raw similarity pays far states like near ones (bench/results/maze-explore)."""
    similarity = cosine_max(z, goal)
    if temperature <= 0:
        return similarity
    return torch.exp((similarity - 1) / temperature)


class ScaledTerm:
    """A term weighed against the task value by `coef` (see `weight`)."""

    name = "scaled"
    task_weight = 1.0

    def __init__(
        self,
        coef: float,
        scale: RunningScale,
        mode: str = "spread",
        value_spread_floor: float = 0.01,
    ) -> None:
        if mode not in ("spread", "range"):
            raise ValueError(f"worker.goal_scale must be spread or range, got {mode}")
        self.coef, self.scale, self.mode = float(coef), scale, mode
        self.value_spread_floor = float(value_spread_floor)

    def weight(self, task_value: torch.Tensor, term: torch.Tensor) -> torch.Tensor | float:
        """What one unit of the term is worth against the task's value.

        `spread` (`worker.goal_scale`, the default) makes the term's spread over the
        candidates `coef` times the task value's: the spread, not the range, decides
        which candidates are elites, so the term moves them by the same share whatever
        the sizes of Q and of the term. A term that hardly varies (sd below
        TERM_SPREAD_FLOOR) counts for less. A task value that hardly varies
        (zero-initialised Q heads, a sparse task before its first reward, a task that
        pays -1 every step) counts as `value_spread_floor` times the running Q range, so
        the term then decides the elites rather than weighing nothing. `range`: `coef`
        times the running Q range the policy loss uses.
        """
        if self.mode == "range":
            return self.coef * self.scale.value
        floor = self.value_spread_floor * self.scale.value
        spread = task_value.std().clamp_min(floor)
        return self.coef * spread / term.std().clamp_min(TERM_SPREAD_FLOOR)


class GoalTerm(ScaledTerm):
    """Director's worker: the goal value V in [0, 1] of each candidate, times `weight`.

    V is the goal similarity (`goal_similarity` at `goal_temperature`) of the imagined
    latents discounted by `goal_discount` and weighted by (1 - goal_discount): inside the
    horizon from the rollout, after it from `goal_value` (the goal critic), or without one
    as if the last latent stayed put.
    `task_weight`: the task value's weight while this goal is pursued (`worker.task_coef`
    in training; Director's worker: 0).
    """

    name = "goal"

    def __init__(
        self,
        goal: torch.Tensor,
        goal_discount: float,
        horizon: int,
        coef: float,
        scale: RunningScale,
        mode: str = "spread",
        value_spread_floor: float = 0.01,
        goal_value: GoalValue | None = None,
        action_masks: torch.Tensor | None = None,
        task_weight: float = 1.0,
        goal_temperature: float = 0.0,
    ) -> None:
        super().__init__(coef, scale, mode, value_spread_floor)
        self.goal, self.goal_discount, self.horizon = goal, float(goal_discount), int(horizon)
        self.temperature = float(goal_temperature)
        self.goal_value, self.action_masks = goal_value, action_masks
        self.task_weight = float(task_weight)

    def step(self, t: int, z: torch.Tensor, discount: Scalar, alive: Scalar) -> torch.Tensor:
        gd = self.goal_discount
        return (1 - gd) * gd**t * goal_similarity(z, self.goal, self.temperature) * alive

    def tail(self, z: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """V's part after the horizon, from the last latents z: [N, 1]."""
        if self.goal_value is None:
            tail = goal_similarity(z, self.goal, self.temperature)
        else:
            mask = None if task is None else self.action_masks[task]
            tail = self.goal_value(z, self.goal, mask)
        return self.goal_discount**self.horizon * tail

    def value(
        self,
        inside: torch.Tensor,
        z: torch.Tensor,
        alive: Scalar,
        task_value: torch.Tensor,
        task: torch.Tensor | None,
    ) -> torch.Tensor:
        V = inside + alive * self.tail(z, task)
        return self.weight(task_value, V) * V


class NoveltyTerm(ScaledTerm):
    """An exploration bonus: the discounted novelty of the imagined latents over the
    horizon (the Goal-VAE's reconstruction error in Director), times `weight`."""

    name = "novelty"

    def __init__(
        self,
        novelty: Novelty,
        coef: float,
        scale: RunningScale,
        mode: str = "spread",
        value_spread_floor: float = 0.01,
    ) -> None:
        super().__init__(coef, scale, mode, value_spread_floor)
        self.novelty = novelty

    def step(self, t: int, z: torch.Tensor, discount: Scalar, alive: Scalar) -> torch.Tensor:
        return discount * alive * self.novelty(z).unsqueeze(-1)

    def value(
        self,
        inside: torch.Tensor,
        z: torch.Tensor,
        alive: Scalar,
        task_value: torch.Tensor,
        task: torch.Tensor | None,
    ) -> torch.Tensor:
        return self.weight(task_value, inside) * inside
