"""Logger (CSV, console, video, optional W&B) and bench/plot.py learning curves."""

from __future__ import annotations

import csv
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tdmpc2.common import curves
from tdmpc2.common.logger import Logger

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"

_spec = importlib.util.spec_from_file_location("bench_plot", ROOT / "bench" / "plot.py")
plot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plot)


def make_logger(tmp_path: Path, **cfg) -> Logger:
    base = {"task": "walker-walk", "steps": 100, "seed": 1, "exp_name": "test"}
    return Logger(OmegaConf.create({**base, **cfg}), tmp_path / "run")


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_rows_and_union_header(tmp_path):
    logger = make_logger(tmp_path)
    assert logger.run_dir.is_dir() and not list(logger.run_dir.iterdir())
    logger.log({"step": 10, "loss": torch.tensor(0.5)}, "train")
    logger.log({"step": 20, "loss": 0.25, "grad_norm": 3.0}, "train")  # new key: rewrite
    logger.log({"step": 30}, "train")  # missing keys: empty cells
    rows = read(logger.run_dir / "train.csv")
    assert list(rows[0]) == ["step", "loss", "grad_norm"]
    assert rows == [
        {"step": "10", "loss": "0.5", "grad_norm": ""},
        {"step": "20", "loss": "0.25", "grad_norm": "3.0"},
        {"step": "30", "loss": "", "grad_norm": ""},
    ]
    logger.log({"step": 5, "lr": 1e-3}, "pretrain")
    assert read(logger.run_dir / "pretrain.csv") == [{"step": "5", "lr": "0.001"}]
    # a resumed run keeps appending under the old header
    make_logger(tmp_path).log({"step": 40, "grad_norm": 1.0}, "train")
    assert read(logger.run_dir / "train.csv")[-1] == {"step": "40", "loss": "", "grad_norm": "1.0"}


def test_console_lines(tmp_path, capsys):
    logger = make_logger(tmp_path)
    logger.log(
        {"step": 10_000, "episode": 20, "episode_reward": 812.34, "steps_per_s": 5.12}, "eval"
    )
    logger.log({"step": 5, **{f"loss{i}": 1.0 for i in range(10)}}, "train")
    logger.log({"step": 5, "loss": 1.0}, "pretrain")
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "eval  | step 10,000 | episode 20 | return 812.3 | steps/s 5.1",
        "train | step 5",  # many other metrics: CSV only
    ]


def test_wandb_missing_is_a_warning(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` fail
    logger = make_logger(tmp_path, enable_wandb=True, wandb_project="p", wandb_entity=None)
    logger.log({"step": 1, "episode_reward": 2.0}, "eval")
    logger.finish()
    out = capsys.readouterr().out
    assert out.count("warning:") == 1 and "wandb is not installed" in out
    assert (logger.run_dir / "eval.csv").is_file()


def test_wandb_offline_without_key_and_errors_never_crash(tmp_path, capsys, monkeypatch):
    calls = {}

    class Run:
        def log(self, data, step):
            raise ConnectionError("network down")

        def finish(self):
            calls["finish"] = True

    def init(**kwargs):
        calls["init"] = kwargs
        return Run()

    fake = types.SimpleNamespace(init=init, api=types.SimpleNamespace(api_key=None))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    logger = make_logger(tmp_path, enable_wandb=True, wandb_project="p", wandb_entity=None)
    assert calls["init"]["mode"] == "offline" and calls["init"]["project"] == "p"
    logger.log({"step": 1, "episode_reward": 2.0}, "eval")
    logger.log({"step": 2, "episode_reward": 3.0}, "eval")
    logger.finish()
    assert capsys.readouterr().out.count("warning: wandb disabled") == 1
    assert len(read(logger.run_dir / "eval.csv")) == 2


def test_video_written_or_one_warning(tmp_path, capsys):
    logger = make_logger(tmp_path)
    frames = [np.full((32, 32, 3), 16 * i, dtype=np.uint8) for i in range(8)]
    path = logger.save_video(frames, step=100)
    assert path == logger.run_dir / "videos" / "eval_100.mp4"
    assert path.stat().st_size > 0
    assert logger.save_video([], step=200) is None
    assert logger.save_video([np.zeros((2, 2, 7))], step=300, name="bad") is None
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("warning: video not saved") for line in lines)


def fake_run(path: Path, seed: int | None) -> Path:
    path.mkdir()
    if seed is not None:
        cfg = {"task": "walker-walk", "exp_name": "test", "seed": seed}
        OmegaConf.save(cfg, path / "config.yaml")
    rows = [f"{s},{s / 10:.1f}," for s in range(0, 5001, 1000)] + ["6000,,1"]
    (path / "eval.csv").write_text("step,episode_reward,extra\n" + "\n".join(rows) + "\n")
    return path


def test_plot_runs_writes_a_png(tmp_path):
    runs = [fake_run(tmp_path / "a", 1), fake_run(tmp_path / "b", None)]
    assert curves.run_info(runs[0]) == ("test · walker-walk · seed 1", "walker-walk")
    assert curves.run_info(runs[1]) == ("b", None)
    assert curves.run_curve(runs[1])[0] == [0.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0]
    out = curves.plot_runs(runs)
    assert out == runs[0] / "curve.png"
    assert png_size(out)[0] > 0


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_adds_training_returns_and_a_panel_of_logged_metrics(tmp_path):
    plain, extended = fake_run(tmp_path / "plain", 1), fake_run(tmp_path / "extended", 1)
    (plain / "train.csv").write_text("step,episode_reward\n500,3.0\n1000,4.0\n")
    rows = [f"{s},{s / 100},{1 + s / 1000},0.5" for s in (500, 1000, 1500)]
    header = "step,episode_reward,x/size,x/share\n"
    (extended / "train.csv").write_text(header + "\n".join(rows) + "\n")
    assert curves.column(curves.read_rows(extended / "train.csv"), "x/size") == (
        [500.0, 1000.0, 1500.0],
        [1.5, 2.0, 2.5],
    )
    panel = curves.Panel({"x/size": ("size", "-"), "x/share": ("share", ":")}, left=("x/size",))
    one_panel = png_size(curves.plot_runs([extended]))
    assert png_size(curves.plot_runs([plain], panel=panel)) == one_panel  # nothing logged
    two_panels = png_size(curves.plot_runs([extended], panel=panel))
    assert one_panel[0] == two_panels[0] and two_panels[1] > 1.4 * one_panel[1]


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="no shared reference directory")
def test_plot_over_the_published_curves(tmp_path, capsys):
    run = fake_run(tmp_path / "a", 1)
    plot.main([str(run), "--reference", str(REFERENCE), "--methods", "tdmpc2,sac,nope"])
    out = capsys.readouterr()
    assert out.out.strip() == str(run / "curve.png")
    assert "no published nope curve for walker-walk" in out.err
    steps, mean, low, high = curves.reference_curve(REFERENCE, "tdmpc2", "walker-walk")
    assert steps[0] == 0 and len(steps) == len(mean)
    assert all(lo <= m <= hi for m, lo, hi in zip(mean, low, high, strict=True))


def test_plot_names_a_missing_eval_csv(tmp_path):
    with pytest.raises(SystemExit, match=r"eval\.csv not found"):
        plot.main([str(tmp_path)])
