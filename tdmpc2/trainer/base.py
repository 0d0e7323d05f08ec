"""What every trainer shares: acting, evaluation, updates and their metrics, checkpoints."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import torch
from omegaconf import DictConfig

from tdmpc2.agent import TDMPC2
from tdmpc2.common import checkpoint
from tdmpc2.common.buffer import Buffer, resize_state
from tdmpc2.common.curves import LiveCurve, Panel
from tdmpc2.common.evaluation import Extension, run_episodes
from tdmpc2.common.logger import Logger
from tdmpc2.common.progress import Progress
from tdmpc2.common.seed import env_rng_state, rng_state, set_env_rng_state, set_rng_state
from tdmpc2.common.threads import ThreadShare
from tdmpc2.trainer.checkpoints import Checkpoints
from tdmpc2.trainer.cost_probe import timed_progress
from tdmpc2.trainer.signals import Interrupted, catch_signals


class NonFiniteError(RuntimeError):
    """Too many updates in a row had a non-finite loss; the last good checkpoint is kept."""


class Trainer(Checkpoints):
    """Owns the loop around an agent; subclasses decide where the data comes from."""

    kind = "tdmpc2"
    # A second panel of train.csv metrics in curve.png; flat TD-MPC2 logs returns only.
    curve_panel: Panel | None = None
    # Keys evaluate.py takes from the command line over a checkpoint's own (how to act,
    # never what was learnt), logged with the results; flat TD-MPC2 has none.
    control_keys: tuple[str, ...] = ()
    # Learned parts that act beside the agent, which evaluate.py builds without a trainer;
    # flat TD-MPC2 has none.
    extension: ClassVar[type[Extension] | None] = None
    # What one unit of each phase costs, in timed parts (seconds per env step, planner
    # call, update); the time left is the units left per phase times these sums.
    phase_costs: ClassVar[dict[str, tuple[str, ...]]] = {
        "seeding": ("env",),
        "pretraining": ("update",),
        "training": ("env", "act", "update"),
        "evaluation": ("env", "act"),
    }

    def __init__(
        self, cfg: DictConfig, env, agent: TDMPC2, buffer: Buffer | None, logger: Logger
    ) -> None:
        self.cfg = cfg
        self.env = env
        self.agent = agent
        self.buffer = buffer
        self.logger = logger
        self._step = 0
        self._ep_idx = 0
        self._start_time = time.time()
        self._sums: dict[str, torch.Tensor | float] = {}  # metrics since the last logged row
        self._counts: dict[str, int] = {}
        self._nonfinite = 0  # updates skipped since the last logged row
        self._nonfinite_streak = 0
        self._signal: int | None = None  # SIGINT/SIGTERM received while training
        self._updates = 0  # in this process, to tell whether the state moved since a save
        self._can_render = True
        self.progress = Progress.off()  # replaced when training starts
        self._threads: ThreadShare | None = None  # the core share, while training
        self._eval_done = 0  # steps of the running evaluation, for the time left
        self.curve = LiveCurve(cfg, logger.run_dir, self.curve_panel, logger.write)
        self.finished = False

    def train(self) -> None:
        raise NotImplementedError

    def work_left(self) -> dict[str, int]:
        """Units of work left per phase (see `phase_costs`)."""
        raise NotImplementedError

    # ------------------------------------------------------------ the run's frame
    @contextmanager
    def _running(self) -> Iterator[None]:
        """Training's frame: this run's share of the cores, the progress display with a
        first time left from timing the run's parts, stop signals caught; then cleanup."""
        self._threads = ThreadShare(self.cfg.threads)
        self._note(self._threads.refresh(force=True))
        self._note(self.curve.missing_reference())
        self.progress = timed_progress(self)
        try:
            with catch_signals(self._received):
                yield
        finally:
            self.progress.close()
            self._threads.close()
            self._threads = None

    def _received(self, signum: int) -> None:
        self._signal = signum

    def _tick(self, phase: str, n: int = 1) -> None:
        """`n` units of `phase` done: moves the display, rechecks the core share."""
        self.progress.advance(phase, n)
        if self._threads is not None:
            self._note(self._threads.refresh())

    def _note(self, line: str | None) -> None:
        if line:
            self.logger.write(line)

    def _scratch_buffer(self, cfg: DictConfig, episode: dict[str, torch.Tensor]):
        """The timing probe's replay (see cost_probe): one random episode."""
        buffer = Buffer.from_cfg(cfg, capacity=len(episode["action"]) + 1)
        buffer.add(episode)
        return buffer

    # ------------------------------------------------------------ acting
    @property
    def stopped_by(self) -> int | None:
        """The signal that stopped training early, if any."""
        return self._signal

    @property
    def seeding(self) -> bool:
        """True while training acts randomly to fill the buffer."""
        return self._step < int(self.cfg.seed_steps)

    @property
    def acting_task(self) -> int | None:
        """The index of the task the environment runs (multi-task), else None."""
        return self.env.task if self.cfg.multitask else None

    def act(self, obs: torch.Tensor, t: int, eval_mode: bool) -> torch.Tensor:
        """The acting policy at step `t` of an episode; random while seeding."""
        if not eval_mode and self.seeding:
            return self.env.rand_act()
        return self.agent.act(obs, t0=t == 0, eval_mode=eval_mode, task=self.acting_task)

    # ------------------------------------------------------------ evaluation
    def eval(self, episodes: int | None = None, video: bool = False) -> dict[str, float]:
        """Mean return over evaluation episodes with the deterministic planner."""
        self._eval_done = 0
        results, frames = run_episodes(
            self.env,
            self._eval_act,
            episodes or self.cfg.eval_episodes,
            video and self._can_render,
            self.logger.write,
            self.progress,
            self._eval_tick,
        )
        self._eval_done = 0
        if frames is None:  # warned once; no more video in this run
            self._can_render = False
        elif frames:
            self.logger.save_video(frames, self._step)
        return results

    def _eval_act(self, obs: torch.Tensor, t: int) -> torch.Tensor:
        """An evaluation step's action; a signal received meanwhile cuts the evaluation short."""
        if self._signal is not None:
            raise Interrupted
        return self.act(obs, t, eval_mode=True)

    def _eval_tick(self) -> None:
        self._eval_done += 1
        self._tick("evaluation")

    def _evaluate(self) -> bool:
        """Logs an evaluation; False if a signal cut it short (its starting state is kept)."""
        snapshot = self.state_dict()
        try:
            results = self.eval(video=self.cfg.save_video)
        except Interrupted:
            self._snapshot = snapshot
            return False
        self.logger.log({**self.common_metrics(), **results}, "eval")
        self.curve.draw()
        return True

    # ------------------------------------------------------------ updates and metrics
    def update(self, num_updates: int) -> dict[str, torch.Tensor]:
        """World-model updates; subclasses add their own modules' updates."""
        metrics: dict[str, torch.Tensor] = {}
        for _ in range(num_updates):
            metrics = self._agent_update()
        return metrics

    def _agent_update(self) -> dict[str, torch.Tensor]:
        """One world-model update. A skipped one (non-finite loss) is counted for the logs;
        `max_nonfinite` in a row stop the run, and no checkpoint is written meanwhile."""
        metrics = dict(self.agent.update(self.buffer))
        self._updates += 1
        if not float(metrics.pop("nonfinite", 0.0)):
            self._nonfinite_streak = 0
            return metrics
        self._nonfinite += 1
        self._nonfinite_streak += 1
        if self._nonfinite_streak == 1:
            self.logger.write(f"warning: non-finite loss at step {self._step}; update skipped")
        if self._nonfinite_streak >= int(self.cfg.max_nonfinite):
            raise NonFiniteError(
                f"stopped at step {self._step}: {self._nonfinite_streak} updates in a row had "
                f"a non-finite loss (max_nonfinite={self.cfg.max_nonfinite}); " + self._last_good()
            )
        return metrics

    def _accumulate(self, metrics: dict[str, torch.Tensor]) -> None:
        for k, v in metrics.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
            self._counts[k] = self._counts.get(k, 0) + 1

    def _pop_means(self) -> dict[str, float]:
        """Each metric's mean since the last row, the number of skipped updates; then resets."""
        means = {k: float(v) / self._counts[k] for k, v in self._sums.items()}
        means["nonfinite_updates"] = self._nonfinite
        self._sums, self._counts, self._nonfinite = {}, {}, 0
        return means

    def common_metrics(self) -> dict[str, float]:
        elapsed = time.time() - self._start_time
        return {"step": self._step, "episode": self._ep_idx, "elapsed_time": elapsed}

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue exactly where this one is."""
        return {
            "kind": self.kind,
            "agent": self.agent.state_dict(),
            "step": self._step,
            "episode": self._ep_idx,
            "finished": self.finished,
            "elapsed": time.time() - self._start_time,
            "rng": rng_state(),
            "env_rng": env_rng_state(self.env),
            "buffer": self._buffer_state(),
            "metrics": {
                "sums": {k: float(v) for k, v in self._sums.items()},
                "counts": dict(self._counts),
                "nonfinite": self._nonfinite,
            },
            "log_rows": self.logger.rows(),
        }

    def load_models(self, state: dict) -> None:
        """The learned parts only, which is all evaluation needs."""
        checkpoint.check_kind(state, self.kind)
        self.agent.load_state_dict(state["agent"])

    def load_state_dict(self, state: dict) -> None:
        """The whole state of `state_dict`; the environment is brought back to it too."""
        self.load_models(state)
        self._step, self._ep_idx = int(state["step"]), int(state["episode"])
        self._start_time = time.time() - state["elapsed"]
        self._sums = dict(state["metrics"]["sums"])
        self._counts = dict(state["metrics"]["counts"])
        self._nonfinite = int(state["metrics"]["nonfinite"])
        if self.buffer is not None:
            self._load_buffer_state(state["buffer"])
        self._restore_env(state)
        set_rng_state(state["rng"])

    def _buffer_state(self) -> dict | None:
        return None if self.buffer is None else self.buffer.state_dict()

    def _load_buffer_state(self, state: dict) -> None:
        self.buffer.load_state_dict(resize_state(state, self.buffer.capacity))

    def _restore_env(self, state: dict) -> None:
        self.env.reset()  # spends a first-reset seeding (Gymnasium) so restored states stick
        set_env_rng_state(self.env, state["env_rng"])
