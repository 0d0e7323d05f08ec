"""Learning curves of run directories: the run's own `curve.png` and `bench/plot.py` both
draw with `plot_runs`, so a live run and a comparison of finished ones look the same."""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


@dataclass(frozen=True)
class Panel:
    """A second panel of train.csv metrics under the returns, drawn when a run logged
    any of them. Flat TD-MPC2 draws none; an extension of the agent names its own
    diagnostics here. `left` metrics share the left axis, the others a right axis in
    [0, 1] (shares, similarities)."""

    metrics: dict[str, tuple[str, str]]  # train.csv key: (label, line style)
    left: tuple[str, ...] = ()
    left_label: str = ""
    right_label: str = ""


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


def column(rows: list[dict[str, str]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the rows that have both `step` and `key`."""
    pairs = [(float(r["step"]), float(r[key])) for r in rows if r.get("step") and r.get(key)]
    return [s for s, _ in pairs], [v for _, v in pairs]


def run_curve(run_dir: Path) -> tuple[list[float], list[float]]:
    """(agent steps, evaluation returns) of a run's eval.csv; rows without a return skipped."""
    path = run_dir / "eval.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a run directory?")
    rows = read_rows(path)
    if rows and not {"step", "episode_reward"} <= rows[0].keys():
        raise ValueError(f"{path}: needs the columns step and episode_reward")
    return column(rows, "episode_reward")


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


class LiveCurve:
    """A training run's own curve: run_dir/curve.png, redrawn after every evaluation
    (over the published curve of its task when `reference_dir` holds one), and at the
    end the evaluation returns by step in one line. Drawing never stops a run: the first
    failure warns and ends it."""

    def __init__(
        self, cfg: DictConfig, run_dir: Path, panel: Panel | None, write: Callable[[str], None]
    ) -> None:
        self.cfg, self.run_dir, self.panel, self.write = cfg, run_dir, panel, write
        self.enabled = bool(cfg.save_csv)  # drawn from the CSV logs
        self.reference = None
        if cfg.get("reference_dir"):
            reference = Path(str(cfg.reference_dir)).expanduser()
            if reference_curve(reference, "tdmpc2", str(cfg.task)):
                self.reference = reference

    def missing_reference(self) -> str | None:
        """A warning when `reference_dir` is set but has no published curve of the task."""
        if self.cfg.get("reference_dir") and self.reference is None:
            return f"warning: no published curve of {self.cfg.task} in {self.cfg.reference_dir}"
        return None

    def draw(self) -> None:
        if not self.enabled:
            return
        out = self.run_dir / "curve.png"
        try:
            plot_runs([self.run_dir], self.reference, out=out, panel=self.panel)
        except Exception as err:
            self.write(f"warning: curve.png disabled ({type(err).__name__}: {err})")
            self.enabled = False

    def summary(self) -> str | None:
        """`evaluation return by step: 0: 12 | 5,000: 340`; None without CSV logs."""
        try:
            steps, returns = run_curve(self.run_dir)
        except (OSError, ValueError):  # no CSV logs (save_csv=false)
            return None
        points = " | ".join(f"{int(s):,}: {r:.0f}" for s, r in zip(steps, returns, strict=True))
        return f"evaluation return by step: {points}" if points else None


def plot_runs(
    run_dirs: Sequence[str | Path],
    reference: str | Path | None = None,
    task: str | None = None,
    out: str | Path | None = None,
    methods: Sequence[str] = ("tdmpc2",),
    panel: Panel | None = None,
) -> Path:
    """Writes the PNG (default RUN_DIR0/curve.png) and returns its path.

    Per run: evaluation returns (markers) and training episode returns (faint, same
    colour); published curves as dashed lines with their seed band; and, when a run
    logged any of `panel`'s metrics, a second panel with them.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not run_dirs:
        raise ValueError("no run directories given")
    if reference is not None and not Path(reference).is_dir():
        raise FileNotFoundError(f"reference directory {reference} not found")
    runs = [(Path(d), run_curve(Path(d))) for d in run_dirs]
    train = {d: _train_rows(d) for d, _ in runs}
    metrics = panel.metrics if panel is not None else {}
    second = any(k in rows[0] for rows in train.values() if rows for k in metrics)
    fig, axes = plt.subplots(
        2 if second else 1, 1, figsize=(7, 7 if second else 4.5), sharex=True, squeeze=False
    )
    ax = axes[0][0]
    max_step = 0.0
    for run_dir, (steps, returns) in runs:
        label, run_task = run_info(run_dir)
        task = task or run_task
        (line,) = ax.plot(steps, returns, marker="o", markersize=3, label=label)
        train_steps, train_returns = column(train[run_dir], "episode_reward")
        faint = "training episodes" if len(runs) == 1 else None
        ax.plot(train_steps, train_returns, color=line.get_color(), alpha=0.35, label=faint)
        max_step = max([max_step, *steps, *train_steps])
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
    ax.set_ylabel("episode return (markers: evaluation)")
    ax.set_title(task or "")
    if second:
        _plot_panel(axes[1][0], train, panel)
    for (row_ax,) in axes:
        row_ax.grid(alpha=0.3)
        row_ax.legend(fontsize=8)
    axes[-1][0].set_xlabel("agent steps")
    out = Path(out) if out else Path(run_dirs[0]) / "curve.png"
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _train_rows(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / "train.csv"
    return read_rows(path) if path.is_file() else []


def _plot_panel(ax, train: dict[Path, list[dict[str, str]]], panel: Panel) -> None:
    """The panel's `left` metrics on the left axis; the rest in [0, 1] on the right."""
    shares = ax.twinx()
    shares.set_ylim(0, 1)
    for i, (run_dir, rows) in enumerate(train.items()):
        name = run_dir.name if len(train) > 1 else ""
        for key, (label, style) in panel.metrics.items():
            steps, values = column(rows, key)
            if steps:
                target = ax if key in panel.left else shares
                target.plot(steps, values, style, color=f"C{i}", label=f"{label} {name}".strip())
    ax.set_ylabel(panel.left_label)
    shares.set_ylabel(panel.right_label)
    shares.legend(fontsize=8, loc="lower right")
