"""The Director extension: Goal-VAE, Manager, goal-conditioned planning, DirectorTrainer."""

from __future__ import annotations

import csv

import pytest
import torch

from tdmpc2.agent import TDMPC2
from tdmpc2.common.goal_vae import goal_reward
from tdmpc2.common.layers import simnorm
from tdmpc2.evaluate import evaluate
from tdmpc2.train import build
from tests.conftest import TINY, compose_cfg, make_cfg

METRICS = [
    "goal_vae/total_loss",
    "goal_vae/recon_loss",
    "goal_vae/temperature",
    "manager/actor_loss",
    "manager/critic_loss",
    "manager/entropy",
    "manager/advantage",
    "worker/consistency_loss",
    "worker/reward_loss",
    "worker/value_loss",
    "worker/pi_loss",
    "goal/perplexity",
    "goal/distance",
    "episode_reward",
    "step",
    "steps_per_s",
]


def test_goal_rewards():
    z = torch.tensor([[3.0, 4.0]])
    assert goal_reward(z, torch.zeros(1, 2), "l2").item() == pytest.approx(-5.0)
    assert goal_reward(z, z, "cosine_max").item() == pytest.approx(1.0)
    assert goal_reward(z, 2 * z, "cosine_max").item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown goal reward"):
        goal_reward(z, z, "dot")


# -------------------------------------------------------------------- Worker
def director_cfg(extra: list[str] | None = None):
    return make_cfg([*TINY, "trainer=director", *(extra or [])])


def test_goal_none_plans_exactly_like_the_flat_agent():
    """Same weights, same seed, several warm-started steps: identical actions."""
    flat = TDMPC2(make_cfg(TINY))
    worker = TDMPC2(director_cfg())
    worker.model.load_state_dict(flat.model.state_dict())

    def rollout(agent: TDMPC2) -> torch.Tensor:
        torch.manual_seed(3)
        obs = torch.randn(6, 5)
        return torch.stack(
            [agent.act(o, t0=t == 0, eval_mode=t % 2 == 1) for t, o in enumerate(obs)]
        )

    assert torch.equal(rollout(flat), rollout(worker))


def test_goal_none_plans_like_a_zero_goal_term():
    cfg = director_cfg(["worker.goal_coef=0.0"])
    agent = TDMPC2(cfg)
    obs = torch.randn(5)
    goal = simnorm(torch.randn(1, 32), 8)
    torch.manual_seed(7)
    flat = agent.act(obs, t0=True)
    torch.manual_seed(7)
    with_goal = agent.act(obs, t0=True, goal=goal)
    assert torch.equal(flat, with_goal)


def test_goal_conditioned_planning_moves_toward_the_goal():
    cfg = director_cfg(["worker.goal_coef=100.0", "num_samples=256", "iterations=4"])
    torch.manual_seed(0)
    agent = TDMPC2(cfg)
    for p in agent.model._dynamics.parameters():  # a dynamics model that reacts to actions
        torch.nn.init.normal_(p, std=0.3)
    closer = 0
    for trial in range(10):
        obs = torch.randn(5, generator=torch.Generator().manual_seed(trial))
        with torch.no_grad():
            z = agent.model.encode(obs.unsqueeze(0))
            target = agent.model.next(z, torch.ones(1, 3))

        @torch.no_grad()
        def distance(action: torch.Tensor, z=z, target=target) -> float:
            return float((agent.model.next(z, action.unsqueeze(0)) - target).norm())

        free = distance(agent.act(obs, t0=True, eval_mode=True))
        steered = distance(agent.act(obs, t0=True, eval_mode=True, goal=target))
        closer += steered < free
    assert closer >= 8


# ------------------------------------------------------------------- Trainer
def read_rows(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_director_run_logs_every_metric_and_checkpoint_reloads(tmp_path):
    overrides = [
        *TINY,
        "task=director_walker_walk",
        "goal_vae.n_latents=4",
        "goal_vae.n_classes=3",
        "manager.goal_interval=5",
        "manager.rollout_len=8",
        "steps=1000",
        "seed_steps=300",
        "eval_freq=1000",
        "eval_episodes=1",
        "progress_bar=false",
        f"work_dir={tmp_path}",
    ]
    trainer = build(compose_cfg(overrides), overrides)
    assert type(trainer).__name__ == "DirectorTrainer"
    assert trainer.cfg.task == "walker-walk"
    assert trainer.interval == 5  # the command line beats the preset's 8
    assert trainer.goal_vae.n_latents == 4
    trainer.train()
    rows = read_rows(tmp_path / "train.csv")
    last = rows[-1]
    missing = [m for m in METRICS if not last.get(m)]
    assert not missing, f"metrics not logged: {missing}"
    assert 1 <= float(last["goal/perplexity"]) <= 3

    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert {"goal_vae", "goal_vae_optim", "manager", "manager_optim", "agent"} <= set(ckpt)
    results = evaluate(
        compose_cfg([f"checkpoint={tmp_path}", "task=director_walker_walk", "eval_episodes=1"]),
        ["task=director_walker_walk"],
    )
    assert 0 <= results["episode_reward"] <= 500


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("manager.goal_interval=0", "manager.goal_interval must be >= 1"),
        ("goal_vae.n_classes=1", "goal_vae.n_classes must be >= 2"),
        ("worker.goal_reward=cosine", "worker.goal_reward must be one of"),
    ],
)
def test_director_rejects_bad_settings(tmp_path, override, message):
    overrides = [*TINY, "task=director_walker_walk", override, f"work_dir={tmp_path}"]
    with pytest.raises(ValueError, match=message):
        build(compose_cfg(overrides), overrides)
