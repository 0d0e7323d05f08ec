"""The coverage maps: per task, cells per window for each agent and the random seeding
phases of all runs, then a row per agent with one map per run of where its steps after
seeding went, drawn over the task's landmarks (the cup's target; the maze's walls, start
and goal), with the states its goals point at for hierarchies."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from bench.learn.coordinates import Covered, Goals, Plane, plane, window_coverage

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MARKERS = {"random codes": ("o", "cyan"), "Manager's codes": ("x", "magenta")}


def plot_coverage(runs: list[Covered], goals: list[Goals], png: Path) -> None:
    """All tasks' panels in one figure, a block of rows per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({run[0] for run in runs})
    agents = {t: sorted({run[1] for run in runs if run[0] == t}) for t in tasks}
    seeds = max(sum(run[:2] == (t, a) for run in runs) for t in tasks for a in agents[t])
    columns, rows = max(2, seeds), sum(1 + len(agents[t]) for t in tasks)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 4.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    targets = {goal[:3]: goal[4] for goal in goals}
    row = 0
    for task in tasks:
        where = plane(task)
        of_task = [run for run in runs if run[0] == task]
        plot_windows(axes[row, 0], of_task, agents[task], where)
        seeding = torch.cat([places[:window] for *_, window, places in of_task])
        draw_map(axes[row, 1], where, seeding, f"{task}\nrandom seeding (all runs)")
        for agent in agents[task]:
            row += 1
            of_agent = [run for run in of_task if run[1] == agent]
            for ax, (*key, window, places) in zip(axes[row], of_agent, strict=False):
                title = f"{agent} {key[2]}: after seeding"
                draw_map(ax, where, places[window:], title, targets.get(tuple(key)))
        row += 1
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)


def plot_windows(ax: Axes, runs: list[Covered], agents: list[str], where: Plane) -> None:
    """Cells per window for each agent: the mean over its runs and the min-max band."""
    ax.set_axis_on()
    for agent in agents:
        curves = [
            [c for c, _ in window_coverage(p, w, where)] for _, a, _, w, p in runs if a == agent
        ]
        length = min(map(len, curves))
        steps = [(i + 1) * runs[0][3] for i in range(length)]
        columns = list(zip(*(c[:length] for c in curves), strict=True))
        mean = [statistics.fmean(c) for c in columns]
        (line,) = ax.plot(steps, mean, marker="o", label=f"{agent} ({len(curves)})")
        low, high = [min(c) for c in columns], [max(c) for c in columns]
        ax.fill_between(steps, low, high, alpha=0.15, color=line.get_color())
    ax.set(
        title="exploration: cells visited per window",
        xlabel="agent steps (end of window; first is random seeding)",
        ylabel="distinct cells",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def draw_map(
    ax: Axes,
    where: Plane,
    places: torch.Tensor,
    title: str,
    targets: dict[str, torch.Tensor] | None = None,
) -> None:
    """Visited places as a 2-D histogram (log colour) over the task's landmarks, and
    the states goals point at, one marker per kind of code."""
    import matplotlib

    ax.set_axis_on()
    where.draw(ax)
    if len(places):
        ax.hist2d(
            places[:, 0].numpy(),
            places[:, 1].numpy(),
            bins=40,
            range=where.bounds,
            cmin=1,
            norm=matplotlib.colors.LogNorm(),
        )
    for kind, found in (targets or {}).items():
        marker, colour = MARKERS[kind]
        ax.scatter(
            *found.T.numpy(), s=14, marker=marker, color=colour, label=f"goals: {kind}", zorder=3
        )
    if ax.get_legend_handles_labels()[0]:  # landmarks or goals
        ax.legend(fontsize=7, loc="upper right", framealpha=0.6)
    ax.set(
        title=f"{title}: {len(places):,} steps, {where.count(places)} cells",
        xlabel=where.axes[0],
        ylabel=where.axes[1],
        xlim=where.bounds[0],
        ylim=where.bounds[1],
    )
    ax.set_aspect("equal")
