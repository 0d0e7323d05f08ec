"""The Director extension: Goal-VAE, Manager, goal-conditioned planning, DirectorTrainer."""

from __future__ import annotations

import csv
import importlib.util

import pytest
import torch

from tdmpc2.agent import TDMPC2
from tdmpc2.common import checkpoint
from tdmpc2.common.layers import simnorm
from tdmpc2.common.math import cosine_max
from tdmpc2.common.parser import ConfigError
from tdmpc2.evaluate import evaluate
from tdmpc2.train import build
from tdmpc2.trainer.director_trainer import check_director_cfg
from tests.conftest import TINY, compose_cfg, make_cfg
from tests.test_resume import assert_same

METRICS = [
    "goal_vae/total_loss",
    "goal_vae/recon_loss",
    "goal_vae/temperature",
    "manager/actor_loss",
    "manager/critic_loss",
    "manager/entropy",
    "manager/advantage",
    "manager/return_extrinsic",
    "manager/return_exploration",
    "worker/consistency_loss",
    "worker/reward_loss",
    "worker/value_loss",
    "worker/pi_loss",
    "worker/goal_q_loss",
    "worker/goal_pi_loss",
    "worker/goal_value",
    "goal/perplexity",
    "goal/reached",
    "goal/similarity",
    "episode_reward",
    "step",
    "steps_per_s",
]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: on the busy 2-core machine a second thread only contends (a
    training run here took 20 minutes with two threads, one with one); conftest
    restores the default after the module."""
    torch.set_num_threads(1)


# Director's sizes scaled down to the unit-test model.
SMALL_DIRECTOR = [
    "goal_vae.hidden_dim=32",
    "manager.hidden_dim=32",
    "manager.batch_size=8",
    "worker.hidden_dim=32",
    "worker.batch_size=16",
]


def test_cosine_max_similarity():
    z = torch.tensor([[3.0, 4.0]])
    assert cosine_max(z, z).item() == pytest.approx(1.0)
    assert cosine_max(z, 2 * z).item() == pytest.approx(0.5)  # the larger norm divides
    assert cosine_max(2 * z, z).item() == pytest.approx(0.5)  # symmetric
    assert cosine_max(z, torch.tensor([[4.0, -3.0]])).item() == pytest.approx(0.0)
    assert cosine_max(torch.zeros(1, 2), torch.zeros(1, 2)).item() == 0.0  # no 0/0
    # SimNorm latents are non-negative: the similarity lies in [0, 1], 1 only at the goal.
    a, b = simnorm(torch.randn(100, 32) * 3, 8), simnorm(torch.randn(100, 32) * 3, 8)
    sim = cosine_max(a, b)
    assert sim.shape == (100, 1)
    assert ((sim >= 0) & (sim < 1)).all()
    assert torch.allclose(cosine_max(a, a), torch.ones(100, 1))


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


def test_goal_term_with_range_scale_is_bounded_by_the_goal_weight():
    """With goal_scale range the whole goal term (inside the horizon and after it) is
    goal_coef * Q range * V with V in [0, 1]; the part of V after the horizon is at
    most gd^H, and reaches it when the goal value is 1."""
    cfg = director_cfg(
        ["worker.goal_coef=0.4", "worker.goal_discount=0.8", "worker.goal_scale=range"]
    )
    agent = TDMPC2(cfg)
    agent.scale.percentiles.copy_(torch.tensor([0.0, 3.0]))  # Q range 3
    weight = 0.4 * 3.0
    z = simnorm(torch.randn(1, 32), 8)
    actions = torch.rand(cfg.horizon, 40, 3) * 2 - 1
    with torch.no_grad():
        last = agent._rollout(z, actions)[1]
    tail_bound = 0.8**cfg.horizon
    for goal in (simnorm(torch.randn(1, 32), 8), last[:1]):  # a random goal; a reached one
        tail = agent._goal_value(last, goal)
        assert tail.shape == (40, 1)
        assert (tail >= 0).all() and (tail <= tail_bound + 1e-6).all()
        torch.manual_seed(0)
        with_goal = agent._estimate_value(z, actions, goal=goal)
        torch.manual_seed(0)
        flat = agent._estimate_value(z, actions)
        term = with_goal - flat
        assert (term >= -1e-5).all() and (term <= weight + 1e-5).all()
    assert torch.allclose(agent._goal_value(last[:1], last[:1]), torch.tensor(tail_bound))
    agent.goal_value = lambda z, g, mask: torch.ones(len(z), 1)  # the largest goal value
    assert torch.allclose(agent._goal_value(last, goal), torch.full((40, 1), tail_bound))
    agent.goal_value = lambda z, g, mask: torch.zeros(len(z), 1)
    assert torch.equal(agent._goal_value(last, goal), torch.zeros(40, 1))


def varied_task_value(agent: TDMPC2) -> None:
    """A reward head whose output differs across candidates by far more than rounding:
    zero-initialised heads give a task value whose spread is 0 on one CPU and 1e-7 on
    another, which no ratio of spreads survives."""
    torch.manual_seed(3)
    for p in agent.model._reward.parameters():
        torch.nn.init.normal_(p, std=0.3)


def goal_term(agent: TDMPC2, z, actions, goal) -> tuple[torch.Tensor, torch.Tensor]:
    """(value with the goal - value without it, value without it) over the candidates."""
    torch.manual_seed(0)
    with_goal = agent._estimate_value(z, actions, goal=goal)
    torch.manual_seed(0)
    flat = agent._estimate_value(z, actions)
    return with_goal - flat, flat


def test_goal_term_with_spread_scale_spreads_goal_coef_times_the_task_value():
    """goal_scale spread: over the candidates, the goal term's sd is goal_coef times the
    task value's, whatever the Q range; a goal value that hardly varies weighs less."""
    cfg = director_cfg(["worker.goal_coef=0.5", "worker.goal_scale=spread"])
    agent = TDMPC2(cfg)
    varied_task_value(agent)
    torch.manual_seed(1)
    z = simnorm(torch.randn(1, 32), 8)
    actions = torch.rand(cfg.horizon, 40, 3) * 2 - 1
    goal = simnorm(torch.randn(1, 32), 8)
    for q_range in (1.0, 3.0):  # the Q range does not enter while the task value varies
        agent.scale.percentiles.copy_(torch.tensor([0.0, q_range]))
        agent.goal_value = lambda z, g, mask: torch.sigmoid(4 * (z - g).sum(-1, keepdim=True))
        term, flat = goal_term(agent, z, actions, goal)
        assert flat.std() > 3 * cfg.worker.value_spread_floor * q_range  # above the floor
        assert torch.allclose(term.std(), 0.5 * flat.std(), rtol=1e-3)
        assert (term >= 0).all()
    # A goal value nearly equal for every candidate: its sd counts as GOAL_SPREAD_FLOOR.
    agent.goal_value = lambda z, g, mask: 0.5 + 1e-3 * z[:, :1]
    agent._rollout = lambda z, actions, goal, task, explore: (
        *TDMPC2._rollout(agent, z, actions)[:4],
        0,
        0,
    )
    term, flat = goal_term(agent, z, actions, goal)
    assert term.std() < 0.5 * flat.std() * 0.2


@pytest.mark.parametrize("q_range", [1.0, 40.0])
def test_goal_term_steers_where_the_task_value_does_not_vary(q_range):
    """A task value with no spread over the candidates (zero-initialised heads: exactly 0
    on some CPUs, rounding noise on others) counts as value_spread_floor times the Q range:
    the goal term then spreads goal_coef times that and ranks the candidates alone."""
    cfg = director_cfg(["worker.goal_coef=0.5", "worker.value_spread_floor=0.02"])
    agent = TDMPC2(cfg)
    agent.scale.percentiles.copy_(torch.tensor([-q_range, 0.0]))
    agent.goal_value = lambda z, g, mask: torch.sigmoid(4 * (z - g).sum(-1, keepdim=True))
    torch.manual_seed(1)
    z = simnorm(torch.randn(1, 32), 8)
    actions = torch.rand(cfg.horizon, 40, 3) * 2 - 1
    goal = simnorm(torch.randn(1, 32), 8)
    term, flat = goal_term(agent, z, actions, goal)
    assert flat.std() < 1e-4  # the degenerate case, on any CPU
    expected = 0.5 * 0.02 * q_range
    assert torch.allclose(term.std(), torch.tensor(expected), rtol=0.05)
    with_goal = flat + term  # the elites are the candidates the goal value ranks first
    goal_rank = term.squeeze(-1).argsort(descending=True)[:8]
    assert set(with_goal.squeeze(-1).argsort(descending=True)[:8].tolist()) == set(
        goal_rank.tolist()
    )


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


def test_novelty_term_spreads_novelty_coef_times_the_task_value():
    """The exploration bonus in the planner: the discounted novelty of the imagined
    latents, its sd over the candidates novelty_coef times the task value's; the cached
    prior rollouts carry it; without `explore` the value is the flat one."""
    cfg = director_cfg(["worker.novelty_coef=0.3", "worker.goal_scale=spread"])
    agent = TDMPC2(cfg)
    varied_task_value(agent)
    agent.novelty = lambda z: z[:, :4].sum(-1)
    z = simnorm(torch.randn(1, 32), 8)
    actions = torch.rand(cfg.horizon, 40, 3) * 2 - 1
    values = {}
    for explore in (False, True):
        torch.manual_seed(0)
        values[explore] = agent._estimate_value(z, actions, explore=explore)
    term = values[True] - values[False]
    assert values[False].std() > 3 * cfg.worker.value_spread_floor  # above the floor
    assert torch.allclose(term.std(), 0.3 * values[False].std(), rtol=1e-3)
    assert (term >= 0).all()
    prefix = agent._rollout(z, actions[:, :7], explore=True)
    torch.manual_seed(0)
    cached = agent._estimate_value(z, actions[:, 7:], prefix=prefix, explore=True)
    assert torch.allclose(cached, values[True], rtol=1e-5, atol=1e-5)


def test_task_coef_weighs_the_task_value_in_training_plans_only():
    """worker.task_coef scales the task value of every candidate (0: the goal term
    alone ranks them); evaluation plans with the whole task value whatever it is."""
    agents = {}
    for coef in (0.0, 1.0):
        torch.manual_seed(0)
        agents[coef] = TDMPC2(director_cfg([f"worker.task_coef={coef}"]))
        varied_task_value(agents[coef])
    agent = agents[0.0]
    agent.goal_value = lambda z, g, mask: torch.sigmoid(4 * (z - g).sum(-1, keepdim=True))
    torch.manual_seed(1)
    z, goal = simnorm(torch.randn(1, 32), 8), simnorm(torch.randn(1, 32), 8)
    actions = torch.rand(agent.cfg.horizon, 40, 3) * 2 - 1
    term, flat = goal_term(agent, z, actions, goal)
    assert flat.std() > 1e-2  # a task value that would move the ranking
    torch.manual_seed(0)
    goal_only = agent._estimate_value(z, actions, goal=goal, task_weight=0.0)
    assert torch.allclose(goal_only, term, rtol=1e-4, atol=1e-5)

    obs = torch.randn(5)
    for eval_mode, same in ((True, True), (False, False)):
        chosen = []
        for a in agents.values():
            a.goal_value = agent.goal_value
            torch.manual_seed(2)
            chosen.append(a.act(obs, t0=True, eval_mode=eval_mode, goal=goal))
        assert torch.equal(*chosen) == same


def test_novelty_steers_training_actions_but_not_evaluation():
    """With a big novelty_coef the planner's training actions lead to latents the
    novelty function rates higher than the flat planner's; evaluation ignores it."""
    cfg = director_cfg(["worker.novelty_coef=100.0", "num_samples=256", "iterations=4"])
    torch.manual_seed(0)
    agent = TDMPC2(cfg)
    for p in agent.model._dynamics.parameters():  # a dynamics model that reacts to actions
        torch.nn.init.normal_(p, std=0.3)
    novel = simnorm(torch.randn(1, 32, generator=torch.Generator().manual_seed(9)), 8)
    novelty_fn = lambda z: -(z - novel).norm(dim=-1)  # noqa: E731 (nearer `novel`: newer)
    more = 0
    for trial in range(10):
        obs = torch.randn(5, generator=torch.Generator().manual_seed(trial))
        with torch.no_grad():
            z = agent.model.encode(obs.unsqueeze(0))

        @torch.no_grad()
        def novelty(action: torch.Tensor, z=z) -> float:
            return float(novelty_fn(agent.model.next(z, action.unsqueeze(0))))

        actions = {}
        for name, fn in (("exploring", novelty_fn), ("flat", None)):
            agent.novelty = fn
            for eval_mode in (False, True):
                torch.manual_seed(trial)
                actions[name, eval_mode] = agent.act(obs, t0=True, eval_mode=eval_mode)
        assert torch.equal(actions["exploring", True], actions["flat", True])
        more += novelty(actions["exploring", False]) > novelty(actions["flat", False])
    assert more >= 8


# ------------------------------------------------------------------- Trainer
def read_rows(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_the_preset_builds_a_director_trainer_and_the_command_line_wins(tmp_path):
    overrides = [*TINY, "task=director_walker_walk", "manager.goal_interval=5"]
    overrides += ["goal_vae.n_latents=4", f"work_dir={tmp_path}"]
    trainer = build(compose_cfg(overrides), overrides)
    assert type(trainer).__name__ == "DirectorTrainer"
    assert trainer.cfg.task == "walker-walk"
    assert trainer.interval == 5  # the command line beats the preset's 8
    assert trainer.goal_vae.n_latents == 4
    assert trainer.agent.novelty is None  # worker.novelty_coef 0: no exploration bonus
    overrides.append("worker.novelty_coef=0.5")
    trainer = build(compose_cfg(overrides), overrides)
    assert trainer.agent.novelty == trainer.goal_vae.recon_error


def test_the_cup_catch_preset_carries_the_measured_exploration_settings(tmp_path):
    overrides = [*TINY, "task=director_cup_catch", f"work_dir={tmp_path}"]
    trainer = build(compose_cfg(overrides), overrides)
    assert type(trainer).__name__ == "DirectorTrainer"
    assert trainer.cfg.task == "cup-catch"
    assert trainer.agent.novelty == trainer.goal_vae.recon_error  # the Worker's bonus is on
    assert trainer.cfg.manager.return_floor == 0.01
    assert trainer.cfg.manager.entropy_target == 0.5


@pytest.mark.skipif(importlib.util.find_spec("ogbench") is None, reason="needs ogbench")
def test_the_pointmaze_preset_carries_the_measured_maze_settings(tmp_path):
    overrides = ["task=director_pointmaze", "threads=1", f"work_dir={tmp_path}"]
    trainer = build(compose_cfg(overrides), overrides)
    assert type(trainer).__name__ == "DirectorTrainer"
    assert trainer.cfg.task == "ogbench-pointmaze-medium-singletask-task3-v0"
    assert trainer.cfg.episodic and trainer.cfg.action_repeat == 4
    assert trainer.agent.novelty is None  # goals alone, no bonus
    assert (trainer.cfg.manager.return_floor, trainer.cfg.manager.entropy_target) == (0.01, 0.5)
    assert (trainer.cfg.num_samples, trainer.cfg.iterations, trainer.cfg.steps) == (256, 4, 24_000)


def test_director_run_logs_every_metric_and_checkpoint_reloads(tmp_path):
    overrides = [
        *TINY,
        *SMALL_DIRECTOR,
        "task=toy-reach",
        "trainer=director",
        "goal_vae.n_latents=4",
        "goal_vae.n_classes=3",
        "manager.goal_interval=5",
        "steps=200",
        "seed_steps=50",
        "eval_freq=200",
        "eval_episodes=1",
        "progress_bar=false",
        "threads=1",
        f"work_dir={tmp_path}",
    ]
    trainer = build(compose_cfg(overrides), overrides)
    trainer.train()
    rows = read_rows(tmp_path / "train.csv")
    last = rows[-1]
    missing = [m for m in METRICS if not last.get(m)]
    assert not missing, f"metrics not logged: {missing}"
    assert "goal/distance" not in last
    assert 1 <= float(last["goal/perplexity"]) <= 3
    for row in rows:  # each training episode: 10 intervals of 5 steps
        assert 0 <= float(row["goal/reached"]) <= 1
        assert 0 <= float(row["goal/similarity"]) <= 1

    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    keys = {"goal_vae", "goal_vae_optim", "manager", "manager_optim", "agent"}
    assert keys | {"goal_worker", "goal_worker_optim", "director"} <= set(ckpt)
    assert set(ckpt["director"]) == {"goal", "frontier", "start_similarity", "stats", "updates"}

    # A fresh trainer loads every network, optimiser and return scale back exactly.
    fresh = build(compose_cfg([*overrides[:-1], f"work_dir={tmp_path / 'b'}"]), overrides)
    fresh.load_state_dict(checkpoint.load(checkpoint.resolve_path(tmp_path), fresh.cfg))
    for name in ("goal_vae", "manager", "worker"):
        assert_same(getattr(trainer, name).state_dict(), getattr(fresh, name).state_dict(), name)
        saved, loaded = (getattr(t, name).optim_state_dict() for t in (trainer, fresh))
        assert_same(saved, loaded, name)
    assert all(bool(s.initialised) for s in fresh.manager.scales)
    assert fresh.agent.goal_value == fresh.worker.value  # the loaded goal critic plans
    assert_same(trainer.agent.model.state_dict(), fresh.agent.model.state_dict(), "model")
    assert fresh._step == trainer._step == 200
    flat = build(compose_cfg([*TINY, "task=toy-reach", f"work_dir={tmp_path / 'c'}"]), [])
    with pytest.raises(checkpoint.CheckpointError):  # a flat run cannot load it
        flat.load_state_dict(checkpoint.load(checkpoint.resolve_path(tmp_path), flat.cfg))
    results = evaluate(
        compose_cfg([f"checkpoint={tmp_path}", "task=toy-reach", "eval_episodes=1"]),
        ["task=toy-reach"],
    )
    assert 0 <= results["episode_reward"] <= 50
    assert 0 <= results["goal_reached"] <= 1 and 0 <= results["goal_similarity"] <= 1
    evals = read_rows(tmp_path / "eval.csv")  # every evaluation of training reports reach too
    assert all(0 <= float(r["goal_reached"]) <= 1 for r in evals)
    control = ["task=toy-reach", "worker.goal_coef=0"]  # the flat planner
    evaluate(compose_cfg([f"checkpoint={tmp_path}", "eval_episodes=1", *control]), control)
    rows = read_rows(tmp_path / "eval" / "eval.csv")
    assert [float(r["worker.goal_coef"]) for r in rows] == [0.5, 0.0]


def filled_director(tmp_path, extra: list[str] | None = None):
    """A toy-reach DirectorTrainer whose buffer holds three random 30-step episodes."""
    args = [*TINY, *SMALL_DIRECTOR, "task=toy-reach", "trainer=director", *(extra or [])]
    args.append(f"work_dir={tmp_path}")
    trainer = build(compose_cfg(args), args)
    g = torch.Generator().manual_seed(0)
    obs_dim = trainer.cfg.obs_shape["state"][0]
    for _ in range(3):
        trainer.buffer.add(
            {
                "obs": torch.randn(31, obs_dim, generator=g),
                "action": torch.rand(30, trainer.cfg.action_dim, generator=g) * 2 - 1,
                "reward": torch.rand(30, generator=g),
                "terminated": torch.zeros(30),
            }
        )
    return trainer


def state(module: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in module.state_dict().values()]


def same(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    after = module.state_dict().values()
    return all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_hierarchy_update_trains_each_part_only_through_its_own_optimiser(tmp_path):
    """The world model (and its Q range) is untouched and gets no gradients; the Goal-VAE,
    the goal critic and policy and the Manager all move; the Manager imagines
    `manager.decisions` intervals from `manager.batch_size` replay latents, rewarded
    with the Goal-VAE's reconstruction error where they end."""
    extra = ["manager.decisions=3", "manager.update_every=1", "goal_vae.n_classes=3"]
    trainer = filled_director(tmp_path, extra)
    torch.manual_seed(0)
    trainer._agent_update()  # Q range and optimiser states as in training
    agent, manager, worker = trainer.agent, trainer.manager, trainer.worker
    frozen = {"model": state(agent.model), "scale": state(agent.scale)}
    learners = {
        "goal_vae": trainer.goal_vae,
        "pi_g": worker._pi,
        "Q_g": worker._Qs,
        "manager actor": manager.actor,
        "manager critics": manager.critics,
    }
    moving = {name: state(module) for name, module in learners.items()}
    seen = []
    update = manager.update

    def grads(module: torch.nn.Module) -> list:
        return [None if p.grad is None else p.grad.clone() for p in module.parameters()]

    def recording(*args):
        """The Manager's step leaves what the intervals were played with as it was."""
        seen.append(args)
        others = (agent.model, trainer.goal_vae, worker)
        before = [(state(m), grads(m)) for m in others]
        out = update(*args)
        for module, (params, gs) in zip(others, before, strict=True):
            assert same(params, module)
            for g, h in zip(gs, grads(module), strict=True):
                assert (g is None and h is None) or torch.equal(g, h)
        return out

    manager.update = recording
    metrics = trainer._hierarchy_update()
    assert same(frozen["model"], agent.model) and same(frozen["scale"], agent.scale)
    assert all(p.grad is None for p in agent.model.parameters())
    for name, before in moving.items():
        assert not same(before, learners[name]), f"{name} did not learn"
    assert all(bool(s.initialised) for s in manager.scales)
    assert {"goal_vae/total_loss", "worker/goal_q_loss", "manager/return_exploration"} <= set(
        metrics
    )

    ((zs, codes, rewards, dones),) = seen
    assert zs.shape == (4, 8, 32)
    assert codes.shape == (3, 8, 8, 3) and rewards.shape == (2, 3, 8)
    assert torch.equal(dones, torch.zeros(3, 8))  # toy-reach is not episodic
    with torch.no_grad():
        assert torch.allclose(rewards[1], trainer.goal_vae.recon_error(zs[1:]), atol=1e-5)
    assert (rewards[1] > 0).all()


def test_manager_learns_every_update_every_updates(tmp_path):
    trainer = filled_director(tmp_path, ["manager.update_every=2"])
    calls = []
    update = trainer.manager.update
    trainer.manager.update = lambda *args: calls.append(1) or update(*args)
    for _ in range(4):
        trainer._hierarchy_update()
    assert len(calls) == 2


@pytest.mark.parametrize("deterministic", [False, True])
def test_evaluation_samples_the_managers_codes_unless_deterministic(tmp_path, deterministic):
    """Director samples its Manager's codes in evaluation too; its mode on request. The
    fresh Manager is uniform, so sampled codes differ and the mode is always class 0."""
    trainer = filled_director(tmp_path, [f"manager.deterministic={deterministic}"])
    obs = torch.zeros(trainer.cfg.obs_shape["state"][0])
    torch.manual_seed(0)
    for t in range(0, 10 * trainer.interval, trainer.interval):
        trainer._choose_goal(obs, t, eval_mode=True)
    classes = torch.cat(trainer._eval_stats["codes"]).argmax(-1)  # [10, n_latents]
    assert classes.shape == (10, trainer.goal_vae.n_latents)
    assert (classes == 0).all() == deterministic
    assert not trainer._stats["codes"]  # evaluation leaves the training episode's stats


@pytest.mark.parametrize("eval_goals", [True, False])
def test_eval_goals_decides_whether_evaluation_plans_towards_the_goal(tmp_path, eval_goals):
    """Training always steers by the Manager's goal; evaluation only with eval_goals,
    and the Manager still picks (and records) codes there either way."""
    trainer = filled_director(tmp_path, [f"worker.eval_goals={eval_goals}"])
    trainer._step = int(trainer.cfg.seed_steps)  # past seeding: the planner acts
    goals = []
    trainer.agent.act = lambda obs, **kwargs: goals.append(kwargs["goal"]) or torch.zeros(1)
    obs = torch.zeros(trainer.cfg.obs_shape["state"][0])
    trainer.act(obs, 0, eval_mode=False)
    assert torch.equal(goals[0], trainer._goal)
    trainer.act(obs, 0, eval_mode=True)
    assert (goals[1] is not None) == eval_goals
    assert len(trainer._eval_stats["codes"]) == 1


def test_frontier_goal_is_the_rarest_replay_state_held_until_it_stops_getting_nearer(tmp_path):
    """With manager.frontier=1 a training episode's first goal is the replay latent the
    Goal-VAE reconstructs worst among those drawn; it is held until frontier_patience
    intervals in a row end no nearer it than the best so far, then the Manager picks;
    evaluation never uses it. It survives a checkpoint."""
    trainer = filled_director(tmp_path, ["manager.frontier=1", "manager.frontier_patience=2"])
    trainer._step = int(trainer.cfg.seed_steps)  # past seeding
    torch.manual_seed(0)
    frontier = trainer._frontier_goal()
    torch.manual_seed(0)
    z = trainer.agent.model.encode(trainer.buffer.sample(256)["obs"][0])
    errors = trainer.goal_vae.recon_error(z)
    assert torch.equal(frontier, z[errors.argmax()].unsqueeze(0))
    assert errors.max() > errors.median()

    start = torch.zeros(trainer.cfg.obs_shape["state"][0])
    trainer._choose_goal(start, 0, eval_mode=False)
    held, k = trainer._goal, trainer.interval
    assert trainer._frontier is not None and torch.equal(held, trainer._frontier)
    trainer._frontier_best = -1.0  # the next interval ends nearer than ever: a new best
    trainer._choose_goal(start, k, eval_mode=False)
    assert trainer._frontier_stalls == 0 and torch.equal(trainer._goal, held)
    saved = trainer.state_dict()["director"]["frontier"]
    assert torch.equal(saved[0], held) and saved[2] == 0
    trainer._choose_goal(start, 2 * k, eval_mode=False)  # the same place: one stall
    assert trainer._frontier_stalls == 1 and torch.equal(trainer._goal, held)
    trainer._choose_goal(start, 3 * k, eval_mode=False)  # two: the Manager takes over
    assert trainer._frontier is None
    assert trainer._stats["frontier"] == [1.0, 1.0, 1.0, 0.0]
    trainer._choose_goal(start, 0, eval_mode=True)
    assert trainer._frontier is None and trainer._eval_stats["frontier"] == [0.0]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("manager.decisions=0", "manager.decisions must be >= 1, got 0"),
        ("manager.batch_size=0", "manager.batch_size must be >= 1, got 0"),
        ("manager.update_every=0", "manager.update_every must be >= 1, got 0"),
        ("worker.batch_size=0", "worker.batch_size must be >= 1, got 0"),
        ("worker.relabel_offset=0", "worker.relabel_offset must be >= 1, got 0"),
        ("manager.batch_size=17", "manager.batch_size (17) must be <= worker.batch_size (16)"),
        ("worker.goal_coef=-0.1", "worker.goal_coef must be >= 0, got -0.1"),
        ("worker.novelty_coef=-1", "worker.novelty_coef must be >= 0, got -1"),
        ("worker.task_coef=-1", "worker.task_coef must be >= 0, got -1"),
        ("manager.frontier=1.5", "manager.frontier must be in [0, 1], got 1.5"),
        ("manager.frontier_patience=0", "manager.frontier_patience must be >= 1, got 0"),
    ],
)
def test_check_director_cfg_rejects_with_one_line(override, message):
    cfg = director_cfg([*SMALL_DIRECTOR, override])
    with pytest.raises(ConfigError) as err:
        check_director_cfg(cfg)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)
    check_director_cfg(director_cfg(SMALL_DIRECTOR))  # the same settings, valid


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("manager.goal_interval=0", "manager.goal_interval must be >= 1"),
        ("goal_vae.n_classes=1", "goal_vae.n_classes must be >= 2"),
        ("manager.batch_size=200", "manager.batch_size \\(200\\) must be <= worker.batch_size"),
    ],
)
def test_director_rejects_bad_settings(tmp_path, override, message):
    overrides = [*TINY, "task=director_walker_walk", override, f"work_dir={tmp_path}"]
    with pytest.raises(ValueError, match=message):
        build(compose_cfg(overrides), overrides)


def test_on_episodic_tasks_an_imagined_interval_stops_at_a_predicted_end(tmp_path):
    trainer = filled_director(tmp_path, ["episodic=true"])
    model = trainer.agent.model
    z = model.encode(trainer.buffer.sample_relabelled(2, 8)["obs"]).detach()
    code = trainer.goal_vae.sample_code((8,))
    with torch.no_grad():
        model._termination[-1].bias.fill_(50.0)  # every step ends the episode
    torch.manual_seed(0)
    _, ret, _, ended = trainer._imagine_interval(z, code)
    assert torch.equal(ended, torch.ones(8))
    torch.manual_seed(0)  # the same first action: only its reward counts
    action = trainer.worker.pi(z, trainer.goal_vae.decode(code))[1]
    first = model.two_hot.decode(model.step(z, action)[1]).squeeze(-1)
    assert torch.allclose(ret, first, atol=1e-6)
    with torch.no_grad():
        model._termination[-1].bias.fill_(-50.0)  # never
    assert torch.equal(trainer._imagine_interval(z, code)[3], torch.zeros(8))
    trainer.update(1)  # the relabelled batch's terminations reach the goal critic
