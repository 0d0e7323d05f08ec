"""OGBench mazes: names, the missing-extra error and the maze contract (a short training of
the Director on a maze: test_director_cases.py)."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

from tdmpc2.envs import KNOWN_TASKS, ogbench
from tests.test_envs import episode, innermost, make

TASK = "ogbench-pointmaze-medium-singletask-task3-v0"
needs_ogbench = pytest.mark.skipif(
    importlib.util.find_spec("ogbench") is None, reason=ogbench.MISSING
)


def test_names_resolve_without_ogbench_and_misspellings_are_caught():
    assert TASK in KNOWN_TASKS and "ogbench-antmaze-giant-singletask-v0" in KNOWN_TASKS
    with pytest.raises(ValueError, match="did you mean 'ogbench-pointmaze-medium-singletask"):
        make("ogbench-pointmaze-meduim-singletask-v0")


def test_a_missing_extra_fails_in_one_line_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ogbench", None)  # `import ogbench` raises ImportError
    with pytest.raises(ImportError) as err:
        make(TASK)
    assert str(err.value) == ogbench.MISSING and "[ogbench]" in str(err.value)


@needs_ogbench
def test_pointmaze_contract_minus_one_per_step_and_the_goal_ends_the_episode():
    env, cfg = make(TASK)
    assert cfg.obs_shape == {"state": (2,)} and cfg.action_dim == 2
    assert cfg.episode_length == 1000 and cfg.seed_steps == 5000
    assert cfg.episodic is True  # the goal ends the episode
    obs = env.reset()
    assert obs.shape == (2,) and obs.dtype == torch.float32
    _, reward, done, info = env.step(torch.zeros(2))
    assert reward == -1.0 and not done and info["success"] == 0.0
    maze = innermost(env)._env.unwrapped
    start = obs[ogbench.XY].numpy()
    goal = np.asarray(maze.cur_goal_xy)
    assert np.linalg.norm(start - goal) > 4  # over a cell away: random actions never get there
    maze.set_xy(goal)  # put the point on the goal: the next step pays 0 and ends
    _, reward, done, info = env.step(torch.zeros(2))
    assert reward == 0.0 and done and info["terminated"] and info["success"] == 1.0


@needs_ogbench
def test_random_actions_run_the_full_1000_steps_without_the_goal():
    env, _ = make(TASK, seed=3)
    total, steps, info = episode(env, lambda obs: torch.rand(2) * 2 - 1)
    assert steps == 1000 and total == -1000.0 and info["success"] == 0.0


@needs_ogbench
def test_action_repeat_holds_each_action_and_shortens_the_episode():
    """action_repeat=4: 250 agent steps of 4 simulator steps each (-4 a step), the point
    moves 4 times as far per step, and the goal still ends the episode."""
    env, cfg = make(TASK, action_repeat=4)
    assert cfg.episode_length == 250 and cfg.seed_steps == 1250
    single, _ = make(TASK)
    push = torch.tensor([0.0, 1.0])  # north, where the start cell has room
    start, single_start = env.reset(), single.reset()
    far = env.step(push)[0] - start
    near = single.step(push)[0] - single_start
    assert 3 < float(far.norm() / near.norm()) < 5
    total, steps, _ = episode(env, lambda obs: torch.rand(2) * 2 - 1)
    assert steps == 250 and total == -1000.0
    maze = innermost(env)._env.unwrapped
    env.reset()
    maze.set_xy(np.asarray(maze.cur_goal_xy))
    _, reward, done, info = env.step(torch.zeros(2))
    assert reward == 0.0 and done and info["success"] == 1.0  # stops at the goal


def test_action_repeat_is_refused_where_the_task_keeps_its_own():
    with pytest.raises(ValueError, match="keeps TD-MPC2's action repeat of 2"):
        make("walker-walk", action_repeat=4)
