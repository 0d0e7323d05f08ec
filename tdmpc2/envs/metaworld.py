"""Meta-World manipulation tasks named `mw-<name>` (`mw-reach`, `mw-door-open`): the 50
tasks of TD-MPC2's mt80, set up as TD-MPC2 trains on them.

Each task is Meta-World's goal-observable v3 environment: 39-D observations, 4-D actions
(hand x-y-z and gripper), a new object and goal placement drawn at every reset from the
run's seed, 100 agent steps per episode at action repeat 2 (200 simulator steps), and
`info["success"]` as a float. `metaworld` is an optional extra
(`pip install -e '.[metaworld]'`); names resolve without it, and building one fails
with a line that names the extra.

MuJoCo compatibility: Meta-World writes 11 numbers into each weld's row of
`model.eq_data`, its width in MuJoCo 3.3.0. MuJoCo 3.17, which dm-control needs, has 12,
so building any task fails in `reset_mocap_welds` ("could not broadcast input array from
shape (11,) into shape (12,)"). `patch_mocap_welds` replaces that one method with one
that writes the same 11 numbers into the leading columns and leaves the compiler's value
in the rest (measured: the 12th is 1 when the XML leaves the weld's relative pose to the
compiler, 0 when it gives one, and the hand ends where it does with either). Measured against
Meta-World 3.1.1 on its own MuJoCo 3.3.0, unpatched: the same seed and 200 random
actions give observations within 1.5e-3 of each other on 10 tasks.
"""

from __future__ import annotations

import atexit
from typing import Any

import numpy as np
from gymnasium import spaces

from tdmpc2.envs.multitask import TASK_SETS
from tdmpc2.envs.wrappers import ActionRepeat, Step, TimeLimit
from tdmpc2.envs.wrappers.render import mujoco_render_guard

PREFIX = "mw-"
# The extra pins 3.0.0: the newest release that allows our MuJoCo (3.1.1 pins 3.3.0).
MISSING = (
    "Meta-World tasks need the optional extra: pip install -e '.[metaworld]' (metaworld 3.0.0)"
)
TASKS: tuple[str, ...] = tuple(name for name in TASK_SETS["mt80"] if name.startswith(PREFIX))
ACTION_REPEAT = 2
EPISODE_LENGTH = 100  # agent steps: 200 simulator steps, below Meta-World's own 500
OBS_DIM, ACTION_DIM = 39, 4
# What Meta-World writes into each mocap weld: anchor 0, relative position 0, relative
# rotation the identity (quaternion -1, 0, 0, 0), torque scale 5.
WELD_DATA = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 5.0])
# TD-MPC2's view for videos: Meta-World's `corner2` camera moved to this position.
CAMERA, CAMERA_POS = "corner2", (0.75, 0.075, 0.7)


def is_task(name: str) -> bool:
    """One of the 50 names; other `mw-` names fail with the list of known tasks."""
    return name in TASKS


def reset_mocap_welds(env: Any) -> None:
    """Meta-World's weld reset for any width of `eq_data`: only the columns it knows."""
    import mujoco

    model = env.model
    if model.nmocap == 0 or model.neq == 0:
        return
    welds = np.asarray(model.eq_type) == int(mujoco.mjtEq.mjEQ_WELD)
    model.eq_data[welds, : len(WELD_DATA)] = WELD_DATA


def patch_mocap_welds(base: type) -> None:
    """Installs `reset_mocap_welds` on Meta-World's base class (`SawyerMocapBase`)."""
    base.reset_mocap_welds = reset_mocap_welds


def _environments() -> dict[str, type]:
    """Meta-World's goal-observable classes by id, with the weld reset patched (the
    patch is the same on every call)."""
    try:
        from metaworld import sawyer_xyz_env
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE
    except ImportError as err:
        raise ImportError(MISSING) from err
    patch_mocap_welds(sawyer_xyz_env.SawyerMocapBase)
    return ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE


class MetaWorld:
    """One Meta-World task as a `NumpyEnv`.

    Meta-World's goal-observable constructor freezes the placement it drew; unfreezing it
    and drawing from the environment's own generator (seeded with the run's seed) gives a
    new placement at every reset, the same sequence for the same seed, and leaves
    numpy's global generator alone.
    """

    def __init__(self, task: str, seed: int) -> None:
        self._env = _environments()[f"{task}-v3-goal-observable"](seed=seed)
        self._env._freeze_rand_vec = False
        self._env.seeded_rand_vec = True
        self.observation_space = spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self._renderers: dict[tuple[int, int], Any] = {}

    def reset(self) -> np.ndarray:
        obs, _ = self._env.reset()
        return np.asarray(obs, np.float32)

    def step(self, action: np.ndarray) -> Step:
        action = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        obs, reward, terminated, truncated, info = self._env.step(action)
        info = {"success": float(info["success"])}
        return np.asarray(obs, np.float32), float(reward), terminated, truncated, info

    def render(self, width: int = 384, height: int = 384) -> np.ndarray:
        """A frame from TD-MPC2's camera; one renderer per frame size."""
        import mujoco

        model = self._env.model
        first = not self._renderers
        with mujoco_render_guard():
            if (width, height) not in self._renderers:
                visual = model.vis.global_  # the offscreen buffer must fit the frame
                visual.offwidth = max(visual.offwidth, width)
                visual.offheight = max(visual.offheight, height)
                model.cam_pos[model.camera(CAMERA).id] = CAMERA_POS
                self._renderers[width, height] = mujoco.Renderer(model, height, width)
            renderer = self._renderers[width, height]
            renderer.update_scene(self._env.data, camera=CAMERA)
            frame = renderer.render()[::-1].copy()  # the camera is upside down: flip it
        if first:  # runs before MuJoCo's own exit hook: contexts freed at teardown error
            atexit.register(self.close)
        return frame

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()


def make(name: str, seed: int) -> TimeLimit:
    """The task with action repeat 2 and 100 agent steps per episode."""
    if name not in TASKS:
        raise ValueError(f"'{name}' is not one of mt80's Meta-World tasks")
    env = ActionRepeat(MetaWorld(name[len(PREFIX) :], seed), ACTION_REPEAT)
    return TimeLimit(env, EPISODE_LENGTH)
