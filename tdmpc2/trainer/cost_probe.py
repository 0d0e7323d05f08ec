"""The first time left of a run, before it has timed itself: a random environment step,
a planner call and an update, timed on a scratch trainer at start."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Protocol

import torch
from omegaconf import DictConfig

from tdmpc2.agent import TDMPC2
from tdmpc2.common.buffer import stack_episode
from tdmpc2.common.logger import Logger
from tdmpc2.common.progress import Progress, duration
from tdmpc2.common.seed import rng_state, set_rng_state
from tdmpc2.envs import make_env


class Trainer(Protocol):
    """What the probe reads of a trainer (`tdmpc2.trainer.base.Trainer`, which imports
    this module, so it is described here rather than imported)."""

    cfg: DictConfig
    agent: TDMPC2
    logger: Logger
    phase_costs: dict
    _step: int

    def work_left(self) -> dict[str, int]: ...

    def _scratch_buffer(self, cfg: DictConfig, episode: dict[str, torch.Tensor]): ...


PROBE_MAX_PARAMS = 50_000_000  # above this a second model for timing could exhaust GPU memory


def timed_progress(trainer: Trainer, repeats: int = 2) -> Progress:
    """The run's progress display, its first time left from the run's parts timed now
    (each phase's cost the sum of its `phase_costs` parts; 0 where nothing was timed)."""
    parts, timed = time_parts(trainer, repeats)
    costs = {
        phase: sum(parts.get(part, 0.0) for part in needs)
        for phase, needs in trainer.phase_costs.items()
    }
    cfg, write = trainer.cfg, trainer.logger.write
    mode = None if cfg.progress_bar else "off"
    progress = Progress(int(cfg.steps), trainer._step, trainer.work_left, costs, write, mode)
    if timed:
        write(progress.estimate_line(timed))
    return progress


def time_parts(trainer: Trainer, repeats: int) -> tuple[dict[str, float], str]:
    """Seconds per random environment step, planner call and update.

    Timed on a scratch trainer of the same class: its own environment, a copy of the
    agent, the trainer's other modules (an extension's, say) built anew, and a replay of
    one random episode. The run's own objects are never called, and the global random
    states are put back, so the run draws the numbers of a run that was never timed.
    """
    if sum(p.numel() for p in trainer.agent.model.parameters()) > PROBE_MAX_PARAMS:
        return {}, ""  # model_size 317: the time left is learned as the run goes
    rng, started = rng_state(), time.perf_counter()
    try:
        cfg = copy.deepcopy(trainer.cfg)
        env = make_env(cfg)
        episode, env_s = random_episode(env)
        buffer = trainer._scratch_buffer(cfg, episode)
        scratch = type(trainer)(cfg, env, copy.deepcopy(trainer.agent), buffer, trainer.logger)
        obs = episode["obs"]
        parts = {
            "env": env_s,
            "act": seconds_per_call(lambda i: scratch.act(obs[i], i, eval_mode=True), repeats),
            "update": seconds_per_call(lambda i: scratch.update(1), repeats),
        }
    except Exception as err:  # e.g. an episode shorter than the horizon
        trainer.logger.write(
            f"warning: the run's parts could not be timed ({type(err).__name__}: {err}); "
            "the time left is learned as the run goes"
        )
        return {}, ""
    finally:
        set_rng_state(rng)
    timed = ", ".join(f"{k} {v * 1e3:.3g} ms" for k, v in parts.items())
    return parts, f"timed in {duration(time.perf_counter() - started)}: {timed}"


def random_episode(env) -> tuple[dict[str, torch.Tensor], float]:
    """One episode of random actions, as the replay stores it, and seconds per step."""
    episode: dict[str, list] = {"obs": [env.reset()], "action": [], "reward": [], "terminated": []}
    done, started = False, time.perf_counter()
    while not done:
        episode["action"].append(env.rand_act())
        obs, reward, done, info = env.step(episode["action"][-1])
        episode["obs"].append(obs)
        episode["reward"].append(reward)
        episode["terminated"].append(bool(info.get("terminated", False)))
    seconds = (time.perf_counter() - started) / len(episode["action"])
    return stack_episode(episode), seconds


def seconds_per_call(fn: Callable[[int], object], repeats: int) -> float:
    """Mean seconds of `fn(1..repeats)` after one warm-up call `fn(0)`."""
    fn(0)
    started = time.perf_counter()
    for i in range(1, repeats + 1):
        fn(i)
    return (time.perf_counter() - started) / repeats
