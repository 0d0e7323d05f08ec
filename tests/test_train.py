"""End-to-end: train from the command line, write logs and a checkpoint, evaluate it, learn."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import torch

from tdmpc2.train import build
from tests.conftest import ROOT, TINY, compose_cfg

ENV = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600
    )


def read_csv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_walker_run_writes_logs_and_checkpoint_that_evaluate_loads(tmp_path):
    run_dir = tmp_path / "run"
    args = [
        *TINY,
        "task=walker-walk",
        "steps=1000",
        "seed_steps=300",
        "eval_freq=1000",
        "eval_episodes=1",
        f"work_dir={run_dir}",
        "progress_bar=false",
    ]
    proc = run(["tdmpc2/train.py", *args])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert str(run_dir) in proc.stdout
    assert "evaluation return by step: 0: " in proc.stdout.splitlines()[-1]  # the curve, last
    train_rows = read_csv(run_dir / "train.csv")
    eval_rows = read_csv(run_dir / "eval.csv")
    assert [int(r["step"]) for r in train_rows] == [500, 1000]
    assert float(train_rows[1]["consistency_loss"]) > 0  # updates ran after seeding
    assert [int(r["step"]) for r in eval_rows] == [0, 1000]
    assert all(0 <= float(r["episode_reward"]) <= 500 for r in eval_rows)
    assert (run_dir / "checkpoint.pt").is_file()

    proc = run(
        ["tdmpc2/evaluate.py", "task=walker-walk", f"checkpoint={run_dir}", "eval_episodes=1"]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = read_csv(run_dir / "eval" / "eval.csv")
    assert int(rows[0]["step"]) == 1000
    assert 0 <= float(rows[0]["episode_reward"]) <= 500


def test_module_entry_point_and_unknown_task_message(tmp_path):
    proc = run(["-m", "tdmpc2.train", "task=walker-wlak", f"work_dir={tmp_path}"])
    assert proc.returncode != 0
    assert "Unknown task 'walker-wlak'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_evaluate_reports_a_missing_checkpoint(tmp_path):
    proc = run(["tdmpc2/evaluate.py", "task=walker-walk", f"checkpoint={tmp_path / 'nope.pt'}"])
    assert proc.returncode != 0
    assert "checkpoint not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_offline_trainer_learns_from_a_saved_buffer(tmp_path):
    online = [*TINY, "task=toy-reach", "steps=300", "seed_steps=100", "eval_freq=1000"]
    common = ["eval_episodes=1", "progress_bar=false", "save_buffer=true"]
    trainer = build(compose_cfg([*online, *common, f"work_dir={tmp_path / 'a'}"]), [])
    trainer.train()
    assert (tmp_path / "a" / "buffer.pt").is_file()

    offline = [*TINY, "task=toy-reach", "steps=100", "eval_freq=100", *common[:2]]
    overrides = [*offline, f"data_dir={tmp_path / 'a'}", f"work_dir={tmp_path / 'b'}"]
    trainer = build(compose_cfg(overrides), overrides)
    assert type(trainer).__name__ == "OfflineTrainer"
    assert len(trainer.buffer) >= 300
    trainer.train()
    rows = read_csv(tmp_path / "b" / "train.csv")
    assert int(rows[-1]["step"]) == 100
    assert torch.isfinite(torch.tensor(float(rows[-1]["total_loss"])))


def test_small_agent_beats_random_policy_on_toy_task(tmp_path):
    """A few thousand steps on a fast task: planning must clearly beat random actions."""
    overrides = [
        *TINY,
        "task=toy-reach",
        "steps=2000",
        "seed_steps=300",
        "eval_freq=100000",
        "eval_episodes=5",
        "progress_bar=false",
        f"work_dir={tmp_path}",
    ]
    trainer = build(compose_cfg(overrides), overrides)
    random_returns = []
    for _ in range(5):
        trainer.env.reset()
        done, total = False, 0.0
        while not done:
            _, reward, done, _ = trainer.env.step(trainer.env.rand_act())
            total += reward
        random_returns.append(total)
    random_return = sum(random_returns) / len(random_returns)
    trainer.train()
    trained = float(read_csv(tmp_path / "eval.csv")[-1]["episode_reward"])
    print(f"toy-reach: random {random_return:.1f}, trained {trained:.1f}")
    assert trained > 1.5 * random_return
