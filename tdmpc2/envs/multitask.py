"""Task sets for multi-task training: `mt30`, `mt80` (the public TD-MPC2 lists) or any
comma list of tasks, and the environment that switches between the set's tasks.

Observations are zero-padded to the largest of the set and actions to its largest action
space; each task's simulator receives only its own action dimensions.
"""

from __future__ import annotations

import torch

from tdmpc2.envs.wrappers import TensorWrapper

_DMC19 = [
    "walker-stand",
    "walker-walk",
    "walker-run",
    "cheetah-run",
    "reacher-easy",
    "reacher-hard",
    "acrobot-swingup",
    "pendulum-swingup",
    "cartpole-balance",
    "cartpole-balance-sparse",
    "cartpole-swingup",
    "cartpole-swingup-sparse",
    "cup-catch",
    "finger-spin",
    "finger-turn-easy",
    "finger-turn-hard",
    "fish-swim",
    "hopper-stand",
    "hopper-hop",
]
_DMC_CUSTOM11 = [  # TD-MPC2's own DeepMind Control variants, not in the suite
    "walker-walk-backwards",
    "walker-run-backwards",
    "cheetah-run-backwards",
    "cheetah-run-front",
    "cheetah-run-back",
    "cheetah-jump",
    "hopper-hop-backwards",
    "reacher-three-easy",
    "reacher-three-hard",
    "cup-spin",
    "pendulum-spin",
]
_METAWORLD50 = [
    f"mw-{name}"
    for name in [
        "assembly",
        "basketball",
        "button-press-topdown",
        "button-press-topdown-wall",
        "button-press",
        "button-press-wall",
        "coffee-button",
        "coffee-pull",
        "coffee-push",
        "dial-turn",
        "disassemble",
        "door-open",
        "door-close",
        "drawer-close",
        "drawer-open",
        "faucet-open",
        "faucet-close",
        "hammer",
        "handle-press-side",
        "handle-press",
        "handle-pull-side",
        "handle-pull",
        "lever-pull",
        "peg-insert-side",
        "peg-unplug-side",
        "pick-out-of-hole",
        "pick-place",
        "pick-place-wall",
        "plate-slide",
        "plate-slide-side",
        "plate-slide-back",
        "plate-slide-back-side",
        "push-back",
        "push",
        "push-wall",
        "reach",
        "reach-wall",
        "shelf-place",
        "soccer",
        "stick-push",
        "stick-pull",
        "sweep-into",
        "sweep",
        "window-open",
        "window-close",
        "bin-picking",
        "box-close",
        "door-lock",
        "door-unlock",
        "hand-insert",
    ]
]
# In the public order: the task indices of the published mt30/mt80 data refer to it.
TASK_SETS: dict[str, tuple[str, ...]] = {
    "mt30": (*_DMC19, *_DMC_CUSTOM11),
    "mt80": (*_DMC19, *_DMC_CUSTOM11, *_METAWORLD50),
}


def is_task_set(task: str) -> bool:
    """A named set or a comma list: what makes a run multi-task."""
    return task in TASK_SETS or "," in task


def task_names(task: str) -> list[str]:
    """The tasks of `task`: a named set, a comma list, or the single task itself."""
    if task in TASK_SETS:
        return list(TASK_SETS[task])
    names = [name.strip() for name in task.split(",")]
    if "" in names:
        raise ValueError(f"task={task}: an empty name in the task list")
    if len(set(names)) < len(names):
        raise ValueError(f"task={task}: a task is listed twice")
    return names


class MultitaskEnv:
    """One environment per task of the set; `task` selects the one that runs.

    Follows the `TensorWrapper` contract with the set's padded shapes.
    """

    def __init__(self, envs: list[TensorWrapper]) -> None:
        self.envs = envs
        self.obs_dims = [int(e.observation_space.shape[0]) for e in envs]
        self.action_dims = [int(e.action_space.shape[0]) for e in envs]
        self.episode_lengths = [int(e.max_episode_steps) for e in envs]
        self.obs_dim, self.action_dim = max(self.obs_dims), max(self.action_dims)
        self.task = 0

    @property
    def max_episode_steps(self) -> int:
        return self.episode_lengths[self.task]

    def reset(self) -> torch.Tensor:
        return self._pad(self.envs[self.task].reset())

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, float, bool, dict]:
        obs, reward, done, info = self.envs[self.task].step(action[: self.action_dims[self.task]])
        return self._pad(obs), reward, done, info

    def rand_act(self) -> torch.Tensor:
        """The current task's random action, zero in the padded dimensions."""
        action = torch.zeros(self.action_dim)
        action[: self.action_dims[self.task]] = self.envs[self.task].rand_act()
        return action

    def render(self, width: int = 384, height: int = 384):
        return self.envs[self.task].render(width, height)

    def _pad(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(obs, (0, self.obs_dim - obs.shape[-1]))
