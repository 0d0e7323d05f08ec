"""Run logging: console lines, CSV files, a progress bar, optional Weights & Biases."""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

# Console columns, in order, with their display format; other metrics go to the CSV only.
HEADLINE = {
    "step": ("step", "{:,.0f}"),
    "episode": ("ep", "{:,.0f}"),
    "episode_reward": ("return", "{:.1f}"),
    "episode_success": ("success", "{:.2f}"),
    "steps_per_s": ("steps/s", "{:.2f}"),
    "total_loss": ("loss", "{:.3f}"),
    "worker/total_loss": ("loss", "{:.3f}"),
    "manager/return": ("mgr return", "{:.2f}"),
    "goal/perplexity": ("codes", "{:.1f}"),
    "elapsed_time": ("time", "{:.0f}s"),
}


class Logger:
    """Writes every metric to `run_dir/<category>.csv`, headline ones to the console."""

    def __init__(self, cfg: DictConfig, run_dir: str | Path) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._columns: dict[str, list[str]] = {}
        self._bar: tqdm | None = None
        self._wandb = self._init_wandb() if cfg.get("enable_wandb", False) else None

    def _init_wandb(self):
        try:
            import wandb
        except ImportError:
            self.write("warning: enable_wandb=true but wandb is not installed; logging locally")
            return None
        mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
        try:
            return wandb.init(
                project=self.cfg.get("wandb_project", "tdmpc2"),
                entity=self.cfg.get("wandb_entity"),
                name=f"{self.cfg.task}-{self.cfg.get('exp_name', 'default')}-{self.cfg.seed}",
                dir=str(self.run_dir),
                mode=mode,
                config=OmegaConf.to_container(self.cfg, resolve=True),
            )
        except Exception as err:  # never let W&B stop a run
            self.write(f"warning: wandb disabled ({type(err).__name__}: {err})")
            return None

    def write(self, line: str) -> None:
        """Prints without breaking the progress bar."""
        tqdm.write(line)

    def progress(self, total: int, initial: int = 0) -> tqdm:
        self._bar = tqdm(
            total=total,
            initial=initial,
            unit="step",
            dynamic_ncols=True,
            disable=not self.cfg.get("progress_bar", True),
            smoothing=0.05,
        )
        return self._bar

    def log(self, metrics: dict, category: str) -> None:
        row = {k: v if isinstance(v, int) else float(v) for k, v in metrics.items()}
        if self.cfg.get("save_csv", True):
            self._append_csv(category, row)
        if category in ("train", "eval"):
            parts = [
                f"{label} {fmt.format(row[key])}"
                for key, (label, fmt) in HEADLINE.items()
                if key in row
            ]
            self.write(f"{category:<5} | " + " | ".join(parts))
        if self._wandb is not None:
            self._wandb.log(
                {f"{category}/{k}": v for k, v in row.items()}, step=int(row.get("step", 0))
            )

    def _append_csv(self, category: str, row: dict[str, float]) -> None:
        """Appends a row; a row with new keys rewrites the file under the widened header."""
        path = self.run_dir / f"{category}.csv"
        columns = self._columns.get(category)
        if columns is None and path.is_file():  # a resumed run appends to its old file
            with open(path, newline="") as f:
                columns = next(csv.reader(f), [])
        if columns is None or not path.is_file():
            columns = list(row)
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(columns)
        new = [k for k in row if k not in columns]
        if new:
            with open(path, newline="") as f:
                old = list(csv.DictReader(f))
            columns = columns + new
            with open(path, "w", newline="") as f:
                writer = csv.DictWriter(f, columns)
                writer.writeheader()
                writer.writerows(old)
        self._columns[category] = columns
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, columns).writerow(row)

    def save_video(self, frames: list[np.ndarray], step: int, name: str = "eval") -> Path | None:
        path = self.run_dir / "videos" / f"{name}_{step}.mp4"
        try:
            import imageio.v2 as imageio

            path.parent.mkdir(exist_ok=True)
            imageio.mimsave(path, frames, fps=15)
        except Exception as err:
            warnings.warn(f"video not saved ({type(err).__name__}: {err})", stacklevel=2)
            return None
        if self._wandb is not None:
            import wandb

            self._wandb.log({f"{name}/video": wandb.Video(str(path), format="mp4")}, step=step)
        return path

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._wandb is not None:
            self._wandb.finish()
