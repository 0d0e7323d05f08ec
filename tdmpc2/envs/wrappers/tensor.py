"""Adapts a raw environment to the interface the trainers use: tensors and a time limit."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from gymnasium import spaces


class RawEnv(Protocol):
    """What each simulator module provides: numpy in and out, actions in [-1, 1]."""

    observation_space: spaces.Box
    action_space: spaces.Box

    def reset(self) -> np.ndarray: ...

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, dict]: ...

    def render(self, width: int, height: int) -> np.ndarray: ...


class TensorEnv:
    """float32 tensors in and out; `done` at the time limit or on a true termination.

    `info["terminated"]` is true only for a real terminal state, so the TD target keeps
    bootstrapping through time limits.
    """

    def __init__(self, env: RawEnv, max_episode_steps: int, seed: int) -> None:
        self.env = env
        self.max_episode_steps = max_episode_steps
        self.observation_space = env.observation_space
        self.action_space = spaces.Box(-1.0, 1.0, env.action_space.shape, np.float32)
        self._t = 0
        self._generator = torch.Generator().manual_seed(seed)

    def reset(self) -> torch.Tensor:
        self._t = 0
        return torch.from_numpy(np.asarray(self.env.reset(), dtype=np.float32))

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, float, bool, dict]:
        obs, reward, terminated, info = self.env.step(action.detach().cpu().numpy())
        self._t += 1
        info = {"success": 0.0, **info, "terminated": bool(terminated)}
        done = bool(terminated) or self._t >= self.max_episode_steps
        return torch.from_numpy(np.asarray(obs, dtype=np.float32)), float(reward), done, info

    def rand_act(self) -> torch.Tensor:
        return torch.rand(self.action_space.shape, generator=self._generator) * 2 - 1

    def render(self, width: int = 384, height: int = 384) -> np.ndarray:
        return self.env.render(width, height)
