"""`toy-reach`: a 2-D point mass that must reach a fixed target, for tests and debugging.

It is small and fast enough for a tiny agent to learn in 1-2k steps, and its dense reward
separates control from chance: a random policy scores far below one that steers.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from tdmpc2.envs.wrappers import Step, TimeLimit

TASKS = ("toy-reach",)
EPISODE_LENGTH = 50
TARGET = np.array([0.5, 0.5], dtype=np.float32)
ACCEL = 0.1  # velocity change per step at full action
DAMPING = 0.8  # velocity kept per step: top speed ACCEL * DAMPING / (1 - DAMPING) = 0.4


class ToyReach:
    """Observation (x, y, vx, vy); action (ax, ay) in [-1, 1]; the box is [-1, 1]^2.

    Reward `1 - min(1, dist / 1.5)` per step; success is being within 0.1 of the target.
    """

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self.observation_space = spaces.Box(-np.inf, np.inf, (4,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._pos = np.zeros(2, np.float32)
        self._vel = np.zeros(2, np.float32)

    def _obs(self) -> np.ndarray:
        return np.concatenate([self._pos, self._vel])

    def reset(self) -> np.ndarray:
        self._pos = self._rng.uniform(-1.0, 1.0, 2).astype(np.float32)
        self._vel = np.zeros(2, np.float32)
        return self._obs()

    def step(self, action: np.ndarray) -> Step:
        action = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        self._vel = DAMPING * (self._vel + ACCEL * action)
        pos = self._pos + self._vel
        self._vel[np.abs(pos) > 1.0] = 0.0  # the walls stop the point
        self._pos = np.clip(pos, -1.0, 1.0)
        dist = float(np.linalg.norm(self._pos - TARGET))
        reward = 1.0 - min(1.0, dist / 1.5)
        return self._obs(), reward, False, False, {"success": float(dist < 0.1)}

    def render(self, width: int = 384, height: int = 384) -> np.ndarray:
        """A white frame with the target in green and the point in red (no OpenGL)."""
        frame = np.full((height, width, 3), 255, np.uint8)
        for point, colour in ((TARGET, (0, 160, 0)), (self._pos, (200, 0, 0))):
            col = int((point[0] + 1) / 2 * (width - 1))
            row = int((1 - point[1]) / 2 * (height - 1))
            frame[max(row - 4, 0) : row + 5, max(col - 4, 0) : col + 5] = colour
        return frame


def make(name: str, seed: int) -> TimeLimit:
    """The task with its 50-step episodes."""
    if name not in TASKS:
        raise ValueError(f"'{name}' is not a toy task")
    return TimeLimit(ToyReach(seed), EPISODE_LENGTH)
