"""Meta-World tasks (`mw-<name>`): the MuJoCo compatibility patch, names in mt80, and the
environment contract when the optional extra is installed (skipped otherwise)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import mujoco
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tdmpc2.envs import KNOWN_TASKS, _builder, make_env
from tdmpc2.envs import metaworld as mw
from tdmpc2.envs.multitask import TASK_SETS
from tests.conftest import ROOT

HAS_METAWORLD = importlib.util.find_spec("metaworld") is not None
needs_metaworld = pytest.mark.skipif(
    not HAS_METAWORLD, reason="metaworld is not installed: pip install -e '.[metaworld]'"
)
WELD, CONNECT = int(mujoco.mjtEq.mjEQ_WELD), int(mujoco.mjtEq.mjEQ_CONNECT)


def make(task: str, seed: int = 1):
    multitask = "," in task
    cfg = OmegaConf.create(
        {"task": task, "seed": seed, "seed_steps": "???", "multitask": multitask}
    )
    return make_env(cfg), cfg


def fake_env(width: int, nmocap: int = 1) -> SimpleNamespace:
    """A model with a weld and a connect constraint, `eq_data` rows `width` wide."""
    data = np.arange(2 * width, dtype=np.float64).reshape(2, width)
    model = SimpleNamespace(
        nmocap=nmocap, neq=2, eq_type=np.array([CONNECT, WELD], np.int32), eq_data=data
    )
    return SimpleNamespace(model=model)


@pytest.mark.parametrize("width", [11, 12, 13])
def test_weld_patch_writes_leading_columns_of_any_width(width):
    env = fake_env(width)
    before = env.model.eq_data.copy()
    mw.reset_mocap_welds(env)
    weld = env.model.eq_data[1]
    assert np.array_equal(weld[:11], mw.WELD_DATA)  # Meta-World's 11 numbers
    assert np.array_equal(weld[11:], before[1, 11:])  # the newer columns as compiled
    assert np.array_equal(env.model.eq_data[0], before[0])  # other constraints untouched


def test_weld_patch_leaves_a_model_without_mocap_alone():
    env = fake_env(12, nmocap=0)
    before = env.model.eq_data.copy()
    mw.reset_mocap_welds(env)
    assert np.array_equal(env.model.eq_data, before)


@needs_metaworld
def test_weld_patch_matches_metaworld_at_its_width_and_fixes_ours():
    """At MuJoCo 3.3's width (11) the patch writes what Meta-World writes; at this MuJoCo's
    width Meta-World's own method fails as measured, and the patch does not."""
    from metaworld.sawyer_xyz_env import SawyerMocapBase

    mw.make("mw-reach", seed=0)
    assert SawyerMocapBase.reset_mocap_welds is mw.reset_mocap_welds  # installed
    original = _metaworld_original()
    assert original is not mw.reset_mocap_welds
    theirs, ours = fake_env(11), fake_env(11)
    original(theirs)
    mw.reset_mocap_welds(ours)
    assert np.array_equal(theirs.model.eq_data, ours.model.eq_data)
    if mujoco.mjNEQDATA != 11:
        with pytest.raises(ValueError, match="could not broadcast"):
            original(fake_env(mujoco.mjNEQDATA))


def _metaworld_original():
    """Meta-World's own `reset_mocap_welds`, from a fresh load of its module (the class
    that tasks use holds the patch once one is built)."""
    from metaworld import sawyer_xyz_env

    spec = importlib.util.spec_from_file_location("unpatched", sawyer_xyz_env.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SawyerMocapBase.reset_mocap_welds


def test_names_are_mt80s_metaworld_tasks_and_known():
    assert len(mw.TASKS) == 50 and len(set(mw.TASKS)) == 50
    assert TASK_SETS["mt80"][-50:] == mw.TASKS  # after the 30 DMC tasks, in public order
    assert all(_builder(name) is mw.make for name in mw.TASKS)  # mt80's names resolve
    assert {"mw-reach", "mw-door-open", "mw-hand-insert"} <= set(KNOWN_TASKS)
    with pytest.raises(ValueError, match="did you mean 'mw-reach'"):
        make("mw-raech")


def test_missing_extra_fails_in_one_line_naming_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "metaworld", None)  # as if not installed
    with pytest.raises(ImportError) as err:
        make("mw-reach")
    message = str(err.value)
    assert "\n" not in message and "pip install -e '.[metaworld]'" in message
    with pytest.raises(ImportError, match=re.escape(mw.MISSING)):
        make("cartpole-swingup,mw-reach")


def test_missing_extra_stops_train_py_with_one_line():
    script = (
        "import runpy, sys; sys.modules['metaworld'] = None; "
        "sys.argv = ['tdmpc2/train.py', 'task=mw-reach', 'device=cpu']; "
        "runpy.run_path('tdmpc2/train.py', run_name='__main__')"
    )
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [f"error: {mw.MISSING}"]


@needs_metaworld
def test_every_name_is_a_metaworld_environment():
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE as envs

    assert {f"{t[3:]}-v3-goal-observable" for t in mw.TASKS} <= set(envs)


@needs_metaworld
def test_reach_contract():
    env, cfg = make("mw-reach")
    assert tuple(cfg.obs_shape["state"]) == (39,)
    assert (cfg.action_dim, cfg.episode_length, cfg.seed_steps) == (4, 100, 1000)
    assert not cfg.episodic
    assert env.observation_space.shape == (39,) and env.action_space.shape == (4,)
    obs = env.reset()
    assert obs.dtype == torch.float32 and obs.shape == (39,)
    steps, done = 0, False
    while not done:
        obs, reward, done, info = env.step(env.rand_act())
        steps += 1
        assert obs.shape == (39,) and isinstance(reward, float)
        assert 0 <= reward <= 20  # two simulator rewards in [0, 10]
        assert isinstance(info["success"], float) and not info["terminated"]
    assert steps == 100
    assert innermost(env).curr_path_length == 200  # action repeat 2


def innermost(env):
    while hasattr(env, "env"):
        env = env.env
    return env._env


@needs_metaworld
def test_placements_follow_the_seed_and_change_every_reset():
    goal = slice(36, 39)  # the goal's position closes the observation
    goals = [make("mw-reach", seed=3)[0].reset()[goal] for _ in range(2)]
    assert torch.equal(*goals)
    env = make("mw-reach", seed=3)[0]
    first, second = env.reset()[goal], env.reset()[goal]
    assert not torch.equal(first, second)
    state = np.random.get_state()[1].copy()
    env.reset()
    assert np.array_equal(state, np.random.get_state()[1])  # numpy's global stream kept


@needs_metaworld
@pytest.mark.filterwarnings("ignore:Constant")  # the scripted policy's gain, clipped
def test_scripted_reach_succeeds_where_random_does_not():
    """The hand follows the mocap weld under this MuJoCo: Meta-World's scripted policy
    reaches the goal within the episode, random actions do not."""
    from metaworld.policies import SawyerReachV3Policy

    env = mw.make("mw-reach", seed=0)
    policy, rng = SawyerReachV3Policy(), np.random.default_rng(0)
    for act, expected in ((policy.get_action, 1.0), (lambda o: rng.uniform(-1, 1, 4), 0.0)):
        obs, truncated = env.reset(), False
        while not truncated:
            obs, _, _, truncated, info = env.step(act(obs))
        assert info["success"] == expected


@needs_metaworld
@pytest.mark.parametrize("task", ["mw-door-open", "mw-pick-place", "mw-window-close"])
def test_other_tasks_step(task):
    env, cfg = make(task)
    assert env.reset().shape == (39,) and cfg.action_dim == 4
    obs, _, done, info = env.step(env.rand_act())
    assert obs.shape == (39,) and not done and "success" in info


@needs_metaworld
def test_in_a_task_set_with_deepmind_control():
    env, cfg = make("cartpole-swingup,mw-reach")
    assert (cfg.obs_dims, cfg.action_dims, cfg.episode_lengths) == ([5, 39], [1, 4], [500, 100])
    assert tuple(cfg.obs_shape["state"]) == (39,) and cfg.action_dim == 4
    env.task = 1
    assert env.reset().shape == (39,)
    _, _, done, info = env.step(env.rand_act())
    assert not done and isinstance(info["success"], float)


@needs_metaworld
def test_renders_frames_of_any_size():
    env = mw.make("mw-door-open", seed=0)
    env.reset()
    try:
        small = env.render(64, 64)
    except Exception as err:  # no OpenGL backend on this machine
        pytest.skip(f"MuJoCo cannot render here: {err}")
    large = env.render()
    assert small.shape == (64, 64, 3) and large.shape == (384, 384, 3)
    assert small.dtype == np.uint8 and small.std() > 10  # a scene, not a blank frame
