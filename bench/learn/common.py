"""What every job shares: the run-folder layout `<out>/<task>/<agent>/seed<N>/`, which runs
are finished, evaluating a run's checkpoint again, and number formatting."""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from tdmpc2.common.curves import read_rows

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("MUJOCO_GL", "egl")  # jobs that build a task never render

TRAIN = ROOT / "tdmpc2" / "train.py"
EVALUATE = ROOT / "tdmpc2" / "evaluate.py"
DEFAULT_OUT = ROOT / "bench" / "results" / "learning"
EVALUATED = ("step", "episode_reward", "episode_success", "goal_reached", "goal_similarity")


def last_step(run_dir: Path, category: str = "eval") -> int:
    """The largest step logged in the run's `<category>.csv`; -1 without one."""
    path = run_dir / f"{category}.csv"
    if not path.is_file():
        return -1
    steps = [int(float(r["step"])) for r in read_rows(path) if r.get("step")]
    return max(steps, default=-1)


def finished(run_dir: Path, steps: int) -> bool:
    """The run was evaluated at step `steps` or later."""
    return last_step(run_dir) >= steps


def resumable(run_dir: Path) -> bool:
    """The run saved a checkpoint: it resumes from it, and later jobs evaluate it."""
    return (run_dir / "checkpoint.pt").is_file()


def claim(seen: set[tuple[str, ...]], key: tuple[str, ...], run_dir: Path) -> None:
    """Adds (task, agent, seed) to `seen`: a run found in two --out folders would count twice."""
    if key in seen:
        raise ValueError(f"{run_dir}: {' '.join(key)} is in more than one --out folder")
    seen.add(key)


def run_folders(
    outs: Sequence[Path], tasks: Sequence[str] = (), agents: Sequence[str] = ()
) -> Iterator[tuple[Path, DictConfig]]:
    """(run folder, its config) under the `outs`, of `tasks` and `agents` if given, sorted."""
    for config in sorted(c for out in outs for c in out.glob("*/*/seed*/config.yaml")):
        run_dir = config.parent
        if (tasks and run_dir.parents[1].name not in tasks) or (
            agents and run_dir.parent.name not in agents
        ):
            continue
        yield run_dir, OmegaConf.load(config)


def checkpointed_runs(
    outs: Sequence[Path],
    tasks: Sequence[str] = (),
    agents: Sequence[str] = (),
    keep: Callable[[DictConfig], bool] = lambda cfg: True,
    what: str = "run",
) -> list[tuple[Path, DictConfig]]:
    """The finished runs with a checkpoint (and `keep(cfg)`) that `control` and `final`
    evaluate again, each (task, agent, seed) once; an error naming the filters if none."""
    runs, seen = [], set()
    for run_dir, cfg in run_folders(outs, tasks, agents):
        if keep(cfg) and finished(run_dir, cfg.steps) and resumable(run_dir):
            claim(seen, (run_dir.parents[1].name, run_dir.parent.name, run_dir.name), run_dir)
            runs.append((run_dir, cfg))
    if not runs:
        where = f" of {', '.join([*tasks, *agents])}" if tasks or agents else ""
        raise FileNotFoundError(
            f"no finished {what}{where} with a checkpoint under {', '.join(map(str, outs))}"
        )
    return runs


def evaluate_run(
    run_dir: Path, cfg: DictConfig, episodes: int, overrides: Sequence[str] = ()
) -> dict[str, float]:
    """One evaluation of a run's checkpoint with `overrides`; its row of eval/eval.csv."""
    command = [sys.executable, str(EVALUATE), f"checkpoint={run_dir}", f"task={cfg.task}"]
    command += [f"eval_episodes={episodes}", "threads=1", *overrides]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{run_dir}: evaluation failed: {done.stderr.strip()[-500:]}")
    row = read_rows(run_dir / "eval" / "eval.csv")[-1]
    return {k: float(row[k]) for k in EVALUATED if row.get(k)}


def spread(values: Sequence[float], digits: int = 0) -> str:
    """`mean ± sd` of the finite values; a dash when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "–"
    mean = statistics.fmean(finite)
    sd = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def vs_flat(value: float, flat: float) -> float:
    """value / flat where that reads as better (> 1) or worse: only for a positive flat
    return; nan where returns are negative (a maze's -1 a step) or flat is missing."""
    return value / flat if flat > 0 else math.nan


def fmt(value: float, digits: int = 2) -> str:
    """A table cell: the value, or a dash for nan."""
    return f"{value:.{digits}f}" if math.isfinite(value) else "–"


def load_trained(run_dir: Path) -> tuple[Any, dict, DictConfig]:
    """(trainer with the run's last checkpoint loaded, the checkpoint, its config), built
    on one thread in a throwaway run directory: for reading a run's models, not training."""
    import tempfile

    from tdmpc2.common import checkpoint
    from tdmpc2.train import build

    payload = checkpoint.load(run_dir)
    cfg = checkpoint.saved_config(payload)
    cfg.threads = 1
    with tempfile.TemporaryDirectory() as work_dir:
        cfg.work_dir = work_dir
        trainer = build(cfg, [], with_buffer=False)
        trainer.load_models(payload)
        trainer.logger.finish()
    return trainer, payload, cfg


@torch.no_grad()
def nearest_states(z: torch.Tensor, goals: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Index [G] of the state latent in z [N, latent] most similar to each of `goals`
    [G, latent] by the planner's goal similarity (`cosine_max`): a decoded goal is no
    state, so its nearest replay state says where in the task it points. One matrix
    product per `chunk` goals, not a pass over z per goal."""
    norms = z.pow(2).sum(-1)
    found = []
    for part in goals.split(chunk):
        larger = torch.maximum(norms, part.pow(2).sum(-1, keepdim=True))  # [chunk, N]
        found.append((part @ z.T / larger.clamp_min(1e-8)).argmax(-1))
    return torch.cat(found)
