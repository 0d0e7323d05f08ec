"""`make train` without a task: a first run chosen by the device, then tdmpc2/train.py.

With a GPU it trains the default task at the public defaults (model_size 5, the preset's
steps). Without one it trains the same task at the setting the walker-defaults study
measured on one CPU core (bench/results/walker-defaults: model_size 1, one thread), stopped
at 6,000 of its 8,000 steps and evaluated on one episode every 3,000 steps (an evaluation
episode costs about 3 minutes there, a training step about 0.6 s), so that it shows
learning within an hour (48 minutes measured, README). Overrides on the command line come
after the chosen ones, so they win.
A `task=` among them means the user chose: the command then runs as given.

    python tdmpc2/first_run.py [key=value ...]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "tdmpc2" / "configs" / "task"

# The CPU first run: bench/results/walker-defaults' settings but for its length and the
# evaluations (tests/test_first_run.py checks them against its saved config.yaml).
CPU_OVERRIDES = ["model_size=1", "steps=6000", "eval_freq=3000", "eval_episodes=1", "threads=1"]
CPU_STUDY = "bench/results/walker-defaults"
# Its wall time, measured on a fresh clone on 2026-12-07 beside one other run (README).
CPU_MEASURED = "48 min on one core of a 2-core CPU, evaluation return 43 -> 221 (measured)"


def default_task() -> str:
    """A walker-walk preset when one is installed (an extension brings its own), else the
    plain task: the first run follows whatever is in place."""
    presets = sorted(PRESETS.glob("*walker_walk.yaml"))
    return presets[0].stem if presets else "walker-walk"


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def choose(overrides: list[str], gpu: bool) -> tuple[list[str], list[str]]:
    """(train.py's arguments, the lines to print first) for these command-line overrides."""
    if any(o.split("=", 1)[0].lstrip("+~") == "task" for o in overrides):
        return overrides, []
    task = default_task()
    if gpu:
        lines = [
            f"first run: GPU found: task={task} at the public defaults (model_size 5).",
            f'For the short CPU setting instead: make train ARGS="{" ".join(CPU_OVERRIDES)}"',
        ]
        return [f"task={task}", *overrides], lines
    lines = [
        f"first run: no GPU: task={task} at the CPU setting of {CPU_STUDY} "
        f"({' '.join(CPU_OVERRIDES)}); {CPU_MEASURED}.",
        f"The full-size run (model_size 5, the preset's steps; a GPU, or about 10 h on a "
        f"2-core CPU): make train TASK={task}",
    ]
    return [f"task={task}", *CPU_OVERRIDES, *overrides], lines


def main(argv: list[str]) -> None:
    args, lines = choose(argv, has_gpu())
    for line in lines:
        print(line)
    sys.stdout.flush()
    train = str(ROOT / "tdmpc2" / "train.py")
    os.execv(sys.executable, [sys.executable, train, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
