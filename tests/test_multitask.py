"""Multi-task training: task sets, the task embedding, action padding and masking, per-task
discounts, the replay loaders (ours and the published mt30/mt80 layout), per-task
evaluation, and an end-to-end offline run from two online runs' replays."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tdmpc2.agent import TDMPC2
from tdmpc2.common.buffer import Buffer
from tdmpc2.common.math import discount_for
from tdmpc2.common.multitask_buffer import MultitaskBuffer, load_replays
from tdmpc2.common.parser import ConfigError, parse_cfg, quote_task_list
from tdmpc2.envs import make_env
from tdmpc2.envs.multitask import TASK_SETS, MultitaskEnv, task_names
from tdmpc2.train import build
from tests.conftest import ROOT, TINY, compose_cfg
from tests.test_resume import assert_runs_equal, resume, signal_on_call, start

ENV = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
PAIR = "toy-reach,cartpole-swingup"  # action dims 2 and 1, obs 4 and 5, episodes 50 and 500
SET = [*TINY, f"task='{PAIR}'", "data_dir=unused", "threads=1"]


@pytest.fixture
def mt_cfg():
    """A parsed two-task config with the set's shapes filled in by hand (no simulators):
    obs dims 4 and 24, action dims 2 and 6, episodes of 5 and 7 steps."""
    torch.manual_seed(0)
    cfg = parse_cfg(compose_cfg(SET), SET)
    cfg.tasks, cfg.obs_dims, cfg.action_dims = ["toy-reach", "walker-walk"], [4, 24], [2, 6]
    cfg.episode_lengths, cfg.episode_length = [5, 7], 7
    cfg.obs_shape, cfg.action_dim, cfg.seed_steps = {"state": [24]}, 6, 1000
    return cfg


# ------------------------------------------------------------ task sets and settings
def test_task_sets_keep_the_public_order():
    assert len(TASK_SETS["mt30"]) == 30 and len(TASK_SETS["mt80"]) == 80
    assert task_names("mt30")[:2] == ["walker-stand", "walker-walk"]
    assert task_names("mt80")[30] == "mw-assembly" and task_names("mt80")[-1] == "mw-hand-insert"
    assert task_names("a, b") == ["a", "b"] and task_names("walker-walk") == ["walker-walk"]


@pytest.mark.parametrize("spelling", [f"task='{PAIR}'", f"task=[{PAIR}]"])
def test_a_task_set_turns_multitask_on_with_a_96_wide_embedding(spelling):
    args = [*TINY, spelling, "data_dir=unused"]
    cfg = parse_cfg(compose_cfg(args), args)
    assert cfg.task == PAIR and cfg.multitask is True and cfg.task_dim == 96


def test_a_comma_list_on_the_command_line_is_a_set_unless_sweeping():
    assert quote_task_list(["train.py", f"task={PAIR}"]) == ["train.py", f"task='{PAIR}'"]
    assert quote_task_list(["train.py", "-m", f"task={PAIR}"])[2] == f"task={PAIR}"
    assert quote_task_list(["train.py", "task=[a,b]"])[1] == "task=[a,b]"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["task=walker-walk", "multitask=true"], "multitask=true needs a task set (task=mt30"),
        (["task=walker-walk", "task_dim=8"], "task_dim=8: the task embedding is for multi-task"),
        ([f"task='{PAIR}'", "task_dim=-1", "data_dir=x"], "task_dim must be >= 0 (0 picks 96)"),
        ([f"task='{PAIR}'", "obs=rgb", "data_dir=x"], "obs=rgb: multi-task training takes state"),
        ([f"task='{PAIR}'"], "multi-task training is offline: pass data_dir=FOLDER"),
        (["task='a,,b'", "data_dir=x"], "task=a,,b: an empty name in the task list"),
    ],
)
def test_a_multitask_setting_that_cannot_work_is_one_error(args, message):
    with pytest.raises(ConfigError) as err:
        parse_cfg(compose_cfg([*TINY, *args]), args)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_unknown_tasks_of_a_set_are_named_in_one_line():
    task = "walker-walk,walker-wlak,cup-spin,mw-raech"
    cfg = parse_cfg(compose_cfg([f"task='{task}'", "data_dir=x"]), [f"task='{task}'"])
    with pytest.raises(ValueError, match=rf"^task={task}: 2 of its 4 tasks are not available") as e:
        make_env(cfg)
    assert str(e.value).endswith("not available here: walker-wlak, mw-raech")
    assert "\n" not in str(e.value)


@pytest.mark.skipif(importlib.util.find_spec("metaworld") is None, reason="no metaworld extra")
def test_mt80_builds_all_eighty_tasks():
    cfg = parse_cfg(compose_cfg(["task=mt80", "data_dir=x"]), ["task=mt80"])
    env = make_env(cfg)
    assert len(cfg.tasks) == 80 and cfg.tasks[-50:] == [t for t in cfg.tasks if t[:3] == "mw-"]
    assert cfg.obs_shape == {"state": (39,)} and cfg.action_dim == 6
    assert cfg.episode_lengths[-1] == 100 and cfg.episode_lengths[0] == 500
    assert env.obs_dim == 39


def test_the_set_environment_pads_observations_and_passes_each_task_its_own_actions():
    class Fake:
        def __init__(self, obs_dim, action_dim):
            self.observation_space = self.action_space = None
            self.obs, self.max_episode_steps, self.received = torch.ones(obs_dim), 9, None
            self.observation_space = type("S", (), {"shape": (obs_dim,)})
            self.action_space = type("S", (), {"shape": (action_dim,)})

        def reset(self):
            return self.obs

        def step(self, action):
            self.received = action
            return self.obs, 1.0, False, {}

        def rand_act(self):
            return torch.ones(self.action_space.shape)

    env = MultitaskEnv([Fake(3, 1), Fake(5, 4)])
    assert (env.obs_dim, env.action_dim) == (5, 4)
    assert env.reset().tolist() == [1, 1, 1, 0, 0]
    env.step(torch.arange(4.0))
    assert env.envs[0].received.tolist() == [0.0]
    assert env.rand_act().tolist() == [1, 0, 0, 0]
    env.task = 1
    assert env.reset().tolist() == [1] * 5 and env.rand_act().tolist() == [1] * 4


# ------------------------------------------------------------ model
def test_task_embedding_shapes_and_norm_bound(mt_cfg):
    agent = TDMPC2(mt_cfg)
    model = agent.model
    assert model._task_emb.weight.shape == (2, 96)
    assert model._encoder[0].in_features == 24 + 96
    with torch.no_grad():
        model._task_emb.weight.mul_(50)  # far outside the bound
    task = torch.tensor([0, 1, 1])
    emb = model._task_emb(task)
    assert emb.shape == (3, 96) and torch.all(emb.norm(dim=-1) <= 1 + 1e-5)
    obs = torch.randn(4, 3, 24)  # [H+1, B, obs]: one task index per batch row
    z = model.encode(obs, task)
    a = torch.rand(4, 3, 6) * 2 - 1
    assert z.shape == (4, 3, 32)
    assert model.next(z, a, task).shape == (4, 3, 32)
    assert model.reward(z, a, task).shape == (4, 3, mt_cfg.num_bins)
    assert model.Q(z, a, return_type="all", task=task).shape == (2, 4, 3, mt_cfg.num_bins)
    assert model.pi(z, task)[1].shape == (4, 3, 6)
    # Each task has its own embedding, so the same observation encodes differently.
    one = obs[0, :1]
    assert not torch.allclose(model.encode(one, task[:1]), model.encode(one, task[1:2]))


def test_task_dim_sets_the_embedding_width():
    args = [*SET, "task_dim=8"]
    cfg = parse_cfg(compose_cfg(args), args)
    assert cfg.task_dim == 8
    cfg.tasks, cfg.action_dims, cfg.episode_lengths = ["a", "b"], [2, 1], [50, 500]
    cfg.obs_shape, cfg.action_dim, cfg.episode_length = {"state": [5]}, 2, 500
    model = TDMPC2(cfg).model
    assert model._task_emb.weight.shape == (2, 8) and model._pi[0].in_features == 32 + 8


def test_a_single_task_model_has_no_embedding_and_no_wider_inputs(tiny_cfg):
    model = TDMPC2(tiny_cfg).model
    assert not hasattr(model, "_task_emb") and model._encoder[0].in_features == 5
    assert model.task_emb(torch.ones(2, 5), None).shape == (2, 5)


def test_actions_in_padded_dimensions_are_zero(mt_cfg):
    agent = TDMPC2(mt_cfg)
    z = agent.model.encode(torch.randn(8, 24), torch.zeros(8, dtype=torch.long))
    task = torch.zeros(8, dtype=torch.long)  # toy-reach: 2 of the 6 dimensions are its own
    mu, pi, _, log_std = agent.model.pi(z, task)
    assert (
        torch.all(mu[:, 2:] == 0) and torch.all(pi[:, 2:] == 0) and torch.all(log_std[:, 2:] == 0)
    )
    assert torch.all(pi[:, :2] != 0)
    assert torch.all(agent.model.pi_action(z, task)[:, 2:] == 0)
    for eval_mode in (True, False):
        action = agent.act(torch.randn(24), t0=True, eval_mode=eval_mode, task=0)
        assert action.shape == (6,) and torch.all(action[2:] == 0) and torch.any(action[:2] != 0)
    assert torch.all(agent.act(torch.randn(24), t0=True, task=1) != 0)


def test_discount_is_per_task(mt_cfg):
    mt_cfg.episode_lengths = [50, 500]
    agent = TDMPC2(mt_cfg)
    expected = [discount_for(n, 5.0, 0.95, 0.995) for n in (50, 500)]
    assert agent._discounts.tolist() == pytest.approx(expected) and expected[0] != expected[1]
    task = torch.tensor([0, 1, 1, 0])
    next_z = agent.model.encode(torch.randn(3, 4, 24), task)
    zeros = torch.zeros(3, 4, 1)
    torch.manual_seed(1)
    target = agent._td_target(next_z, zeros, zeros, task)
    torch.manual_seed(1)
    action = agent.model.pi_action(next_z, task)
    q = agent.model.Q(next_z, action, return_type="min", target=True, task=task)
    gamma = torch.tensor(expected)[task].unsqueeze(-1)
    torch.testing.assert_close(target, gamma * q)
    z = next_z[0, :1]
    actions = torch.zeros(mt_cfg.horizon, 1, 6)
    for i in (0, 1):  # planning discounts with the task's own value too
        discount = agent._rollout(z, actions, task=torch.tensor(i))[2]
        assert float(discount) == pytest.approx(expected[i] ** mt_cfg.horizon)


@pytest.mark.parametrize("episodic", [False, True])
def test_an_update_trains_the_embedding_through_the_world_model_only(mt_cfg, episodic):
    mt_cfg.episodic = episodic  # the termination head reads the embedding too
    agent = TDMPC2(mt_cfg)
    if episodic:
        assert agent.model._termination[0].in_features == 32 + 96
    buffer = MultitaskBuffer([(0, _toy_buffer(4, 2, 0)), (1, _toy_buffer(24, 6, 1))], 24, 6, 16)
    before = agent.model._task_emb.weight.detach().clone()
    metrics = agent.update(buffer)
    assert torch.isfinite(metrics["total_loss"]) and float(metrics["nonfinite"]) == 0
    assert ("termination_loss" in metrics) == episodic
    assert not torch.equal(before, agent.model._task_emb.weight)
    assert agent.model._task_emb.weight.grad is None  # no policy-loss gradient left behind


# ------------------------------------------------------------ replay
def _toy_buffer(obs_dim: int, action_dim: int, seed: int, task: str | None = None) -> Buffer:
    buffer = Buffer(40, (obs_dim,), action_dim, 3, 16, seed=seed, task=task)
    for _ in range(2):
        buffer.add(
            {
                "obs": torch.randn(11, obs_dim),
                "action": torch.rand(10, action_dim) * 2 - 1,
                "reward": torch.rand(10),
                "terminated": torch.zeros(10),
            }
        )
    return buffer


def test_a_multitask_batch_is_padded_and_carries_task_indices():
    buffer = MultitaskBuffer([(0, _toy_buffer(4, 2, 0)), (1, _toy_buffer(24, 6, 1))], 24, 6, 64)
    batch = buffer.sample()
    assert batch["obs"].shape == (4, 64, 24) and batch["action"].shape == (3, 64, 6)
    assert batch["reward"].shape == (3, 64, 1) and batch["task"].shape == (64,)
    small = batch["task"] == 0
    assert 0 < int(small.sum()) < 64  # both tasks drawn, in proportion to their data
    assert torch.all(batch["obs"][:, small, 4:] == 0) and torch.all(
        batch["action"][:, small, 2:] == 0
    )
    assert torch.any(batch["obs"][:, ~small, 4:] != 0)


def _public_file(path: Path, task: int, episodes: int, length: int, dims=(24, 6), **extra) -> None:
    """Episodes in the published mt30/mt80 layout: entry t of each row holds obs_t and the
    action and reward that led to it (NaN at t = 0); obs_t = t and action_t = 100 + t."""
    steps = torch.arange(length + 1.0)
    data = {
        "obs": steps.view(1, -1, 1).expand(episodes, -1, dims[0]).clone(),
        "action": (100 + steps).view(1, -1, 1).expand(episodes, -1, dims[1]).clone(),
        "reward": (200 + steps).expand(episodes, -1).clone(),
        "task": torch.full((episodes, length + 1), task),
    }
    for key in ("action", "reward"):
        data[key][:, 0] = float("nan")
    data.update(extra)
    torch.save(data, path)


def test_the_published_data_layout_loads_as_transitions_of_each_task(mt_cfg, tmp_path):
    _public_file(tmp_path / "chunk_0.pt", task=0, episodes=3, length=5)
    _public_file(tmp_path / "chunk_1.pt", task=1, episodes=2, length=7)
    mt_cfg.data_dir = str(tmp_path)
    buffer = load_replays(mt_cfg)
    assert len(buffer) == 3 * 5 + 2 * 7
    assert [(task, len(b), b.task) for task, b in buffer.parts] == [
        (0, 15, "toy-reach"),
        (1, 14, "walker-walk"),
    ]
    batch = buffer.sample(256)
    assert set(batch["task"].tolist()) == {0, 1}
    obs = batch["obs"][0, :, 0]
    torch.testing.assert_close(batch["action"][0, :, 0], obs + 101)  # obs_t -> action_{t+1}
    torch.testing.assert_close(batch["reward"][0, :, 0], obs + 201)
    torch.testing.assert_close(batch["obs"][1, :, 0], obs + 1)
    assert torch.isfinite(batch["action"]).all() and torch.isfinite(batch["reward"]).all()


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p: _public_file(p, task=2, episodes=1, length=5), "episodes of task index 2"),
        (lambda p: _public_file(p, task=0, episodes=1, length=6), "episodes of 6 steps for toy"),
        (lambda p: _public_file(p, 0, 1, 5, dims=(30, 6)), "obs and action dims (30, 6) exceed"),
        (lambda p: p.write_bytes(b"\x00corrupt" * 64), "not a readable replay file (Unpickling"),
        (lambda p: torch.save({"obs": torch.zeros(1)}, p), "neither a replay buffer of this"),
        (lambda p: _toy_buffer(5, 1, 0, "cartpole-swingup").save(p), "a replay of task cartpole"),
        (lambda p: _toy_buffer(5, 1, 0, "toy-reach").save(p), "toy-reach replay with (obs, act"),
    ],
)
def test_a_replay_that_does_not_fit_the_set_is_one_error(mt_cfg, tmp_path, write, message):
    write(tmp_path / "replay.pt")
    mt_cfg.data_dir = str(tmp_path)
    with pytest.raises(ValueError) as err:
        load_replays(mt_cfg)
    assert str(err.value).startswith(str(tmp_path / "replay.pt")) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_an_empty_folder_or_a_task_without_data_is_one_error(mt_cfg, tmp_path):
    mt_cfg.data_dir = str(tmp_path)
    with pytest.raises(ValueError, match=r"^data_dir: no replay files"):
        load_replays(mt_cfg)
    _toy_buffer(4, 2, 0, "toy-reach").save(tmp_path / "buffer.pt")
    with pytest.raises(ValueError, match=r"holds no replay of walker-walk$"):
        load_replays(mt_cfg)


# ------------------------------------------------------------ end to end
def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900
    )


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_offline_multitask_from_two_online_runs_then_evaluate(tmp_path):
    """Two tiny online runs save their replay; one offline run learns both tasks from the
    folder and evaluates each; evaluate.py loads its checkpoint again."""
    common = [*TINY, "eval_episodes=1", "progress_bar=false", "threads=1", "save_buffer=true"]
    for task, steps in (("toy-reach", 100), ("cartpole-swingup", 500)):
        args = [*common, f"task={task}", f"steps={steps}", f"seed_steps={steps}"]
        args += [f"eval_freq={steps}", f"work_dir={tmp_path / 'replays' / task}"]
        build(compose_cfg(args), args).train()
    run_dir = tmp_path / "mt"
    proc = run(
        "tdmpc2/train.py",
        *TINY,
        f"task={PAIR}",  # unquoted, as typed on a command line
        f"data_dir={tmp_path / 'replays'}",
        "steps=20",
        "eval_freq=20",
        "eval_episodes=1",
        "progress_bar=false",
        "threads=1",
        f"work_dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "expected wall time" in proc.stdout and "could not be timed" not in proc.stdout
    rows = read_csv(run_dir / "eval.csv")
    assert [int(r["step"]) for r in rows] == [0, 20]
    for row in rows:
        per_task = [float(row[f"episode_reward+{t}"]) for t in PAIR.split(",")]
        assert float(row["episode_reward"]) == pytest.approx(sum(per_task) / 2)
        assert 0 <= per_task[0] <= 50 and 0 <= per_task[1] <= 500
    assert (run_dir / "checkpoint.pt").is_file()

    proc = run("tdmpc2/evaluate.py", f"task={PAIR}", f"checkpoint={run_dir}", "eval_episodes=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = read_csv(run_dir / "eval" / "eval.csv")[0]
    assert int(row["step"]) == 20
    assert {"episode_reward", *(f"episode_reward+{t}" for t in PAIR.split(","))} <= set(row)


def test_unknown_task_in_a_list_on_the_command_line_is_one_error_line(tmp_path):
    proc = run("tdmpc2/train.py", "task=toy-reach,walker-wlak", f"data_dir={tmp_path}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: task=toy-reach,walker-wlak: 1 of its 2 tasks are not available here: walker-wlak"
    ]


def test_an_interrupted_multitask_run_resumes_exactly(tmp_path, monkeypatch):
    """Sampling generators of every replay part and every task's environment come back."""
    replays = tmp_path / "replays"
    for i, task in enumerate(("toy-reach", "cartpole-swingup")):
        buffer = _toy_buffer(*((4, 2) if i == 0 else (5, 1)), seed=i, task=task)
        replays.mkdir(exist_ok=True)
        buffer.save(replays / f"{task}.pt")
    args = [*TINY, f"task='{PAIR}'", f"data_dir={replays}", "steps=30", "eval_freq=1000"]
    args += ["eval_episodes=1", "save_freq=10", "progress_bar=false", "threads=1"]
    start(args, tmp_path / "reference").train()
    trainer = start(args, tmp_path / "run")
    monkeypatch.setattr(TDMPC2, "update", TDMPC2.update)  # put back after the patch below
    signal_on_call(trainer.agent, "update", 17)
    trainer.train()
    assert trainer._step == 17
    resume(tmp_path / "run").train()
    assert_runs_equal(tmp_path / "reference", tmp_path / "run")
