"""Refactors keep the numbers: a short run of this tree against the baseline commit's.

Other CPUs round differently (AVX-512, the native kernel's -march=native), so no digest is
written down here. The test extracts the baseline commit from git history, runs the same
tiny training runs with both trees in fresh processes under the same environment on this
machine, and compares every tensor of the final checkpoints (parameters, optimiser
states, running scales, random states, replay) and the evaluation returns, bit for bit.
tests/test_director.py runs the hierarchy the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY

# The last commit before the planning-term refactor (issue 41): the numbers to keep.
BASELINE = "12e1988"

RUN = [
    *TINY,
    "task=toy-reach",
    "steps=100",
    "seed_steps=50",
    "eval_freq=100",
    "eval_episodes=1",
    "progress_bar=false",
    "threads=1",
    "save_freq=0",
]
# Run in each tree's root: trains through train.py's own entry point, then prints the
# digest of every tensor in the final checkpoint and the evaluation returns as JSON.
DRIVER = r"""
import csv, hashlib, json, runpy, sys
from pathlib import Path
import numpy as np
import torch

work_dir, overrides = Path(sys.argv[1]), sys.argv[2:]
sys.argv = ["tdmpc2/train.py", *overrides, f"work_dir={work_dir}"]
try:
    runpy.run_path("tdmpc2/train.py", run_name="__main__")
except SystemExit as stop:
    if stop.code not in (None, 0):
        raise

def digests(node, path, out):
    if isinstance(node, torch.Tensor):
        t = node.detach().cpu().contiguous()
        data = t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        out[path] = f"{t.dtype}{list(t.shape)}:" + hashlib.sha256(data).hexdigest()
    elif isinstance(node, np.ndarray):
        out[path] = hashlib.sha256(np.ascontiguousarray(node).tobytes()).hexdigest()
    elif isinstance(node, dict):
        for key, value in node.items():
            if key != "cfg":
                digests(value, f"{path}/{key}", out)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            digests(value, f"{path}/{i}", out)
    return out

import tdmpc2  # noqa: E402  the tree under test, not an installed copy
assert Path(tdmpc2.__file__).resolve().is_relative_to(Path.cwd().resolve()), tdmpc2.__file__
state = torch.load(work_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
with open(work_dir / "eval.csv") as f:
    returns = [row["episode_reward"] for row in csv.DictReader(f)]
print(json.dumps({"tensors": digests(state, "", {}), "eval_returns": returns}))
"""


def baseline_tree(dest: Path) -> Path:
    """The baseline commit's tdmpc2/ package under dest, or a skip saying why not."""
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("no git history here: the baseline commit cannot be extracted")
    known = subprocess.run(
        [git, "-C", str(ROOT), "cat-file", "-e", f"{BASELINE}^{{commit}}"], capture_output=True
    )
    if known.returncode != 0:
        pytest.skip(f"baseline commit {BASELINE} is not in this clone's history (shallow clone?)")
    dest.mkdir()
    archive = subprocess.run(
        [git, "-C", str(ROOT), "archive", "--format=tar", BASELINE, "tdmpc2"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def start(tree: Path, work_dir: Path, overrides: list[str]) -> subprocess.Popen:
    """One short training run with `tree`'s code; the same environment for every tree."""
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "1",
        "MUJOCO_GL": "egl",
    }
    work_dir.mkdir()
    driver = work_dir / "driver.py"
    driver.write_text(DRIVER)
    return subprocess.Popen(
        [sys.executable, str(driver), str(work_dir / "run"), *overrides],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result(proc: subprocess.Popen, tree: Path) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"{tree}: {err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


def assert_same_as_baseline(tmp_path: Path, overrides: list[str]) -> None:
    """The run of `overrides` with this tree ends exactly as with the baseline's."""
    base = baseline_tree(tmp_path / "baseline")
    # Both trees at once: each process runs on one thread, and the wait is the longer one.
    procs = [start(tree, tmp_path / name, overrides) for tree, name in ((base, "a"), (ROOT, "b"))]
    before, after = (result(proc, tree) for proc, tree in zip(procs, (base, ROOT), strict=True))
    assert len(before["eval_returns"]) == 2  # steps 0 and 100
    assert after["eval_returns"] == before["eval_returns"]
    assert after["tensors"].keys() == before["tensors"].keys()
    changed = [k for k, v in before["tensors"].items() if after["tensors"][k] != v]
    assert not changed, f"{len(changed)} tensors differ from {BASELINE}, e.g. {changed[:5]}"


def test_a_short_flat_run_matches_the_baseline_bit_for_bit(tmp_path):
    assert_same_as_baseline(tmp_path, RUN)
