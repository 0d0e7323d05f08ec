"""`final`: every finished run's last checkpoint evaluated again over more episodes, as
trained. The grid's few episodes per point are noisy where an episode scores either 0
or several hundred (cup-catch); more episodes of the final policy tell agents apart."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from omegaconf import DictConfig

from bench.learn.common import (
    checkpointed_runs,
    evaluate_run,
    fmt,
    last_step,
    spread,
    vs_flat,
)


def final_return(
    run_dir: Path, cfg: DictConfig, episodes: int, overrides: Sequence[str] = ()
) -> dict[str, float]:
    """The run's last checkpoint evaluated over `episodes` episodes with `overrides`,
    cached in eval/final.json (eval/final+<overrides>.json) while the run's last step and
    the episode count stay the same, so a rerun (e.g. to add an agent's runs to the
    table) evaluates only what is new."""
    cache = run_dir / "eval" / ("+".join(["final", *overrides]).replace("/", "_") + ".json")
    if cache.is_file():
        cached = json.loads(cache.read_text())
        fresh = cached["episodes"] == episodes and cached["step"] == last_step(run_dir)
        if fresh and "episode_success" in cached:  # older caches lack success
            return cached
    row = evaluate_run(run_dir, cfg, episodes, overrides)
    result = {"step": row["step"], "episodes": episodes, "episode_reward": row["episode_reward"]}
    result["episode_success"] = row.get("episode_success", math.nan)
    cache.write_text(json.dumps(result) + "\n")
    return result


def final(
    outs: Sequence[Path],
    episodes: int,
    jobs: int,
    tasks: Sequence[str] = (),
    agents: Sequence[str] = (),
    overrides: Sequence[str] = (),
) -> str:
    """Every finished run's last checkpoint (of `tasks` and `agents`, if given) evaluated
    again over `episodes` episodes, with `overrides` (e.g. worker.eval_goals=false) on top
    of how it was trained: a Markdown table per task and agent, with each seed's return,
    the ratio to flat and the success rate (the share of episodes that ended in success),
    then a row per run. Evaluations append to each run's eval/eval.csv."""
    runs = checkpointed_runs(outs, tasks, agents)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda run: final_return(*run, episodes, overrides), runs))
    table: dict[tuple[str, str], list[tuple[str, int, float, float]]] = {}
    for (run_dir, _), row in zip(runs, results, strict=True):
        key = (run_dir.parents[1].name, run_dir.parent.name)
        success = row.get("episode_success", math.nan)
        record = (run_dir.name[4:], int(row["step"]), row["episode_reward"], success)
        table.setdefault(key, []).append(record)
    lines = [
        f"| task | agent | seeds | checkpoint step | return over {episodes} episodes "
        "(mean ± sd over seeds) | per seed | vs flat | success (mean ± sd over seeds) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (task, agent), records in sorted(table.items()):
        returns = [r for _, _, r, _ in records]
        flats = [r for _, _, r, _ in table.get((task, "flat"), [])]
        flat = statistics.fmean(flats or [math.nan])
        ratio = vs_flat(statistics.fmean(returns), flat)
        steps = sorted({s for _, s, _, _ in records})
        lines.append(
            f"| {task} | {agent} | {len(records)} | {' / '.join(f'{s:,}' for s in steps)} | "
            f"{spread(returns)} | {' '.join(f'{s}:{r:.0f}' for s, _, r, _ in records)} | "
            f"{fmt(ratio)} | {spread([c for *_, c in records], 2)} |"
        )
    per_run = [
        f"| {task} | {agent} | {seed} | {step:,} | {reward:.0f} | {fmt(success)} |"
        for (task, agent), records in sorted(table.items())
        for seed, step, reward, success in records
        if math.isfinite(success)
    ]
    if per_run:  # the table `compare --column success` reads
        lines += ["", "| task | agent | seed | checkpoint step | return | success |"]
        lines += ["|---|---|---|---|---|---|", *per_run]
    return "\n".join(lines)
