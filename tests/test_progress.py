"""A run you can watch: progress lines and time left, curve.png, threads=auto."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tdmpc2.common.progress import Progress, duration
from tdmpc2.common.threads import ThreadShare, available_cores
from tests.conftest import ROOT, TINY
from tests.test_logger import png_size

TOY = [*TINY, "task=toy-reach", "seed_steps=100", "steps=200", "eval_freq=100"]
TOY += ["eval_episodes=2"]


def test_duration():
    assert [duration(s) for s in (0.4, 12, 250, 3900)] == ["0s", "12s", "4m 10s", "1h 05m"]


def test_lines_off_a_terminal_learn_the_pace_and_count_every_phase():
    lines: list[str] = []
    left = {"training": 100, "evaluation": 50}
    progress = Progress(100, 0, lambda: left, {"training": 1.0, "evaluation": 2.0}, lines.append)
    assert progress.mode == "lines"  # pytest captures stderr: not a terminal
    assert progress.time_left() == 200.0
    assert progress.estimate_line("timed").startswith("expected wall time: 3m 20s (training")
    for _ in range(10):
        left["training"] -= 1
        progress.advance("training")
    assert progress.costs["training"] < 1.0  # the steps took microseconds, not 1 s each
    assert [line.split(" | ")[:2] for line in lines] == [
        ["training", "step 5/100 (5%)"],
        ["training", "step 10/100 (10%)"],
    ]
    progress.event("eval  | episode 1/2 | return 3.0")
    assert lines[-1].startswith("eval  | episode 1/2 | return 3.0 | ") and "left" in lines[-1]
    progress.pretraining(10, 100)
    assert lines[-1].startswith("pretraining | update 10/100 | ")
    Progress.off().advance("training")  # keeps no books, shows nothing


@pytest.fixture
def sleepers():
    procs = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    yield [p.pid for p in procs]
    for p in procs:
        p.kill()
        p.wait()


def test_auto_threads_share_the_cores_with_live_runs(tmp_path, sleepers):
    auto_pid, fixed_pid = sleepers
    (tmp_path / str(auto_pid)).write_text("auto")
    (tmp_path / str(fixed_pid)).write_text("1")
    (tmp_path / "999999999").write_text("auto")  # a run that died without cleaning up
    share = ThreadShare("auto", registry=tmp_path)
    line = share.refresh(force=True)
    cores = available_cores()
    expected = max(1, (cores - 1) // 2)
    assert share.threads == torch.get_num_threads() == expected
    assert line == (
        f"threads: {expected} of {cores} cores "
        "(1 other run with threads=auto; 1 threads held by runs with a fixed count)"
    )
    assert not (tmp_path / "999999999").exists()
    share.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(map(str, sleepers))
    alone = ThreadShare("auto", registry=tmp_path / "empty")
    assert alone.refresh(force=True) == f"threads: {cores} of {cores} cores (no other runs)"
    alone.close()
    fixed = ThreadShare(1, registry=tmp_path / "empty")
    assert fixed.refresh(force=True) is None and torch.get_num_threads() == 1
    fixed.close()


def train(*args: str, tmpdir: Path | None = None) -> subprocess.CompletedProcess:
    """`tmpdir` gives the run its own registry of runs (TMPDIR), blind to any others."""
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    command = [sys.executable, "tdmpc2/train.py", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)


def test_a_run_off_a_terminal_prints_its_events_in_order_and_draws_its_curve(tmp_path):
    proc = train(*TOY, "threads=1", f"work_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    expected = [
        "expected wall time: ",
        "eval  | episode 1/2 | return ",
        "eval  | episode 2/2 | return ",
        "eval  | step 0 |",
        "seeding | step 10/200 (5%) | ",
        "pretraining: 100 updates",
        "pretraining | update 10/100 | ",
        "pretraining | update 100/100 | ",
        "eval  | step 100 |",
        "training | step 110/200 (55%) | ",
        "eval  | step 200 |",
        "finished 200 steps",
    ]
    at = [next(i for i, line in enumerate(lines) if line.startswith(e)) for e in expected]
    assert at == sorted(at), proc.stdout
    timed = [lines[i] for i, e in zip(at, expected, strict=True) if "| " in e and "step" not in e]
    timed += [lines[i] for i, e in zip(at, expected, strict=True) if "ing | step" in e]
    assert len(timed) == 6 and all(line.endswith(" left") for line in timed), timed
    width, height = png_size(Path(tmp_path) / "curve.png")
    assert width > 400 and height > 300


def test_auto_threads_under_a_hydra_multirun(tmp_path):
    proc = train(
        "-m",
        "seed=1,2",
        *TOY,
        "steps=100",
        "eval_freq=100",
        "eval_episodes=1",
        "threads=auto",
        f"work_dir={tmp_path}/seed${{seed}}",
        tmpdir=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    threads = [line for line in proc.stdout.splitlines() if line.startswith("threads: ")]
    assert len(threads) == 2 and all(line.endswith("(no other runs)") for line in threads)
    assert all((tmp_path / f"seed{s}" / "curve.png").is_file() for s in (1, 2))
