"""DeepMind Control Suite tasks with flattened state observations and action repeat."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

ACTION_REPEAT = 2
EPISODE_LENGTH = 500  # agent steps: 1000 simulator steps at action repeat 2
# Short domain names used by the public TD-MPC2 (cup-catch, pointmass-easy).
ALIASES = {"ball_in_cup": "cup", "point_mass": "pointmass"}


def task_table() -> dict[str, tuple[str, str]]:
    """Every suite task by `domain-task` name (hyphens in the task part), aliases included."""
    from dm_control import suite

    table = {}
    for domain, task in suite.ALL_TASKS:
        for name in {domain, ALIASES.get(domain, domain)}:
            table[f"{name}-{task.replace('_', '-')}"] = (domain, task)
    return table


class DMControl:
    """A suite task; each step repeats the action and sums the rewards."""

    def __init__(self, domain: str, task: str, seed: int) -> None:
        from dm_control import suite

        self._env = suite.load(domain, task, task_kwargs={"random": seed})
        self._camera = 2 if domain == "quadruped" else 0
        spec = self._env.action_spec()
        self._low, self._high = spec.minimum, spec.maximum
        obs_dim = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, spec.shape, np.float32)

    @staticmethod
    def _flatten(observation: dict) -> np.ndarray:
        return np.concatenate([np.asarray(v, np.float32).ravel() for v in observation.values()])

    def reset(self) -> np.ndarray:
        return self._flatten(self._env.reset().observation)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, dict]:
        action = self._low + (np.clip(action, -1, 1) + 1) / 2 * (self._high - self._low)
        reward, terminated = 0.0, False
        for _ in range(ACTION_REPEAT):
            ts = self._env.step(action)
            reward += ts.reward or 0.0
            if ts.last():
                terminated = ts.discount == 0
                break
        return self._flatten(ts.observation), reward, terminated, {}

    def render(self, width: int = 384, height: int = 384) -> np.ndarray:
        return self._env.physics.render(height, width, camera_id=self._camera)
