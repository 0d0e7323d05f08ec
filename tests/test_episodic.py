"""Episodic tasks: a termination head, TD targets cut at true terminations, planning
that stops at a predicted one, and which tasks are episodic by default."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys

import pytest
import torch

from tdmpc2.agent import TDMPC2
from tdmpc2.common.layers import simnorm
from tdmpc2.envs import make_env
from tests.conftest import ROOT, TINY, compose_cfg, make_cfg


def episodic_agent(end_logit: float) -> TDMPC2:
    """A tiny episodic agent whose termination head always outputs `end_logit`, with
    rewards and values far from the zero of fresh output layers."""
    torch.manual_seed(0)
    agent = TDMPC2(make_cfg([*TINY, "episodic=true"]))
    last = agent.model._termination[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.constant_(last.bias, end_logit)
    torch.nn.init.normal_(agent.model._reward[-1].weight, std=1.0)
    torch.nn.init.normal_(agent.model._Qs.weights[-1], std=1.0)
    agent.model.soft_update_target_Q(1.0)
    return agent


def rollout_inputs(agent: TDMPC2) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    z = simnorm(torch.randn(1, agent.cfg.latent_dim), agent.cfg.simnorm_dim)
    return z, torch.rand(agent.cfg.horizon, 40, agent.cfg.action_dim) * 2 - 1


def test_planning_counts_nothing_after_a_predicted_termination():
    agent = episodic_agent(end_logit=10.0)  # every rollout ends on its first step
    z, actions = rollout_inputs(agent)
    first_reward = agent.model.step(z, actions[0])[1]
    torch.manual_seed(2)
    value = agent._estimate_value(z, actions)
    assert torch.allclose(value, agent.model.two_hot.decode(first_reward))
    alive = agent._rollout(z, actions)[3]
    assert torch.equal(alive, torch.zeros(40, 1))


def test_planning_with_no_termination_predicted_is_the_non_episodic_value():
    agent = episodic_agent(end_logit=-10.0)
    z, actions = rollout_inputs(agent)
    torch.manual_seed(2)
    episodic = agent._estimate_value(z, actions)
    agent.model.episodic = False
    torch.manual_seed(2)
    assert torch.equal(episodic, agent._estimate_value(z, actions))


def test_cached_prior_rollouts_keep_their_termination():
    agent = episodic_agent(end_logit=0.0)
    z, actions = rollout_inputs(agent)
    last = agent.model._termination[-1]
    with torch.no_grad():  # termination now depends on the latent: about half end at once
        last.weight.copy_(torch.randn_like(last.weight) * 5)
        last.bias.sub_(agent.model.termination(agent.model.step(z, actions[0])[0]).median())
    torch.manual_seed(3)
    full = agent._estimate_value(z, actions)
    prefix = agent._rollout(z, actions[:, :7])
    torch.manual_seed(3)
    cached = agent._estimate_value(z, actions[:, 7:], prefix=prefix)
    assert torch.allclose(cached, full, atol=1e-5)
    alive = agent._rollout(z, actions)[3]
    assert 0 < alive.sum() < len(alive)


def test_termination_head_learns_from_true_terminations_and_targets_stop_there():
    agent = episodic_agent(end_logit=0.0)
    H, B, cfg = agent.cfg.horizon, 8, agent.cfg
    terminated = torch.zeros(H, B, 1)
    terminated[-1, :4] = 1.0
    batch = {
        "obs": torch.randn(H + 1, B, cfg.obs_shape["state"][0]),
        "action": torch.rand(H, B, cfg.action_dim) * 2 - 1,
        "reward": torch.ones(H, B, 1),
        "terminated": terminated,
    }
    total, parts, _ = agent.losses(batch)
    assert parts["termination_loss"].item() == pytest.approx(math.log(2.0))
    total.backward()
    assert agent.model._termination[-1].bias.grad.abs().item() > 0
    next_z = agent.model.encode(batch["obs"][1:])
    targets = agent._td_target(next_z, batch["reward"], terminated)
    assert torch.equal(targets[-1, :4], torch.ones(4, 1))  # r + 0 * Q at a true end
    assert not torch.equal(targets[-1, 4:], torch.ones(4, 1))


@pytest.mark.parametrize(
    ("task", "episodic"),
    [("gym-Hopper-v5", True), ("gym-HalfCheetah-v5", False), ("walker-walk", False)],
)
def test_episodic_by_default_only_where_the_task_ends_on_a_fall(task, episodic):
    cfg = compose_cfg([f"task={task}"])
    make_env(cfg)
    assert cfg.episodic is episodic
    cfg = compose_cfg([f"task={task}", f"episodic={not episodic}"])
    make_env(cfg)
    assert cfg.episodic is (not episodic)  # an explicit setting wins


def test_episodic_hopper_trains_end_to_end(tmp_path):
    args = [*TINY, "task=gym-Hopper-v5", "steps=250", "seed_steps=120", "eval_freq=250"]
    args += ["eval_episodes=1", "threads=1", "progress_bar=false", f"work_dir={tmp_path}"]
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    proc = subprocess.run(
        [sys.executable, "tdmpc2/train.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["termination_loss"]) for r in rows if r.get("termination_loss")]
    assert losses and all(0 <= x < 1 for x in losses)
    assert any(int(r["episode_length"]) < 1000 for r in rows)  # the hopper fell: it ended
    payload = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert payload["cfg"]["episodic"] is True
    assert any(k.startswith("_termination.") for k in payload["agent"]["model"])
