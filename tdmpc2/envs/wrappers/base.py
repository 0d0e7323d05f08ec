"""The numpy environment interface every simulator module implements, and a base wrapper.

Each simulator is adapted to one small gymnasium-like interface so that action repeat,
time limits and tensor conversion are written once and stacked in any combination.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from gymnasium import spaces

# obs, reward, terminated (a true terminal state), truncated (cut short), info
Step = tuple[np.ndarray, float, bool, bool, dict]


class NumpyEnv(Protocol):
    """A simulator: flat numpy observations, actions in [-1, 1]."""

    observation_space: spaces.Box
    action_space: spaces.Box

    def reset(self) -> np.ndarray: ...

    def step(self, action: np.ndarray) -> Step: ...

    def render(self, width: int = 384, height: int = 384) -> np.ndarray: ...


class Wrapper:
    """Passes everything through; subclasses override the calls they change."""

    def __init__(self, env: NumpyEnv) -> None:
        self.env = env
        self.observation_space = env.observation_space
        self.action_space = env.action_space

    def reset(self) -> np.ndarray:
        return self.env.reset()

    def step(self, action: np.ndarray) -> Step:
        return self.env.step(action)

    def render(self, width: int = 384, height: int = 384) -> np.ndarray:
        return self.env.render(width, height)
