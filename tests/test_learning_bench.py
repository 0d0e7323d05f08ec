"""bench/learning.py trains a tiny grid end to end, skips finished runs and reports them;
the named agents, per-task coverage coordinates and the command line's help. The Director
agents' grid, control and goal targets: test_director_cases.py."""

from __future__ import annotations

import argparse
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from bench.learn import cli, common, compare, coordinates, coverage, coverage_plot, report, run
from tdmpc2.common import checkpoint
from tdmpc2.common.buffer import Buffer
from tests.conftest import ROOT

QUICK = ["--seeds", "1", "--steps", "300", "--eval-freq", "150", "--eval-episodes", "1"]
QUICK += ["--model-size", "1", "--jobs", "2", "--overrides"]
QUICK += ["seed_steps=100", "num_samples=32", "num_elites=8", "num_pi_trajs=4", "iterations=1"]
QUICK += ["batch_size=16", "horizon=2", "buffer_size=2000"]


def bench(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    command = [sys.executable, "bench/learning.py", *map(str, args)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def train_grid(tmp_path_factory, agents: list[str]) -> tuple[Path, str]:
    """The quick grid of `agents` trained: (out folder, stdout of the first run)."""
    out = tmp_path_factory.mktemp("learning")
    first = bench("run", "--out", out, "--agents", *agents, *QUICK)
    logs = [log.read_text()[-1500:] for log in sorted(out.glob("*/*/seed*/train.log"))]
    assert first.returncode == 0, "\n".join([first.stdout, first.stderr[-1500:], *logs])
    return out, first.stdout


def check_grid(grid, agents: list[str]) -> None:
    """Every run of the grid trained to its budget, and a rerun trains nothing."""
    out, stdout = grid
    n = len(agents)
    assert f"{n} runs in the grid, 0 finished, {n} to run" in stdout
    assert stdout.count(": ok in ") == n
    for agent in agents:
        run_dir = out / "walker-walk" / agent / "seed1"
        assert (run_dir / "eval.csv").is_file(), (run_dir / "train.log").read_text()[-2000:]
        assert common.last_step(run_dir) >= 300
        assert common.finished(run_dir, 300)
    again = bench("run", "--out", out, "--agents", *agents, *QUICK, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"{n} runs in the grid, {n} finished, 0 to run" in again.stdout
    assert "[1/" not in again.stdout  # nothing trained


def report_rows(out: Path) -> dict[str, dict]:
    """`report`'s table by agent, each row one seed at step 300; its PNG is written."""
    png = out / "l.png"
    rep = bench("report", "--out", out, "--png", png, timeout=300)
    assert rep.returncode == 0, rep.stderr
    first_table = rep.stdout.split("\n\n")[0]  # then the per-run success table
    lines = [line for line in first_table.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        row = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        rows[row["agent"]] = row
    for row in rows.values():
        assert row["task"] == "walker-walk" and row["seeds"] == "1"
        assert row["last step"] == "300"
        assert row["per seed"].startswith("1:")
        assert math.isfinite(float(row["per seed"].removeprefix("1:")))
    assert rows["flat"]["vs flat"] == "1.00"
    random_actions = json.loads((out / "walker-walk" / "random.json").read_text())
    assert random_actions["episodes"] == 30 and 0 <= random_actions["return"] < 100
    assert rows["flat"]["random"] == f"{random_actions['return']:.0f}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return rows


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The quick grid of the flat agent, trained once."""
    return train_grid(tmp_path_factory, ["flat"])


def test_grid_trains_every_run_to_the_budget_and_a_rerun_skips_it(grid):
    check_grid(grid, ["flat"])


def test_report_table_and_png(grid):
    assert set(report_rows(grid[0])) == {"flat"}


def test_parse_agent():
    assert run.parse_agent("flat") == ("flat", ["trainer=online"])
    assert run.parse_agent("director") == ("director", ["trainer=director"])
    spec = "director-g0=trainer=director,worker.goal_coef=0"
    assert run.parse_agent(spec) == ("director-g0", ["trainer=director", "worker.goal_coef=0"])
    for bad in ("nope", "x=", "=a=b", "x=a=b,oops", "x=,"):
        with pytest.raises(ValueError, match=rf"agent '{bad}': expected flat, director, flat-nov"):
            run.parse_agent(bad)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--jobs", "0"], "error: --jobs must be >= 1, got 0"),
        (["run", "--agents", "flat", "nope"], "error: agent 'nope': expected flat"),
        (["report"], "error: no finished run folders under"),
        (["coverage"], "error: no finished run of cup-catch, ogbench-* with a checkpoint under"),
        (["coverage", "--tasks", "walker-walk"], "error: no coordinates declared for task"),
    ],
)
def test_bad_input_exits_with_one_error_line(tmp_path, args, message):
    result = bench(*args, "--out", tmp_path, timeout=120)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(message)
    assert not any(tmp_path.iterdir())  # failed before training or plotting anything


def test_area_is_the_mean_under_the_trapezoids():
    # (100 * (0 + 10) / 2 + 200 * (10 + 20) / 2) / 300 = 3500 / 300
    assert report.area([0, 100, 300], [0.0, 10.0, 20.0]) == pytest.approx(3500 / 300)
    assert report.area([0, 50], [4.0, 4.0]) == pytest.approx(4.0)
    assert report.area([150], [7.0]) == 7.0
    assert math.isnan(report.area([], []))


def test_report_tabulates_each_runs_success_over_its_last_evaluations(tmp_path):
    """The success table averages a run's last three evaluations, up to `--steps`, and
    `compare` reads it."""
    successes = {"1": [0, 0, 1, 0, 1, 1], "2": [0] * 6}
    for seed, values in successes.items():
        run_dir = tmp_path / "maze" / "far" / f"seed{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text("steps: 10\ntrainer: online\n")
        rows = [f"{2 * i},{-1000 * (1 - v)},{v}" for i, v in enumerate(values)]
        header = "step,episode_reward,episode_success"
        (run_dir / "eval.csv").write_text("\n".join([header, *rows]) + "\n")
    (tmp_path / "maze" / "random.json").write_text('{"return": -1000, "episodes": 30}')
    seed1 = tmp_path / "maze" / "far" / "seed1"
    assert report.last_success(seed1, 10) == pytest.approx(2 / 3)
    assert report.last_success(seed1, 6) == pytest.approx(1 / 3)  # evaluations 2, 4, 6
    assert math.isnan(report.last_success(seed1, -1))
    table = report.report([tmp_path], None, None)
    assert "| maze | far | 1 | 0.67 | 10 |" in table and "| maze | far | 2 | 0.00 | 10 |" in table
    (tmp_path / "report.md").write_text(table)
    column = f"success, last {report.LAST_EVALUATIONS} evaluations"
    figures = compare.read_tables([tmp_path / "report.md"], column)
    assert figures == {("maze", "far"): {1: 0.67, 2: 0.0}}  # as printed


def test_report_lists_unfinished_runs_apart(grid, tmp_path):
    """A run stopped short of its budget is named under the table, never averaged in."""
    out, _ = grid
    short = tmp_path / "walker-walk" / "flat" / "seed9"
    short.mkdir(parents=True)
    (short / "config.yaml").write_text("steps: 300\ntrainer: online\n")
    (short / "eval.csv").write_text("step,episode_reward\n0,5.0\n150,6.0\n")
    done = out / "walker-walk" / "flat" / "seed1"
    (tmp_path / "walker-walk" / "flat" / "seed1").symlink_to(done, target_is_directory=True)
    table = report.report([tmp_path], None, None)
    assert "| walker-walk | flat | 1 |" in table
    assert "- walker-walk flat seed9: eval at step 150 of 300" in table


def test_report_pools_folders_and_cuts_runs_at_steps(grid, tmp_path):
    """Seeds of one agent in two folders pool into one row; `--steps` compares every run
    on its first steps, so a longer run stopped there counts; a run in both folders is
    refused."""
    out, _ = grid
    longer = tmp_path / "walker-walk" / "flat" / "seed9"
    longer.mkdir(parents=True)
    (longer / "config.yaml").write_text("steps: 600\ntrainer: online\n")
    (longer / "eval.csv").write_text("step,episode_reward\n0,5.0\n300,6.0\n")
    flat = report.collect([out])[0][("walker-walk", "flat")][0]
    rep = bench("report", "--out", out, tmp_path, "--steps", "300", timeout=300)
    assert rep.returncode == 0, rep.stderr
    row = next(line for line in rep.stdout.splitlines() if "| flat |" in line)
    assert row.startswith("| walker-walk | flat | 2 | 300 |")
    assert f"1:{flat['final']:.0f} 9:6" in row
    assert (out / "learning.png").is_file()  # in the first folder
    table = report.report([out, tmp_path], None, None)  # each at its own budget
    assert "| walker-walk | flat | 1 | 300 |" in table
    assert "- walker-walk flat seed9: eval at step 300 of 600" in table
    (tmp_path / "walker-walk" / "flat" / "seed1").symlink_to(
        out / "walker-walk" / "flat" / "seed1", target_is_directory=True
    )
    with pytest.raises(ValueError, match="is in more than one --out folder"):
        report.report([out, tmp_path], None, None)


def test_a_grid_stopped_by_sigterm_resumes_where_it_stopped(tmp_path):
    command = [sys.executable, "bench/learning.py", "run", "--out", str(tmp_path)]
    command += ["--agents", "flat", *QUICK]  # one agent, seed 1: a single run
    runner = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    run_dir = tmp_path / "walker-walk" / "flat" / "seed1"
    deadline = time.time() + 600
    while time.time() < deadline and runner.poll() is None:
        log = (run_dir / "train.log").read_text() if (run_dir / "train.log").is_file() else ""
        if "training | step" in log:  # past the pretraining burst
            break
        time.sleep(0.2)
    runner.send_signal(signal.SIGTERM)
    stdout = runner.communicate(timeout=300)[0]
    assert runner.returncode == 130, stdout
    assert "stopped: running runs saved a checkpoint" in stdout
    assert common.resumable(run_dir) and not common.finished(run_dir, 300)
    again = bench("run", "--out", tmp_path, *command[command.index("--agents") :])
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 to run (1 resumed from a checkpoint)" in again.stdout
    assert common.finished(run_dir, 300)
    assert "resuming from" in (run_dir / "train.log").read_text()


def test_final_evaluates_every_runs_last_checkpoint_again(grid, tmp_path):
    """`final` evaluates each run's last checkpoint, as trained, and tabulates it by seed,
    then per run for `compare`."""
    out, _ = grid
    missing = bench("final", "--out", out, "--agents", "director-x")
    assert missing.returncode != 0
    assert "error: no finished run of director-x with a checkpoint under" in missing.stderr
    result = bench("final", "--out", out, "--eval-episodes", "1", "--jobs", "2", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    table = result.stdout.split("\n\n")[0]  # then the per-run table
    rows = [line.split("|")[1:-1] for line in table.splitlines()[2:]]
    assert [r[1].strip() for r in rows] == ["flat"]
    for row in rows:
        evaluated = common.read_rows(
            out / "walker-walk" / row[1].strip() / "seed1" / "eval" / "eval.csv"
        )
        assert row[3].strip() == f"{int(float(evaluated[-1]['step'])):,}"
        assert row[5].strip() == f"1:{float(evaluated[-1]['episode_reward']):.0f}"
        assert row[7].strip() == f"{float(evaluated[-1]['episode_success']):.2f} ± 0.00"
    assert rows[0][6].strip() == "1.00"  # flat against itself
    (tmp_path / "final.md").write_text(result.stdout)  # compare reads the per-run table
    success = compare.read_tables([tmp_path / "final.md"], "success")
    assert success == {("walker-walk", "flat"): {1: float(evaluated[-1]["episode_success"])}}
    flat_csv = out / "walker-walk" / "flat" / "seed1" / "eval" / "eval.csv"
    evaluations = len(common.read_rows(flat_csv))
    again = bench("final", "--out", out, "--eval-episodes", "1", "--agents", "flat", timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.splitlines()[2] == result.stdout.splitlines()[2]  # cached, not rerun
    assert len(common.read_rows(flat_csv)) == evaluations


def test_cup_catch_coordinates_are_zero_with_the_ball_in_the_cup():
    """The offset comes from dm_control's model: a ball placed on the target reads (0, 0),
    and the task itself counts it as caught."""
    from dm_control import suite

    env = suite.load("ball_in_cup", "catch")
    physics = env.physics
    dx, dz = coordinates.cup_target_offset()
    with physics.reset_context():
        physics.data.qpos[:] = [0.1, -0.2, 0.1 + dx, -0.2 + dz]
    obs = torch.tensor(env.task.get_observation(physics)["position"]).float()
    position = coordinates.ball_from_target(torch.cat([obs, torch.zeros(4)]).unsqueeze(0))
    assert position.abs().max() < 1e-6
    assert physics.in_target() == 1


def cup_episode(positions):
    """20 cup-catch observations whose ball sits at `positions` (x, height from the target)."""
    dx, dz = coordinates.cup_target_offset()
    obs = torch.zeros(20, 8)
    obs[:, 2], obs[:, 3] = positions[:, 0] + dx, positions[:, 1] + dz
    return obs


def replay_run(run_dir, episodes, capacity=100, task="cup-catch", ended=(), actions=None):
    """A finished run folder of `task` whose checkpoint holds `episodes` of 20
    observations each (and `actions` [20, 2] each, else zeros), with 10 seeding steps;
    the episodes numbered in `ended` end by the task's termination on their last step."""
    cfg = OmegaConf.create({"task": task, "steps": 20 * len(episodes), "seed_steps": 10})
    buffer = Buffer(capacity, (episodes[0].shape[1],), 2, horizon=1, batch_size=1)
    for i, observations in enumerate(episodes):
        obs = torch.cat([observations, observations[-1:]])
        zeros, terminated = torch.zeros(20), torch.zeros(20)
        terminated[-1] = float(i in ended)
        action = torch.zeros(20, 2) if actions is None else actions[i]
        step = {"action": action, "reward": zeros, "terminated": terminated}
        buffer.add({"obs": obs, **step})
    run_dir.mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / "config.yaml")
    (run_dir / "eval.csv").write_text(f"step,episode_reward\n0,0\n{cfg.steps},0\n")
    checkpoint.save(run_dir / "checkpoint.pt", {"buffer": buffer.state_dict()}, cfg)


def test_coverage_counts_cells_and_height_per_window(tmp_path):
    still = torch.tensor([[0.0, -0.35]]).repeat(20, 1)  # hanging: one cell, never above
    swinging = still.clone()
    swinging[10:, 0] = 0.12  # a second cell in the episode's second window
    swinging[15:, 1] = torch.tensor([0.07, 0.13, 0.19, 0.25, 0.31])  # above: five cells
    replay_run(
        tmp_path / "cup-catch" / "flat" / "seed1", [cup_episode(still), cup_episode(swinging)]
    )
    png = tmp_path / "coverage.png"
    table = coverage.coverage([tmp_path], png)
    row = "| cup-catch | flat | 1 | 1 / 1 / 1 / 6 | 0.0 / 0.0 / 0.0 / 50.0 | 2.7 | 2.67 | 7 | 0 |"
    assert row in table  # cells in all, and no episode ended by the task
    assert "| cup-catch | flat | 1 | 3 ± 0 | 2.67 ± 0.00 |" in table
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Another folder's shorter run is compared on the first 20 steps of both.
    replay_run(tmp_path / "short" / "cup-catch" / "director" / "seed1", [cup_episode(swinging)])
    table = coverage.coverage([tmp_path, tmp_path / "short"], None, steps=20)
    assert "| cup-catch | flat | 1 | 1 / 1 | 0.0 / 0.0 | 1.0 | 1.00 |" in table
    assert "| cup-catch | director | 1 | 1 / 6 | 0.0 / 50.0 | 6.0 | 6.00 |" in table
    longer = coverage.coverage([tmp_path, tmp_path / "short"], None, steps=40)
    assert "- cup-catch director seed1" in longer  # too short for 40 steps: listed apart
    # A run of 60 steps stopped after its evaluation at step 40 counts for 40 steps.
    stopped = tmp_path / "stopped" / "cup-catch" / "director" / "seed1"
    replay_run(stopped, [cup_episode(swinging), cup_episode(still)])
    config = OmegaConf.load(stopped / "config.yaml")
    config.steps = 60
    OmegaConf.save(config, stopped / "config.yaml")
    table = coverage.coverage([tmp_path, tmp_path / "stopped"], None, steps=40)
    assert "| cup-catch | director | 1 | 1 / 6 / 1 / 1 |" in table
    with pytest.raises(ValueError, match="is in more than one --out folder"):
        coverage.coverage([tmp_path, tmp_path], None)

    lost = tmp_path / "lost" / "cup-catch" / "flat" / "seed1"
    replay_run(lost, [cup_episode(still), cup_episode(still)], capacity=30)
    with pytest.raises(ValueError, match="holds 28 of the run's 40 steps"):
        coverage.coverage([tmp_path / "lost"], None)


MAZE = "ogbench-pointmaze-medium-singletask-task3-v0"


def maze_places(cells):
    """x-y places in the given (i, j) cells of pointmaze-medium (maze_unit 4, offset 4),
    each a little off the cell's centre."""
    centres = torch.tensor([[4.0 * j - 4, 4.0 * i - 4] for i, j in cells])
    return centres + 0.3 * torch.randn(len(cells), 2, generator=torch.Generator().manual_seed(0))


def test_maze_coordinates_are_the_maze_cells():
    """The maze's plane is the observation's x-y in the maze's own cells, with each cell's
    distance to the goal along the maze (task3: start (5, 3), goal (4, 2), 6 cells apart)."""
    pytest.importorskip("ogbench")
    assert coordinates.declared(MAZE) == "ogbench-"
    assert coordinates.declared("cup-catch") == "cup-catch"
    assert coordinates.declared("walker-walk") is None
    with pytest.raises(ValueError, match="no coordinates declared for task 'walker-walk'"):
        coordinates.plane("walker-walk")
    maze = coordinates.maze(MAZE)
    assert (maze.unit, maze.start, maze.goal) == (4.0, (8.0, 16.0), (4.0, 12.0))
    plane = coordinates.plane(MAZE)
    assert plane.free_cells == 26
    obs = torch.cat([maze_places([(5, 3), (4, 2), (3, 3)]), torch.ones(3, 3)], dim=1)
    places = plane.points(obs)
    assert torch.equal(places, obs[:, :2])
    assert plane.cells(places).tolist() == [[3, 5], [2, 4], [3, 3]]  # (j, i)
    assert plane.window(places[:1]) == "6" and plane.window(places) == "0"
    assert plane.where(places) == "3 cells, 2 from the goal"  # median of 6, 0 and 2


def test_maze_coverage_counts_visited_cells(tmp_path):
    """Two episodes along the shortest way from start to goal: cells per window, the
    fewest cells from the goal in each, and the cells visited of the maze's 26."""
    pytest.importorskip("ogbench")
    way = [(5, 3), (5, 4), (4, 4), (3, 4), (3, 3), (3, 2), (4, 2)]  # start ... goal
    first = maze_places([way[0]] * 10 + [way[1]] * 4 + [way[2]] * 3 + [way[3]] * 3)
    second = maze_places([way[4]] * 5 + [way[5]] * 5 + [way[6]] * 10)
    replay_run(tmp_path / MAZE / "flat" / "seed1", [first, second], task=MAZE, ended=[1])
    png = tmp_path / "maze.png"
    table = coverage.coverage([tmp_path], png, tasks=[MAZE])
    row = f"| {MAZE} | flat | 1 | 1 / 3 / 2 / 1 | 6 / 3 / 1 / 0 | 2.0 | 2.00 | 7 of 26 | 1 |"
    assert row in table  # the second episode ended at the goal
    assert f"| {MAZE} | flat | 1 | 2 ± 0 | 2.00 ± 0.00 | 7.0 ± 0.0 | 1.0 ± 0.0 |" in table
    assert "Cells are the maze's 4 x 4 cells." in table
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A hierarchy's goal targets are drawn on its run's map.
    runs = [(MAZE, "director", "seed1", 10, torch.cat([first, second]))]
    found = {"random codes": first[:4], "Manager's codes": second[-4:]}
    coverage_plot.plot_coverage(runs, [(*runs[0][:3], runs[0][4], found)], png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = coverage.goal_table([(*runs[0][:3], runs[0][4], found)])
    cells = ["7 cells, 2 from the goal", "1 cells, 6 from the goal", "1 cells, 0 from the goal"]
    assert lines[-1] == f"| {MAZE} | director | 1 | {' | '.join(cells)} |"


def test_cell_rarity_ranks_cells_by_visits_and_spearman_handles_ties():
    from bench.maze_goals import cell_rarity, spearman

    cells = torch.tensor([[0, 0]] * 5 + [[0, 1]] * 3 + [[1, 1]] * 2)
    rarity, rare = cell_rarity(cells)
    assert rarity.tolist() == pytest.approx([0.0] * 5 + [0.5] * 3 + [0.8] * 2)
    assert rare.tolist() == [False] * 8 + [True] * 2  # the quarter of 3 cells: one
    x = torch.tensor([1.0, 2.0, 2.0, 3.0])
    assert spearman(x, 2 * x) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert math.isnan(spearman(x, torch.ones(4)))


ABLATION = {  # the exact specs of the maze grid that runs these names
    "flat-nov": "trainer=director,worker.goal_coef=0,worker.novelty_coef=1,"
    "manager.return_floor=0.01,manager.entropy_target=0.5",
    "director-goals": "trainer=director,manager.return_floor=0.01,manager.entropy_target=0.5",
    "director-nov": "trainer=director,worker.novelty_coef=1,manager.return_floor=0.01,"
    "manager.entropy_target=0.5",
    "director-nov-k32": "trainer=director,worker.novelty_coef=1,manager.return_floor=0.01,"
    "manager.entropy_target=0.5,manager.goal_interval=32,manager.gamma=0.73,"
    "worker.relabel_offset=64",
}


def test_named_agents_expand_to_the_exact_overrides(tmp_path):
    for name, spec in ABLATION.items():
        assert (
            run.parse_agent(name)
            == run.parse_agent(f"{name}={spec}")
            == (
                name,
                spec.split(","),
            )
        )
    ablation = ["flat", *ABLATION]
    assert run.expand_agents(["ablation"]) == ablation
    assert run.expand_agents(["director", "ablation"]) == ["director", *ablation]
    args = cli.parser().parse_args(
        ["run", "--out", str(tmp_path), "--agents", "ablation", "--seeds", "1", "2"]
    )
    runs = run.grid(args)
    assert [(r.seed, r.agent) for r in runs] == [(s, a) for s in (1, 2) for a in ablation]
    k32 = runs[4]
    assert k32.run_dir == tmp_path / "walker-walk" / "director-nov-k32" / "seed1"
    assert k32.overrides[-7:] == tuple(ABLATION["director-nov-k32"].split(","))


def test_help_of_each_subcommand_describes_every_option():
    top = cli.parser()
    jobs = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(jobs) == {"run", "report", "control", "final", "coverage", "compare"}
    for name, parser in jobs.items():
        text = "".join(parser.format_help().split())  # wrapping may break words at hyphens
        for action in parser._actions:
            assert action.help, f"{name} {action.option_strings} has no help"
            assert all(option in text for option in action.option_strings)
            assert "".join(action.help.split()) in text, f"{name} lacks {action.option_strings}"
    shown = subprocess.run(
        [sys.executable, "bench/learning.py", "coverage", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0 and "--png" in shown.stdout and "ogbench-*" in shown.stdout


def coverage_rows(agent: str, figures: list[str], first_seed: int = 1) -> str:
    """A per-run table as `coverage` writes it (the columns compare reads and one more)."""
    rows = [
        f"| maze | {agent} | {first_seed + i} | 5 / 6 | {f} | {f} of 26 |"
        for i, f in enumerate(figures)
    ]
    return "\n".join(
        [
            "| task | agent | seed | cells visited per window | over random | cells in all |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )


def test_compare_pools_tables_and_tests_the_difference(tmp_path):
    goals = (
        "| task | agent | seed | all training states |\n|---|---|---|---|\n| maze | far | 9 | x |"
    )
    first, second = tmp_path / "a.md", tmp_path / "b.md"
    first.write_text(coverage_rows("far", ["1.8", "1.9", "2.0"]) + "\n\n" + goals)
    second.write_text(
        coverage_rows("far", ["2.1", "2.2"], first_seed=4)
        + "\n\nsome words\n\n"
        + coverage_rows("near", ["1.0", "1.1", "1.2", "1.3", "–", "1.4"])
    )
    figures = compare.read_tables([first, second], "cells in all")
    assert figures["maze", "far"] == {1: 1.8, 2: 1.9, 3: 2.0, 4: 2.1, 5: 2.2}
    assert sorted(figures["maze", "near"]) == [1, 2, 3, 4, 6]  # the dash is left out
    far, near = list(figures["maze", "far"].values()), list(figures["maze", "near"].values())
    assert compare.permutation_p(far, near) == pytest.approx(1 / 252)  # apart in every split
    assert compare.permutation_p(near, far) == pytest.approx(1.0)
    assert compare.permutation_p([1.0, 1.0], [1.0, 1.0]) == pytest.approx(1.0)  # ties count
    low, high = compare.bootstrap_interval(far, near)
    assert 0.3 < low < 0.8 < high < 1.3  # around the difference of the means, 0.8
    table = compare.compare([first, second], "far", ["near", "absent"], "over random")
    assert "| maze | far | 5 | 2.00 ± 0.16 | near | 5 | 1.20 ± 0.16 | 0.80 |" in table
    assert "| 0.004 |" in table and "absent" not in table.split("\n", 1)[1]
    with pytest.raises(ValueError, match="seed 1 is in two tables"):
        compare.read_tables([first, first], "over random")
    with pytest.raises(ValueError, match="no runs of slow"):
        compare.compare([first], "slow", ["far"], "over random")
    with pytest.raises(ValueError, match="no run rows with a 'return' column"):
        compare.read_tables([first], "return")
    missing = bench("compare", tmp_path / "none.md", "--agent", "far", "--against", "near")
    assert missing.returncode != 0 and missing.stderr.startswith("error: no such table: ")


def test_action_persistence_tells_a_held_direction_from_dithering(tmp_path, capsys):
    """Seeding (10 steps) then acting: one run holds its direction after seeding, the
    other flips it every step; both at full and at half strength."""
    from bench import action_persistence

    still = torch.zeros(20, 2)
    seeding = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat(5, 1)  # orthogonal: cosine 0
    held = torch.tensor([[1.0, 1.0]]).repeat(20, 1)
    flipped = 0.5 * torch.tensor([[1.0, 1.0], [-1.0, -1.0]]).repeat(10, 1)
    for agent, acting in (("steady", held), ("jitter", flipped)):
        first = torch.cat([seeding, acting[10:]])  # the run's first 10 steps are seeding
        replay_run(
            tmp_path / "cup-catch" / agent / "seed1", [still, still], actions=[first, acting]
        )
    action_persistence.main([str(tmp_path / "cup-catch")])
    table = capsys.readouterr().out
    # Seeding: 9 pairs at cosine 0. After it: 9 pairs in episode 1 and 19 in episode 2,
    # all held (+1) or flipped (-1); the pair across the two episodes does not count.
    assert "| steady | 1 | 0.00 | 1.00 | 1.00 |" in table
    assert "| jitter | 1 | 0.00 | -1.00 | 0.50 |" in table
    assert "| steady | 1 | 0.00 ± 0.00 | 1.00 ± 0.00 | 1.00 ± 0.00 |" in table
    with pytest.raises(SystemExit, match="2"):
        action_persistence.main([str(tmp_path / "walker-walk")])
    assert "error: no finished run with a checkpoint under" in capsys.readouterr().err


def test_the_ratio_to_flat_only_reads_for_positive_flat_returns():
    assert common.vs_flat(300.0, 200.0) == 1.5
    assert math.isnan(common.vs_flat(-951.0, -723.0))  # a maze: higher would be worse
    assert math.isnan(common.vs_flat(5.0, 0.0))
    assert math.isnan(common.vs_flat(5.0, math.nan))
