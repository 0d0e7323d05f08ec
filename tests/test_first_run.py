"""`make train` without a task: the first run depends on the device, says which it took
and how to start the full-size run (that its CPU setting is the study that measured it:
test_director_cases.py). Nothing trains here."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import torch

from tdmpc2 import first_run
from tdmpc2.common.parser import parse_cfg
from tests.conftest import ROOT, compose_cfg


def composed(args: list[str]):
    """The config train.py runs with these arguments (preset applied, sizes filled in)."""
    return parse_cfg(compose_cfg(args), args)


def test_without_a_gpu_the_cpu_setting_is_taken_and_the_full_run_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args, lines = first_run.choose([], first_run.has_gpu())
    task = first_run.default_task()
    assert args == [f"task={task}", *first_run.CPU_OVERRIDES]
    assert lines[0].startswith("first run: no GPU")
    assert "model_size=1" in lines[0] and first_run.CPU_STUDY in lines[0]
    assert f"make train TASK={task}" in lines[1]


def test_with_a_gpu_the_public_defaults_are_kept(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    args, lines = first_run.choose([], first_run.has_gpu())
    assert args == [f"task={first_run.default_task()}"]
    assert lines[0].startswith("first run: GPU found") and "model_size 5" in lines[0]
    assert composed(args).model_size == 5


@pytest.mark.parametrize("gpu", [False, True])
def test_overrides_win_and_a_given_task_runs_as_given(gpu):
    args, _ = first_run.choose(["steps=2000", "threads=auto"], gpu)
    cfg = composed(args)  # Hydra: the last value of a key wins
    assert cfg.steps == 2000 and cfg.threads == "auto"
    assert first_run.choose(["task=walker-walk", "steps=5"], gpu) == (
        ["task=walker-walk", "steps=5"],
        [],
    )


def test_after_a_rollback_the_first_run_is_flat(monkeypatch, tmp_path):
    monkeypatch.setattr(first_run, "PRESETS", tmp_path)  # no director_walker_walk.yaml
    args, lines = first_run.choose([], gpu=False)
    assert args[0] == "task=walker-walk" and "TASK=walker-walk" in lines[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_train_runs_the_chooser_and_passes_task_and_args():
    def dry(*extra: str) -> str:
        out = subprocess.run(
            ["make", "-n", "train", *extra],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        return next(line for line in out.splitlines() if "first_run.py" in line)

    assert dry().rstrip().endswith("tdmpc2/first_run.py")
    line = dry("TASK=walker-walk", "ARGS=steps=10")
    assert line.rstrip().endswith("first_run.py task=walker-walk steps=10")
