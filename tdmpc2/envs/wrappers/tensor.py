"""The interface the trainers and the agent use: tensors in and out, one `done`."""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from tdmpc2.envs.wrappers.base import Wrapper
from tdmpc2.envs.wrappers.timelimit import TimeLimit


class TensorWrapper(Wrapper):
    """Converts to and from torch and merges termination and truncation into `done`.

    `info["terminated"]` stays true only for a real terminal state, so the learner can
    tell it from the time limit; `info["success"]` is always present (0.0 if unknown).
    """

    def __init__(self, env: TimeLimit, seed: int) -> None:
        super().__init__(env)
        self.max_episode_steps = env.max_episode_steps
        self.action_space = spaces.Box(-1.0, 1.0, env.action_space.shape, np.float32)
        self._generator = torch.Generator().manual_seed(int(seed))

    @staticmethod
    def _tensor(obs: np.ndarray) -> torch.Tensor:
        """A copy (simulators may reuse buffers); pixels stay uint8, four times smaller."""
        return torch.tensor(obs, dtype=torch.uint8 if obs.dtype == np.uint8 else torch.float32)

    def reset(self) -> torch.Tensor:
        return self._tensor(self.env.reset())

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, float, bool, dict]:
        action = torch.as_tensor(action).detach().cpu().numpy()
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = {**info, "terminated": bool(terminated), "success": float(info.get("success", 0))}
        return self._tensor(obs), float(reward), bool(terminated or truncated), info

    def rand_act(self) -> torch.Tensor:
        """Uniform in [-1, 1], from a generator seeded with the run's seed."""
        return torch.rand(self.action_space.shape, generator=self._generator) * 2 - 1
