"""The Director extension as a whole: patch tooling, config plumbing, trainer choice, checkpoints.

The verify / rollback / apply cycle runs on a throw-away copy of the repository (its
own git history included), so the working tree under test is never touched.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tdmpc2.train import build, trainer_class
from tests.conftest import TINY, compose_cfg

ROOT = Path(__file__).resolve().parent
SCRIPT = "apply_director_patches.sh"
SKIP_PARTS = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "logs"}
ENV = {**os.environ, "PYTHON": sys.executable, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def copy_repo(dest: Path) -> Path:
    """The working tree's files (tracked and untracked, not ignored) in a fresh one-commit repo."""
    files = git(ROOT, "ls-files", "-co", "--exclude-standard", "-z").split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "snapshot")
    return dest


def snapshot(repo: Path) -> dict[str, str]:
    """sha256 of every file outside caches and .git, by relative path."""
    return {
        str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and not SKIP_PARTS & set(p.relative_to(repo).parts)
    }


def script(repo: Path, *args: str) -> subprocess.CompletedProcess:
    # Run from another directory: the script must find the repository by itself.
    return subprocess.run(
        ["bash", str(repo / SCRIPT), *args],
        cwd=repo.parent,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module", autouse=True)
def restore_threads():
    """threads=1 is process-wide, and tests/conftest.py's reset does not reach this file."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_repo(tmp_path / "repo")


# ------------------------------------------------------------- patch tooling
def test_verify_rollback_apply_cycle(repo: Path):
    before = snapshot(repo)
    director_files = ["tdmpc2/common/goal_vae.py", "tdmpc2/trainer/director_trainer.py"]

    out = ok(script(repo, "verify"))
    assert "[FAIL]" not in out and out.count("[ok]") >= 6
    assert "verify: all checks passed" in out

    out = ok(script(repo, "rollback", "--dry-run"))
    assert "would:" in out
    assert snapshot(repo) == before  # a dry run changes nothing

    out = ok(script(repo, "rollback"))
    assert "rollback: done" in out
    for rel in director_files:
        assert not (repo / rel).exists()
        assert (repo / ".director_restore" / rel).is_file()  # moved aside, not deleted
    agent_src = (repo / "tdmpc2/agent.py").read_text()
    assert "goal" not in agent_src and "Director" not in (repo / "tdmpc2/train.py").read_text()
    # No trace of the hierarchy is left in the flat package (maze and Meta-World goals are
    # the environments' own).
    trace = re.compile(
        r"\bdirector\b|director_|(?<!context)manager|(?-i:goal_)|worker\.|hierarch|cosine_max|relabel",
        re.IGNORECASE,
    )
    traces = [
        f"{path.relative_to(repo)}:{n}: {line.strip()}"
        for path in sorted((repo / "tdmpc2").rglob("*"))
        if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if trace.search(line)
    ]
    assert not traces, "\n".join(traces)
    # Flat TD-MPC2's own tests pass in the rolled-back tree, against its own modules.
    flat = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_core.py"],
        cwd=repo,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert flat.returncode == 0, flat.stdout[-3000:]
    assert "passed" in flat.stdout
    assert "already flat" in ok(script(repo, "rollback"))  # idempotent

    out = ok(script(repo, "apply"))
    assert "verify: all checks passed" in out
    assert snapshot(repo) == before  # back byte for byte
    assert "already in place" in ok(script(repo, "apply"))

    # Without the restore folder, apply rebuilds the extension from git history.
    ok(script(repo, "rollback"))
    shutil.rmtree(repo / ".director_restore")
    out = ok(script(repo, "apply"))
    assert "from git HEAD" in out and "verify: all checks passed" in out
    assert snapshot(repo) == before


def test_backup_and_refusals(repo: Path):
    out = ok(script(repo, "backup"))
    assert "copied tdmpc2/agent.py -> tdmpc2/agent.py.backup" in out
    assert (repo / "tdmpc2/agent.py.backup").read_bytes() == (repo / "tdmpc2/agent.py").read_bytes()
    assert "up to date" in ok(script(repo, "backup"))  # idempotent

    with open(repo / "tdmpc2/agent.py", "a") as f:
        f.write("# a user's edit\n")
    refused = script(repo, "backup")
    assert refused.returncode != 0 and "--force" in refused.stderr
    ok(script(repo, "backup", "--force"))
    assert (repo / "tdmpc2/agent.py.backup").read_text().endswith("# a user's edit\n")

    # A tree that is neither the whole extension nor flat is left alone.
    (repo / "tdmpc2/common/manager.py").unlink()
    before = snapshot(repo)
    for command in ("rollback", "apply"):
        proc = script(repo, command)
        assert proc.returncode != 0 and "refusing" in proc.stderr
    assert snapshot(repo) == before

    proc = script(repo, "frobnicate")
    assert proc.returncode != 0 and "unknown argument" in proc.stderr
    assert "rollback" in ok(script(repo, "--help"))


# ------------------------------------------------------------- configuration
def test_hydra_overrides_reach_goal_vae_and_manager(tmp_path: Path):
    overrides = [
        *TINY,
        "task=director_walker_walk",
        "goal_vae.n_latents=8",
        "goal_vae.n_classes=4",
        "goal_vae.kl_weight=0.5",
        "manager.goal_interval=5",
        "manager.gamma=0.9",
        "manager.entropy_coef=0.02",
        "manager.exploration_weight=0.25",
        "worker.goal_coef=0.3",
        "worker.goal_discount=0.7",
        "worker.hidden_dim=24",
        f"work_dir={tmp_path}",
    ]
    trainer = build(compose_cfg(overrides), overrides)
    assert type(trainer).__name__ == "DirectorTrainer"
    hierarchy = trainer.hierarchy
    assert (hierarchy.goal_vae.n_latents, hierarchy.goal_vae.n_classes) == (8, 4)
    assert hierarchy.goal_vae.kl_weight == 0.5
    assert hierarchy.interval == 5
    assert (hierarchy.manager.gamma, hierarchy.manager.entropy_coef) == (0.9, 0.02)
    assert hierarchy.manager.actor[-1].out_features == 8 * 4
    assert hierarchy.manager.weights == (1.0, 0.25)
    assert trainer.agent.cfg.worker.goal_coef == 0.3
    assert (hierarchy.worker.goal_discount, hierarchy.worker.goal_coef) == (0.7, 0.3)
    assert hierarchy.worker._pi[0].out_features == 24
    goal_term = hierarchy.planning_terms(eval_mode=False)[0]
    assert goal_term.goal_value == hierarchy.worker.value  # the planner values goals with it
    assert goal_term.coef == 0.3
    assert trainer.cfg.task == "walker-walk"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["task=walker-walk"], "OnlineTrainer"),
        (["task=director_walker_walk"], "DirectorTrainer"),
        (["task=walker-walk", "trainer=director"], "DirectorTrainer"),
        (["task=director_humanoid_walk"], "DirectorTrainer"),
        (["task=walker-walk", "data_dir=/some/replay"], "OfflineTrainer"),
        (["task=director_walker_walk", "data_dir=/some/replay"], "OfflineDirectorTrainer"),
        (["task='walker-walk,walker-run'", "data_dir=/some/replay"], "OfflineTrainer"),
        (
            ["task='walker-walk,walker-run'", "trainer=director", "data_dir=/some/replay"],
            "OfflineDirectorTrainer",
        ),
    ],
)
def test_trainer_selection(overrides: list[str], expected: str):
    from tdmpc2.common.parser import parse_cfg

    cfg = parse_cfg(compose_cfg(overrides), overrides)
    assert trainer_class(cfg).__name__ == expected


# --------------------------------------------------------------- checkpoints
