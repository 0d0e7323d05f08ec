"""`run`: the grid of tasks x agents x seeds at one budget, each run a `tdmpc2/train.py`
process with one torch thread (two threads per process on two cores made each step about
5x slower). Runs whose eval.csv reaches the budget are skipped; runs stopped by Ctrl-C or
SIGTERM to the grid resume from the checkpoint they saved, so a grid can be finished
across sittings."""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from bench.learn.common import ROOT, TRAIN, finished, resumable

MANAGER = ["manager.return_floor=0.01", "manager.entropy_target=0.5"]  # keeps it from collapsing
NOVELTY = ["trainer=director", "worker.novelty_coef=1", *MANAGER]
# Built-in agents: Hydra overrides on top of flat. The ablation's names are in use by
# finished run folders, so a name keeps its overrides for good.
AGENTS: dict[str, list[str]] = {
    "flat": ["trainer=online"],
    "director": ["trainer=director"],
    # the flat planner with the Goal-VAE novelty bonus, the Manager running but ignored
    "flat-nov": ["trainer=director", "worker.goal_coef=0", "worker.novelty_coef=1", *MANAGER],
    "director-goals": ["trainer=director", *MANAGER],  # goals, no bonus
    "director-nov": NOVELTY,  # goals and the bonus
    "director-nov-k32": [  # ... with goals 32 steps long
        *NOVELTY,
        "manager.goal_interval=32",
        "manager.gamma=0.73",
        "worker.relabel_offset=64",
    ],
}
GROUPS = {"ablation": ["flat", "flat-nov", "director-goals", "director-nov", "director-nov-k32"]}
RUN_KEYS = ["threads=1", "keep_checkpoints=1"]  # may differ on resume; train.log gets progress
LIVE: set[subprocess.Popen] = set()  # training processes running now


@dataclass(frozen=True)
class Run:
    """One run of the grid: its overrides and its folder."""

    task: str
    agent: str
    seed: int
    overrides: tuple[str, ...]
    run_dir: Path


def expand_agents(specs: Sequence[str]) -> list[str]:
    """Agent specs with every group name (`ablation`) replaced by its agents, in order."""
    return [agent for spec in specs for agent in GROUPS.get(spec, [spec])]


def parse_agent(spec: str) -> tuple[str, list[str]]:
    """A built-in name or `NAME=k=v,k=v` -> (name, Hydra overrides)."""
    if spec in AGENTS:
        return spec, list(AGENTS[spec])
    name, sep, rest = spec.partition("=")
    overrides = [o for o in rest.split(",") if o]
    if not sep or not name or not overrides or any("=" not in o for o in overrides):
        raise ValueError(
            f"agent '{spec}': expected {', '.join(AGENTS)}, {', '.join(GROUPS)} "
            "or NAME=key=value[,key=value...]"
        )
    return name, overrides


def grid(args: argparse.Namespace) -> list[Run]:
    """Every run of the grid, seed-major: every agent's first seed runs before any second
    seed, so a grid stopped early still compares all agents on the same seeds."""
    budget = [
        f"steps={args.steps}",
        f"eval_freq={args.eval_freq}",
        f"eval_episodes={args.eval_episodes}",
        f"model_size={args.model_size}",
        *args.overrides,
    ]
    agents = [parse_agent(spec) for spec in expand_agents(args.agents)]
    runs = []
    for seed in args.seeds:
        for task in args.tasks:
            for name, agent_overrides in agents:
                run_dir = args.out / task / name / f"seed{seed}"
                overrides = [f"task={task}", f"seed={seed}", *budget, *agent_overrides]
                runs.append(Run(task, name, seed, tuple(overrides), run_dir))
    return runs


def train_command(run: Run, resume: bool = False) -> list[str]:
    """A fresh run, or the continuation of one stopped with a checkpoint: the same results
    as an uninterrupted run, or a longer run when the budget grew."""
    if resume:
        steps = [o for o in run.overrides if o.startswith("steps=")]
        return [sys.executable, str(TRAIN), f"resume={run.run_dir}", *steps, *RUN_KEYS]
    common = [*RUN_KEYS, f"exp_name={run.agent}", f"work_dir={run.run_dir}"]
    return [sys.executable, str(TRAIN), *run.overrides, *common]


def execute(run: Run) -> tuple[Run, int, float]:
    """One training process. A run stopped by a signal left a checkpoint and resumes
    from it; a partial run without one starts again from scratch."""
    resume = resumable(run.run_dir)
    if not resume:
        shutil.rmtree(run.run_dir, ignore_errors=True)
        run.run_dir.mkdir(parents=True)
    started = time.time()
    with open(run.run_dir / "train.log", "a" if resume else "w") as log:
        command = train_command(run, resume)
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        LIVE.add(proc)
        code = proc.wait()
        LIVE.discard(proc)
    return run, code, time.time() - started


def forward_sigterm(signum: int, frame: object) -> None:
    """SIGTERM to the grid: each training saves a checkpoint and stops (resumed next time)."""
    for proc in list(LIVE):
        proc.send_signal(signal.SIGTERM)
    raise KeyboardInterrupt


def run_grid(args: argparse.Namespace) -> int:
    """Trains the grid's unfinished runs, `args.jobs` at a time; the exit code."""
    runs = grid(args)
    todo = [r for r in runs if not finished(r.run_dir, args.steps)]
    resumed = sum(resumable(r.run_dir) for r in todo)
    print(
        f"{len(runs)} runs in the grid, {len(runs) - len(todo)} finished, {len(todo)} to run"
        f" ({resumed} resumed from a checkpoint)"
    )
    if args.launcher:
        return launch_hydra(args, todo)
    failures = 0
    signal.signal(signal.SIGTERM, forward_sigterm)
    pool = ThreadPoolExecutor(max_workers=args.jobs)
    futures = [pool.submit(execute, run) for run in todo]
    try:
        for i, future in enumerate(as_completed(futures), 1):
            run, code, wall = future.result()
            status = "ok" if code == 0 and finished(run.run_dir, args.steps) else f"FAILED ({code})"
            failures += status != "ok"
            print(
                f"[{i}/{len(todo)}] {run.task} {run.agent} seed {run.seed}: {status} "
                f"in {wall / 60:.1f} min ({run.run_dir / 'train.log'})",
                flush=True,
            )
    except KeyboardInterrupt:  # Ctrl-C reached the trainings too: they save and stop
        pool.shutdown(wait=True, cancel_futures=True)
        print("stopped: running runs saved a checkpoint; `run` again resumes them", flush=True)
        return 130
    pool.shutdown()
    return 1 if failures else 0


def launch_hydra(args: argparse.Namespace, todo: list[Run]) -> int:
    """One Hydra multirun over the seeds of each (task, agent) still to run."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in todo:
        groups.setdefault((run.task, run.agent), []).append(run)
    code = 0
    for runs in groups.values():
        first = runs[0]
        seeds = ",".join(str(r.seed) for r in runs)
        command = train_command(first)
        command = [c for c in command if not c.startswith(("seed=", "work_dir="))]
        command += [
            "-m",
            f"seed={seeds}",
            f"hydra/launcher={args.launcher}",
            f"work_dir={first.run_dir.parent}/seed${{seed}}",
        ]
        print(" ".join(command), flush=True)
        code |= subprocess.call(command, cwd=ROOT)
    return code
