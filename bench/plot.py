"""Learning curves from run directories, optionally over the published TD-MPC2 curves.

python bench/plot.py RUN_DIR [RUN_DIR ...] [--reference ../shared/reference]
                     [--task walker-walk] [--methods tdmpc2,sac] [--out curve.png]
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from omegaconf import OmegaConf


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_curve(run_dir: Path) -> tuple[str, str | None, list[float], list[float]]:
    """(label, task, steps, returns) of one run's eval.csv."""
    path = run_dir / "eval.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a run directory?")
    rows = read_csv(path)
    label, task = run_dir.name, None
    if (run_dir / "config.yaml").is_file():
        cfg = OmegaConf.load(run_dir / "config.yaml")
        task = str(cfg.get("task"))
        label = f"{cfg.get('exp_name', 'run')} seed {cfg.get('seed')}"
    return label, task, [float(r["step"]) for r in rows], [float(r["episode_reward"]) for r in rows]


def reference_curve(reference: Path, method: str, task: str):
    """Mean and min/max over seeds of a published curve, or None when absent."""
    path = reference / "published_curves" / method / f"{task}.csv"
    if not path.is_file():
        return None
    by_step: dict[float, list[float]] = defaultdict(list)
    for row in read_csv(path):
        by_step[float(row["step"])].append(float(row["reward"]))
    steps = sorted(by_step)
    values = [by_step[s] for s in steps]
    return (
        steps,
        [sum(v) / len(v) for v in values],
        [min(v) for v in values],
        [max(v) for v in values],
    )


def plot_runs(
    run_dirs: list[Path],
    reference: Path | None = None,
    task: str | None = None,
    out: Path | None = None,
    methods: tuple[str, ...] = ("tdmpc2",),
) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    max_step = 0.0
    for run_dir in run_dirs:
        label, run_task, steps, returns = run_curve(Path(run_dir))
        task = task or run_task
        ax.plot(steps, returns, marker="o", markersize=3, label=label)
        max_step = max(max_step, *steps)
    if reference is not None and task:
        for method in methods:
            curve = reference_curve(Path(reference), method, task)
            if curve is None:
                print(f"no published {method} curve for {task}", file=sys.stderr)
                continue
            steps, mean, low, high = curve
            (line,) = ax.plot(steps, mean, linestyle="--", label=f"{method} (published)")
            ax.fill_between(steps, low, high, alpha=0.15, color=line.get_color())
        if max_step:
            ax.set_xlim(0, max(max_step * 1.05, 1))
    ax.set_xlabel("agent steps")
    ax.set_ylabel("evaluation return")
    ax.set_title(task or "")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out = Path(out) if out else Path(run_dirs[0]) / "curve.png"
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--reference", type=Path, help="the shared reference folder")
    parser.add_argument("--task", help="task of the published curves (default: from the runs)")
    parser.add_argument("--methods", default="tdmpc2", help="comma-separated published methods")
    parser.add_argument("--out", type=Path, help="PNG path (default: RUN_DIR/curve.png)")
    args = parser.parse_args()
    try:
        out = plot_runs(
            args.run_dirs, args.reference, args.task, args.out, tuple(args.methods.split(","))
        )
    except FileNotFoundError as err:
        sys.exit(f"error: {err}")
    print(out)


if __name__ == "__main__":
    main()
