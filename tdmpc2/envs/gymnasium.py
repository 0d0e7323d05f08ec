"""Gymnasium tasks named `gym-<Id>` (e.g. `gym-HalfCheetah-v5`): any registered id works.

`TASKS` lists the MuJoCo locomotion and manipulation ids; they run without a renderer,
which is created only when a frame is first asked for.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from tdmpc2.envs.wrappers import Step, TimeLimit
from tdmpc2.envs.wrappers.render import mujoco_render_guard

PREFIX = "gym-"
MUJOCO_IDS = (
    "Ant-v5",
    "HalfCheetah-v5",
    "Hopper-v5",
    "Humanoid-v5",
    "HumanoidStandup-v5",
    "InvertedDoublePendulum-v5",
    "InvertedPendulum-v5",
    "Pusher-v5",
    "Reacher-v5",
    "Swimmer-v5",
    "Walker2d-v5",
)
TASKS: tuple[str, ...] = tuple(PREFIX + env_id for env_id in MUJOCO_IDS)
# Tasks whose episodes end when the body falls or the pole drops: `episodic` defaults to
# true for them (a learned termination), to false for every other task.
TERMINATING_IDS = (
    "Ant-v5",
    "Hopper-v5",
    "Humanoid-v5",
    "InvertedDoublePendulum-v5",
    "InvertedPendulum-v5",
    "Walker2d-v5",
)


def terminates(name: str) -> bool:
    return name.startswith(PREFIX) and name[len(PREFIX) :] in TERMINATING_IDS


def is_task(name: str) -> bool:
    """True for `gym-<Id>` with an id in gymnasium's registry."""
    return name.startswith(PREFIX) and name[len(PREFIX) :] in gym.registry


class Gymnasium:
    """A registered Gymnasium environment as a `NumpyEnv`; actions rescaled from [-1, 1].

    The first reset is seeded so that the same seed gives the same first observation;
    later resets continue the environment's own random stream.
    """

    def __init__(self, env_id: str, seed: int) -> None:
        self._env = gym.make(env_id)
        box = self._env.action_space
        if not isinstance(box, spaces.Box) or not isinstance(
            self._env.observation_space, spaces.Box
        ):
            raise ValueError(f"gym-{env_id}: only Box observation and action spaces are supported")
        if self._env.spec is None or self._env.spec.max_episode_steps is None:
            raise ValueError(f"gym-{env_id}: the environment has no max_episode_steps")
        self.max_episode_steps = int(self._env.spec.max_episode_steps)
        self._low, self._high = box.low, box.high
        obs_dim = int(np.prod(self._env.observation_space.shape))
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, box.shape, np.float32)
        self._seed: int | None = seed
        self._renderer = None

    def reset(self) -> np.ndarray:
        obs, _ = self._env.reset(seed=self._seed)
        self._seed = None
        return np.asarray(obs, np.float32).ravel()

    def step(self, action: np.ndarray) -> Step:
        action = self._low + (np.clip(action, -1.0, 1.0) + 1.0) / 2.0 * (self._high - self._low)
        obs, reward, terminated, truncated, info = self._env.step(action.astype(self._low.dtype))
        info = {"success": float(info.get("success", info.get("is_success", 0.0)))}
        return np.asarray(obs, np.float32).ravel(), float(reward), terminated, truncated, info

    def render(self, width: int = 384, height: int = 384) -> np.ndarray:
        """A frame of the live simulation from the environment's own camera (MuJoCo envs)."""
        from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
        from gymnasium.envs.mujoco.mujoco_rendering import MujocoRenderer

        env = self._env.unwrapped
        if not isinstance(env, MujocoEnv):
            raise NotImplementedError(f"rendering is implemented for MuJoCo envs, not {env}")
        size = (width, height)
        if self._renderer is None or (self._renderer.width, self._renderer.height) != size:
            if self._renderer is not None:
                self._renderer.close()
            visual = env.model.vis.global_  # the offscreen buffer must fit the frame
            visual.offwidth = max(visual.offwidth, width)
            visual.offheight = max(visual.offheight, height)
            own = env.mujoco_renderer
            self._renderer = MujocoRenderer(
                env.model,
                env.data,
                own.default_cam_config,
                width,
                height,
                own.max_geom,
                camera_id=own.camera_id,
            )
        with mujoco_render_guard():
            return self._renderer.render("rgb_array")


def make(name: str, seed: int) -> TimeLimit:
    """The environment with its registered time limit (1000 steps for the MuJoCo tasks)."""
    env = Gymnasium(name[len(PREFIX) :], seed)
    return TimeLimit(env, env.max_episode_steps)
