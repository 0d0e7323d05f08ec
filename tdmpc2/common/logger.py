"""Run logging: CSV files, console lines above the progress bar, optional Weights & Biases."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

# Console columns in order: metric -> (label, format). Everything goes to the CSV.
HEADLINE = {
    "step": ("step", "{:,.0f}"),
    "episode": ("episode", "{:,.0f}"),
    "episode_reward": ("return", "{:.1f}"),
    "episode_success": ("success", "{:.2f}"),
    "steps_per_s": ("steps/s", "{:.1f}"),
    "elapsed_time": ("time", "{:,.0f}s"),
    "total_time": ("total", "{:,.0f}s"),
}
MAX_EXTRA = 3  # rows with at most this many other metrics show them too
CONSOLE = ("train", "eval")


class Logger:
    """Every metric to `run_dir/<category>.csv`; headline ones to the console."""

    def __init__(self, cfg: DictConfig, run_dir: str | Path) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._columns: dict[str, list[str]] = {}
        self._wandb = self._init_wandb() if cfg.get("enable_wandb", False) else None

    def write(self, line: str) -> None:
        """Prints a line above the progress bar, if one is showing."""
        tqdm.write(line)

    def _warn(self, message: str) -> None:
        self.write(f"warning: {message}")

    # ------------------------------------------------------------ W&B
    def _init_wandb(self):
        """A wandb run, or None: W&B problems never stop training."""
        try:
            import wandb
        except ImportError:
            self._warn("enable_wandb=true but wandb is not installed; logging locally only")
            return None
        try:
            logged_in = bool(os.environ.get("WANDB_API_KEY") or wandb.api.api_key)
        except Exception:
            logged_in = False
        try:
            return wandb.init(
                project=self.cfg.get("wandb_project", "tdmpc2"),
                entity=self.cfg.get("wandb_entity"),
                name=f"{self.cfg.get('task')}-{self.cfg.get('exp_name', 'default')}"
                f"-s{self.cfg.get('seed')}",
                dir=str(self.run_dir),
                mode=None if "WANDB_MODE" in os.environ else ("online" if logged_in else "offline"),
                config=OmegaConf.to_container(self.cfg, resolve=True),
            )
        except Exception as err:
            self._warn(f"wandb disabled ({type(err).__name__}: {err})")
            return None

    def _wandb_log(self, data: dict, step: int) -> None:
        try:
            self._wandb.log(data, step=step)
        except Exception as err:
            self._warn(f"wandb disabled ({type(err).__name__}: {err})")
            self._wandb = None

    # ------------------------------------------------------------ metrics
    def log(self, metrics: dict[str, float], category: str) -> None:
        """One row of `category` ("train", "eval" or "pretrain") to CSV, console and W&B."""
        row = {k: v if isinstance(v, int) else float(v) for k, v in metrics.items()}
        if self.cfg.get("save_csv", True):
            self._append_csv(category, row)
        if category in CONSOLE:
            self.write(console_line(row, category))
        if self._wandb is not None:
            data = {f"{category}/{k}": v for k, v in row.items()}
            self._wandb_log(data, step=int(row.get("step", 0)))

    def _append_csv(self, category: str, row: dict[str, float]) -> None:
        """Appends a row; a row with new keys rewrites the file under the union header."""
        path = self.run_dir / f"{category}.csv"
        columns = self._columns.get(category)
        if columns is None and path.is_file():  # a resumed run continues its old file
            with open(path, newline="") as f:
                columns = next(csv.reader(f), None)
        if not columns:
            columns = list(row)
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(columns)
        new = [k for k in row if k not in columns]
        if new:
            with open(path, newline="") as f:
                old = list(csv.DictReader(f))
            columns = columns + new
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, columns)
                writer.writeheader()
                writer.writerows(old)
            os.replace(tmp, path)
        self._columns[category] = columns
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, columns).writerow(row)

    # ------------------------------------------------------------ resuming
    def rows(self) -> dict[str, int]:
        """Data rows per CSV log: a checkpoint keeps them to cut the logs back on resume."""
        return {path.name: max(len(_read_csv(path)) - 1, 0) for path in self.run_dir.glob("*.csv")}

    def trim(self, rows: dict[str, int]) -> None:
        """Cuts each CSV log back to its first `rows[name]` rows (a log not named there
        goes): what was logged after the checkpoint a run resumes from is logged again."""
        for path in self.run_dir.glob("*.csv"):
            _trim_csv(path, rows.get(path.name, 0))
        self._columns.clear()  # the next row reads the header of what is left

    # ------------------------------------------------------------ media
    def save_video(self, frames: list[np.ndarray], step: int, name: str = "eval") -> Path | None:
        """Writes `run_dir/videos/{name}_{step}.mp4`; a failure is one warning, not a crash."""
        path = self.run_dir / "videos" / f"{name}_{step}.mp4"
        try:
            import imageio.v2 as imageio

            if len(frames) == 0:
                raise ValueError("no frames")
            path.parent.mkdir(exist_ok=True)
            imageio.mimsave(path, [np.asarray(f) for f in frames], fps=15)
        except Exception as err:
            self._warn(f"video not saved ({type(err).__name__}: {err})")
            return None
        if self._wandb is not None:
            try:
                import wandb

                video = wandb.Video(str(path), format="mp4")
            except Exception as err:
                self._warn(f"video not sent to wandb ({type(err).__name__}: {err})")
            else:
                self._wandb_log({f"{name}/video": video}, step=step)
        return path

    def finish(self) -> None:
        if self._wandb is not None:
            try:
                self._wandb.finish()
            except Exception as err:
                self._warn(f"wandb finish failed ({type(err).__name__}: {err})")
            self._wandb = None


def console_line(row: dict[str, float], category: str) -> str:
    """e.g. `eval  | step 10,000 | episode 20 | return 812.3 | steps/s 5.1`."""
    parts = [f"{label} {fmt.format(row[k])}" for k, (label, fmt) in HEADLINE.items() if k in row]
    extra = [k for k in row if k not in HEADLINE]
    if len(extra) <= MAX_EXTRA:
        parts += [f"{k} {row[k]:.4g}" for k in extra]
    return f"{category:<5} | " + " | ".join(parts)


def _read_csv(path: Path) -> list[list[str]]:
    """A CSV log's lines, header included (an empty list for an empty file)."""
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _trim_csv(path: Path, rows: int) -> None:
    """Keeps the header and the first `rows` rows."""
    lines = _read_csv(path)
    if len(lines) - 1 <= rows:
        return
    if rows == 0:
        path.unlink()
        return
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(lines[: rows + 1])
    os.replace(tmp, path)
