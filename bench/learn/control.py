"""`control`: how often a hierarchy's intervals end nearer their goal, against a baseline:
each finished hierarchical run's checkpoint evaluated with the goal term it was trained
with and with `worker.goal_coef=0`, the same planner without goals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bench.learn.common import checkpointed_runs, evaluate_run, fmt


def trained_goal_coef(cfg: DictConfig) -> float:
    """The goal weight the run was trained with; 0 for flat runs."""
    return float(OmegaConf.select(cfg, "worker.goal_coef", default=0.0) or 0.0)


def control(
    out: Path,
    episodes: int,
    jobs: int,
    goal_coefs: Sequence[float] = (),
    tasks: Sequence[str] = (),
    overrides: Sequence[str] = (),
    agents: Sequence[str] = (),
) -> str:
    """Goal reach and return of every finished hierarchical run (of `tasks` and `agents`,
    if given), as trained, with the goal term off (worker.goal_coef=0) and at any other
    `goal_coefs`, each evaluation with `overrides` on top: a Markdown table.

    A run's evaluations run one after another (they append to the same eval.csv); runs
    run side by side, `jobs` at a time.
    """
    runs = checkpointed_runs(
        [out],
        tasks,
        agents,
        keep=lambda cfg: cfg.get("trainer") == "director" and trained_goal_coef(cfg) > 0,
        what="hierarchical run",
    )

    def evaluate_all(run: tuple[Path, DictConfig]) -> list[tuple[float, dict[str, float]]]:
        run_dir, cfg = run
        coefs = dict.fromkeys([trained_goal_coef(cfg), 0.0, *map(float, goal_coefs)])
        return [
            (coef, evaluate_run(run_dir, cfg, episodes, [f"worker.goal_coef={coef}", *overrides]))
            for coef in coefs
        ]

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(evaluate_all, runs))
    lines = [
        "| task | agent | seed | goal_coef | eval return | goals reached | goal similarity |",
        "|---|---|---|---|---|---|---|",
    ]
    for (run_dir, _), rows in zip(runs, results, strict=True):
        for coef, r in rows:
            lines.append(
                f"| {run_dir.parents[1].name} | {run_dir.parent.name} | {run_dir.name[4:]} | "
                f"{coef:g} | "
                f"{r['episode_reward']:.0f} | {fmt(r.get('goal_reached', math.nan))} | "
                f"{fmt(r.get('goal_similarity', math.nan))} |"
            )
    return "\n".join(lines)
