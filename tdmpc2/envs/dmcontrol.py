"""DeepMind Control Suite tasks by `domain-task` name, with flattened state observations.

The names are those of the public TD-MPC2: underscores in the task part become hyphens
and two domains have short names (`cup-catch`, `pointmass-easy`); the raw suite names
(`ball_in_cup-catch`, `cartpole-swingup_sparse`) are accepted too. The task list is
written out so that names resolve, and unknown ones fail, without importing dm_control
(which loads MuJoCo and probes for an OpenGL backend); a test checks it against
`dm_control.suite.ALL_TASKS`. TD-MPC2's own tasks outside the suite (`CUSTOM_TASKS`, the
eleven of mt30 that the suite lacks) resolve the same way and are built by
`dmcontrol_custom`. The tables live in `dmcontrol_tasks`, which both modules read.
"""

from __future__ import annotations

import os

import numpy as np
from gymnasium import spaces

from tdmpc2.envs.dmcontrol_tasks import CUSTOM_TASKS, SHORT_DOMAINS, SUITE_TASKS
from tdmpc2.envs.wrappers import ActionRepeat, NumpyEnv, Step, TimeLimit
from tdmpc2.envs.wrappers.render import RENDERER_HINT, RendererError, mujoco_render_guard

ACTION_REPEAT = 2
EPISODE_LENGTH = 500  # agent steps: the suite's 1000 simulator steps at action repeat 2
_SHORT_NAME = {domain: short for short, domain in SHORT_DOMAINS.items()}


def _names(table: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(
        sorted(
            f"{_SHORT_NAME.get(domain, domain)}-{task.replace('_', '-')}"
            for domain, tasks in table.items()
            for task in tasks
        )
    )


TASKS: tuple[str, ...] = _names(SUITE_TASKS)
CUSTOM_TASK_NAMES: tuple[str, ...] = _names(CUSTOM_TASKS)


def resolve(name: str) -> tuple[str, str] | None:
    """The (domain, task) of a suite or custom task name in suite spelling, or None if it
    is neither."""
    domain, _, task = name.partition("-")
    domain, task = SHORT_DOMAINS.get(domain, domain), task.replace("-", "_")
    known = task in SUITE_TASKS.get(domain, ()) or task in CUSTOM_TASKS.get(domain, ())
    return (domain, task) if known else None


class DMControl:
    """One suite or custom task as a `NumpyEnv`: all observation entries flattened, in
    order."""

    def __init__(self, domain: str, task: str, seed: int) -> None:
        try:
            from dm_control import suite
        except (ImportError, AttributeError, RuntimeError) as err:  # it sets up OpenGL on import
            raise RendererError(
                f"dm_control cannot load OpenGL (MUJOCO_GL={os.environ.get('MUJOCO_GL')}): "
                f"{RENDERER_HINT} ({type(err).__name__}: {err})"
            ) from err

        if task in CUSTOM_TASKS.get(domain, ()):
            from tdmpc2.envs import dmcontrol_custom

            self._env = dmcontrol_custom.load(domain, task, seed)
        else:
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

    def step(self, action: np.ndarray) -> Step:
        action = self._low + (np.clip(action, -1.0, 1.0) + 1.0) / 2.0 * (self._high - self._low)
        ts = self._env.step(action)
        # The suite ends every episode with last(); discount 0 marks a true terminal state.
        terminated = ts.last() and ts.discount == 0
        truncated = ts.last() and not terminated
        return self._flatten(ts.observation), float(ts.reward), terminated, truncated, {}

    def render(self, width: int = 384, height: int = 384) -> np.ndarray:
        with mujoco_render_guard():
            return self._env.physics.render(height, width, camera_id=self._camera)


def make(name: str, seed: int) -> TimeLimit:
    """The task with action repeat 2 and 500 agent steps per episode."""
    domain_task = resolve(name)
    if domain_task is None:
        raise ValueError(f"'{name}' is not a DeepMind Control task (suite or TD-MPC2's own)")
    env: NumpyEnv = ActionRepeat(DMControl(*domain_task, seed), ACTION_REPEAT)
    return TimeLimit(env, EPISODE_LENGTH)
