"""Environment contract: shapes, action repeat, episode length, seeding, names."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from tdmpc2.envs import make_env


def make(task: str, seed: int = 1):
    cfg = OmegaConf.create({"task": task, "seed": seed})
    return make_env(cfg), cfg


def test_walker_walk_contract():
    env, cfg = make("walker-walk")
    assert cfg.obs_shape == {"state": [24]}
    assert cfg.action_dim == 6
    assert cfg.episode_length == 500
    obs = env.reset()
    assert obs.dtype == torch.float32
    assert obs.shape == (24,)
    steps, done, total = 0, False, 0.0
    while not done:
        obs, reward, done, info = env.step(env.rand_act())
        steps += 1
        total += reward
        assert not info["terminated"]
        assert 0 <= reward <= 2  # two simulator steps of rewards in [0, 1]
    assert steps == 500
    assert torch.equal(
        make("walker-walk", seed=3)[0].reset(), make("walker-walk", seed=3)[0].reset()
    )
    assert not torch.equal(
        make("walker-walk", seed=3)[0].reset(), make("walker-walk", seed=4)[0].reset()
    )


@pytest.mark.parametrize(
    "task", ["cartpole-swingup", "cheetah-run", "reacher-easy", "cup-catch", "gym-HalfCheetah-v5"]
)
def test_other_tasks_step(task):
    env, cfg = make(task)
    obs = env.reset()
    obs, reward, done, _ = env.step(env.rand_act())
    assert obs.shape == tuple(cfg.obs_shape["state"])
    assert isinstance(reward, float)
    assert not done


def test_gym_terminations_are_reported():
    env, cfg = make("gym-Hopper-v5")
    assert cfg.episode_length == 1000
    env.reset()
    done, info = False, {}
    while not done:
        _, _, done, info = env.step(torch.ones(cfg.action_dim))
    assert info["terminated"]  # the hopper falls long before the time limit


def test_unknown_task_lists_known_ones():
    with pytest.raises(ValueError, match="Unknown task 'walker-wlak'") as err:
        make("walker-wlak")
    assert "did you mean 'walker-walk'" in str(err.value)
    assert "Known tasks" in str(err.value)
    assert "humanoid-run" in str(err.value)
