"""Bad input stops with one `error: ...` line before any work (no traceback); a missing
renderer is one warning. Unknown tasks and a missing evaluate checkpoint: test_train.py;
the Director's settings: test_director_cases.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tdmpc2.common import checkpoint
from tdmpc2.common.checkpoint import CheckpointError
from tdmpc2.common.parser import COUNTS, POSITIVE, ConfigError, defaults, parse_cfg
from tdmpc2.evaluate import evaluate
from tdmpc2.train import build
from tests.conftest import ROOT, TINY, compose_cfg

ENV = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
TOY = [
    *TINY,
    "task=toy-reach",
    "seed_steps=50",
    "eval_episodes=1",
    "progress_bar=false",
    "threads=1",  # two threads crawl on a busy 2-core machine; restore_threads resets it
]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300
    )


def assert_one_error_line(proc: subprocess.CompletedProcess, start: str) -> None:
    """Exit status 1 and stderr is a single line `error: <start>...`."""
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {start}"), proc.stderr


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished 60-step toy run with its checkpoint."""
    path = tmp_path_factory.mktemp("bad") / "run"
    args = [*TOY, "steps=60", "eval_freq=1000", f"work_dir={path}"]
    build(compose_cfg(args), args).train()
    return path


def tampered(run_dir: Path, tmp_path: Path, change) -> Path:
    """A copy of the run's checkpoint with `change(payload)` applied, in a run dir of its own."""
    payload = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    change(payload)
    path = tmp_path / "run" / "checkpoint.pt"
    path.parent.mkdir()
    torch.save(payload, path)
    return path


def resume(target: Path, *extra: str):
    args = [f"resume={target}", *extra]
    return build(compose_cfg(args), args)


# ------------------------------------------------------------ settings, from the command line
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval_episodes=0"], "eval_episodes must be >= 1, got 0"),
        (["steps=2"], "steps (2) must be at least the horizon (3)"),
        (["keep_checkpoints=0"], "keep_checkpoints must be >= 1, got 0"),
        (
            ["batch_size=64"],
            "batch_size (64) is larger than the replay data: the first update sees 50 "
            "transitions (seed_steps=50, buffer_size=1000000)",
        ),
        (
            ["buffer_size=20"],
            "buffer_size (20) cannot hold one episode of toy-reach (50 steps need 51 slots)",
        ),
    ],
)
def test_bad_setting_is_one_error_line(tmp_path, args, message):
    proc = cli("tdmpc2/train.py", *TOY, *args, f"work_dir={tmp_path / 'run'}")
    assert_one_error_line(proc, message)


@pytest.mark.parametrize("key", sorted(COUNTS))
def test_a_count_below_its_minimum_is_one_error(key):
    low = COUNTS[key] - 1
    with pytest.raises(ConfigError, match=rf"^{key} must be >= {COUNTS[key]}, got {low}$"):
        parse_cfg(compose_cfg([*TOY, f"{key}={low}"]))


@pytest.mark.parametrize("key", POSITIVE)
def test_a_rate_or_scale_must_be_positive(key):
    with pytest.raises(ConfigError, match=rf"^{key} must be > 0, got 0"):
        parse_cfg(compose_cfg([*TOY, f"{key}=0"]))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("obs=depth", "obs must be state or rgb, got 'depth'"),
        ("num_channels=16", "num_channels=16: the conv encoder's width, used only with obs=rgb"),
        (
            "action_repeat=0",
            "action_repeat must be null (the task's own) or an integer >= 1, got 0",
        ),
        (
            "action_repeat=1.5",
            "action_repeat must be null (the task's own) or an integer >= 1, got 1.5",
        ),
        ("decoder_coef=-0.5", "decoder_coef must be >= 0, got -0.5"),
        (
            "obs=rgb decoder_coef=1",
            "decoder_coef=1: the decoder reconstructs state observations only",
        ),
    ],
)
def test_observation_settings_that_do_nothing_fail(override, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        parse_cfg(compose_cfg([*TOY, *override.split()]))


def leaves(tree: dict, prefix: str = "") -> list[str]:
    return [
        name
        for key, value in tree.items()
        for name in (
            leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [prefix + key]
        )
    ]


def test_every_config_key_is_read():
    """A key nothing reads is a silent no-op: each one is read by the code (as `.key` or
    `"key"`); keys that only apply to some settings fail elsewhere when they cannot."""
    source = "\n".join(p.read_text() for p in (ROOT / "tdmpc2").rglob("*.py"))
    keys = [k for k in leaves(defaults()) if not k.startswith(("hydra.", "defaults"))]
    unread = [
        k
        for k in keys
        if not re.search(rf"(\.{k.split('.')[-1]}\b|[\"']{k.split('.')[-1]}[\"'])", source)
    ]
    assert len(keys) > 70 and unread == []


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lr=abc", "lr must be a number, got 'abc'"),
        ("steps=1.5", "steps must be an integer, got 1.5"),
        ("save_video=maybe", "save_video must be true or false, got 'maybe'"),
        ("threads=two", "threads must be auto or a count >= 1, got two"),
    ],
)
def test_a_value_of_the_wrong_type_is_one_error(override, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        parse_cfg(compose_cfg([*TOY, override]))


def test_unwritable_run_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")  # a directory cannot be made under a file, even by root
    proc = cli("tdmpc2/train.py", *TOY, f"work_dir={blocker / 'run'}")
    assert_one_error_line(proc, f"run directory {blocker / 'run'} is not writable: Not a directory")


def test_resume_without_a_checkpoint(tmp_path):
    proc = cli("tdmpc2/train.py", f"resume={tmp_path}")
    assert_one_error_line(proc, f"checkpoint not found: {tmp_path / 'checkpoint.pt'}")


def test_corrupt_and_truncated_checkpoints_via_the_cli(run_dir, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(os.urandom(4096))
    proc = cli("tdmpc2/evaluate.py", "task=toy-reach", f"checkpoint={corrupt}")
    assert_one_error_line(proc, f"{corrupt}: not a readable checkpoint, truncated or corrupt (")

    truncated = tmp_path / "run" / "checkpoint.pt"
    truncated.parent.mkdir()
    data = (run_dir / "checkpoint.pt").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    proc = cli("tdmpc2/train.py", f"resume={truncated.parent}")
    assert_one_error_line(proc, f"{truncated}: not a readable checkpoint, truncated or corrupt (")


# ------------------------------------------------------------ incompatible checkpoints
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.update(format_version=1), "format version 1, expected 2"),
        (
            lambda p: p["cfg"].update(obs_shape={"state": [5]}),
            "obs_shape is {'state': [5]} in the file, {'state': [4]} here",
        ),
        (
            lambda p: p["cfg"].update(mlp_dim=32),  # weights of another model size
            "does not fit this run (RuntimeError: Error(s) in loading state_dict",
        ),
        (lambda p: p.update(kind="director"), "checkpoint holds a director agent, this run is"),
    ],
)
def test_incompatible_checkpoint_names_file_and_mismatch(run_dir, tmp_path, change, message):
    path = tampered(run_dir, tmp_path, change)
    with pytest.raises(CheckpointError) as err:
        resume(path.parent, "steps=100")
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model_size=5"], "resume: model_size=5 differs from the run's config (model_size=1)"),
        (["trainer=director"], "resume: trainer=director differs from the run's config"),
        (["steps=30"], "finished at step 60, steps=30; pass steps=N with N > 60"),
    ],
)
def test_resume_rejects_changes_to_what_the_run_learns(run_dir, args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        resume(run_dir, *args)


def test_resume_accepts_the_original_command_line_plus_steps(run_dir):
    assert resume(run_dir, *TOY, "eval_freq=1000", f"work_dir={run_dir}", "steps=61")._step == 60


def test_evaluate_rejects_another_task(run_dir):
    with pytest.raises(CheckpointError, match="trained on task toy-reach, not walker-walk"):
        evaluate(compose_cfg([f"checkpoint={run_dir}", "task=walker-walk"]), ["task=walker-walk"])
    assert checkpoint.resolve_path(run_dir).is_file()


# ------------------------------------------------------------ video without a renderer
def test_no_renderer_is_one_warning_and_evaluation_goes_on(tmp_path, capsys):
    args = [*TOY, "steps=60", f"work_dir={tmp_path}"]
    trainer = build(compose_cfg(args), args)

    def no_renderer(*_):
        raise RuntimeError("no OpenGL context")

    trainer.env.render = no_renderer
    for _ in range(2):
        assert 0 <= trainer.eval(episodes=1, video=True)["episode_reward"] <= 50
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [
        "warning: video disabled: cannot render (RuntimeError: no OpenGL context); "
        "set MUJOCO_GL=egl or MUJOCO_GL=osmesa with a renderer installed"
    ]
    assert not (tmp_path / "videos").exists()
