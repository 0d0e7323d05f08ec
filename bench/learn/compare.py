"""`compare`: is one agent's per-seed figure above another's by more than seed luck? Reads
the per-run rows of `coverage` tables (Markdown files, so runs whose checkpoints are gone
still count by the table they were measured into) and prints, per task and pair of
agents, the difference of the means, its bootstrap 90% interval and the exact one-sided
permutation p of "the agent is above the other"."""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Sequence
from pathlib import Path

from bench.learn.common import fmt, spread

BOOTSTRAP_DRAWS = 10_000
Figures = dict[tuple[str, str], dict[int, float]]  # (task, agent) -> seed -> figure


def read_tables(paths: Sequence[Path], column: str) -> Figures:
    """`column` of every per-run row (`| task | agent | seed | ...`) in the Markdown files.
    A run in two files is an error (it would count twice); a dash (not measured) is left out."""
    figures: Figures = {}
    for path in paths:
        header: list[str] | None = None  # of the run table the line is in, if any
        for line in path.read_text().splitlines():
            if not line.startswith("|"):
                header = None
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[:3] == ["task", "agent", "seed"]:
                header = cells if column in cells else None  # goal tables have no figures
            elif header is not None and len(cells) == len(header) and cells[2].isdigit():
                task, agent, seed = cells[0], cells[1], int(cells[2])
                value = cells[header.index(column)].split()[0]  # "10 of 26": 10
                if value == "–":  # not measured (a dash): the seed is left out
                    continue
                runs = figures.setdefault((task, agent), {})
                if seed in runs:
                    raise ValueError(f"{path}: {task} {agent} seed {seed} is in two tables")
                runs[seed] = float(value)
    if not figures:
        raise ValueError(f"no run rows with a {column!r} column in {', '.join(map(str, paths))}")
    return figures


def bootstrap_interval(a: Sequence[float], b: Sequence[float], level: float = 0.9) -> tuple:
    """Percentile interval of mean(a) - mean(b), seeds resampled within each agent."""
    draw = random.Random(0)
    diffs = sorted(
        statistics.fmean(draw.choices(a, k=len(a))) - statistics.fmean(draw.choices(b, k=len(b)))
        for _ in range(BOOTSTRAP_DRAWS)
    )
    tail = (1 - level) / 2
    return diffs[int(tail * BOOTSTRAP_DRAWS)], diffs[int((1 - tail) * BOOTSTRAP_DRAWS) - 1]


def permutation_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Exact one-sided p of mean(a) > mean(b): the share of the splits of the pooled runs
    into groups of their sizes whose difference is at least the observed one."""
    pooled, observed = [*a, *b], statistics.fmean(a) - statistics.fmean(b)
    total = sum(pooled)
    splits = list(itertools.combinations(pooled, len(a)))
    extreme = sum(sum(s) / len(a) - (total - sum(s)) / len(b) >= observed - 1e-12 for s in splits)
    return extreme / len(splits)


def compare(paths: Sequence[Path], agent: str, against: Sequence[str], column: str) -> str:
    """A Markdown table: per task, `agent` against each of `against` on `column`."""
    figures = read_tables(paths, column)
    lines = [
        f"`{column}` per seed: {agent} against each other agent, per task. Interval: "
        f"bootstrap 90% of the difference of the means ({BOOTSTRAP_DRAWS:,} draws); p: exact "
        f"one-sided permutation test of {agent} above the other.",
        "",
        "| task | agent | seeds | mean ± sd | other | seeds | mean ± sd | difference | "
        "90% interval | p |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    tasks = sorted({task for task, name in figures if name == agent})
    if not tasks:
        raise ValueError(f"no runs of {agent} in the tables")
    for task, other in itertools.product(tasks, against):
        if (task, other) not in figures:
            continue
        a, b = list(figures[task, agent].values()), list(figures[task, other].values())
        low, high = bootstrap_interval(a, b)
        lines.append(
            f"| {task} | {agent} | {len(a)} | {spread(a, 2)} | {other} | {len(b)} | "
            f"{spread(b, 2)} | {fmt(statistics.fmean(a) - statistics.fmean(b))} | "
            f"{fmt(low)} to {fmt(high)} | {fmt(permutation_p(a, b), 3)} |"
        )
    return "\n".join(lines)
