"""Evaluation episodes: the loop that training's evaluations and evaluate.py share.

evaluate.py acts with a saved agent without building a trainer, so the loop takes the
acting function and reports through plain callables; a trainer adds its progress display,
its stop-on-signal check (in `act`) and its time-left count (in `on_step`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from omegaconf import DictConfig

from tdmpc2.agent import TDMPC2
from tdmpc2.common.progress import Progress, duration

Act = Callable[[torch.Tensor, int], torch.Tensor]  # (observation, step of the episode) -> action


class Extension(Protocol):
    """Learned parts that act beside the agent (a trainer's `extension`); evaluate.py builds
    one from a checkpoint to act exactly as its training's evaluations did."""

    def __init__(self, cfg: DictConfig, agent: TDMPC2) -> None: ...

    def act(
        self, obs: torch.Tensor, t: int, eval_mode: bool, task: int | None = None
    ) -> torch.Tensor: ...

    def load_models(self, state: dict) -> None: ...

    def eval_metrics(self) -> dict[str, float]:
        """What the extension measured while evaluation acted, for eval.csv; then resets."""
        ...


def run_episodes(
    env,
    act: Act,
    episodes: int,
    record: bool = False,
    warn: Callable[[str], None] = print,
    progress: Progress | None = None,
    on_step: Callable[[], None] | None = None,
) -> tuple[dict[str, float], list | None]:
    """Mean return and success over `episodes` episodes, and the first episode's frames
    when `record`: [] without, None if rendering failed (one `warn`ing; the run goes on)."""
    progress = Progress.off() if progress is None else progress
    returns, successes, frames = [], [], []
    started = time.perf_counter()
    for i in range(episodes):
        obs, done, ep_return, t = env.reset(), False, 0.0, 0
        recording = record and i == 0
        if recording:
            frames = _frame(env, frames, warn)
        while not done:
            action = act(obs, t)
            obs, reward, done, info = env.step(action)
            ep_return += reward
            t += 1
            progress.status(f"eval {i + 1}/{episodes} step {t:,}")
            if on_step is not None:
                on_step()
            if recording and frames is not None:
                frames = _frame(env, frames, warn)
        returns.append(ep_return)
        successes.append(info.get("success", 0.0))
        took = duration(time.perf_counter() - started)
        progress.event(f"eval  | episode {i + 1}/{episodes} | return {ep_return:.1f} | {took}")
    progress.status("")
    progress.pause()
    results = {
        "episode_reward": float(np.mean(returns)),
        "episode_success": float(np.mean(successes)),
    }
    return results, frames


def _frame(env, frames: list, warn: Callable[[str], None]) -> list | None:
    """Appends a rendered frame; None (after one warning) when rendering fails."""
    try:
        frames.append(env.render())
    except Exception as err:  # no OpenGL context, missing EGL/OSMesa, ...
        warn(
            f"warning: video disabled: cannot render ({type(err).__name__}: {err}); "
            "set MUJOCO_GL=egl or MUJOCO_GL=osmesa with a renderer installed"
        )
        return None
    return frames


def each_task(
    tasks: list[str], env, evaluate: Callable[[bool], dict[str, float]]
) -> dict[str, float]:
    """A task set's evaluation: `evaluate(first)` on every task in turn (`env.task`), its
    results as `<key>+<task>` for each task and their means under the plain keys."""
    per_task = []
    for task in range(len(tasks)):
        env.task = task
        per_task.append(evaluate(task == 0))
    results = {k: float(np.mean([r[k] for r in per_task])) for k in per_task[0]}
    for name, task_results in zip(tasks, per_task, strict=True):
        results.update({f"{k}+{name}": v for k, v in task_results.items()})
    return results
