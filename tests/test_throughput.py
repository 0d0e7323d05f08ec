"""bench/throughput.py runs end to end and reports sane numbers (never a speed threshold);
its Director agent: test_director_cases.py."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from tests.conftest import ROOT

FIELDS = (
    "act_s",
    "update_s",
    "steps_per_s",
    "peak_rss_mb",
    "gflops_act",
    "gflops_update",
    "peak_gflops",
)


def run_quick(tmp_path, agent: str, *extra: str) -> tuple[str, dict]:
    """Runs the benchmark's quick mode; its stdout and JSON."""
    out = tmp_path / "throughput.json"
    # One thread: two OpenMP threads on a CPU shared with other jobs can stall for seconds.
    command = [sys.executable, "bench/throughput.py", "--quick", "--agent", agent, *extra]
    command += ["--threads", "1", "--json", str(out)]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout, json.loads(out.read_text())


def check_result(result: dict, agent: str, trainer: str) -> None:
    for field in FIELDS:
        assert math.isfinite(result[field]) and result[field] > 0, (field, result[field])
    assert result["trainer"] == trainer
    assert result["agent"] == agent
    assert result["threads"] == 1
    assert result["compile"] is False
    assert result["task"] == "walker-walk"
    assert result["model_size"] == 5
    assert result["torch"]
    # The analytic counts grow with the work: an update of a batch costs more than nothing.
    assert result["gflop_act"] > 0 and result["gflop_update"] > 0


def test_quick_benchmark_reports_every_field(tmp_path):
    stdout, result = run_quick(tmp_path, "flat")
    assert "act (MPPI)" in stdout
    check_result(result, "flat", "OnlineTrainer")


def test_quick_benchmark_of_pixel_observations(tmp_path):
    extra = ("--obs", "rgb", "--task", "cartpole-swingup", "--model-size", "1", "batch_size=32")
    stdout, result = run_quick(tmp_path, "flat", *extra)
    assert "cartpole-swingup (rgb)" in stdout
    assert result["obs"] == "rgb" and result["model_size"] == 1
    for field in FIELDS:
        assert math.isfinite(result[field]) and result[field] > 0, (field, result[field])


def test_sweep_refuses_both_agents():
    """The sweep times one agent; asking for both fails at once with a clear message."""
    command = [sys.executable, "bench/throughput.py", "--sweep", "--agent", "both"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert "--sweep and --profile take one agent" in run.stderr


def test_profile_lists_where_a_training_step_goes():
    """--profile N: the cumulative-time table of N training steps, the update among them."""
    command = [sys.executable, "bench/throughput.py", "--profile", "2", "--quick", "--threads"]
    command += ["1", "--model-size", "1"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "cumulative" in run.stdout and "train_window" in run.stdout
    assert "(update)" in run.stdout
