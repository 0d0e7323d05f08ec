"""Learning benchmark: a grid of tasks x agents x seeds at a fixed budget, and what is
measured of its run folders (<out>/<task>/<agent>/seed<N>/).

    python bench/learning.py run --tasks walker-walk --agents flat director \\
        --seeds 1 2 3 --steps 8000 --eval-freq 2000 --model-size 1 --jobs 2
    python bench/learning.py run --tasks ogbench-pointmaze-medium-singletask-task3-v0 \\
        --agents ablation --overrides save_buffer=true   # flat, flat-nov, director-goals, ...
    python bench/learning.py report        # Markdown table + learning.png from the run folders
    python bench/learning.py control       # goal reach of each hierarchy: trained vs goal_coef=0
    python bench/learning.py control --goal-coefs 1 10   # ... and at stronger goal weights
    python bench/learning.py control --tasks walker-walk --overrides manager.deterministic=true
    python bench/learning.py final --eval-episodes 10   # each run's last checkpoint again
    python bench/learning.py final --overrides worker.eval_goals=false   # ... planned flat
    python bench/learning.py coverage --out bench/results/sparse   # exploration, return aside
    python bench/learning.py coverage --out bench/results/maze --png /tmp/maze.png
    python bench/learning.py compare bench/results/maze/coverage.md --agent director-goals \
        --against flat flat-nov   # per-seed exploration: difference, interval, p

An agent is a built-in name (flat, director and the ablation's flat-nov, director-goals,
director-nov, director-nov-k32), a group (ablation: flat and those four) or
`NAME=key=value,key=value` (Hydra overrides on top of flat, e.g.
`director-g0=trainer=director,worker.goal_coef=0`). `--launcher submitit_slurm` sends
the grid through Hydra's launcher instead (one multirun over seeds per task and agent).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import ModuleType

from bench.learn import compare, control, coverage, final, report, run
from bench.learn.common import DEFAULT_OUT, ROOT
from bench.learn.coordinates import known


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; an option's help ends with its default, when it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        default = action.default
        if default in (None, [], argparse.SUPPRESS) or isinstance(default, bool):
            return action.help or ""
        shown = " ".join(map(str, default)) if isinstance(default, list) else str(default)
        return f"{action.help} (default: {shown})"


def add_filters(parser: argparse.ArgumentParser, note: str = "") -> None:
    """--tasks and --agents: which runs of the folders a job looks at."""
    parser.add_argument("--tasks", nargs="*", default=[], help=f"only these tasks' runs{note}")
    parser.add_argument(
        "--agents",
        nargs="*",
        default=[],
        help="only these agents' runs (names; a group such as ablation stands for its agents)",
    )


def add_jobs(parser: argparse.ArgumentParser, what: str) -> None:
    """--jobs: processes side by side, one per core (each runs one torch thread)."""
    parser.add_argument("--jobs", type=int, default=2, help=f"{what} at once (one per core)")


def add_outs(parser: argparse.ArgumentParser) -> None:
    """--out for jobs that pool run folders from several places."""
    parser.add_argument(
        "--out",
        type=Path,
        nargs="+",
        default=[DEFAULT_OUT],
        help="folders of run folders; an agent's seeds may lie in several, each seed in one",
    )


def parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per job, every option with its help."""
    top = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    sub = top.add_subparsers(dest="mode", required=True)

    def job(name: str, module: ModuleType, summary: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=summary, description=module.__doc__, formatter_class=Formatter
        )

    grid = job("run", run, "train the grid (finished runs are skipped, stopped ones resumed)")
    grid.add_argument("--tasks", nargs="+", default=["walker-walk"], help="task names")
    grid.add_argument(
        "--agents",
        nargs="+",
        default=["flat", "director"],
        help=f"built-in agents ({', '.join(run.AGENTS)}), groups ({', '.join(run.GROUPS)}) "
        "or NAME=key=value[,key=value...]",
    )
    grid.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="seeds to train")
    grid.add_argument("--steps", type=int, default=8000, help="agent steps per run (the budget)")
    grid.add_argument("--eval-freq", type=int, default=2000, help="steps between evaluations")
    grid.add_argument("--eval-episodes", type=int, default=2, help="episodes per evaluation")
    grid.add_argument("--model-size", type=int, default=1, help="TD-MPC2 model_size")
    add_jobs(grid, "training processes")
    grid.add_argument("--launcher", help="a Hydra launcher (e.g. submitit_slurm) instead of --jobs")
    grid.add_argument(
        "--overrides", nargs="*", default=[], help="Hydra overrides for every run, after the budget"
    )
    grid.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the run folders")

    rep = job("report", report, "Markdown table and learning.png of the run folders")
    rep.add_argument(
        "--reference",
        type=Path,
        default=ROOT.parent / "shared" / "reference",
        help="folder of published curves drawn beside ours (ignored when missing)",
    )
    rep.add_argument(
        "--png", type=Path, help="the curves' PNG; default: learning.png in the first --out"
    )
    rep.add_argument("--steps", type=int, help="only each run's first STEPS steps")
    add_outs(rep)

    ctl = job("control", control, "goal reach of each hierarchy, trained vs goal_coef=0")
    ctl.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation")
    add_jobs(ctl, "runs evaluated")
    ctl.add_argument(
        "--goal-coefs", type=float, nargs="*", default=[], help="more goal weights to evaluate"
    )
    add_filters(ctl)
    ctl.add_argument(
        "--overrides",
        nargs="*",
        default=[],
        help="for every evaluation, e.g. manager.deterministic=true",
    )
    ctl.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the run folders")

    fin = job("final", final, "each run's last checkpoint over more episodes")
    fin.add_argument("--eval-episodes", type=int, default=10, help="episodes per checkpoint")
    add_jobs(fin, "runs evaluated")
    add_filters(fin)
    fin.add_argument(
        "--overrides",
        nargs="*",
        default=[],
        help="for every evaluation, e.g. worker.eval_goals=false (default: as trained)",
    )
    add_outs(fin)

    cov = job("coverage", coverage, "where training went, from each run's replay buffer")
    cov.add_argument(
        "--png", type=Path, help="the maps' PNG; default: coverage.png in the first --out"
    )
    cov.add_argument("--steps", type=int, help="only each run's first STEPS steps")
    add_filters(cov, f" (tasks with declared coordinates: {known()})")
    add_outs(cov)

    cmp = job("compare", compare, "one agent's per-seed figure against others', with a test")
    cmp.add_argument("tables", type=Path, nargs="+", help="Markdown files of coverage tables")
    cmp.add_argument("--agent", required=True, help="the agent whose gain is in question")
    cmp.add_argument("--against", nargs="+", required=True, help="the agents it is compared to")
    cmp.add_argument(
        "--column", default="over random", help="the per-run column compared (its first number)"
    )
    return top


def main(argv: list[str] | None = None) -> None:
    """Runs one job; bad input exits with one `error: ...` line."""
    args = parser().parse_args(argv)
    try:
        if args.mode in ("run", "control", "final") and args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
        agents = run.expand_agents(args.agents) if args.mode not in ("report", "compare") else []
        if args.mode == "run":
            for spec in agents:
                run.parse_agent(spec)
            sys.exit(run.run_grid(args))
        elif args.mode == "report":
            reference = args.reference if args.reference.is_dir() else None
            png = args.png or args.out[0] / "learning.png"
            print(report.report(args.out, reference, png, args.steps))
        elif args.mode == "control":
            print(
                control.control(
                    args.out,
                    args.eval_episodes,
                    args.jobs,
                    args.goal_coefs,
                    args.tasks,
                    args.overrides,
                    agents,
                )
            )
        elif args.mode == "final":
            print(
                final.final(
                    args.out, args.eval_episodes, args.jobs, args.tasks, agents, args.overrides
                )
            )
        elif args.mode == "compare":
            missing = [str(path) for path in args.tables if not path.is_file()]
            if missing:
                raise FileNotFoundError(f"no such table: {', '.join(missing)}")
            print(compare.compare(args.tables, args.agent, args.against, args.column))
        else:
            png = args.png or args.out[0] / "coverage.png"
            print(coverage.coverage(args.out, png, args.steps, args.tasks, agents))
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as err:
        sys.exit(f"error: {err}")
