"""Learning benchmark: a grid of tasks x agents x seeds at a fixed budget, and its report.

    python bench/learning.py run --tasks walker-walk --agents flat director \\
        --seeds 1 2 3 --steps 8000 --eval-freq 2000 --model-size 1 --jobs 2
    python bench/learning.py report        # Markdown table + learning.png from the run folders
    python bench/learning.py control       # goal reach of each hierarchy: trained vs goal_coef=0
    python bench/learning.py control --goal-coefs 1 10   # ... and at stronger goal weights
    python bench/learning.py control --tasks walker-walk --overrides manager.deterministic=true
    python bench/learning.py control --tasks walker-walk --agents director-s05   # one agent
    python bench/learning.py coverage --out bench/results/sparse   # exploration, return aside
    python bench/learning.py final --eval-episodes 10   # each run's last checkpoint again

An agent is `flat`, `director`, or `NAME=key=value,key=value` (Hydra overrides on top
of flat, e.g. `director-g0=trainer=director,worker.goal_coef=0`). Every run of the
grid shares the same budget and planning settings; each one is a `tdmpc2/train.py`
process with one torch thread (two threads per process on two cores made each step
about 5x slower). Runs whose eval.csv already reaches the budget are skipped, and runs
stopped by Ctrl-C or SIGTERM to the grid resume from the checkpoint they saved (the same
results as uninterrupted; a larger --steps trains them longer), so a grid can be
finished across sittings. `--launcher submitit_slurm` sends the same grid through Hydra's
launcher instead (one multirun over seeds per task and agent). Each run keeps its final
checkpoint (ignored by git), which `control` evaluates twice per hierarchical run: with
the goal term it was trained with and with `worker.goal_coef=0`, the same planner
without goals, so the share of goals reached has a baseline.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MUJOCO_GL", "egl")  # the random-actions baseline builds the task

from tdmpc2.common import checkpoint  # noqa: E402
from tdmpc2.common.curves import read_rows, reference_curve  # noqa: E402

TRAIN = ROOT / "tdmpc2" / "train.py"
EVALUATE = ROOT / "tdmpc2" / "evaluate.py"
BUILTIN_AGENTS = {"flat": ["trainer=online"], "director": ["trainer=director"]}
DEFAULT_OUT = ROOT / "bench" / "results" / "learning"


@dataclass(frozen=True)
class Run:
    task: str
    agent: str
    seed: int
    overrides: tuple[str, ...]
    run_dir: Path


def parse_agent(spec: str) -> tuple[str, list[str]]:
    """`flat`, `director` or `NAME=k=v,k=v` -> (name, Hydra overrides)."""
    if spec in BUILTIN_AGENTS:
        return spec, BUILTIN_AGENTS[spec]
    name, sep, rest = spec.partition("=")
    overrides = [o for o in rest.split(",") if o]
    if not sep or not name or not overrides or any("=" not in o for o in overrides):
        raise ValueError(
            f"agent '{spec}': expected flat, director or NAME=key=value[,key=value...]"
        )
    return name, overrides


def grid(args: argparse.Namespace) -> list[Run]:
    budget = [
        f"steps={args.steps}",
        f"eval_freq={args.eval_freq}",
        f"eval_episodes={args.eval_episodes}",
        f"model_size={args.model_size}",
        *args.overrides,
    ]
    # Seed-major: every agent's first seed runs before any second seed, so a grid stopped
    # early still compares all agents on the same seeds.
    agents = [parse_agent(spec) for spec in args.agents]
    runs = []
    for seed in args.seeds:
        for task in args.tasks:
            for name, agent_overrides in agents:
                run_dir = args.out / task / name / f"seed{seed}"
                overrides = [f"task={task}", f"seed={seed}", *budget, *agent_overrides]
                runs.append(Run(task, name, seed, tuple(overrides), run_dir))
    return runs


def last_step(run_dir: Path, category: str = "eval") -> int:
    path = run_dir / f"{category}.csv"
    if not path.is_file():
        return -1
    steps = [int(float(r["step"])) for r in read_rows(path) if r.get("step")]
    return max(steps, default=-1)


def finished(run_dir: Path, steps: int) -> bool:
    return last_step(run_dir) >= steps


RUN_KEYS = ["threads=1", "keep_checkpoints=1"]  # may differ on resume; train.log gets progress
LIVE: set[subprocess.Popen] = set()  # training processes running now


def train_command(run: Run, resume: bool = False) -> list[str]:
    """A fresh run, or the continuation of one stopped with a checkpoint: the same results
    as an uninterrupted run, or a longer run when the budget grew."""
    if resume:
        steps = [o for o in run.overrides if o.startswith("steps=")]
        return [sys.executable, str(TRAIN), f"resume={run.run_dir}", *steps, *RUN_KEYS]
    common = [*RUN_KEYS, f"exp_name={run.agent}", f"work_dir={run.run_dir}"]
    return [sys.executable, str(TRAIN), *run.overrides, *common]


def resumable(run_dir: Path) -> bool:
    return (run_dir / "checkpoint.pt").is_file()


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


# ----------------------------------------------------------------------- control
EVALUATED = ("step", "episode_reward", "goal_reached", "goal_similarity")  # kept columns


def evaluate_run(
    run_dir: Path, cfg, episodes: int, overrides: Sequence[str] = ()
) -> dict[str, float]:
    """One evaluation of a run's checkpoint with `overrides`; its row of eval/eval.csv."""
    command = [sys.executable, str(EVALUATE), f"checkpoint={run_dir}", f"task={cfg.task}"]
    command += [f"eval_episodes={episodes}", "threads=1", *overrides]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{run_dir}: evaluation failed: {done.stderr.strip()[-500:]}")
    row = read_rows(run_dir / "eval" / "eval.csv")[-1]
    return {k: float(row[k]) for k in EVALUATED if row.get(k)}


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
    runs = []
    for config in sorted(out.glob("*/*/seed*/config.yaml")):
        run_dir, cfg = config.parent, OmegaConf.load(config)
        if tasks and run_dir.parents[1].name not in tasks:
            continue
        if agents and run_dir.parent.name not in agents:
            continue
        trained = float(OmegaConf.select(cfg, "worker.goal_coef", default=0.0) or 0.0)
        hierarchy = cfg.get("trainer") == "director" and trained > 0
        if hierarchy and finished(run_dir, cfg.steps) and (run_dir / "checkpoint.pt").is_file():
            coefs = list(dict.fromkeys([trained, 0.0, *map(float, goal_coefs)]))
            runs.append((run_dir, cfg, coefs))
    if not runs:
        where = f" of {', '.join([*tasks, *agents])}" if tasks or agents else ""
        raise FileNotFoundError(
            f"no finished hierarchical run{where} with a checkpoint under {out}"
        )

    def evaluate_all(run: tuple) -> list[dict[str, float]]:
        run_dir, cfg, coefs = run
        return [
            evaluate_run(run_dir, cfg, episodes, [f"worker.goal_coef={coef}", *overrides])
            for coef in coefs
        ]

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(evaluate_all, runs))
    lines = [
        "| task | agent | seed | goal_coef | eval return | goals reached | goal similarity |",
        "|---|---|---|---|---|---|---|",
    ]
    for (run_dir, _, coefs), rows in zip(runs, results, strict=True):
        for coef, r in zip(coefs, rows, strict=True):
            lines.append(
                f"| {run_dir.parents[1].name} | {run_dir.parent.name} | {run_dir.name[4:]} | "
                f"{coef:g} | "
                f"{r['episode_reward']:.0f} | {fmt(r.get('goal_reached', math.nan))} | "
                f"{fmt(r.get('goal_similarity', math.nan))} |"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------- final
def final_return(run_dir: Path, cfg, episodes: int) -> dict[str, float]:
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
    again over `episodes` episodes, as trained: a Markdown table per task and agent, with
    each seed's return. The grid's few episodes per point are noisy where an episode
    scores either 0 or several hundred (cup-catch); more episodes of the final policy
    tell the agents apart. Evaluations append to each run's eval/eval.csv."""
    runs, seen = [], set()
    for config in sorted(c for out in outs for c in out.glob("*/*/seed*/config.yaml")):
        run_dir, cfg = config.parent, OmegaConf.load(config)
        task, agent = run_dir.parents[1].name, run_dir.parent.name
        if (tasks and task not in tasks) or (agents and agent not in agents):
            continue
        if finished(run_dir, cfg.steps) and resumable(run_dir):
            claim(seen, (task, agent, run_dir.name), run_dir)
            runs.append((run_dir, cfg))
    if not runs:
        where = f" of {', '.join([*tasks, *agents])}" if tasks or agents else ""
        raise FileNotFoundError(
            f"no finished run{where} with a checkpoint under {', '.join(map(str, outs))}"
        )
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


# ------------------------------------------------------------------------ report
def eval_curve(run_dir: Path, until: float = math.inf) -> tuple[list[int], list[float]]:
    """The evaluations up to step `until`: (steps, returns)."""
    rows = [r for r in read_rows(run_dir / "eval.csv") if r.get("episode_reward")]
    rows = [r for r in rows if float(r["step"]) <= until]
    return [int(float(r["step"])) for r in rows], [float(r["episode_reward"]) for r in rows]


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


def max_entropy(cfg) -> float:
    """The Manager's largest possible entropy, n_latents * log(n_classes); nan when flat."""
    if cfg.get("trainer") != "director":
        return math.nan
    return cfg.goal_vae.n_latents * math.log(cfg.goal_vae.n_classes)


def spread(values: Sequence[float], digits: int = 0) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "–"
    mean = statistics.fmean(finite)
    sd = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def fmt(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "–"


def claim(seen: set[tuple[str, ...]], key: tuple[str, ...], run_dir: Path) -> None:
    """Adds (task, agent, seed) to `seen`: a run found in two --out folders would count twice."""
    if key in seen:
        raise ValueError(f"{run_dir}: {' '.join(key)} is in more than one --out folder")
    seen.add(key)


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
        ratio = statistics.fmean(finals) / flat_mean if flat_mean else math.nan
        per_seed = " ".join(f"{r['seed']}:{r['final']:.0f}" for r in records)
        lines.append(
            f"| {task} | {agent} | {len(records)} | {min(r['steps'][-1] for r in records):,} | "
            f"{spread(finals)} | {per_seed} | {spread([r['area'] for r in records])} | "
            f"{fmt(ratio)} | {randoms[task]:.0f} | {spread([r['train'] for r in records])} | "
            f"{fmt(statistics.fmean(r['entropy'] for r in records))} | "
            f"{fmt(statistics.fmean(r['reach'] for r in records))} | "
            f"{fmt(statistics.fmean(r['similarity'] for r in records))} |"
        )
    if unfinished:
        lines += ["", "Unfinished runs (not in the table):", *(f"- {u}" for u in unfinished)]
    if png is not None:
        plot_grid(table, randoms, reference, png)
    return "\n".join(lines)


def plot_grid(
    table: dict[tuple[str, str], list[dict]],
    randoms: dict[str, float],
    reference: Path | None,
    png: Path,
) -> None:
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


# ---------------------------------------------------------------------- coverage
CELL = 0.05  # metres: the cup's target is a 10 cm square, two cells a side


@functools.cache
def cup_target_offset() -> tuple[float, float]:
    """(x, z) from the ball's origin to the cup's target with every joint at zero, read
    from the task's model so the coordinates follow dm_control rather than a constant."""
    from dm_control import suite

    physics = suite.load("ball_in_cup", "catch").physics
    with physics.reset_context():
        physics.data.qpos[:] = 0
    offset = physics.named.data.site_xpos["target"] - physics.named.data.xpos["ball"]
    return float(offset[0]), float(offset[2])


def ball_from_target(obs: torch.Tensor) -> torch.Tensor:
    """cup-catch states (cup x, z, ball x, z, then velocities) -> the ball's (x, height)
    from the cup's target: (0, 0) is a catch, a negative height is below the cup."""
    dx, dz = cup_target_offset()
    return torch.stack([obs[:, 2] - obs[:, 0] - dx, obs[:, 3] - obs[:, 1] - dz], dim=1)


COORDINATES = {"cup-catch": ball_from_target}  # task -> the plane where coverage is counted


def training_states(run_dir: Path) -> torch.Tensor:
    """Every training step's observation, in the order they happened, from the replay
    buffer in the run's latest checkpoint."""
    buffer = checkpoint.load(run_dir)["buffer"]
    if buffer is None:
        raise ValueError(f"{run_dir}: its checkpoint holds no replay buffer")
    kept = buffer["has_step"]
    episode, index = buffer["episode"][kept], buffer["index"][kept]
    if episode.numel() == 0:
        raise ValueError(f"{run_dir}: its replay buffer is empty")
    order = torch.argsort(episode.long() * (int(index.max()) + 1) + index.long())
    return buffer["obs"][kept][order].float()


@torch.no_grad()
def goal_targets(
    run_dir: Path, states: torch.Tensor, coordinates: Callable, n: int = 256
) -> dict[str, torch.Tensor]:
    """Where a hierarchy's goals point, in the task's coordinates: the training state
    nearest (by the planner's goal similarity) to each of `n` goals decoded from uniformly
    random codes and from the codes the Manager picks at random training states, with
    the models of the run's last checkpoint. Goals from the bulk of the replay pull the
    planner back into it, however the Manager picks."""
    import tempfile

    from tdmpc2.common.math import cosine_max
    from tdmpc2.train import build

    payload = checkpoint.load(run_dir)
    cfg = checkpoint.saved_config(payload)
    cfg.threads = 1
    with tempfile.TemporaryDirectory() as work_dir:
        cfg.work_dir = work_dir
        trainer = build(cfg, [], with_buffer=False)
        trainer.load_models(payload)
        trainer.logger.finish()
    z = trainer.agent.model.encode(states.to(trainer.agent.device), None)
    generator = torch.Generator().manual_seed(0)
    starts = z[torch.randint(len(z), (n,), generator=generator)]
    vae = trainer.goal_vae
    codes = {"random codes": vae.sample_code((n,)), "Manager's codes": trainer.manager.act(starts)}
    places = coordinates(states)
    result = {}
    for name, code in codes.items():
        nearest = [int(cosine_max(z, goal.expand_as(z)).argmax()) for goal in vae.decode(code)]
        result[name] = places[nearest]
    return result


def window_coverage(points: torch.Tensor, window: int) -> list[tuple[int, float]]:
    """Per `window` steps: distinct CELL-sized cells visited, and the share of steps with
    the ball above the target (the way into the cup is from above)."""
    result = []
    for start in range(0, len(points) - window + 1, window):
        part = points[start : start + window]
        cells = torch.unique(torch.floor(part / CELL).long(), dim=0).shape[0]
        result.append((cells, float((part[:, 1] > 0).float().mean())))
    return result


def coverage(outs: Sequence[Path], png: Path | None, steps: int | None = None) -> str:
    """Exploration of every finished run of a task in COORDINATES under the `outs`
    folders, from its replay buffer: a Markdown table per run and per agent, and
    coverage.png (cells per window, where the ball went). Windows are `seed_steps` long,
    so the first one is the random seeding phase, the baseline each run carries; `steps`
    compares runs of different budgets, or stopped after an evaluation at `steps`, on
    their first `steps` steps."""
    runs, goals, unfinished, seen = [], [], [], set()
    for out in outs:
        for config in sorted(out.glob("*/*/seed*/config.yaml")):
            run_dir, cfg = config.parent, OmegaConf.load(config)
            if cfg.get("task") not in COORDINATES:
                continue
            budget = cfg.steps if steps is None else steps
            if not (finished(run_dir, budget) and resumable(run_dir)):
                unfinished.append(f"{cfg.task} {run_dir.parent.name} {run_dir.name}")
                continue
            key = (cfg.task, run_dir.parent.name, run_dir.name)
            claim(seen, key, run_dir)
            states = training_states(run_dir)
            if len(states) < budget:
                raise ValueError(
                    f"{run_dir}: the replay buffer holds {len(states):,} of the run's "
                    f"{budget:,} steps (buffer_size below steps), so coverage would miss some"
                )
            points = COORDINATES[cfg.task](states[:budget])
            runs.append((*key, int(cfg.seed_steps), points))
            if cfg.get("trainer") == "director":
                targets = goal_targets(run_dir, states, COORDINATES[cfg.task])
                goals.append((*key, COORDINATES[cfg.task](states), targets))
    if not runs:
        raise FileNotFoundError(
            f"no finished run of {', '.join(COORDINATES)} with a checkpoint under "
            + ", ".join(str(out) for out in outs)
        )
    lines = [
        "| task | agent | seed | cells visited per window | ball above the target, % of "
        "steps per window | cells per agent window (mean) | over random |",
        "|---|---|---|---|---|---|---|",
    ]
    by_agent: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for task, agent, seed, window, points in runs:
        windows = window_coverage(points, window)
        acting = statistics.fmean([cells for cells, _ in windows[1:]] or [math.nan])
        ratio = acting / windows[0][0]
        by_agent.setdefault((task, agent), []).append((acting, ratio))
        cells = " / ".join(str(c) for c, _ in windows)
        above = " / ".join(f"{100 * a:.1f}" for _, a in windows)
        lines.append(
            f"| {task} | {agent} | {seed[4:]} | {cells} | {above} | {fmt(acting, 1)} "
            f"| {fmt(ratio)} |"
        )
    window = runs[0][3]
    lines += [
        "",
        f"Windows of {window:,} steps; the first is the random seeding phase. Cells are "
        f"{100 * CELL:.0f} cm squares of the ball's position from the cup's target.",
        "",
        "| task | agent | runs | cells per agent window (mean ± sd over runs) | over the "
        "run's random window |",
        "|---|---|---|---|---|",
    ]
    for (task, agent), values in sorted(by_agent.items()):
        acting, ratios = zip(*values, strict=True)
        lines.append(
            f"| {task} | {agent} | {len(values)} | {spread(acting)} | {spread(ratios, 2)} |"
        )
    if goals:
        lines += ["", *goal_table(goals)]
    if unfinished:
        lines += ["", "Unfinished runs or without a checkpoint (not in the tables):"]
        lines += [f"- {u}" for u in unfinished]
    if png is not None:
        plot_coverage(runs, png)
    return "\n".join(lines)


def goal_table(goals: list[tuple]) -> list[str]:
    """Markdown lines: the ball's median and 90th-percentile height from the target and
    the share of states above it, for every training state and for the states the goals
    point at."""

    def where(points: torch.Tensor) -> str:
        height = points[:, 1]
        median, high = height.quantile(torch.tensor([0.5, 0.9])).tolist()
        return f"{median:.2f} / {high:.2f} m, {100 * float((height > 0).float().mean()):.1f}%"

    kinds = list(goals[0][4])
    lines = [
        "Where the hierarchy's goals point (nearest training state to each decoded goal, "
        "last checkpoint): the ball's median / 90th-percentile height from the target, and "
        "the share above it.",
        "",
        "| task | agent | seed | all training states | " + " | ".join(kinds) + " |",
        "|---|---|---|---|" + "---|" * len(kinds),
    ]
    for task, agent, seed, points, targets in goals:
        cells = " | ".join(where(targets[kind]) for kind in kinds)
        lines.append(f"| {task} | {agent} | {seed[4:]} | {where(points)} | {cells} |")
    return lines


def plot_coverage(runs: list[tuple], png: Path) -> None:
    """Cells per window for each agent (mean, min-max band), then where the ball went:
    the random seeding phases of all runs, and each agent's steps after it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agents = sorted({agent for _, agent, *_ in runs})
    fig, axes = plt.subplots(1, 2 + len(agents), figsize=(4.6 * (2 + len(agents)), 4.2))
    for agent in agents:
        curves = [[c for c, _ in window_coverage(p, w)] for _, a, _, w, p in runs if a == agent]
        length = min(map(len, curves))
        steps = [(i + 1) * runs[0][3] for i in range(length)]
        columns = list(zip(*(c[:length] for c in curves), strict=True))
        (line,) = axes[0].plot(
            steps,
            [statistics.fmean(c) for c in columns],
            marker="o",
            label=f"{agent} ({len(curves)})",
        )
        axes[0].fill_between(
            steps,
            [min(c) for c in columns],
            [max(c) for c in columns],
            alpha=0.15,
            color=line.get_color(),
        )
    axes[0].set(
        title="exploration: cells visited per window",
        xlabel="agent steps (end of window; first is random seeding)",
        ylabel=f"distinct {100 * CELL:.0f} cm cells",
    )
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    groups = [("random seeding (all runs)", [p[:w] for *_, w, p in runs])]
    groups += [(agent, [p[w:] for _, a, _, w, p in runs if a == agent]) for agent in agents]
    for ax, (title, parts) in zip(axes[1:], groups, strict=True):
        points = torch.cat(parts)
        ax.hist2d(
            points[:, 0].numpy(),
            points[:, 1].numpy(),
            bins=40,
            range=[[-0.6, 0.6], [-0.6, 0.6]],
            cmin=1,
            norm=matplotlib.colors.LogNorm(),
        )
        ax.add_patch(plt.Rectangle((-CELL, -CELL), 2 * CELL, 2 * CELL, fill=False, color="red"))
        ax.set(
            title=f"{title}: {len(points):,} steps",
            xlabel="ball x from target (m)",
            ylabel="ball height from target (m)",
        )
        ax.set_aspect("equal")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    run = sub.add_parser("run", help="train the grid (finished runs are skipped)")
    run.add_argument("--tasks", nargs="+", default=["walker-walk"])
    run.add_argument("--agents", nargs="+", default=["flat", "director"])
    run.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    run.add_argument("--steps", type=int, default=8000)
    run.add_argument("--eval-freq", type=int, default=2000)
    run.add_argument("--eval-episodes", type=int, default=2)
    run.add_argument("--model-size", type=int, default=1)
    run.add_argument("--jobs", type=int, default=2, help="processes at once (one per core)")
    run.add_argument("--launcher", help="a Hydra launcher (e.g. submitit_slurm) instead of --jobs")
    run.add_argument("--overrides", nargs="*", default=[], help="extra overrides for every run")
    ctl = sub.add_parser("control", help="goal reach of each hierarchy, trained vs goal_coef=0")
    ctl.add_argument("--eval-episodes", type=int, default=5)
    ctl.add_argument("--jobs", type=int, default=2)
    ctl.add_argument(
        "--goal-coefs", type=float, nargs="*", default=[], help="more goal weights to evaluate"
    )
    ctl.add_argument("--tasks", nargs="*", default=[], help="only these tasks' runs")
    ctl.add_argument("--agents", nargs="*", default=[], help="only these agents' runs (names)")
    ctl.add_argument(
        "--overrides",
        nargs="*",
        default=[],
        help="for every evaluation, e.g. manager.deterministic=true",
    )
    fin = sub.add_parser("final", help="each run's last checkpoint over more episodes")
    fin.add_argument("--eval-episodes", type=int, default=10)
    fin.add_argument("--jobs", type=int, default=2)
    fin.add_argument("--tasks", nargs="*", default=[], help="only these tasks' runs")
    fin.add_argument("--agents", nargs="*", default=[], help="only these agents' runs (names)")
    rep = sub.add_parser("report", help="Markdown table and learning.png of the run folders")
    rep.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "reference")
    rep.add_argument("--png", type=Path, help="default: learning.png in the first --out")
    rep.add_argument("--steps", type=int, help="only each run's first STEPS steps")
    cov = sub.add_parser("coverage", help="where training went, from each run's replay buffer")
    cov.add_argument("--png", type=Path, help="default: coverage.png in the first --out")
    cov.add_argument("--steps", type=int, help="only each run's first STEPS steps")
    for p in (rep, cov, fin):
        p.add_argument(
            "--out", type=Path, nargs="+", default=[DEFAULT_OUT], help="folders of run folders"
        )
    for p in (run, ctl):
        p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the run folders")
    args = parser.parse_args(argv)
    try:
        if args.mode in ("run", "control", "final") and args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
        if args.mode == "final":
            print(final(args.out, args.eval_episodes, args.jobs, args.tasks, args.agents))
            return
        if args.mode == "control":
            print(
                control(
                    args.out,
                    args.eval_episodes,
                    args.jobs,
                    args.goal_coefs,
                    args.tasks,
                    args.overrides,
                    args.agents,
                )
            )
            return
        if args.mode == "coverage":
            print(coverage(args.out, args.png or args.out[0] / "coverage.png", args.steps))
            return
        if args.mode == "run":
            for spec in args.agents:
                parse_agent(spec)
            sys.exit(run_grid(args))
        reference = args.reference if args.reference.is_dir() else None
        png = args.png or args.out[0] / "learning.png"
        print(report(args.out, reference, png, args.steps))
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
