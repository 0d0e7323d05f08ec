"""Gymnasium MuJoCo tasks, named `gym-<Id>` (e.g. gym-HalfCheetah-v5)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

PREFIX = "gym-"
MUJOCO_IDS = ("Ant", "HalfCheetah", "Hopper", "Humanoid", "Reacher", "Swimmer", "Walker2d")


def known_tasks() -> list[str]:
    return [f"{PREFIX}{name}-v5" for name in MUJOCO_IDS]


class Gymnasium:
    """A registered Gymnasium environment with actions rescaled from [-1, 1]."""

    def __init__(self, env_id: str, seed: int) -> None:
        self._env = gym.make(env_id, render_mode="rgb_array")
        self._seed = seed
        self._seeded = False
        box = self._env.action_space
        self._low, self._high = box.low, box.high
        self.observation_space = self._env.observation_space
        self.action_space = spaces.Box(-1.0, 1.0, box.shape, np.float32)
        self.max_episode_steps = self._env.spec.max_episode_steps or 1000

    def reset(self) -> np.ndarray:
        seed = None if self._seeded else self._seed
        self._seeded = True
        return self._env.reset(seed=seed)[0]

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, dict]:
        action = self._low + (np.clip(action, -1, 1) + 1) / 2 * (self._high - self._low)
        obs, reward, terminated, _, info = self._env.step(action)
        return obs, float(reward), terminated, {"success": float(info.get("success", 0.0))}

    def render(self, width: int = 384, height: int = 384) -> np.ndarray:
        return self._env.render()
