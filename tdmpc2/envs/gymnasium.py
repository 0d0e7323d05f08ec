"""Gymnasium tasks named `gym-<Id>` (e.g. `gym-HalfCheetah-v5`): any registered id works.

`TASKS` lists the MuJoCo locomotion and manipulation ids; they run without a renderer,
which is created only when a frame is first asked for.
"""

from __future__ import annotations

import atexit

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
SHADOW_SIZE = 2048
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
        self._renderers: dict[tuple[int, int], object] = {}

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
        """A frame of the live simulation from the environment's own camera (MuJoCo envs).

        One renderer per frame size: pixel observations (64x64) and evaluation videos
        render from the same environment every step.
        """
        first = not self._renderers
        with mujoco_render_guard():
            frame = self._renderer(width, height).render("rgb_array")
        if first:  # after mujoco's own exit hook, so that this one runs before it
            atexit.register(self.close)
        return frame

    def _renderer(self, width: int, height: int):
        from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
        from gymnasium.envs.mujoco.mujoco_rendering import MujocoRenderer

        env = self._env.unwrapped
        if not isinstance(env, MujocoEnv):
            raise NotImplementedError(f"rendering is implemented for MuJoCo envs, not {env}")
        if (width, height) not in self._renderers:
            visual = env.model.vis.global_  # the offscreen buffer must fit the frame
            visual.offwidth = max(visual.offwidth, width)
            visual.offheight = max(visual.offheight, height)
            # DeepMind Control's shadow map: Gymnasium's 4096 doubles a frame's cost on a
            # CPU renderer (0.13 s against 0.07 s at 64x64, measured).
            quality = env.model.vis.quality
            quality.shadowsize = min(quality.shadowsize, SHADOW_SIZE)
            own = env.mujoco_renderer
            self._renderers[width, height] = MujocoRenderer(
                env.model,
                env.data,
                own.default_cam_config,
                width,
                height,
                own.max_geom,
                camera_id=own.camera_id,
            )
        return self._renderers[width, height]

    def close(self) -> None:
        """Frees the renderers' OpenGL contexts (at exit too: freed at teardown, they error)."""
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()


def make(name: str, seed: int) -> TimeLimit:
    """The environment with its registered time limit (1000 steps for the MuJoCo tasks)."""
    env = Gymnasium(name[len(PREFIX) :], seed)
    return TimeLimit(env, env.max_episode_steps)
