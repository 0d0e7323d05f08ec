"""Action repeat: one agent step is several simulator steps (rewards summed)."""

from __future__ import annotations

import numpy as np

from tdmpc2.envs.wrappers.base import NumpyEnv, Step, Wrapper


class ActionRepeat(Wrapper):
    """Repeats each action `repeat` times; stops early if the episode ends in between."""

    def __init__(self, env: NumpyEnv, repeat: int) -> None:
        super().__init__(env)
        self.repeat = repeat

    def step(self, action: np.ndarray) -> Step:
        total = 0.0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += reward
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info
