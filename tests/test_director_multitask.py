"""The Director hierarchy over a task set: relabelled multi-task replay, the task threaded
through its learning (padded action dimensions stay 0), and an offline run on two tasks'
saved replays that evaluates every task, resumes exactly and evaluates again from its
checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tdmpc2.agent import TDMPC2
from tdmpc2.common.buffer import Buffer
from tdmpc2.common.goal_worker import sample_relabelled
from tdmpc2.common.multitask_buffer import MultitaskBuffer
from tdmpc2.evaluate import evaluate
from tdmpc2.trainer.director_trainer import OfflineDirectorTrainer
from tests.conftest import TINY, compose_cfg
from tests.test_director import SMALL_DIRECTOR
from tests.test_multitask import PAIR, read_csv
from tests.test_resume import assert_runs_equal, resume, signal_on_call, start

TASKS = PAIR.split(",")  # toy-reach (obs 4, action 2), cartpole-swingup (obs 5, action 1)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)  # tiny networks: a second thread only contends


def counting_buffer(obs_dim: int, action_dim: int, seed: int, task: str | None = None) -> Buffer:
    """Two 10-step episodes whose observations say where they are: [step, episode, 1, ...]."""
    buffer = Buffer(40, (obs_dim,), action_dim, 3, 16, seed=seed, task=task)
    for episode in range(2):
        obs = torch.ones(11, obs_dim)
        obs[:, 0], obs[:, 1] = torch.arange(11.0), episode
        buffer.add(
            {
                "obs": obs,
                "action": torch.rand(10, action_dim) * 0.5 + 0.5,  # never 0
                "reward": torch.rand(10),
                "terminated": torch.zeros(10),
            }
        )
    return buffer


def test_relabelled_multitask_batches_are_padded_and_carry_task_indices():
    parts = [(0, counting_buffer(4, 2, 0)), (1, counting_buffer(6, 1, 1))]
    batch = sample_relabelled(MultitaskBuffer(parts, 6, 2, 16, seed=3), 3, 256)
    assert set(batch) == {"obs", "action", "next_obs", "goal_obs", "terminated", "task"}
    assert batch["terminated"].shape == (256,)
    for key in ("obs", "next_obs", "goal_obs"):
        assert batch[key].shape == (256, 6)
    assert batch["action"].shape == (256, 2) and batch["task"].shape == (256,)
    small = batch["task"] == 0
    assert 0 < int(small.sum()) < 256  # both parts drawn (equal sizes)
    for key in ("obs", "next_obs", "goal_obs"):  # toy rows: 4 own dims, 2 of padding
        assert torch.all(batch[key][small, 4:] == 0) and torch.all(batch[key][~small, 4:] == 1)
    assert torch.all(batch["action"][small] != 0)
    assert torch.all(batch["action"][~small, 1] == 0) and torch.all(batch["action"][~small, 0] != 0)
    step, episode = batch["obs"][:, 0], batch["obs"][:, 1]
    assert torch.equal(batch["next_obs"][:, 0], step + 1)
    ahead = batch["goal_obs"][:, 0] - step  # 1..3 steps later in the same episode
    assert torch.equal(batch["goal_obs"][:, 1], episode) and ahead.min() >= 1 and ahead.max() <= 3


def save_replays(folder: Path) -> Path:
    """One saved replay per task of the set, as online runs write them (save_buffer=true)."""
    folder.mkdir()
    for seed, (task, dims) in enumerate(zip(TASKS, [(4, 2), (5, 1)], strict=True)):
        counting_buffer(*dims, seed, task).save(folder / f"{task}.pt")
    return folder


def director_set(replays: Path, *extra: str) -> list[str]:
    """A tiny offline Director on the task set with a small planner (every evaluation
    plays a 500-step cartpole episode): evaluations at 0 and at the end only."""
    return [
        *TINY,
        *SMALL_DIRECTOR,
        "iterations=1",
        "num_samples=16",
        "num_elites=4",
        "num_pi_trajs=2",
        f"task='{PAIR}'",
        "trainer=director",
        f"data_dir={replays}",
        "goal_vae.n_latents=4",
        "goal_vae.n_classes=3",
        "manager.goal_interval=5",
        "manager.update_every=3",
        "steps=30",
        "eval_freq=1000",
        "eval_episodes=1",
        "save_freq=10",
        "progress_bar=false",
        "threads=1",
        *extra,
    ]


@pytest.fixture(scope="module")
def replays(tmp_path_factory) -> Path:
    return save_replays(tmp_path_factory.mktemp("director_set") / "replays")


@pytest.fixture(scope="module")
def reference(replays: Path) -> Path:
    """One uninterrupted run of `director_set`, shared by the tests below."""
    run_dir = replays.parent / "reference"
    start(director_set(replays), run_dir).train()
    return run_dir


def test_hierarchy_learns_each_row_with_its_task(replays, tmp_path):
    """Replay latents are encoded with their task; the goal policy's imagined actions are
    0 in each task's padded action dimensions; each row steps with its own task; no
    gradient reaches the world model (its task embedding included)."""
    trainer = start(director_set(replays, "manager.update_every=1"), tmp_path / "run")
    assert isinstance(trainer, OfflineDirectorTrainer)
    model, seen = trainer.agent.model, {"encode": [], "step": []}
    for name in seen:
        method = getattr(model, name)

        def spy(*args, _method=method, _name=name):
            seen[_name].append(args)
            return _method(*args)

        setattr(model, name, spy)
    trainer.hierarchy.update(trainer.buffer, trainer._step)
    assert all(p.grad is None for p in model.parameters())
    ((obs, task),) = seen["encode"]
    assert obs.shape == (3, 16, 5) and task.shape == (16,) and set(task.tolist()) == {0, 1}
    assert len(seen["step"]) == 2 * trainer.hierarchy.interval  # manager.decisions intervals
    for z, action, step_task in seen["step"]:
        assert torch.equal(step_task, task[:8]) and z.shape == (8, 32)
        assert torch.all(action[step_task == 1, 1] == 0)
        assert torch.all(action[step_task == 0] != 0)


def test_offline_director_on_two_tasks_evaluates_each_and_reloads(reference):
    rows = read_csv(reference / "eval.csv")
    assert [int(r["step"]) for r in rows] == [0, 30]
    for row in rows:
        per_task = [float(row[f"episode_reward+{t}"]) for t in TASKS]
        assert float(row["episode_reward"]) == pytest.approx(sum(per_task) / 2)
        assert 0 <= per_task[0] <= 50 and 0 <= per_task[1] <= 500
        assert 0 <= float(row["goal_reached"]) <= 1
    last = read_csv(reference / "train.csv")[-1]
    learned = ("worker/consistency_loss", "goal_vae/total_loss", "worker/goal_q_loss")
    assert all(last[metric] for metric in (*learned, "manager/actor_loss"))
    saved = torch.load(reference / "checkpoint.pt", weights_only=False)
    assert saved["kind"] == "director" and {"goal_vae", "manager", "goal_worker"} <= set(saved)

    overrides = [f"task='{PAIR}'", "eval_episodes=1"]
    results = evaluate(compose_cfg([f"checkpoint={reference}", *overrides]), overrides)
    assert {f"episode_reward+{t}" for t in TASKS} <= set(results)
    assert 0 <= results["goal_reached"] <= 1
    assert int(read_csv(reference / "eval" / "eval.csv")[0]["step"]) == 30


def test_an_interrupted_offline_director_run_resumes_exactly(
    replays, reference, tmp_path, monkeypatch
):
    """Stopped after 17 updates (between two Manager updates), saved every 10."""
    trainer = start(director_set(replays), tmp_path / "run")
    monkeypatch.setattr(TDMPC2, "update", TDMPC2.update)  # put back after the patch below
    signal_on_call(trainer.agent, "update", 17)
    trainer.train()
    assert trainer._step == 17
    resume(tmp_path / "run").train()
    assert_runs_equal(reference, tmp_path / "run")
