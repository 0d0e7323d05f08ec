"""A tiny point-mass task that a small agent learns in a few thousand steps.

It exists for tests and quick debugging: a 2-D point with damped velocity must reach a
fixed target. The reward is dense (1 at the target, falling linearly with distance),
so a random policy scores far below a controlled one.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

TARGET = np.array([0.5, 0.5], dtype=np.float32)


class ToyReach:
    """Point mass: obs (x, y, vx, vy), action (ax, ay) in [-1, 1], 50 steps per episode."""

    episode_length = 50

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self.observation_space = spaces.Box(-np.inf, np.inf, (4,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._pos = np.zeros(2, np.float32)
        self._vel = np.zeros(2, np.float32)

    def _obs(self) -> np.ndarray:
        return np.concatenate([self._pos, self._vel]).astype(np.float32)

    def reset(self) -> np.ndarray:
        self._pos = self._rng.uniform(-1, 1, 2).astype(np.float32)
        self._vel = np.zeros(2, np.float32)
        return self._obs()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, dict]:
        self._vel = 0.8 * self._vel + 0.05 * np.clip(action, -1, 1).astype(np.float32)
        self._pos = np.clip(self._pos + self._vel, -1, 1)
        dist = float(np.linalg.norm(self._pos - TARGET))
        return self._obs(), max(0.0, 1.0 - dist), False, {"success": float(dist < 0.1)}

    def render(self, width: int = 384, height: int = 384) -> np.ndarray:
        frame = np.full((height, width, 3), 255, np.uint8)
        for point, colour in ((TARGET, (0, 160, 0)), (self._pos, (200, 0, 0))):
            col = int((point[0] + 1) / 2 * (width - 1))
            row = int((1 - (point[1] + 1) / 2) * (height - 1))
            frame[max(row - 4, 0) : row + 5, max(col - 4, 0) : col + 5] = colour
        return frame
