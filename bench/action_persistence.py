"""How the agent moves, apart from where it went: does it hold a direction, and how hard?

    python bench/action_persistence.py bench/results/maze-repeat/<task>   # its run folders

Where every step pays the same (a maze before its goal), the planner's value is flat and
what carries an agent along a corridor is how long it keeps one direction. For every
finished run under the folder (`<agent>/seed<N>/`, the replay buffer in its last
checkpoint): the mean cosine between consecutive actions of an episode, and the mean
action norm as a share of the largest (sqrt of the action's size), in the random seeding
window and in the steps after it. Random actions score a cosine of 0.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.learn.common import finished, fmt, resumable, run_folders, spread  # noqa: E402
from bench.learn.coverage import training_steps  # noqa: E402


def persistence(action: torch.Tensor, episode: torch.Tensor) -> float:
    """Mean cosine between consecutive actions [T, A] of the same episode [T]."""
    same = episode[1:] == episode[:-1]
    return float(F.cosine_similarity(action[1:], action[:-1], dim=-1)[same].mean())


def run_row(run_dir: Path, seed_steps: int, budget: int) -> tuple[float, float, float]:
    """(persistence while seeding, persistence after it, action norm share after it)."""
    replay = training_steps(run_dir)
    action, episode = replay["action"][:budget], replay["episode"][:budget]
    if len(action) <= seed_steps + 1:
        raise ValueError(f"{run_dir}: no steps after its {seed_steps:,} seeding steps")
    largest = math.sqrt(action.shape[-1])
    acting = slice(seed_steps, None)
    return (
        persistence(action[:seed_steps], episode[:seed_steps]),
        persistence(action[acting], episode[acting]),
        float(action[acting].norm(dim=-1).mean()) / largest,
    )


def table(folder: Path) -> str:
    """A Markdown row per finished run, then one per agent (mean ± sd over its seeds)."""
    lines = [
        "| agent | seed | cos(a_t, a_t-1), random seeding | cos(a_t, a_t-1), after seeding "
        "| action norm / largest, after seeding |",
        "|---|---|---|---|---|",
    ]
    by_agent: dict[str, list[tuple[float, float, float]]] = {}
    for run_dir, cfg in run_folders([folder.parent], tasks=[folder.name]):
        if not (finished(run_dir, int(cfg.steps)) and resumable(run_dir)):
            continue
        row = run_row(run_dir, int(cfg.seed_steps), int(cfg.steps))
        by_agent.setdefault(run_dir.parent.name, []).append(row)
        lines.append(
            f"| {run_dir.parent.name} | {run_dir.name[4:]} | {' | '.join(map(fmt, row))} |"
        )
    if not by_agent:
        raise FileNotFoundError(f"no finished run with a checkpoint under {folder}")
    lines += ["", "| agent | runs | " + lines[0].split("| seed | ")[1], "|---|---|---|---|---|"]
    for agent, rows in sorted(by_agent.items()):
        columns = " | ".join(spread(values, 2) for values in zip(*rows, strict=True))
        lines.append(f"| {agent} | {len(rows)} | {columns} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a task's folder of <agent>/seed<N>/ runs")
    args = parser.parse_args(argv)
    try:
        print(table(args.folder))
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")


if __name__ == "__main__":
    main()
