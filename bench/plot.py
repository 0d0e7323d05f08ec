"""Learning curves of run directories, optionally over the published reference curves.

python bench/plot.py RUN_DIR [RUN_DIR ...] [--reference ../shared/reference]
                     [--task walker-walk] [--methods tdmpc2,sac,dreamerv3] [--out curve.png]
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from omegaconf import OmegaConf


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_info(run_dir: Path) -> tuple[str, str | None]:
    """(label, task): from the run's config.yaml when it has one, else the dir name."""
    try:
        cfg = OmegaConf.load(run_dir / "config.yaml")
        fields = [cfg.get("exp_name"), cfg.get("task"), cfg.get("seed")]
    except Exception:  # no config, or not a mapping: the directory name still identifies it
        return run_dir.name, None
    exp_name, task, seed = (None if v is None else str(v) for v in fields)
    parts = [p for p in (exp_name, task, seed and f"seed {seed}") if p]
    return " · ".join(parts) or run_dir.name, task


def run_curve(run_dir: Path) -> tuple[list[float], list[float]]:
    """(agent steps, evaluation returns) of a run's eval.csv; rows without a return skipped."""
    path = run_dir / "eval.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a run directory?")
    rows = read_rows(path)
    if rows and not {"step", "episode_reward"} <= rows[0].keys():
        raise ValueError(f"{path}: needs the columns step and episode_reward")
    rows = [r for r in rows if r["step"] and r["episode_reward"]]
    return [float(r["step"]) for r in rows], [float(r["episode_reward"]) for r in rows]


def reference_curve(
    reference: Path, method: str, task: str
) -> tuple[list[float], list[float], list[float], list[float]] | None:
    """(steps, mean, min, max) over the seeds of a published curve; None if absent."""
    path = reference / "published_curves" / method / f"{task}.csv"
    if not path.is_file():
        return None
    by_step: dict[float, list[float]] = defaultdict(list)
    for row in read_rows(path):
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
    run_dirs: Sequence[str | Path],
    reference: str | Path | None = None,
    task: str | None = None,
    out: str | Path | None = None,
    methods: Sequence[str] = ("tdmpc2",),
) -> Path:
    """Writes the PNG (default RUN_DIR0/curve.png) and returns its path."""
    if not run_dirs:
        raise ValueError("no run directories given")
    if reference is not None and not Path(reference).is_dir():
        raise FileNotFoundError(f"reference directory {reference} not found")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    max_step = 0.0
    for run_dir in map(Path, run_dirs):
        steps, returns = run_curve(run_dir)
        label, run_task = run_info(run_dir)
        task = task or run_task
        ax.plot(steps, returns, marker="o", markersize=3, label=label)
        max_step = max([max_step, *steps])
    if reference is not None:
        if task is None:
            print("no task known (pass --task): published curves skipped", file=sys.stderr)
        for method in methods if task else ():
            curve = reference_curve(Path(reference), method, task)
            if curve is None:
                print(f"no published {method} curve for {task}", file=sys.stderr)
                continue
            steps, mean, low, high = curve
            (line,) = ax.plot(steps, mean, linestyle="--", label=f"{method} (published)")
            ax.fill_between(steps, low, high, alpha=0.15, color=line.get_color())
        if max_step > 0:  # published curves run to 1M+ steps: keep the runs readable
            ax.set_xlim(0, max_step * 1.05)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--reference", type=Path, help="the shared reference folder")
    parser.add_argument("--task", help="task of the published curves (default: the runs' task)")
    parser.add_argument("--methods", default="tdmpc2", help="comma-separated published methods")
    parser.add_argument("--out", type=Path, help="PNG path (default: RUN_DIR0/curve.png)")
    args = parser.parse_args(argv)
    try:
        out = plot_runs(args.run_dirs, args.reference, args.task, args.out, args.methods.split(","))
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    print(out)


if __name__ == "__main__":
    main()
