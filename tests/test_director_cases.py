"""The Director's cases of the flat test files: bad settings, pixel and maze runs, presets,
the first run's CPU study, resume, and the benchmarks' Director agents. They live here, in
a file apply_director_patches.sh adds, so that a rollback takes them along; each reuses
its flat file's helpers."""

from __future__ import annotations

import math
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from bench.learn import common, coverage
from tdmpc2 import first_run
from tdmpc2.common import checkpoint
from tdmpc2.common.parser import ConfigError, defaults, parse_cfg
from tests.conftest import DIRECTOR_GROUPS, ROOT, TINY, compose_cfg
from tests.test_bad_input import TOY as BAD_TOY
from tests.test_bad_input import assert_one_error_line, cli
from tests.test_docs import config_tree, has_key
from tests.test_first_run import composed
from tests.test_learning_bench import MAZE, bench, check_grid, report_rows, train_grid
from tests.test_ogbench import TASK, needs_ogbench
from tests.test_pixels import ENV, eval_returns, toy_pixel_run_trains_saves_and_evaluates
from tests.test_presets import differences, flat
from tests.test_resume import (  # restore_agent_methods: undoes signal_on_call
    TOY,
    assert_runs_equal,
    restore_agent_methods,  # noqa: F401
    resume,
    signal_on_call,
    start,
)
from tests.test_throughput import check_result, run_quick
from tests.test_train import read_csv, run


def test_director_yaml_holds_the_groups_the_rollback_checks_skip():
    """conftest.DIRECTOR_GROUPS names director.yaml's groups, and the docs' tree has them."""
    director = OmegaConf.load(ROOT / "tdmpc2" / "configs" / "director.yaml")
    assert tuple(director) == DIRECTOR_GROUPS
    assert has_key(config_tree(), "worker.value_spread_floor")


# ------------------------------------------------------------ bad input (test_bad_input.py)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["trainer=director", "manager.goal_interval=0"],
            "manager.goal_interval must be >= 1, got 0",
        ),
        (
            ["trainer=director", "manager.batch_size=200"],
            "manager.batch_size (200) must be <= worker.batch_size (128)",
        ),
    ],
)
def test_bad_director_setting_is_one_error_line(tmp_path, args, message):
    proc = cli("tdmpc2/train.py", *BAD_TOY, *args, f"work_dir={tmp_path / 'run'}")
    assert_one_error_line(proc, message)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("manager.lr=x", "manager.lr must be a number, got 'x'"),
        ("manager=3", "manager must be a group of keys, got 3"),
    ],
)
def test_a_director_value_of_the_wrong_type_is_one_error(override, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        parse_cfg(compose_cfg([*BAD_TOY, override]))


# ------------------------------------------------------------ pixels (test_pixels.py)
def test_a_director_pixel_run_on_the_toy_task_trains_saves_and_evaluates(tmp_path):
    trainer = ["trainer=director", "worker.batch_size=16", "manager.batch_size=16"]
    toy_pixel_run_trains_saves_and_evaluates(tmp_path, trainer)


def test_a_gymnasium_pixel_run_renders_records_video_and_exits_cleanly(tmp_path):
    """The hierarchy on gym-Hopper-v5 from pixels (episodic by default); the renderers
    close before the interpreter tears OpenGL down, so no EGL errors reach stderr."""
    args = [*TINY, "task=gym-Hopper-v5", "obs=rgb", "num_channels=8", "steps=30"]
    args += ["trainer=director", "worker.batch_size=16", "manager.batch_size=16"]
    args += ["seed_steps=20", "eval_freq=30", "eval_episodes=1", "save_video=true"]
    args += ["threads=1", "progress_bar=false", f"work_dir={tmp_path}"]
    proc = subprocess.run(
        [sys.executable, "tdmpc2/train.py", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Exception ignored" not in proc.stderr, proc.stderr[-3000:]
    assert all(np.isfinite(eval_returns(tmp_path)))
    payload = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert payload["cfg"]["episodic"] is True and payload["director"]["updates"] > 0
    assert any(key.startswith("_termination.") for key in payload["agent"]["model"])
    assert sorted(p.name for p in (tmp_path / "videos").glob("*.mp4")) == [
        "eval_0.mp4",
        "eval_30.mp4",
    ]


# ------------------------------------------------------------ mazes (test_ogbench.py)
@needs_ogbench
def test_director_trains_on_a_maze_and_logs_success(tmp_path):
    """A hierarchy with the novelty bonus trains, evaluates with success in eval.csv, saves
    a checkpoint, evaluate.py loads it, and bench/maze_novelty.py maps its bonus."""
    run_dir = tmp_path / "run"
    tiny = ["model_size=1", "mlp_dim=32", "enc_dim=32", "latent_dim=16", "num_samples=32"]
    tiny += ["num_elites=4", "num_pi_trajs=4", "iterations=1", "batch_size=16"]
    tiny += ["goal_vae.hidden_dim=16", "manager.hidden_dim=16", "worker.hidden_dim=16"]
    tiny += ["manager.batch_size=8", "worker.batch_size=16", "device=cpu", "threads=1"]
    args = [*tiny, f"task={TASK}", "trainer=director", "worker.novelty_coef=1", "steps=1100"]
    args += ["seed_steps=1000", "eval_freq=1100", "eval_episodes=1", f"work_dir={run_dir}"]
    args += ["save_buffer=true"]
    proc = run(["tdmpc2/train.py", *args, "progress_bar=false"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = read_csv(run_dir / "eval.csv")
    assert [int(r["step"]) for r in rows] == [0, 1100]
    for row in rows:
        assert float(row["episode_success"]) in (0.0, 1.0)
        assert -1000.0 <= float(row["episode_reward"]) <= 0.0
        assert 1.0 <= float(row["goal_perplexity"]) <= 64.0  # the Manager handed out goals
    proc = run(["tdmpc2/evaluate.py", f"checkpoint={run_dir}", f"task={TASK}", "eval_episodes=1"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(read_csv(run_dir / "eval" / "eval.csv")[0]["step"]) == 1100

    from bench.maze_novelty import cell_novelty  # the bonus in visited and unvisited cells

    seen, unseen = cell_novelty(run_dir)
    assert len(seen) >= 1 and len(seen) + len(unseen) == 26  # pointmaze-medium's free cells
    assert all(b >= 0 and math.isfinite(b) for b in seen + unseen)


# ------------------------------------------------------------ presets and the first run
def test_the_best_cup_catch_command_is_the_flat_nov_runs_setting():
    """cup-catch-ablation's README: flat-nov is `task=director_cup_catch worker.goal_coef=0`."""
    args = ["task=director_cup_catch", "worker.goal_coef=0"]
    ours = flat(OmegaConf.to_container(parse_cfg(compose_cfg(args), args), resolve=False))
    runs = sorted(
        (ROOT / "bench/results/cup-catch-ablation/cup-catch/flat-nov").glob("seed*/*.yaml")
    )
    assert len(runs) == 3
    for saved in runs:
        assert not differences(ours, flat(OmegaConf.to_container(OmegaConf.load(saved))))


def test_the_first_run_is_the_director_walker_preset_at_its_steps():
    args, _ = first_run.choose([], gpu=True)
    assert args == ["task=director_walker_walk"]
    assert composed(args).steps == 100_000


def test_the_cpu_setting_is_what_its_study_measured():
    """Composed, the first run's config equals each of the study's saved config.yaml files
    key for key (bookkeeping aside, as for the presets: tests/test_presets.py), but for
    when it stops and how it evaluates: the study's runs, stopped at step 6,000."""
    args, _ = first_run.choose([], gpu=False)
    ours = flat(OmegaConf.to_container(composed(args), resolve=False))
    shorter = {"steps": (6000, 8000), "eval_freq": (3000, 2000), "eval_episodes": (1, 2)}
    assert {key: ours.pop(key) for key in shorter} == {k: v[0] for k, v in shorter.items()}
    runs = sorted((ROOT / first_run.CPU_STUDY).glob("*/director/seed*/config.yaml"))
    assert len(runs) == 3
    for saved in runs:
        study = flat(OmegaConf.to_container(OmegaConf.load(saved), resolve=False))
        assert {key: study.pop(key) for key in shorter} == {k: v[1] for k, v in shorter.items()}
        assert not differences(ours, study), saved.relative_to(ROOT)
        assert study["device"] == "cpu" and study["threads"] == ours["threads"] == 1


# ------------------------------------------------------------ resume (test_resume.py)
DIRECTOR = [
    *TOY,
    "trainer=director",
    "goal_vae.n_latents=4",
    "goal_vae.n_classes=3",
    "manager.goal_interval=5",
    "goal_vae.hidden_dim=32",
    "manager.hidden_dim=32",
    "manager.batch_size=8",
    "worker.hidden_dim=32",
    "worker.batch_size=16",
    "manager.update_every=3",  # stopped after 127 updates: the count must resume too
]


def test_interrupted_director_run_resumes_exactly(tmp_path):
    """Stopped mid-episode and mid-goal-interval, with the interval's goal and starting
    similarity and the episode's goal stats pending; the goal Worker (critics, targets,
    optimisers) and the Manager (critics, return scales) continue exactly."""
    start(DIRECTOR, tmp_path / "reference").train()
    trainer = start(DIRECTOR, tmp_path / "run")
    signal_on_call(trainer.agent, "update", 127, signal.SIGTERM)
    trainer.train()
    assert trainer.stopped_by == signal.SIGTERM
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert {"goal_worker", "goal_worker_optim", "manager", "manager_optim"} <= set(saved)
    director = saved["director"]
    assert director["goal"] is not None and director["start_similarity"] is not None
    assert director["stats"]["codes"] and director["stats"]["reached"]  # mid-episode stats
    assert any(k.startswith("_target_Qs.") for k in saved["goal_worker"])
    assert all(saved["manager"][f"scales.{i}.initialised"] for i in range(2))
    resume(tmp_path / "run").train()
    assert_runs_equal(tmp_path / "reference", tmp_path / "run")


def test_a_checkpoint_saved_before_a_group_key_existed_gets_its_default():
    payload = {"cfg": defaults()}
    del payload["cfg"]["manager"]["return_floor"]  # a key added inside a group after the run
    assert checkpoint.saved_config(payload).manager.return_floor == 1.0


# ------------------------------------------------------------ bench/throughput.py
def test_quick_benchmark_of_the_director_reports_every_field(tmp_path):
    stdout, result = run_quick(tmp_path, "director")
    assert "act (MPPI)" in stdout
    check_result(result, "director", "DirectorTrainer")


def test_both_agents_side_by_side(tmp_path):
    """`--agent both` times the two trainers in one process and reports their ratio."""
    stdout, result = run_quick(tmp_path, "both")
    check_result(result["flat"], "flat", "OnlineTrainer")
    check_result(result["director"], "director", "DirectorTrainer")
    # Both trainers ran their own steps, in one process (one matmul peak for both).
    assert result["flat"]["steps_measured"] == result["director"]["steps_measured"] == 2
    assert result["flat"]["peak_gflops"] == result["director"]["peak_gflops"]
    ratio = result["director_vs_flat"]
    assert math.isfinite(ratio) and ratio > 0
    assert f"director / flat steps/s: {ratio:.3f}" in stdout


# ------------------------------------------------------------ bench/learning.py
@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The quick grid of the flat agent and the Director, trained once."""
    return train_grid(tmp_path_factory, ["flat", "director"])


def test_director_grid_trains_every_run_to_the_budget_and_a_rerun_skips_it(grid):
    check_grid(grid, ["flat", "director"])


def test_report_compares_the_director_with_flat(grid):
    rows = report_rows(grid[0])
    assert set(rows) == {"flat", "director"}
    assert rows["director"]["random"] == rows["flat"]["random"]
    assert float(rows["director"]["vs flat"]) == pytest.approx(
        float(rows["director"]["per seed"][2:]) / float(rows["flat"]["per seed"][2:]), abs=0.05
    )


def test_control_evaluates_each_hierarchy_with_and_without_its_goal_term(grid):
    out, _ = grid
    assert (out / "walker-walk" / "director" / "seed1" / "checkpoint.pt").is_file()
    other = bench("control", "--out", out, "--tasks", "cup-catch")
    assert other.returncode != 0
    assert "no finished hierarchical run of cup-catch" in other.stderr
    unknown = bench("control", "--out", out, "--agents", "flat", "director-x")
    assert unknown.returncode != 0
    assert "no finished hierarchical run of flat, director-x" in unknown.stderr
    command = ["control", "--out", out, "--eval-episodes", "1", "--tasks", "walker-walk"]
    command += ["--agents", "director"]
    command += ["--overrides", "manager.deterministic=true"]
    result = bench(*command, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines()[2:]]
    assert [(r[1].strip(), r[3].strip()) for r in rows] == [("director", "0.5"), ("director", "0")]
    for row in rows:  # goal reach is a share and a similarity, both in [0, 1]
        assert 0 <= float(row[5]) <= 1 and 0 <= float(row[6]) <= 1
    evaluated = (out / "walker-walk" / "director" / "seed1" / "eval" / "eval.csv").read_text()
    assert {"worker.goal_coef", "manager.deterministic"} <= set(
        evaluated.splitlines()[0].split(",")
    )


def test_final_evaluates_the_director_as_trained_and_with_overrides(grid):
    """After `control`: `final` evaluates the hierarchy as trained, then without goals."""
    out, _ = grid
    result = bench("final", "--out", out, "--eval-episodes", "1", "--agents", "director")
    assert result.returncode == 0, result.stderr[-2000:]
    trained = common.read_rows(out / "walker-walk" / "director" / "seed1" / "eval" / "eval.csv")
    assert trained[-1]["worker.goal_coef"] == "0.5"  # as trained, not the control's 0
    command = ["final", "--out", out, "--eval-episodes", "1", "--agents", "director"]
    flat_planned = bench(*command, "--overrides", "worker.eval_goals=false", timeout=300)
    assert flat_planned.returncode == 0, flat_planned.stderr[-2000:]
    director_eval = out / "walker-walk" / "director" / "seed1" / "eval"
    assert common.read_rows(director_eval / "eval.csv")[-1]["worker.eval_goals"] == "False"
    assert (director_eval / "final+worker.eval_goals=false.json").is_file()
    assert (director_eval / "final.json").is_file()  # the as-trained evaluation's cache stays


def test_goal_targets_are_training_states_and_tabulated(grid):
    """Each decoded goal maps to the coordinates of one of the run's training states (the
    walker run's first two observations stand in for a task's coordinates)."""
    run_dir = grid[0] / "walker-walk" / "director" / "seed1"
    states = coverage.training_steps(run_dir)["obs"]
    targets = coverage.goal_targets(run_dir, states, lambda obs: obs[:, :2], n=16)
    assert list(targets) == ["random codes", "Manager's codes"]
    for places in targets.values():
        assert places.shape == (16, 2)
        assert (places[:, None] == states[None, :, :2]).all(-1).any(-1).all()

    hanging = torch.tensor([[0.0, -0.3], [0.0, -0.2], [0.0, 0.1], [0.0, -0.4]])
    lines = coverage.goal_table([("cup-catch", "director", "seed2", hanging, targets)])
    assert lines[-1].startswith("| cup-catch | director | 2 | -0.25 / 0.01 m, 25.0% |")
    assert lines[-1].count(" m, ") == 3


# A hierarchy on the maze small enough to train in a minute: one seeding episode of 250
# steps (action_repeat 4) and one acting episode, the replay buffer in its checkpoint.
TINY_MAZE = ["model_size=1", "mlp_dim=32", "enc_dim=32", "latent_dim=16", "num_samples=32"]
TINY_MAZE += ["num_elites=4", "num_pi_trajs=4", "iterations=1", "batch_size=16"]
TINY_MAZE += ["goal_vae.hidden_dim=16", "manager.hidden_dim=16", "worker.hidden_dim=16"]
TINY_MAZE += ["manager.batch_size=8", "worker.batch_size=16", "device=cpu", "threads=1"]
TINY_MAZE += [f"task={MAZE}", "trainer=director", "action_repeat=4", "manager.frontier=0.5"]
TINY_MAZE += ["manager.frontier_path=8"]  # table 4's Worker follows the frontier's path
TINY_MAZE += ["steps=500", "seed_steps=250", "eval_freq=500", "eval_episodes=1"]
TINY_MAZE += ["save_buffer=true", "progress_bar=false"]


@pytest.fixture(scope="module")
def maze_run(tmp_path_factory):
    """A tiny hierarchical maze run trained once, in `<task folder>/director/seed1`."""
    pytest.importorskip("ogbench")
    run_dir = tmp_path_factory.mktemp("maze") / MAZE / "director" / "seed1"
    command = [sys.executable, "tdmpc2/train.py", *TINY_MAZE, f"work_dir={run_dir}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return run_dir


def test_maze_goals_tabulates_goals_bonus_and_reach(maze_run, capsys):
    """Four tables with a row for the run: rarities and shares in [0, 1], the 512
    imagined intervals split into far and near goals, goal reach from train.csv, and the
    real maze's frontier episodes: the fewest cells to the goal no more than at the
    start, and 0 exactly where the goal was reached; the similarity by distance."""
    from bench import maze_goals

    maze_goals.main([str(maze_run.parents[1])])
    tables = []
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("| agent"):
            tables.append([line])
        elif line.startswith("|"):
            tables[-1].append(line)
    assert len(tables) == 5
    rows = []
    for table in tables:
        header, _, *body = ([c.strip() for c in line.strip("|").split("|")] for line in table)
        assert len(body) == 1 and len(body[0]) == len(header)
        assert body[0][:2] == ["director", "1"]
        rows.append(dict(zip(header, body[0], strict=True)))
    where, pays, reach, real, similar = rows
    assert 1 <= int(where["visited cells"]) <= 26
    for key in list(where)[3:]:  # rarities and shares of the rarest quarter
        assert 0 <= float(where[key]) <= 1, key
    assert int(pays["far goals"]) + int(pays["near goals"]) == maze_goals.STARTS
    assert float(pays["bonus, far"]) >= 0 and float(pays["bonus, near"]) >= 0
    assert float(pays["end from start (cells)"]) >= 0
    assert reach["episodes"] == "1"  # the last 20% of two training episodes
    for key in maze_goals.REACH:
        assert 0 <= float(reach[key]) <= 1, key
    start, worker, rand = (float(real[k]) for k in list(real)[2:5])
    assert 0 <= worker <= start and rand >= 0  # random actions start from their own reset
    for key in ("reached: Worker", "reached: random"):
        assert 0 <= float(real[key]) <= 1, key
    assert (float(real["reached: Worker"]) == 1) == (worker == 0)
    assert -1 <= float(similar["rho(cells, similarity)"]) <= 1
    assert 0.5 < float(similar["0 cells"]) <= 1  # pairs in one cell: alike


@pytest.mark.parametrize("only", [["--agents", "flat"], ["--seeds", "2"]])
def test_maze_goals_filters_runs(maze_run, capsys, only):
    from bench import maze_goals

    with pytest.raises(SystemExit):
        maze_goals.main([str(maze_run.parents[1]), *only])
    assert "no hierarchical run with a checkpoint" in capsys.readouterr().err
