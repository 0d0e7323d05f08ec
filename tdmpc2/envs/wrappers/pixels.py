"""Pixel observations: the last `frames` renders of the task's own camera, stacked on channels."""

from __future__ import annotations

from collections import deque

import numpy as np
from gymnasium import spaces

from tdmpc2.envs.wrappers.base import Step, Wrapper
from tdmpc2.envs.wrappers.render import RENDERER_HINT, RendererError
from tdmpc2.envs.wrappers.timelimit import TimeLimit


class Pixels(Wrapper):
    """uint8 observations [3 * frames, size, size], oldest frame first.

    A reset fills the stack with copies of the first frame, so the observation at step t
    is always frames t-2, t-1, t clamped at the episode's start: the replay buffer relies
    on this to store each frame once and rebuild the stack when it samples.
    """

    def __init__(self, env: TimeLimit, size: int = 64, frames: int = 3) -> None:
        super().__init__(env)
        self.max_episode_steps = env.max_episode_steps
        self.size = int(size)
        self._frames: deque[np.ndarray] = deque(maxlen=int(frames))
        self.observation_space = spaces.Box(0, 255, (3 * frames, size, size), np.uint8)
        self._render()  # fail at start, not at the first step, when nothing can render

    def _render(self) -> np.ndarray:
        try:
            frame = self.env.render(self.size, self.size)
        except Exception as err:  # no OpenGL context, missing EGL/OSMesa, ...
            raise RendererError(
                f"obs=rgb renders every step and needs an OpenGL renderer: {RENDERER_HINT} "
                f"({type(err).__name__}: {err})"
            ) from err
        return np.ascontiguousarray(frame.transpose(2, 0, 1))  # HWC -> CHW

    def _obs(self) -> np.ndarray:
        return np.concatenate(self._frames, axis=0)

    def reset(self) -> np.ndarray:
        self.env.reset()
        frame = self._render()
        for _ in range(self._frames.maxlen):
            self._frames.append(frame)
        return self._obs()

    def step(self, action: np.ndarray) -> Step:
        _, reward, terminated, truncated, info = self.env.step(action)
        self._frames.append(self._render())
        return self._obs(), reward, terminated, truncated, info
