"""Resuming: an interrupted run ends exactly like an uninterrupted one; SIGINT/SIGTERM save
and say how to resume; checkpoints rotate; non-finite losses are counted, then stop a run."""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tdmpc2.agent import TDMPC2
from tdmpc2.common import checkpoint
from tdmpc2.evaluate import evaluate
from tdmpc2.train import build
from tdmpc2.trainer.base import NonFiniteError, Trainer
from tests.conftest import ROOT, TINY, compose_cfg

# 50-step episodes: seeding to 50, a 50-update burst, evaluations at 0, 100 and the end,
# checkpoints every 50 steps. threads=1 makes CPU results bit-reproducible.
TOY_ANY_LENGTH = [
    *TINY,
    "task=toy-reach",
    "seed_steps=50",
    "eval_freq=100",
    "eval_episodes=1",
    "save_freq=50",
    "keep_checkpoints=2",
    "save_buffer=true",  # buffer.pt: the offline trainer's data
    "progress_bar=false",
    "threads=1",
]
TOY = [*TOY_ANY_LENGTH, "steps=160"]
WALKER = [  # 500-step episodes: updates start when the first one ends
    *TINY,
    "task=walker-walk",
    "steps=560",
    "seed_steps=50",
    "eval_freq=100000",
    "eval_episodes=1",
    "progress_bar=false",
    "threads=1",
]
TIMING = {"elapsed_time", "steps_per_s"}  # the only columns allowed to differ


def start(overrides: list[str], run_dir: Path) -> Trainer:
    args = [*overrides, f"work_dir={run_dir}"]
    return build(compose_cfg(args), args)


def resume(target: Path, *extra: str) -> Trainer:
    args = [f"resume={target}", *extra]
    return build(compose_cfg(args), args)


@pytest.fixture(autouse=True)
def restore_agent_methods():
    saved = {name: getattr(TDMPC2, name) for name in ("act", "update")}
    yield
    for name, method in saved.items():
        setattr(TDMPC2, name, method)


def signal_on_call(obj: object, name: str, call: int, sig: int = signal.SIGINT) -> None:
    """Makes the `call`-th call of obj.name send `sig` to this process (then run as usual).

    Patched on the class and counted for `obj` only: the start-up timing probe calls the
    same methods on a copy of the agent, which must neither count nor reach `obj`.
    """
    original, calls = getattr(type(obj), name), [0]

    def wrapped(self, *args, **kwargs):
        if self is obj:
            calls[0] += 1
            if calls[0] == call:
                signal.raise_signal(sig)
        return original(self, *args, **kwargs)

    setattr(type(obj), name, wrapped)


def read_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def assert_same(a, b, where: str = "") -> None:
    """Exact equality of nested checkpoint contents (tensors, arrays, dicts, lists)."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a} != {b}"


def final_state(run_dir: Path) -> dict:
    """The final checkpoint without what legitimately differs: paths and wall-clock times."""
    payload = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    for key in ("cfg", "elapsed"):
        del payload[key]
    payload.get("loop", {}).pop("episode_time", None)  # online trainers only
    return payload


def assert_runs_equal(reference: Path, resumed: Path) -> None:
    assert_same(final_state(reference), final_state(resumed))
    for name in ("train.csv", "eval.csv"):
        assert read_rows(resumed / name) == read_rows(reference / name), name


@pytest.fixture(scope="module")
def toy_reference(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("toy") / "run"
    start(TOY, run_dir).train()
    return run_dir


# ------------------------------------------------------------ exact resume
@pytest.mark.parametrize(
    ("method", "call", "stopped_at"),
    [
        ("update", 130, 130),  # mid-episode (t=30), after the pretraining burst
        ("update", 20, 50),  # inside the 50-update pretraining burst
        ("act", 120, 100),  # inside the evaluation at step 100: resumes before it
    ],
)
def test_interrupted_toy_run_resumes_exactly(
    toy_reference, tmp_path, capsys, method, call, stopped_at
):
    run_dir = tmp_path / "run"
    trainer = start(TOY, run_dir)
    signal_on_call(trainer.agent, method, call)
    trainer.train()
    assert trainer.stopped_by == signal.SIGINT
    out = capsys.readouterr().out
    assert f"SIGINT at step {stopped_at}: checkpoint {run_dir}/checkpoint_{stopped_at}.pt" in out
    assert f"resume with: python tdmpc2/train.py resume={run_dir}" in out
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["step"] == stopped_at

    resumed = resume(run_dir)
    assert resumed._step == stopped_at
    resumed.train()
    assert resumed.stopped_by is None
    assert_runs_equal(toy_reference, run_dir)


def test_interrupted_dmcontrol_run_resumes_exactly(tmp_path):
    """Stopped at step 300 of the first episode: the simulator replays 300 steps on resume."""
    start(WALKER, tmp_path / "reference").train()
    trainer = start(WALKER, tmp_path / "run")
    signal_on_call(trainer.agent, "act", 500 + 250)  # after 500 in the first evaluation
    trainer.train()
    assert trainer._step == 300
    resume(tmp_path / "run").train()
    assert_runs_equal(tmp_path / "reference", tmp_path / "run")


def test_interrupted_pixel_run_with_video_resumes_exactly(tmp_path):
    """Pixels: the replay's one-frame storage and the mid-episode frame stack come back
    exactly; evaluation videos are written before and after the stop."""
    pixels = [*TOY_ANY_LENGTH, "steps=100", "eval_freq=50", "obs=rgb", "num_channels=8"]
    pixels += ["save_video=true", "batch_size=8"]
    start(pixels, tmp_path / "reference").train()
    trainer = start(pixels, tmp_path / "run")
    signal_on_call(trainer.agent, "update", 60)
    trainer.train()
    assert trainer._step == 60
    resume(tmp_path / "run").train()
    assert_runs_equal(tmp_path / "reference", tmp_path / "run")
    videos = sorted(p.name for p in (tmp_path / "run" / "videos").glob("*.mp4"))
    assert videos == ["eval_0.mp4", "eval_100.mp4", "eval_50.mp4"]


def test_interrupted_offline_run_resumes_exactly(toy_reference, tmp_path):
    offline = [*TOY_ANY_LENGTH, "steps=120", f"data_dir={toy_reference}"]
    start(offline, tmp_path / "reference").train()
    trainer = start(offline, tmp_path / "run")
    assert type(trainer).__name__ == "OfflineTrainer"
    signal_on_call(trainer.agent, "update", 77)
    trainer.train()
    assert trainer._step == 77
    resume(tmp_path / "run").train()
    assert_runs_equal(tmp_path / "reference", tmp_path / "run")


def test_resume_from_an_older_checkpoint_drops_later_log_rows(toy_reference, tmp_path):
    """As after a crash: rows logged after the checkpoint are cut, then written once again."""
    run_dir = tmp_path / "run"
    shutil.copytree(toy_reference, run_dir)
    trainer = resume(run_dir / "checkpoint_150.pt")
    assert trainer._step == 150
    assert [int(r["step"]) for r in read_rows(run_dir / "train.csv")] == [50, 100, 150]
    assert [int(r["step"]) for r in read_rows(run_dir / "eval.csv")] == [0, 100]
    trainer.train()
    assert_runs_equal(toy_reference, run_dir)


# ------------------------------------------------------------ checkpoint files
def test_checkpoints_rotate_and_the_latest_is_found(toy_reference):
    files = sorted(p.name for p in toy_reference.glob("checkpoint*.pt"))
    assert files == ["checkpoint.pt", "checkpoint_150.pt", "checkpoint_160.pt"]
    assert os.path.samefile(toy_reference / "checkpoint.pt", toy_reference / "checkpoint_160.pt")
    assert checkpoint.resolve_path(toy_reference) == toy_reference / "checkpoint.pt"
    payload = checkpoint.load(toy_reference)
    assert payload["format_version"] == checkpoint.FORMAT_VERSION
    assert payload["cfg"]["task"] == "toy-reach" and payload["cfg"]["steps"] == 160
    assert payload["step"] == 160 and payload["finished"]
    older = toy_reference / "checkpoint_150.pt"
    args = [f"checkpoint={older}", "task=toy-reach", "eval_episodes=1"]
    results = evaluate(compose_cfg(args), args)
    assert 0 <= results["episode_reward"] <= 50


def test_a_checkpoint_saved_before_a_config_key_existed_still_evaluates(toy_reference, tmp_path):
    payload = checkpoint.load(toy_reference)
    del payload["cfg"]["reference_dir"]  # a key added to config.yaml after the run
    old = tmp_path / "checkpoint.pt"
    torch.save(payload, old)
    assert checkpoint.saved_config(payload).reference_dir is None
    args = [f"checkpoint={old}", "task=toy-reach", "eval_episodes=1"]
    assert 0 <= evaluate(compose_cfg(args), args)["episode_reward"] <= 50


def test_a_finished_run_resumes_only_with_more_steps(toy_reference, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(toy_reference, run_dir)
    with pytest.raises(ValueError, match="finished at step 160, steps=160; pass steps=N"):
        resume(run_dir)
    trainer = resume(run_dir, "steps=210")
    assert trainer.cfg.steps == 210 and trainer.buffer.capacity == 210 + 210 // 50 + 2
    trainer.train()
    assert [int(r["step"]) for r in read_rows(run_dir / "train.csv")][-2:] == [150, 210]


# ------------------------------------------------------------ signals, from outside
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_saves_a_checkpoint_and_prints_the_resume_command(tmp_path, sig):
    run_dir = tmp_path / "run"
    args = [*TOY_ANY_LENGTH, "steps=100000", f"work_dir={run_dir}"]
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    cmd = [sys.executable, "tdmpc2/train.py", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not any(int(p.stem.split("_")[1]) >= 100 for p in run_dir.glob("checkpoint_*.pt")):
        assert proc.poll() is None and time.time() < deadline, "the run ended early"
        time.sleep(0.2)  # until past seeding and pretraining
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig  # 130 for SIGINT, 143 for SIGTERM
    step = torch.load(run_dir / "checkpoint.pt", weights_only=False)["step"]
    assert step >= 100
    assert f"{sig.name} at step {step:,}: checkpoint {run_dir}/checkpoint_{step}.pt" in out
    command = next(line for line in out.splitlines() if line.startswith("resume with: "))
    resume_args = shlex.split(command.removeprefix("resume with: "))
    assert resume_args[:2] == ["python", "tdmpc2/train.py"]

    proc = subprocess.run(
        [sys.executable, *resume_args[1:], f"steps={step + 30}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["step"] == step + 30
    rows = read_rows(run_dir / "train.csv")  # one row per episode: none twice, none missing
    assert [int(r["step"]) for r in rows] == [50 * (i + 1) for i in range(len(rows))]
    assert [int(r["episode"]) for r in rows] == list(range(1, len(rows) + 1))


# ------------------------------------------------------------ non-finite losses
def test_nonfinite_losses_are_counted_then_stop_the_run(tmp_path):
    trainer = start([*TOY_ANY_LENGTH, "steps=300", "max_nonfinite=5"], tmp_path)
    losses = trainer.agent.losses

    def poisoned(batch):
        total, parts, zs = losses(batch)
        step = trainer._step
        if (100 < step < 150 and step % 2) or step > 200:
            total = total * float("nan")
        return total, parts, zs

    trainer.agent.losses = poisoned
    with pytest.raises(NonFiniteError) as err:
        trainer.train()
    assert trainer._step == 205
    message = str(err.value)
    assert "stopped at step 205: 5 updates in a row had a non-finite loss" in message
    assert f"the last good checkpoint is {tmp_path}/checkpoint_200.pt" in message
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 200
    skipped = {
        int(r["step"]): int(r["nonfinite_updates"]) for r in read_rows(tmp_path / "train.csv")
    }
    assert skipped == {50: 0, 100: 0, 150: 25, 200: 0}
