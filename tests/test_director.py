"""The Director extension: Goal-VAE, Manager, goal-conditioned planning, DirectorTrainer."""

from __future__ import annotations

import csv
import functools
import importlib.util

import pytest
import torch

from tdmpc2.common import checkpoint
from tdmpc2.common.goal_worker import sample_relabelled
from tdmpc2.common.hierarchy import FRONTIER_CANDIDATES, check_director_cfg, cut_loops, rarity
from tdmpc2.common.layers import simnorm
from tdmpc2.common.parser import ConfigError
from tdmpc2.common.planning_terms import GoalTerm, cosine_max, goal_similarity
from tdmpc2.evaluate import evaluate
from tdmpc2.train import build
from tests.conftest import TINY, compose_cfg, make_cfg
from tests.test_resume import assert_same
from tests.test_same_numbers import RUN, assert_same_as_baseline

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


def test_goal_similarity_at_a_temperature_is_sharp_and_still_one_at_the_goal():
    a, b = simnorm(torch.randn(200, 32) * 3, 8), simnorm(torch.randn(200, 32) * 3, 8)
    cosine = cosine_max(a, b)
    assert torch.equal(goal_similarity(a, b), cosine)  # temperature 0: Director's cosine
    sharp = goal_similarity(a, b, temperature=0.02)
    assert torch.allclose(sharp, torch.exp((cosine - 1) / 0.02))
    assert torch.allclose(goal_similarity(a, a, 0.02), torch.ones(200, 1))
    assert ((sharp >= 0) & (sharp <= 1)).all()
    order = cosine.squeeze(-1).argsort()
    assert (sharp.squeeze(-1)[order].diff() >= 0).all()  # the same ranking as the cosine
    assert (sharp[cosine < 0.9] < 0.01).all()  # 0.1 below the goal's cosine: next to nothing
    # The planner's goal term pays it at each imagined step.
    term = GoalTerm(b[:1], 0.9, 3, coef=1.0, scale=None, goal_temperature=0.02)
    expected = 0.1 * 0.9**2 * goal_similarity(a, b[:1], 0.02)
    assert torch.allclose(term.step(2, a, 1.0, 1.0), expected)


def director_cfg(extra: list[str] | None = None):
    return make_cfg([*TINY, "trainer=director", *(extra or [])])


# ------------------------------------------------------------------- Trainer
def term_names(trainer) -> list[str]:
    """The planning terms of a training step."""
    return [term.name for term in trainer.hierarchy.planning_terms(eval_mode=False)]


def read_rows(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_the_preset_builds_a_director_trainer_and_the_command_line_wins(tmp_path):
    overrides = [*TINY, "task=director_walker_walk", "manager.goal_interval=5"]
    overrides += ["goal_vae.n_latents=4", f"work_dir={tmp_path}"]
    trainer = build(compose_cfg(overrides), overrides)
    assert type(trainer).__name__ == "DirectorTrainer"
    assert trainer.cfg.task == "walker-walk"
    assert trainer.hierarchy.interval == 5  # the command line beats the preset's 8
    assert trainer.hierarchy.goal_vae.n_latents == 4
    assert term_names(trainer) == ["goal"]  # worker.novelty_coef 0: no exploration bonus
    overrides.append("worker.novelty_coef=0.5")
    trainer = build(compose_cfg(overrides), overrides)
    assert term_names(trainer) == ["goal", "novelty"]
    hierarchy = trainer.hierarchy
    assert hierarchy.planning_terms(eval_mode=False)[1].novelty == hierarchy.goal_vae.recon_error
    assert [t.name for t in hierarchy.planning_terms(eval_mode=True)] == ["goal"]


def test_the_cup_catch_preset_carries_the_measured_exploration_settings(tmp_path):
    overrides = [*TINY, "task=director_cup_catch", f"work_dir={tmp_path}"]
    trainer = build(compose_cfg(overrides), overrides)
    assert type(trainer).__name__ == "DirectorTrainer"
    assert trainer.cfg.task == "cup-catch"
    assert term_names(trainer) == ["goal", "novelty"]  # the Worker's bonus is on
    assert trainer.cfg.manager.return_floor == 0.01
    assert trainer.cfg.manager.entropy_target == 0.5


@pytest.mark.skipif(importlib.util.find_spec("ogbench") is None, reason="needs ogbench")
def test_the_pointmaze_preset_carries_the_measured_maze_settings(tmp_path):
    overrides = ["task=director_pointmaze", "threads=1", f"work_dir={tmp_path}"]
    trainer = build(compose_cfg(overrides), overrides)
    assert type(trainer).__name__ == "DirectorTrainer"
    assert trainer.cfg.task == "ogbench-pointmaze-medium-singletask-task3-v0"
    assert trainer.cfg.episodic and trainer.cfg.action_repeat == 4
    assert term_names(trainer) == ["goal"]  # goals alone, no bonus
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
    assert set(ckpt["director"]) == {
        "goal",
        "frontier",
        "start_similarity",
        "stats",
        "task_episode",
        "updates",
    }

    # A fresh trainer loads every network, optimiser and return scale back exactly.
    fresh = build(compose_cfg([*overrides[:-1], f"work_dir={tmp_path / 'b'}"]), overrides)
    fresh.load_state_dict(checkpoint.load(checkpoint.resolve_path(tmp_path), fresh.cfg))
    before, after = trainer.hierarchy, fresh.hierarchy
    for name in ("goal_vae", "manager", "worker"):
        assert_same(getattr(before, name).state_dict(), getattr(after, name).state_dict(), name)
        saved, loaded = (getattr(h, name).optim_state_dict() for h in (before, after))
        assert_same(saved, loaded, name)
    assert all(bool(s.initialised) for s in after.manager.scales)
    # The loaded goal critic values goals beyond the planning horizon.
    assert after.planning_terms(eval_mode=False)[0].goal_value == after.worker.value
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
    hierarchy = trainer.hierarchy
    agent, manager, worker = trainer.agent, hierarchy.manager, hierarchy.worker
    frozen = {"model": state(agent.model), "scale": state(agent.scale)}
    learners = {
        "goal_vae": hierarchy.goal_vae,
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
        others = (agent.model, hierarchy.goal_vae, worker)
        before = [(state(m), grads(m)) for m in others]
        out = update(*args)
        for module, (params, gs) in zip(others, before, strict=True):
            assert same(params, module)
            for g, h in zip(gs, grads(module), strict=True):
                assert (g is None and h is None) or torch.equal(g, h)
        return out

    manager.update = recording
    metrics = hierarchy.update(trainer.buffer, trainer._step)
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
        assert torch.allclose(rewards[1], hierarchy.goal_vae.recon_error(zs[1:]), atol=1e-5)
    assert (rewards[1] > 0).all()


def test_manager_learns_every_update_every_updates(tmp_path):
    trainer = filled_director(tmp_path, ["manager.update_every=2"])
    manager, calls = trainer.hierarchy.manager, []
    update = manager.update
    manager.update = lambda *args: calls.append(1) or update(*args)
    for _ in range(4):
        trainer.hierarchy.update(trainer.buffer, trainer._step)
    assert len(calls) == 2


@pytest.mark.parametrize("deterministic", [False, True])
def test_evaluation_samples_the_managers_codes_unless_deterministic(tmp_path, deterministic):
    """Director samples its Manager's codes in evaluation too; its mode on request. The
    fresh Manager is uniform, so sampled codes differ and the mode is always class 0."""
    trainer = filled_director(tmp_path, [f"manager.deterministic={deterministic}"])
    hierarchy = trainer.hierarchy
    obs = torch.zeros(trainer.cfg.obs_shape["state"][0])
    torch.manual_seed(0)
    for t in range(0, 10 * hierarchy.interval, hierarchy.interval):
        hierarchy._choose_goal(obs, t, eval_mode=True)
    classes = torch.cat(hierarchy._eval_stats["codes"]).argmax(-1)  # [10, n_latents]
    assert classes.shape == (10, hierarchy.goal_vae.n_latents)
    assert (classes == 0).all() == deterministic
    assert not hierarchy._stats["codes"]  # evaluation leaves the training episode's stats


@pytest.mark.parametrize("eval_goals", [True, False])
def test_eval_goals_decides_whether_evaluation_plans_towards_the_goal(tmp_path, eval_goals):
    """Training always steers by the Manager's goal; evaluation only with eval_goals,
    and the Manager still picks (and records) codes there either way."""
    trainer = filled_director(tmp_path, [f"worker.eval_goals={eval_goals}"])
    trainer._step = int(trainer.cfg.seed_steps)  # past seeding: the planner acts
    terms = []
    trainer.agent.act = lambda obs, **kwargs: terms.append(kwargs["terms"]) or torch.zeros(1)
    obs = torch.zeros(trainer.cfg.obs_shape["state"][0])
    trainer.act(obs, 0, eval_mode=False)
    assert [t.name for t in terms[0]] == ["goal"]
    assert terms[0][0].goal is trainer.hierarchy._goal
    assert terms[0][0].task_weight == trainer.cfg.worker.task_coef
    trainer.act(obs, 0, eval_mode=True)
    assert [t.name for t in terms[1]] == (["goal"] if eval_goals else [])
    assert all(t.task_weight == 1.0 for t in terms[1])  # evaluation plans for the task
    assert len(trainer.hierarchy._eval_stats["codes"]) == 1


def test_task_share_plans_that_share_of_training_episodes_as_evaluation(tmp_path):
    """With worker.task_share=1 a training episode plans as evaluation does (the task value
    at weight 1, the goal, no novelty) though task_coef=0, and says so in its checkpoint;
    an episode led to the frontier is not one of them."""
    extra = ["worker.task_share=1", "worker.task_coef=0", "worker.novelty_coef=1"]
    trainer = filled_director(tmp_path, extra)
    trainer._step = int(trainer.cfg.seed_steps)  # past seeding: the planner acts
    terms = []
    trainer.agent.act = lambda obs, **kwargs: terms.append(kwargs["terms"]) or torch.zeros(1)
    obs = torch.zeros(trainer.cfg.obs_shape["state"][0])
    trainer.act(obs, 0, eval_mode=False)
    trainer.act(obs, 1, eval_mode=False)  # held for the whole episode
    for step in terms:
        assert [t.name for t in step] == ["goal"] and step[0].task_weight == 1.0
    assert trainer.state_dict()["director"]["task_episode"] is True
    resumed = filled_director(tmp_path / "resumed", extra)
    resumed.load_state_dict(trainer.state_dict())
    assert resumed.hierarchy._task_episode

    trainer.cfg.worker.task_share = 0.0
    trainer.act(obs, 0, eval_mode=False)  # a new episode draws again
    assert [t.name for t in terms[-1]] == ["goal", "novelty"]
    assert terms[-1][0].task_weight == 0.0
    trainer.cfg.worker.task_share, trainer.cfg.manager.frontier = 1.0, 1.0
    trainer.hierarchy._choose_goal(obs, 0, eval_mode=False, replay=trainer.buffer)
    assert trainer.hierarchy._frontier is not None and not trainer.hierarchy._task_episode


def test_rarity_is_large_where_latents_are_sparse():
    """A lone latent is rarer than any in a tight cluster, whatever the common offset."""
    torch.manual_seed(0)
    common = torch.rand(16)
    cluster = common + 0.01 * torch.randn(40, 16)
    lone = common + 0.5 * torch.randn(1, 16)
    scores = rarity(torch.cat([cluster, lone]))
    assert scores.argmax() == 40
    assert scores[40] > 2 * scores[:40].max()


def test_rarity_against_a_reference_is_large_away_from_it():
    """Against replay latents: a latent beside them is not rare, one far from them is, and
    the latent itself is never among its own neighbours."""
    torch.manual_seed(0)
    reference = torch.randn(64, 8)
    near, far = reference[:1] + 0.01, reference[:1] + 10.0
    scores = rarity(torch.cat([near, far]), reference, k=1)
    assert scores[0] < 0.1 < 5.0 < scores[1]
    assert rarity(reference[:1], reference, k=1) < 1e-3  # a reference latent finds itself


def test_rarity_exploration_rewards_the_manager_for_where_the_replay_is_sparse(tmp_path):
    """With manager.exploration=rarity the Manager's bonus for an imagined interval is its
    end latent's rarity among FRONTIER_CANDIDATES replay latents, drawn once per update."""
    extra = ["manager.exploration=rarity", "manager.decisions=2", "manager.update_every=1"]
    trainer = filled_director(tmp_path, extra)
    hierarchy, references, seen = trainer.hierarchy, [], []
    draw, update = hierarchy._replay_latents, hierarchy.manager.update
    hierarchy._replay_latents = lambda replay: references.append(draw(replay)) or references[-1]
    hierarchy.manager.update = lambda *args: seen.append(args) or update(*args)
    hierarchy.update(trainer.buffer, trainer._step)
    ((zs, _, rewards, _),) = seen
    (reference,) = references
    assert reference.shape == (FRONTIER_CANDIDATES, zs.shape[-1])
    ends = zs[1:]  # [decisions, batch, latent]
    expected = rarity(ends.flatten(0, 1), reference).view(ends.shape[:2])
    assert torch.allclose(rewards[1], expected, atol=1e-5)
    assert (rewards[1] > 0).all()


def test_frontier_goal_is_the_rarest_replay_state_held_for_frontier_hold(tmp_path):
    """With manager.frontier=1 a training episode's first goal is the rarest replay latent
    among those drawn; it is held for frontier_hold intervals, then the Manager picks;
    evaluation never uses it. It survives a checkpoint."""
    trainer = filled_director(tmp_path, ["manager.frontier=1", "manager.frontier_hold=2"])
    hierarchy, replay = trainer.hierarchy, trainer.buffer
    drawn = replay._generator.get_state()
    frontier = hierarchy._frontier_goal(replay)
    replay._generator.set_state(drawn)
    z = trainer.agent.model.encode(replay.sample(FRONTIER_CANDIDATES)["obs"][0])
    assert torch.equal(frontier, z[rarity(z).argmax()].unsqueeze(0))

    start = torch.zeros(trainer.cfg.obs_shape["state"][0])
    hierarchy._choose_goal(start, 0, eval_mode=False, replay=replay)  # past seeding
    held, k = hierarchy._goal, hierarchy.interval
    assert hierarchy._frontier is not None and torch.equal(held, hierarchy._frontier)
    saved = trainer.state_dict()["director"]["frontier"]
    assert torch.equal(saved["goal"], held) and saved["left"] == 2
    hierarchy._choose_goal(start, k, eval_mode=False)  # the second interval: still held
    assert torch.equal(hierarchy._goal, held)
    resumed = filled_director(tmp_path / "resumed", ["manager.frontier=1"])
    resumed.load_state_dict(trainer.state_dict())
    assert torch.equal(resumed.hierarchy._frontier, held)
    assert resumed.hierarchy._frontier_left == 1
    hierarchy._choose_goal(start, 2 * k, eval_mode=False)  # held for two: the Manager's turn
    assert hierarchy._frontier is None
    assert hierarchy._stats["frontier"] == [1.0, 1.0, 0.0]
    hierarchy._choose_goal(start, 0, eval_mode=True)
    assert hierarchy._frontier is None and hierarchy._eval_stats["frontier"] == [0.0]


def test_frontier_reach_picks_the_rarest_of_the_states_nearest_the_agent_each_interval(tmp_path):
    """With manager.frontier_reach=k the frontier goal is the rarest of the k drawn replay
    latents nearest the agent's, picked again at every interval of the hold."""
    extra = ["manager.frontier=1", "manager.frontier_hold=3", "manager.frontier_reach=16"]
    trainer = filled_director(tmp_path, extra)
    hierarchy, replay, k = trainer.hierarchy, trainer.buffer, trainer.hierarchy.interval
    obs = replay.sample(2)["obs"][0]
    for t, state in zip((0, k), obs, strict=True):
        drawn = replay._generator.get_state()
        hierarchy._choose_goal(state, t, eval_mode=False, replay=replay)
        replay._generator.set_state(drawn)
        z = trainer.agent.model.encode(replay.sample(FRONTIER_CANDIDATES)["obs"][0])
        here = trainer.agent.model.encode(state.unsqueeze(0))
        nearest = torch.cdist(here, z).squeeze(0).topk(16, largest=False).indices
        expected = z[nearest[rarity(z)[nearest].argmax()]].unsqueeze(0)
        assert torch.equal(hierarchy._frontier, expected)
        assert torch.equal(hierarchy._goal, expected)
    assert hierarchy._frontier_left == 2
    hierarchy._choose_goal(obs[1], 2 * k, eval_mode=False, replay=replay)
    hierarchy._choose_goal(obs[1], 3 * k, eval_mode=False, replay=replay)
    assert hierarchy._frontier is None  # held for three intervals: the Manager's turn
    assert hierarchy._stats["frontier"] == [1.0, 1.0, 1.0, 0.0]


def test_frontier_space_obs_picks_the_rarest_observation(tmp_path):
    """With manager.frontier_space=obs the frontier goal is the latent of the replay state
    whose observation is rarest among those drawn; a frontier path is cut and followed
    in observations, its goals latents."""
    extra = ["manager.frontier=1", "manager.frontier_space=obs", "manager.frontier_path=4"]
    trainer = filled_director(tmp_path, extra)
    hierarchy, replay = trainer.hierarchy, trainer.buffer
    drawn = replay._generator.get_state()
    frontier = hierarchy._frontier_goal(replay)
    replay._generator.set_state(drawn)
    obs = replay.sample(FRONTIER_CANDIDATES)["obs"][0]
    z = trainer.agent.model.encode(obs)
    assert torch.equal(frontier, z[rarity(obs).argmax()].unsqueeze(0))
    assert not torch.equal(frontier, z[rarity(z).argmax()].unsqueeze(0))
    replay._generator.set_state(drawn)
    path, points = hierarchy._frontier_path(replay)
    assert torch.equal(path[-1:], frontier)
    stored = replay._obs[: len(replay._obs)]
    assert all(bool((stored == p).all(-1).any()) for p in points)  # every point a stored obs
    assert torch.allclose(path, trainer.agent.model.encode(points), atol=1e-5)


def test_frontier_path_leads_along_the_stored_episode_that_reached_the_frontier(tmp_path):
    """With manager.frontier_path=k the frontier is the rarest drawn replay state, as
    without it, and the goal moves along the stored episode that reached it (loops cut),
    k states ahead of the path's state nearest the agent (looked for at most 2k ahead); at
    the episode's state the path ends and the frontier is the goal. It
    survives a checkpoint."""
    extra = ["manager.frontier=1", "manager.frontier_hold=2", "manager.frontier_path=4"]
    trainer = filled_director(tmp_path, extra)
    hierarchy, replay, encode = trainer.hierarchy, trainer.buffer, trainer.agent.model.encode
    drawn = replay._generator.get_state()
    start = torch.zeros(trainer.cfg.obs_shape["state"][0])
    hierarchy._choose_goal(start, 0, eval_mode=False, replay=replay)
    replay._generator.set_state(drawn)
    starts = replay._draw_starts(FRONTIER_CANDIDATES)
    z = encode(replay._obs[starts])
    slot = int(starts[rarity(z).argmax()])
    assert torch.equal(hierarchy._frontier, z[rarity(z).argmax()].unsqueeze(0))
    index = int(replay._index[slot])
    stored = encode(replay._obs[slot - index : slot + 1])
    assert torch.equal(hierarchy._path, stored[cut_loops(stored)])
    assert torch.equal(hierarchy._path_points, hierarchy._path)  # frontier_space latent
    assert torch.equal(hierarchy._goal, hierarchy._frontier)

    # A path of 31 latents a unit apart on a line; the agent's latent is its observation.
    path = torch.arange(31.0).unsqueeze(-1) * torch.eye(trainer.cfg.latent_dim)[0]
    hierarchy._encode = lambda obs, task: obs.unsqueeze(0)
    hierarchy._path, hierarchy._path_points, hierarchy._path_at = path, path, 0
    hierarchy._follow_path(path[20], None)  # 20 is past 2k: the nearest of states 0-7
    assert hierarchy._path_at == 7 and torch.equal(hierarchy._goal, path[11:12])
    hierarchy._path_at = 0
    aside = torch.eye(trainer.cfg.latent_dim)[1]
    for at in (6, 13, 20, 27):  # each within 2k of the last
        hierarchy._follow_path(path[at] + 0.1 * aside, None)
        assert hierarchy._path_at == at
        assert torch.equal(hierarchy._goal, path[min(at + 4, 30)].unsqueeze(0))
    saved = trainer.state_dict()["director"]["frontier"]
    resumed = filled_director(tmp_path / "resumed", extra)
    resumed.load_state_dict(trainer.state_dict())
    assert torch.equal(resumed.hierarchy._path, path) and resumed.hierarchy._path_at == 27
    assert torch.equal(saved["path"], path) and saved["at"] == 27
    hierarchy._follow_path(path[30], None)
    assert hierarchy._path is None and torch.equal(hierarchy._goal, path[-1:])
    hierarchy._path, hierarchy._path_points, hierarchy._path_at = path, path, 0
    hierarchy._follow_path(path[2] + 3 * aside, None)  # moved on to state 2
    for _ in range(hierarchy.interval):  # then not along it for an interval: it ends
        assert hierarchy._path is not None
        hierarchy._follow_path(path[2] + 3 * aside, None)
    assert hierarchy._path is None and hierarchy._path_at == 2


def test_cut_loops_keeps_a_way_of_steps_no_longer_than_the_paths_mean_step():
    """A path that turns back on itself (0, 1, 2, 3, 2, 1, 2, ...) keeps its ends and
    skips the loop: what is left moves one mean step at a time."""
    x = torch.tensor([0.0, 1, 2, 3, 2, 1, 2, 3, 4, 5]).unsqueeze(-1)
    cut = x[cut_loops(x)]
    assert cut.squeeze(-1).tolist() == [0.0, 1, 2, 3, 4, 5]
    assert cut_loops(cut).tolist() == list(range(6))  # no loop left
    assert cut_loops(x[:1]).tolist() == [0]


def test_frontier_then_random_explores_past_the_paths_end_until_the_episode_ends(tmp_path):
    """With manager.frontier_then=random the agent takes random actions once it reached
    the frontier path's end, for the rest of the training episode (through a checkpoint);
    a new episode and evaluation plan again."""
    extra = ["manager.frontier=1", "manager.frontier_path=4", "manager.frontier_then=random"]
    trainer = filled_director(tmp_path, extra)
    hierarchy, replay = trainer.hierarchy, trainer.buffer
    sentinel = torch.full((trainer.cfg.action_dim,), 0.123)
    obs = replay._obs[:31]  # the first stored episode
    act = functools.partial(hierarchy.act, replay=replay, random_act=lambda: sentinel)
    assert not torch.equal(act(obs[0], 0, eval_mode=False), sentinel)
    hierarchy._path = hierarchy._path_points = trainer.agent.model.encode(obs)
    hierarchy._path_at = 27
    assert torch.equal(act(obs[30], 1, eval_mode=False), sentinel)
    assert hierarchy._path is None and hierarchy._exploring
    assert torch.equal(act(obs[5], 2, eval_mode=False), sentinel)  # not only at the end
    resumed = filled_director(tmp_path / "resumed", extra)
    resumed.load_state_dict(trainer.state_dict())
    assert resumed.hierarchy._exploring
    assert not torch.equal(act(obs[0], 0, eval_mode=False), sentinel)  # a new episode
    assert not hierarchy._exploring
    hierarchy._exploring = True
    assert not torch.equal(act(obs[0], 0, eval_mode=True), sentinel)
    with pytest.raises(ValueError, match="pass `random_act`"):
        hierarchy.act(obs[0], 0, eval_mode=False, replay=replay, seeding=True)


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
        ("worker.goal_temperature=-1", "worker.goal_temperature must be >= 0, got -1"),
        ("manager.frontier=1.5", "manager.frontier must be in [0, 1], got 1.5"),
        ("worker.task_share=-0.5", "worker.task_share must be in [0, 1], got -0.5"),
        ("manager.frontier_hold=0", "manager.frontier_hold must be >= 1, got 0"),
        ("manager.frontier_reach=-1", "manager.frontier_reach must be in [0, 1024], got -1"),
        ("manager.frontier_path=-1", "manager.frontier_path must be >= 0, got -1"),
        ("manager.frontier_space=pixels", "manager.frontier_space must be latent or obs, got pix"),
        ("manager.frontier_then=walk", "manager.frontier_then must be manager or random, got"),
        ("manager.frontier_then=random", "manager.frontier_then=random starts where the front"),
        ("manager.exploration=novel", "manager.exploration must be recon or rarity, got novel"),
    ],
)
def test_check_director_cfg_rejects_with_one_line(override, message):
    cfg = director_cfg([*SMALL_DIRECTOR, override])
    with pytest.raises(ConfigError) as err:
        check_director_cfg(cfg)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)
    check_director_cfg(director_cfg(SMALL_DIRECTOR))  # the same settings, valid


def test_frontier_path_and_frontier_reach_are_exclusive():
    both = ["manager.frontier_path=8", "manager.frontier_reach=8"]
    with pytest.raises(ConfigError, match="both pick the frontier goal during its hold"):
        check_director_cfg(director_cfg([*SMALL_DIRECTOR, *both]))


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
    model, hierarchy = trainer.agent.model, trainer.hierarchy
    z = model.encode(sample_relabelled(trainer.buffer, 2, 8)["obs"]).detach()
    code = hierarchy.goal_vae.sample_code((8,))
    with torch.no_grad():
        model._termination[-1].bias.fill_(50.0)  # every step ends the episode
    torch.manual_seed(0)
    _, ret, _, ended = hierarchy._imagine_interval(z, code)
    assert torch.equal(ended, torch.ones(8))
    torch.manual_seed(0)  # the same first action: only its reward counts
    action = hierarchy.worker.pi(z, hierarchy.goal_vae.decode(code))[1]
    first = model.two_hot.decode(model.step(z, action)[1]).squeeze(-1)
    assert torch.allclose(ret, first, atol=1e-6)
    with torch.no_grad():
        model._termination[-1].bias.fill_(-50.0)  # never
    assert torch.equal(hierarchy._imagine_interval(z, code)[3], torch.zeros(8))
    trainer.update(1)  # the relabelled batch's terminations reach the goal critic


# Every planning term at once: the goal term with the goal critic beyond the horizon, the
# novelty term, a task weight below 1, and the episodic masks.
SAME_NUMBERS = [
    "trainer=director",
    "goal_vae.hidden_dim=32",
    "goal_vae.n_latents=4",
    "goal_vae.n_classes=3",
    "manager.hidden_dim=32",
    "manager.batch_size=8",
    "manager.goal_interval=5",
    "manager.update_every=2",
    "worker.hidden_dim=32",
    "worker.batch_size=16",
    "worker.novelty_coef=1",
    "worker.task_coef=0.5",
    "episodic=true",
]


def test_a_short_director_run_matches_the_baseline_bit_for_bit(tmp_path):
    """Every tensor of the checkpoint and the evaluation returns, against the baseline
    commit's code on this machine (see tests/test_same_numbers.py)."""
    assert_same_as_baseline(tmp_path, [*RUN, *SAME_NUMBERS])
