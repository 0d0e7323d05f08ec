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

from bench.learn.common import checkpointed_runs, evaluate_run, fmt, last_step, spread


def final_return(run_dir: Path, cfg: DictConfig, episodes: int) -> dict[str, float]:
    """The run's last checkpoint evaluated over `episodes` episodes, cached in
    eval/final.json while the run's last step and the episode count stay the same, so a
    rerun (e.g. to add an agent's runs to the table) evaluates only what is new."""
    cache = run_dir / "eval" / "final.json"
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached["episodes"] == episodes and cached["step"] == last_step(run_dir):
            return cached
    row = evaluate_run(run_dir, cfg, episodes)
    result = {"step": row["step"], "episodes": episodes, "episode_reward": row["episode_reward"]}
    cache.write_text(json.dumps(result) + "\n")
    return result


def final(
    outs: Sequence[Path],
    episodes: int,
    jobs: int,
    tasks: Sequence[str] = (),
    agents: Sequence[str] = (),
) -> str:
    """Every finished run's last checkpoint (of `tasks` and `agents`, if given) evaluated
    again over `episodes` episodes: a Markdown table per task and agent, with each seed's
    return and the ratio to flat. Evaluations append to each run's eval/eval.csv."""
    runs = checkpointed_runs(outs, tasks, agents)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda run: final_return(*run, episodes), runs))
    table: dict[tuple[str, str], list[tuple[str, int, float]]] = {}
    for (run_dir, _), row in zip(runs, results, strict=True):
        key = (run_dir.parents[1].name, run_dir.parent.name)
        record = (run_dir.name[4:], int(row["step"]), row["episode_reward"])
        table.setdefault(key, []).append(record)
    lines = [
        f"| task | agent | seeds | checkpoint step | return over {episodes} episodes "
        "(mean ± sd over seeds) | per seed | vs flat |",
        "|---|---|---|---|---|---|---|",
    ]
    for (task, agent), records in sorted(table.items()):
        returns = [r for *_, r in records]
        flat = statistics.fmean([r for *_, r in table.get((task, "flat"), [])] or [math.nan])
        ratio = statistics.fmean(returns) / flat if flat else math.nan
        steps = sorted({s for _, s, _ in records})
        lines.append(
            f"| {task} | {agent} | {len(records)} | {' / '.join(f'{s:,}' for s in steps)} | "
            f"{spread(returns)} | {' '.join(f'{s}:{r:.0f}' for s, _, r in records)} | "
            f"{fmt(ratio)} |"
        )
    return "\n".join(lines)
