"""`coverage`: exploration apart from return, which stays 0 on a sparse task until the
first success. From the replay buffer in each finished run's checkpoint, per window of
`seed_steps` steps (the first is the random seeding phase, a baseline every run carries),
the distinct cells visited in the task's declared plane (`coordinates`); for hierarchies,
where the goals point; and a map per run (`coverage_plot`)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

import torch

from bench.learn.common import (
    claim,
    finished,
    fmt,
    load_trained,
    nearest_states,
    resumable,
    run_folders,
    spread,
)
from bench.learn.coordinates import (
    Covered,
    Goals,
    Points,
    declared,
    known,
    plane,
    window_coverage,
)
from tdmpc2.common import checkpoint


def training_steps(run_dir: Path) -> dict[str, torch.Tensor]:
    """Every training step in the order it happened, from the replay buffer in the run's
    latest checkpoint: its observation, action, whether the task ended there (a maze:
    the goal) and its episode's id."""
    buffer = checkpoint.load(run_dir)["buffer"]
    if buffer is None:
        raise ValueError(f"{run_dir}: its checkpoint holds no replay buffer")
    kept = buffer["has_step"]
    episode, index = buffer["episode"][kept], buffer["index"][kept]
    if episode.numel() == 0:
        raise ValueError(f"{run_dir}: its replay buffer is empty")
    order = torch.argsort(episode.long() * (int(index.max()) + 1) + index.long())
    steps = {key: buffer[key][kept][order] for key in ("obs", "action", "terminated", "episode")}
    steps["obs"] = steps["obs"].float()
    return steps


@torch.no_grad()
def goal_targets(
    run_dir: Path, states: torch.Tensor, coordinates: Points, n: int = 256
) -> dict[str, torch.Tensor]:
    """Where a hierarchy's goals point, in the task's coordinates: the training state
    nearest (by the planner's goal similarity) to each of `n` goals decoded from uniformly
    random codes and from the codes the Manager picks at random training states, with
    the models of the run's last checkpoint. Goals from the bulk of the replay pull the
    planner back into it, however the Manager picks."""
    trainer = load_trained(run_dir)[0]
    z = trainer.agent.model.encode(states.to(trainer.agent.device), None)
    generator = torch.Generator().manual_seed(0)
    starts = z[torch.randint(len(z), (n,), generator=generator)]
    vae, manager = trainer.hierarchy.goal_vae, trainer.hierarchy.manager
    codes = {"random codes": vae.sample_code((n,)), "Manager's codes": manager.act(starts)}
    places = coordinates(states)
    result = {}
    for name, code in codes.items():
        result[name] = places[nearest_states(z, vae.decode(code))]
    return result


def coverage(
    outs: Sequence[Path],
    png: Path | None,
    steps: int | None = None,
    tasks: Sequence[str] = (),
    agents: Sequence[str] = (),
) -> str:
    """Exploration of every finished run (of `tasks` and `agents`, if given) of a task with
    declared coordinates under the `outs` folders: a Markdown table per run and per agent,
    where hierarchies' goals point, and maps in `png`. `steps` compares runs of different
    budgets, or stopped after an evaluation at `steps`, on their first `steps` steps."""
    for task in tasks:
        plane(task)  # an undeclared task is an error before any checkpoint loads
    runs: list[Covered] = []
    goals: list[Goals] = []
    unfinished, undeclared, seen = [], set(), set()
    ends: dict[tuple[str, str, str], int] = {}  # training episodes the task ended
    for run_dir, cfg in run_folders(outs, tasks, agents):
        if declared(cfg.task) is None:
            undeclared.add(cfg.task)
            continue
        budget = cfg.steps if steps is None else steps
        if not (finished(run_dir, budget) and resumable(run_dir)):
            unfinished.append(f"{cfg.task} {run_dir.parent.name} {run_dir.name}")
            continue
        key = (cfg.task, run_dir.parent.name, run_dir.name)
        claim(seen, key, run_dir)
        replay = training_steps(run_dir)
        states, ended = replay["obs"], replay["terminated"]
        if len(states) < budget:
            raise ValueError(
                f"{run_dir}: the replay buffer holds {len(states):,} of the run's "
                f"{budget:,} steps (buffer_size below steps), so coverage would miss some"
            )
        coordinates = plane(cfg.task).points
        runs.append((*key, int(cfg.seed_steps), coordinates(states[:budget])))
        ends[key] = int(ended[:budget].sum())
        if cfg.get("trainer") == "director":
            targets = goal_targets(run_dir, states, coordinates)
            goals.append((*key, coordinates(states), targets))
    if not runs:
        skipped = f" (no coordinates declared for {', '.join(sorted(undeclared))})"
        raise FileNotFoundError(
            f"no finished run of {', '.join(tasks) or known()} with a checkpoint under "
            + ", ".join(str(out) for out in outs)
            + (skipped if undeclared else "")
        )
    lines = run_tables(runs, ends)
    if goals:
        lines += ["", *goal_table(goals)]
    if unfinished:
        lines += ["", "Unfinished runs or without a checkpoint (not in the tables):"]
        lines += [f"- {u}" for u in unfinished]
    if undeclared:
        lines += ["", f"Not counted, no coordinates declared: {', '.join(sorted(undeclared))}"]
    if png is not None:
        from bench.learn.coverage_plot import plot_coverage

        plot_coverage(runs, goals, png)
    return "\n".join(lines)


def run_tables(runs: list[Covered], ends: dict[tuple[str, str, str], int]) -> list[str]:
    """Markdown lines: per task, a row per run (cells per window, the task's window
    summary, cells per acting window and over the run's random window, cells in all,
    training episodes the task ended: on a maze, those that reached the goal), then a
    row per task and agent over its runs."""
    lines: list[str] = []
    by_agent: dict[tuple[str, str], list[tuple[float, float, int, int]]] = {}
    for task in sorted({run[0] for run in runs}):
        where = plane(task)
        lines += [
            "| task | agent | seed | cells visited per window | "
            f"{where.window_label} | cells per agent window (mean) | over random | "
            "cells in all | episodes ended by the task |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for _, agent, seed, window, places in (run for run in runs if run[0] == task):
            windows = window_coverage(places, window, where)
            acting = statistics.fmean([cells for cells, _ in windows[1:]] or [math.nan])
            ratio = acting / windows[0][0]
            total = where.count(places)
            ended = ends[(task, agent, seed)]
            by_agent.setdefault((task, agent), []).append((acting, ratio, total, ended))
            cells = " / ".join(str(c) for c, _ in windows)
            summary = " / ".join(s for _, s in windows)
            of = f" of {where.free_cells}" if where.free_cells else ""
            lines.append(
                f"| {task} | {agent} | {seed[4:]} | {cells} | {summary} | {fmt(acting, 1)} "
                f"| {fmt(ratio)} | {total}{of} | {ended} |"
            )
        window = next(run[3] for run in runs if run[0] == task)
        lines += [
            "",
            f"Windows of {window:,} steps; the first is the random seeding phase. Cells are "
            f"{where.cells_text}.",
            "",
        ]
    lines += [
        "| task | agent | runs | cells per agent window (mean ± sd over runs) | over the "
        "run's random window | cells in all | episodes ended by the task |",
        "|---|---|---|---|---|---|---|",
    ]
    for (task, agent), values in sorted(by_agent.items()):
        acting, ratios, totals, ended = zip(*values, strict=True)
        lines.append(
            f"| {task} | {agent} | {len(values)} | {spread(acting)} | {spread(ratios, 2)} | "
            f"{spread(totals, 1)} | {spread(ended, 1)} |"
        )
    return lines


def goal_table(goals: list[Goals]) -> list[str]:
    """Markdown lines per task: the plane's summary of every training state and of the
    states the goals point at, per hierarchical run."""
    lines: list[str] = []
    for task in sorted({g[0] for g in goals}):
        where = plane(task)
        kinds = list(next(g[4] for g in goals if g[0] == task))
        lines += [
            f"Where the hierarchy's goals point on {task} (nearest training state to each "
            f"decoded goal, last checkpoint): {where.where_label}.",
            "",
            "| task | agent | seed | all training states | " + " | ".join(kinds) + " |",
            "|---|---|---|---|" + "---|" * len(kinds),
        ]
        for _, agent, seed, places, targets in (g for g in goals if g[0] == task):
            cells = " | ".join(where.where(targets[kind]) for kind in kinds)
            lines.append(f"| {task} | {agent} | {seed[4:]} | {where.where(places)} | {cells} |")
        lines.append("")
    return lines[:-1]
