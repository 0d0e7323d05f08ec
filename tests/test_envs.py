"""Environment contract: shapes, action repeat, episode length, seeding, task names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tdmpc2.envs import KNOWN_TASKS, make_env
from tdmpc2.envs.toy import TARGET
from tdmpc2.envs.wrappers import ActionRepeat, TimeLimit


def make(task: str, seed: int = 1, **fields):
    cfg = OmegaConf.create({"task": task, "seed": seed, "seed_steps": "???", **fields})
    return make_env(cfg), cfg


def episode(env, policy) -> tuple[float, int, dict]:
    obs, done, total, steps, info = env.reset(), False, 0.0, 0, {}
    while not done:
        obs, reward, done, info = env.step(policy(obs))
        total += reward
        steps += 1
    return total, steps, info


def innermost(env):
    while hasattr(env, "env"):
        env = env.env
    return env


def test_walker_walk_contract():
    env, cfg = make("walker-walk")
    assert tuple(cfg.obs_shape["state"]) == (24,)
    assert (cfg.action_dim, cfg.episode_length, cfg.seed_steps) == (6, 500, 2500)
    assert env.max_episode_steps == 500
    assert env.observation_space.shape == (24,)
    assert env.action_space.shape == (6,)
    assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
    obs = env.reset()
    assert obs.dtype == torch.float32 and obs.shape == (24,)
    action = env.rand_act()
    assert action.dtype == torch.float32 and action.shape == (6,)
    assert action.abs().max() <= 1

    steps, done = 0, False
    while not done:
        obs, reward, done, info = env.step(env.rand_act())
        steps += 1
        assert obs.dtype == torch.float32 and obs.shape == (24,)
        assert isinstance(reward, float) and 0 <= reward <= 2  # two simulator rewards in [0, 1]
        assert info == {"terminated": False, "success": 0.0}
        assert done == (steps == 500)
    suite_env = innermost(env)._env  # each agent step advanced the simulation twice
    assert suite_env.physics.data.time == pytest.approx(1000 * suite_env.control_timestep())


def test_same_seed_same_first_observation():
    for task in ("walker-walk", "toy-reach"):
        first = make(task, seed=3)[0].reset()
        assert torch.equal(first, make(task, seed=3)[0].reset())
        assert not torch.equal(first, make(task, seed=4)[0].reset())


def test_explicit_seed_steps_is_kept():
    assert make("toy-reach", seed_steps=100)[1].seed_steps == 100
    assert make("toy-reach")[1].seed_steps == 1000


def test_suite_task_names_cover_dm_control():
    from dm_control import suite

    from tdmpc2.envs import dmcontrol

    assert {dmcontrol.resolve(name) for name in dmcontrol.TASKS} == set(suite.ALL_TASKS)
    assert len(dmcontrol.TASKS) == len(suite.ALL_TASKS)
    assert {"cup-catch", "pointmass-easy", "cartpole-swingup-sparse"} <= set(KNOWN_TASKS)
    assert dmcontrol.resolve("ball_in_cup-catch") == ("ball_in_cup", "catch")
    assert dmcontrol.resolve("cartpole-swingup_sparse") == ("cartpole", "swingup_sparse")


@pytest.mark.parametrize(
    "task", ["cartpole-swingup", "cheetah-run", "reacher-easy", "cup-catch", "ball_in_cup-catch"]
)
def test_other_suite_tasks_step(task):
    env, cfg = make(task)
    assert env.reset().shape == tuple(cfg.obs_shape["state"])
    obs, reward, done, info = env.step(env.rand_act())
    assert obs.shape == tuple(cfg.obs_shape["state"])
    assert isinstance(reward, float) and not done and not info["terminated"]
    assert cfg.episode_length == 500


def make_gym(task: str):
    """Skips when gymnasium's MuJoCo environments cannot be imported."""
    from gymnasium.error import DependencyNotInstalled

    try:
        import gymnasium.envs.mujoco  # noqa: F401
    except (ImportError, DependencyNotInstalled) as err:
        pytest.skip(f"gymnasium MuJoCo environments unavailable: {err}")
    return make(task)


def test_gym_half_cheetah_steps():
    env, cfg = make_gym("gym-HalfCheetah-v5")
    assert (tuple(cfg.obs_shape["state"]), cfg.action_dim) == ((17,), 6)
    assert cfg.episode_length == env.max_episode_steps == 1000
    assert env.reset().dtype == torch.float32
    obs, reward, done, info = env.step(env.rand_act())
    assert obs.shape == (17,) and isinstance(reward, float)
    assert not done and info == {"success": 0.0, "terminated": False}


def test_gym_termination_is_reported():
    env, cfg = make_gym("gym-Hopper-v5")
    _, steps, info = episode(env, lambda obs: torch.ones(cfg.action_dim))
    assert steps < 1000 and info["terminated"]  # the hopper falls long before the time limit


class Counter:
    """A fake simulator: reward 1 per step, terminal after `terminal_at` steps."""

    observation_space = action_space = None

    def __init__(self, terminal_at: int = 1000) -> None:
        self.t, self.terminal_at = 0, terminal_at

    def reset(self) -> np.ndarray:
        self.t = 0
        return np.zeros(1)

    def step(self, action):
        self.t += 1
        return np.full(1, self.t), 1.0, self.t >= self.terminal_at, False, {}


def test_action_repeat_and_time_limit():
    env = TimeLimit(ActionRepeat(Counter(terminal_at=5), 2), 10)
    env.reset()
    assert env.step(None)[:4] == (np.full(1, 2), 2.0, False, False)
    env.step(None)
    obs, reward, terminated, truncated, _ = env.step(None)  # stops at the terminal state
    assert (obs[0], reward, terminated, truncated) == (5, 1.0, True, False)

    env = TimeLimit(ActionRepeat(Counter(), 2), 3)
    env.reset()
    assert [env.step(None)[3] for _ in range(3)] == [False, False, True]


def test_toy_reach_random_policy_scores_far_below_steering():
    env, cfg = make("toy-reach", seed=0)
    assert (tuple(cfg.obs_shape["state"]), cfg.action_dim, cfg.episode_length) == ((4,), 2, 50)
    target = torch.as_tensor(TARGET)

    def steer(obs: torch.Tensor) -> torch.Tensor:
        return (10 * (target - obs[:2]) - 10 * obs[2:]).clamp(-1, 1)

    random = [episode(env, lambda obs: env.rand_act()) for _ in range(20)]
    steered = [episode(env, steer) for _ in range(20)]
    assert all(steps == 50 and not info["terminated"] for _, steps, info in random + steered)
    random_return = np.mean([r for r, _, _ in random])
    steered_return = np.mean([r for r, _, _ in steered])
    print(f"toy-reach: random {random_return:.1f}, steering {steered_return:.1f}")
    assert random_return <= 0.6 * steered_return
    assert steered_return > 40 and all(info["success"] for _, _, info in steered)


def test_unknown_task_lists_known_ones():
    with pytest.raises(ValueError, match="Unknown task 'walker-wlak'") as err:
        make("walker-wlak")
    message = str(err.value)
    assert "did you mean 'walker-walk'" in message
    assert "Known tasks" in message and "walker-walk" in message and "toy-reach" in message
    assert message.count("Unknown task") == 1
    with pytest.raises(ValueError, match="Known tasks"):
        make("gym-NoSuchEnv-v5")
