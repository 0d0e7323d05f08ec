"""`report`: per task and agent, the final evaluation return over seeds, the area under
the curve, the ratio to flat and to random actions, and the hierarchy's health, from
the run folders' CSVs; the curves in a PNG. Then success per run (0 on tasks without
one), the table `compare --column` reads."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bench.learn.common import claim, fmt, read_rows, spread, vs_flat
from tdmpc2.common.curves import reference_curve

LAST_EVALUATIONS = 3  # the per-run success table averages this many evaluations


def eval_curve(run_dir: Path, until: float = math.inf) -> tuple[list[int], list[float]]:
    """The evaluations up to step `until`: (steps, returns)."""
    rows = [r for r in read_rows(run_dir / "eval.csv") if r.get("episode_reward")]
    rows = [r for r in rows if float(r["step"]) <= until]
    return [int(float(r["step"])) for r in rows], [float(r["episode_reward"]) for r in rows]


def last_success(run_dir: Path, until: float, last: int = LAST_EVALUATIONS) -> float:
    """Mean success of the last `last` evaluations up to step `until`: one lucky (or
    flipped) greedy evaluation moves it by a third, not by all (nan without success)."""
    rows = [r for r in read_rows(run_dir / "eval.csv") if r.get("episode_success")]
    values = [float(r["episode_success"]) for r in rows if float(r["step"]) <= until]
    return statistics.fmean(values[-last:]) if values else math.nan


def area(steps: list[int], returns: list[float]) -> float:
    """Mean return under the eval curve (trapezoids): rewards learning early, not only last."""
    if len(steps) < 2:
        return returns[-1] if returns else math.nan
    total = sum(
        (b - a) * (x + y) / 2
        for a, b, x, y in zip(steps, steps[1:], returns, returns[1:], strict=False)
    )
    return total / (steps[-1] - steps[0])


def train_metric(run_dir: Path, key: str, last: int = 5, until: float = math.inf) -> float:
    """Mean of the last `last` values of a train.csv column logged up to step `until`
    (nan if none)."""
    path = run_dir / "train.csv"
    if not path.is_file():
        return math.nan
    rows = read_rows(path)
    values = [float(r[key]) for r in rows if r.get(key) and float(r["step"]) <= until]
    return statistics.fmean(values[-last:]) if values else math.nan


def max_entropy(cfg: DictConfig) -> float:
    """The Manager's largest possible entropy, n_latents * log(n_classes); nan when flat."""
    if cfg.get("trainer") != "director":
        return math.nan
    return cfg.goal_vae.n_latents * math.log(cfg.goal_vae.n_classes)


def collect(
    outs: Sequence[Path], until: int | None = None
) -> tuple[dict[tuple[str, str], list[dict]], list[str]]:
    """(task, agent) -> one record per run folder under the `outs` that reached its
    budget (or step `until`, cut there: runs of different budgets compare on their first
    steps), and a line for each run folder that stopped short of it (reported, never
    averaged in). An agent's seeds may lie in several folders, each seed in one."""
    table: dict[tuple[str, str], list[dict]] = {}
    unfinished, seen = [], set()
    for eval_csv in sorted(e for out in outs for e in out.glob("*/*/seed*/eval.csv")):
        run_dir = eval_csv.parent
        cfg = OmegaConf.load(run_dir / "config.yaml")
        budget = cfg.steps if until is None else until
        steps, returns = eval_curve(run_dir, budget)
        task, agent = run_dir.parents[1].name, run_dir.parent.name
        claim(seen, (task, agent, run_dir.name), run_dir)
        if not steps or steps[-1] < budget:
            last = steps[-1] if steps else 0
            unfinished.append(f"{task} {agent} {run_dir.name}: eval at step {last:,} of {budget:,}")
            continue
        table.setdefault((task, agent), []).append(
            {
                "seed": run_dir.name.removeprefix("seed"),
                "steps": steps,
                "returns": returns,
                "final": returns[-1],
                "success": last_success(run_dir, budget),
                "area": area(steps, returns),
                "train": train_metric(run_dir, "episode_reward", until=budget),
                "entropy": train_metric(run_dir, "manager/entropy", until=budget)
                / max_entropy(cfg),
                "reach": train_metric(run_dir, "goal/reached", until=budget),
                "similarity": train_metric(run_dir, "goal/similarity", until=budget),
            }
        )
    return table, unfinished


def random_return(out: Path, task: str, episodes: int = 30) -> float:
    """Mean return of uniformly random actions (seed 0), the floor every curve must clear;
    cached in OUT/<task>/random.json. Observations do not matter: state is used. Thirty
    episodes, as sparse rewards make it noisy: on cup-catch, 4 of 10 random episodes
    caught the ball with seed 0 and none of 20 with seeds 1 and 2 (measured)."""
    cache = out / task / "random.json"
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached["episodes"] == episodes:
            return float(cached["return"])
    from tdmpc2.envs import make_env

    env = make_env(OmegaConf.create({"task": task, "seed": 0, "obs": "state"}))
    returns = []
    for _ in range(episodes):
        env.reset()
        total, done = 0.0, False
        while not done:
            _, reward, done, _ = env.step(env.rand_act())
            total += float(reward)
        returns.append(total)
    mean = statistics.fmean(returns)
    cache.write_text(json.dumps({"return": mean, "episodes": episodes}) + "\n")
    return mean


def report(
    outs: Sequence[Path], reference: Path | None, png: Path | None, until: int | None = None
) -> str:
    """The learning table of the run folders under `outs` (see `collect`), and their
    curves in `png`; random returns are cached in the first folder."""
    table, unfinished = collect(outs, until)
    if not table:
        raise FileNotFoundError(f"no finished run folders under {', '.join(map(str, outs))}")
    randoms = {task: random_return(outs[0], task) for task, _ in table}
    lines = [
        "| task | agent | seeds | last step | final eval (mean ± sd) | per seed | area | "
        "vs flat | random | last train eps | manager entropy / max | goals reached | "
        "goal similarity |",
        "|" + "---|" * 13,
    ]
    for (task, agent), records in sorted(table.items()):
        finals = [r["final"] for r in records]
        flat = table.get((task, "flat"))
        flat_mean = statistics.fmean(r["final"] for r in flat) if flat else math.nan
        ratio = vs_flat(statistics.fmean(finals), flat_mean)
        per_seed = " ".join(f"{r['seed']}:{r['final']:.0f}" for r in records)
        lines.append(
            f"| {task} | {agent} | {len(records)} | {min(r['steps'][-1] for r in records):,} | "
            f"{spread(finals)} | {per_seed} | {spread([r['area'] for r in records])} | "
            f"{fmt(ratio)} | {randoms[task]:.0f} | {spread([r['train'] for r in records])} | "
            f"{fmt(statistics.fmean(r['entropy'] for r in records))} | "
            f"{fmt(statistics.fmean(r['reach'] for r in records))} | "
            f"{fmt(statistics.fmean(r['similarity'] for r in records))} |"
        )
    lines += success_table(table)
    if unfinished:
        lines += ["", "Unfinished runs (not in the table):", *(f"- {u}" for u in unfinished)]
    if png is not None:
        plot_grid(table, randoms, reference, png)
    return "\n".join(lines)


def success_table(table: dict[tuple[str, str], list[dict]]) -> list[str]:
    """Per run, the success of its last evaluations (no table when no run logs it)."""
    rows = [
        f"| {task} | {agent} | {r['seed']} | {fmt(r['success'])} | {r['steps'][-1]:,} |"
        for (task, agent), records in sorted(table.items())
        for r in records
        if math.isfinite(r["success"])
    ]
    if not rows:
        return []
    column = f"success, last {LAST_EVALUATIONS} evaluations"
    header = f"| task | agent | seed | {column} | last step |"
    return ["", header, "|---|---|---|---|---|", *rows]


def plot_grid(
    table: dict[tuple[str, str], list[dict]],
    randoms: dict[str, float],
    reference: Path | None,
    png: Path,
) -> None:
    """One panel per task: each agent's mean eval curve with its min-max band over seeds,
    the published TD-MPC2 curve inside the budget, and random actions' return."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({task for task, _ in table})
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=False):
        budget = 0
        for (t, agent), records in sorted(table.items()):
            if t != task:
                continue
            steps = min((r["steps"] for r in records), key=len)
            curves = [r["returns"][: len(steps)] for r in records]
            mean = [statistics.fmean(c) for c in zip(*curves, strict=True)]
            (line,) = ax.plot(steps, mean, marker="o", ms=3, label=f"{agent} ({len(records)})")
            low, high = (
                [min(c) for c in zip(*curves, strict=True)],
                [max(c) for c in zip(*curves, strict=True)],
            )
            ax.fill_between(steps, low, high, alpha=0.15, color=line.get_color())
            budget = max(budget, steps[-1])
        published = reference and reference_curve(reference, "tdmpc2", task)
        if published:
            ref_steps, ref_mean, *_ = published
            keep = [(s, m) for s, m in zip(ref_steps, ref_mean, strict=False) if s <= budget]
            if len(keep) > 1:  # a published point inside the budget besides step 0
                ax.plot(*zip(*keep, strict=False), "k--", label="tdmpc2 (published)")
        ax.axhline(randoms[task], color="grey", ls=":", label="random actions")
        ax.set(title=task, xlabel="agent steps", ylabel="evaluation return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
