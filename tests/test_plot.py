"""bench/plot.py turns run CSVs into a PNG, with the published curves when given."""

from __future__ import annotations

import importlib.util

import pytest
from omegaconf import OmegaConf

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("plot", ROOT / "bench" / "plot.py")
plot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot)

REFERENCE = ROOT.parent / "shared" / "reference"


def fake_run(path, seed: int):
    path.mkdir()
    OmegaConf.save({"task": "walker-walk", "exp_name": "test", "seed": seed}, path / "config.yaml")
    rows = "\n".join(f"{s},{s / 100:.1f}" for s in range(0, 5001, 1000))
    (path / "eval.csv").write_text("step,episode_reward\n" + rows + "\n")
    return path


def test_plot_writes_png(tmp_path):
    runs = [fake_run(tmp_path / f"run{i}", i) for i in (1, 2)]
    reference = REFERENCE if REFERENCE.is_dir() else None
    out = plot.plot_runs(runs, reference=reference, out=tmp_path / "curve.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000
    if reference is not None:
        steps, mean, low, high = plot.reference_curve(reference, "tdmpc2", "walker-walk")
        assert steps[0] == 0
        assert all(lo <= m <= hi for m, lo, hi in zip(mean, low, high, strict=True))


def test_plot_names_a_missing_eval_csv(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"eval\.csv not found"):
        plot.plot_runs([tmp_path])
