"""Time limit in agent steps, reported as truncation (never as termination)."""

from __future__ import annotations

import numpy as np

from tdmpc2.envs.wrappers.base import NumpyEnv, Step, Wrapper


class TimeLimit(Wrapper):
    """Truncates the episode after `max_episode_steps` calls to `step`.

    Truncation is kept apart from termination so that value targets keep bootstrapping
    through the time limit.
    """

    def __init__(self, env: NumpyEnv, max_episode_steps: int) -> None:
        super().__init__(env)
        self.max_episode_steps = int(max_episode_steps)
        self._t = 0

    def reset(self) -> np.ndarray:
        self._t = 0
        return self.env.reset()

    def step(self, action: np.ndarray) -> Step:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._t += 1
        return obs, reward, terminated, truncated or self._t >= self.max_episode_steps, info
