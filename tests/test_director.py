"""The Director extension: Goal-VAE, Manager, goal-conditioned planning, DirectorTrainer."""

from __future__ import annotations

import csv

import pytest
import torch

from tdmpc2.agent import TDMPC2
from tdmpc2.common.goal_vae import GoalVAE, goal_reward
from tdmpc2.common.layers import simnorm
from tdmpc2.common.manager import Manager, gae
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


def latents(n: int, dim: int = 32) -> torch.Tensor:
    return simnorm(torch.randn(n, dim, generator=torch.Generator().manual_seed(0)) * 3, 8)


# ------------------------------------------------------------------ Goal-VAE
def test_goal_vae_shapes_one_hot_codes_and_straight_through():
    vae = GoalVAE(32, n_latents=4, n_classes=6, hidden_dim=32)
    z = latents(10)
    assert vae.logits(z).shape == (10, 4, 6)
    for sample in (True, False):
        codes = vae.encode(z, sample=sample)
        assert codes.shape == (10, 4, 6)
        codes = codes.detach()
        assert torch.allclose(codes, codes.round(), atol=1e-6)  # one-hot up to rounding
        assert torch.equal(codes.round().sum(-1), torch.ones(10, 4))
    goal = vae.decode(vae.encode(z))
    assert goal.shape == (10, 32)
    assert torch.allclose(goal.view(10, 4, 8).sum(-1), torch.ones(10, 4), atol=1e-5)
    goal.pow(2).sum().backward()
    assert vae.encoder[0].weight.grad.abs().sum() > 0  # gradients pass the one-hot sample
    random_codes = vae.sample_code((2000,))
    assert torch.equal(random_codes.sum(-1), torch.ones(2000, 4))
    assert (random_codes.mean(0) - 1 / 6).abs().max() < 0.05


def test_goal_vae_temperature_schedule():
    vae = GoalVAE(32, 2, 3, hidden_dim=16, temp_start=1.0, temp_min=0.1, anneal_steps=1000)
    assert vae.temperature(0) == pytest.approx(1.0)
    assert vae.temperature(500) == pytest.approx(0.1**0.5)
    assert vae.temperature(1000) == pytest.approx(0.1)
    assert vae.temperature(10_000) == pytest.approx(0.1)


def test_goal_vae_loss_falls_on_fixed_latents():
    torch.manual_seed(0)
    vae = GoalVAE(32, n_latents=8, n_classes=8, hidden_dim=64, lr=1e-3, anneal_steps=200)
    z = latents(256)
    first = vae.update(z, 0)
    for step in range(300):
        last = vae.update(z, step)
    assert last["goal_vae/recon_loss"] < 0.7 * first["goal_vae/recon_loss"]
    assert set(first) >= {"goal_vae/total_loss", "goal_vae/recon_loss", "goal_vae/temperature"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_classes": 1}, "goal_vae.n_classes must be >= 2"), ({"n_latents": 0}, "n_latents")],
)
def test_goal_vae_rejects_bad_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GoalVAE(32, **{"n_latents": 2, "n_classes": 3, **kwargs})


def test_goal_rewards():
    z = torch.tensor([[3.0, 4.0]])
    assert goal_reward(z, torch.zeros(1, 2), "l2").item() == pytest.approx(-5.0)
    assert goal_reward(z, z, "cosine_max").item() == pytest.approx(1.0)
    assert goal_reward(z, 2 * z, "cosine_max").item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown goal reward"):
        goal_reward(z, z, "dot")


# ------------------------------------------------------------------- Manager
def test_gae_matches_hand_computation():
    gamma, lam = 0.9, 0.8
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.5], [1.0], [1.5], [2.0]])
    dones = torch.tensor([[0.0], [1.0], [0.0]])
    # t=2: delta = 3 + 0.9*2.0 - 1.5 = 3.3;                A2 = 3.3
    # t=1: delta = 2 + 0 - 1.0 = 1.0 (episode ends);       A1 = 1.0
    # t=0: delta = 1 + 0.9*1.0 - 0.5 = 1.4;                A0 = 1.4 + 0.9*0.8*1.0 = 2.12
    adv, ret = gae(rewards, values, dones, gamma, lam)
    assert torch.allclose(adv, torch.tensor([[2.12], [1.0], [3.3]]))
    assert torch.allclose(ret, torch.tensor([[2.62], [2.0], [4.8]]))


def test_manager_act_shapes_and_greedy_codes():
    manager = Manager(32, n_latents=3, n_classes=5, hidden_dim=32)
    z = latents(4)
    codes = manager.act(z)
    assert codes.shape == (4, 3, 5)
    assert torch.equal(codes.sum(-1), torch.ones(4, 3))
    torch.nn.init.normal_(manager.actor[-1].weight)
    greedy = manager.act(z, deterministic=True)
    assert torch.equal(greedy, manager.act(z, deterministic=True))
    logits = manager.actor(z).view(4, 3, 5)
    assert torch.equal(greedy.argmax(-1), logits.argmax(-1))


def test_manager_learns_a_bandit():
    torch.manual_seed(0)
    manager = Manager(32, n_latents=2, n_classes=4, hidden_dim=32, lr=3e-3, entropy_coef=1e-3)
    z = latents(1).expand(17, 8, 32).contiguous()
    for _ in range(200):
        codes = manager.act(z[:-1].reshape(-1, 32)).view(16, 8, 2, 4)
        rewards = (codes[:, :, 0, 2] == 1).float()
        metrics = manager.update(z, codes, rewards, torch.zeros(16, 8))
    assert manager.act(z[0, :1], deterministic=True)[0, 0].argmax() == 2
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    assert {"manager/actor_loss", "manager/critic_loss", "manager/entropy"} <= set(metrics)


# -------------------------------------------------------------------- Worker
def director_cfg(extra: list[str] | None = None):
    return make_cfg([*TINY, "trainer=director", *(extra or [])])


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
