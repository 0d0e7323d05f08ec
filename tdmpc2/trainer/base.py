"""What every trainer shares: evaluation, metric sums, checkpoints, resuming and stopping."""

from __future__ import annotations

import copy
import csv
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import torch
from omegaconf import DictConfig

from tdmpc2.agent import TDMPC2
from tdmpc2.common import checkpoint
from tdmpc2.common.buffer import STORAGE, Buffer
from tdmpc2.common.curves import Panel, plot_runs, reference_curve
from tdmpc2.common.evaluation import Extension, run_episodes
from tdmpc2.common.logger import Logger
from tdmpc2.common.progress import Progress, duration
from tdmpc2.common.seed import env_rng_state, rng_state, set_env_rng_state, set_rng_state
from tdmpc2.common.threads import ThreadShare
from tdmpc2.envs import make_env

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
NOT_COPIED = ("cfg", "env", "buffer", "logger", "progress", "_threads", "_snapshot")  # by probes
PROBE_MAX_PARAMS = 50_000_000  # above this a copy for timing could exhaust GPU memory


class Interrupted(Exception):
    """Raised inside an evaluation once SIGINT/SIGTERM arrived, to cut it short."""


class NonFiniteError(RuntimeError):
    """Too many updates in a row had a non-finite loss; the last good checkpoint is kept."""


class Trainer:
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
        self._snapshot: dict | None = None  # the state before an evaluation a signal cut short
        self._updates = 0  # in this process, to tell whether the state moved since a save
        self._saved_at: tuple[int, int] | None = None  # (step, updates) of the last save
        self._last_checkpoint: Path | None = None
        self._can_render = True
        self.progress = Progress.off()  # replaced when training starts
        self._threads: ThreadShare | None = None  # the core share, while training
        self._eval_done = 0  # steps of the running evaluation, for the time left
        self._can_plot = bool(cfg.save_csv)  # curve.png is drawn from the CSV logs
        self._reference = published_curves(cfg)
        if cfg.get("reference_dir") and self._reference is None:
            logger.write(f"warning: no published curve of {cfg.task} in {cfg.reference_dir}")
        self.finished = False

    def train(self) -> None:
        raise NotImplementedError

    def work_left(self) -> dict[str, int]:
        """Units of work left per phase (see `phase_costs`)."""
        raise NotImplementedError

    # ------------------------------------------------------------ progress and cores
    def _start(self) -> None:
        """Takes this run's share of the cores, times its parts and starts the display."""
        self._threads = ThreadShare(self.cfg.threads)
        self._note(self._threads.refresh(force=True))
        parts, timed = self._probe_costs()
        costs = {
            phase: sum(parts.get(part, 0.0) for part in needs)
            for phase, needs in self.phase_costs.items()
        }
        mode = None if self.cfg.progress_bar else "off"
        self.progress = Progress(
            int(self.cfg.steps), self._step, self.work_left, costs, self.logger.write, mode
        )
        if parts:
            self.logger.write(self.progress.estimate_line(timed))

    @contextmanager
    def _running(self) -> Iterator[None]:
        """Training's frame: cores, progress display and signal handling, then cleanup."""
        self._start()
        try:
            with self._catch_signals():
                yield
        finally:
            self._stop()

    def _stop(self) -> None:
        self.progress.close()
        if self._threads is not None:
            self._threads.close()
            self._threads = None

    def _tick(self, phase: str, n: int = 1) -> None:
        """`n` units of `phase` done: moves the display, rechecks the core share."""
        self.progress.advance(phase, n)
        if self._threads is not None:
            self._note(self._threads.refresh())

    def _note(self, line: str | None) -> None:
        if line:
            self.logger.write(line)

    def _probe_costs(self, repeats: int = 2) -> tuple[dict[str, float], str]:
        """Seconds per random environment step, planner call and update, timed on a copy
        of the trainer (models, optimisers, counters) with a scratch replay of one random
        episode, so the run itself, RNG states included, is untouched."""
        if sum(p.numel() for p in self.agent.model.parameters()) > PROBE_MAX_PARAMS:
            return {}, ""  # model_size 317: the time left is learned as the run goes
        rng, started = rng_state(), time.perf_counter()
        try:
            cfg = copy.deepcopy(self.cfg)
            episode, env_s = random_episode(make_env(cfg))
            probe = copy.copy(self)
            own = {k: v for k, v in vars(self).items() if k not in NOT_COPIED}
            probe.__dict__.update(copy.deepcopy(own))
            probe.buffer = self._scratch_buffer(cfg, episode)
            obs = episode["obs"]
            parts = {
                "env": env_s,
                "act": seconds_per_call(lambda i: probe.act(obs[i], i, eval_mode=True), repeats),
                "update": seconds_per_call(lambda i: probe.update(1), repeats),
            }
        except Exception as err:  # e.g. an episode shorter than the horizon
            self.logger.write(
                f"warning: the run's parts could not be timed ({type(err).__name__}: {err}); "
                "the time left is learned as the run goes"
            )
            return {}, ""
        finally:
            set_rng_state(rng)
        timed = ", ".join(f"{k} {v * 1e3:.3g} ms" for k, v in parts.items())
        took = duration(time.perf_counter() - started)
        return parts, f"timed in {took}: {timed}"

    def _scratch_buffer(self, cfg: DictConfig, episode: dict[str, torch.Tensor]):
        """The timing probe's replay: one random episode."""
        buffer = Buffer.from_cfg(cfg, capacity=len(episode["action"]) + 1)
        buffer.add(episode)
        return buffer

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
        self._draw_curve()
        return True

    def _draw_curve(self) -> None:
        """Redraws run_dir/curve.png from the CSV logs; a failure warns once, never stops."""
        if not self._can_plot:
            return
        run_dir = self.logger.run_dir
        try:
            plot_runs([run_dir], self._reference, out=run_dir / "curve.png", panel=self.curve_panel)
        except Exception as err:
            self.logger.write(f"warning: curve.png disabled ({type(err).__name__}: {err})")
            self._can_plot = False

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

    def _last_good(self) -> str:
        if self._last_checkpoint is None:
            return "no checkpoint was written"
        return f"the last good checkpoint is {self._last_checkpoint}"

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
            "log_rows": {p.name: _data_rows(p) for p in self.logger.run_dir.glob("*.csv")},
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
        self.buffer.load_state_dict(resize_buffer_state(state, self.buffer.capacity))

    def _restore_env(self, state: dict) -> None:
        self.env.reset()  # spends a first-reset seeding (Gymnasium) so restored states stick
        set_env_rng_state(self.env, state["env_rng"])

    def resume(self, path: Path, payload: dict) -> None:
        """Continues from a checkpoint: state in memory, CSV logs cut back to its rows."""
        with checkpoint.reading(path):
            self.load_state_dict(payload)
        for csv_path in self.logger.run_dir.glob("*.csv"):
            _trim_csv(csv_path, payload["log_rows"].get(csv_path.name, 0))
        self._last_checkpoint, self._saved_at = path, (self._step, self._updates)
        self.logger.write(f"resuming from {path} at step {self._step:,}")

    def save_checkpoint(self, state: dict | None = None) -> Path | None:
        """Writes a checkpoint of `state` (default: now), unless the latest update failed."""
        if not self.cfg.save_agent:
            return None
        if self._nonfinite_streak:
            self.logger.write(
                f"warning: no checkpoint at step {self._step}: the last update had a "
                f"non-finite loss; {self._last_good()}"
            )
            return None
        state = state or self.state_dict()
        run_dir, keep = self.logger.run_dir, int(self.cfg.keep_checkpoints)
        path = checkpoint.save_step(run_dir, state["step"], state, self.cfg, keep)
        if self.cfg.save_buffer and self.buffer is not None:
            self.buffer.save(run_dir / "buffer.pt")
        self._last_checkpoint, self._saved_at = path, (self._step, self._updates)
        return path

    # ------------------------------------------------------------ stopping on a signal
    @contextmanager
    def _catch_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM only set a flag: the loop ends its step, saves and returns.

        The first signal puts the previous handlers back, so a second one stops at once.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) or signal.SIG_DFL for s in STOP_SIGNALS}

        def handle(signum: int, frame: object) -> None:
            self._signal = signum
            for s, handler in previous.items():
                signal.signal(s, handler)

        for s in STOP_SIGNALS:
            signal.signal(s, handle)
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _stop_on_signal(self) -> None:
        """Saves where training stopped (before an evaluation cut short) and says how to resume."""
        name = signal.Signals(self._signal).name
        state = self._snapshot or self.state_dict()
        step = state["step"]
        if step == 0:
            self.logger.write(f"{name} before the first step: nothing to save")
            return
        unchanged = self._saved_at == (self._step, self._updates)  # e.g. saved at this step
        path = self._last_checkpoint if unchanged else self.save_checkpoint(state)
        if path is None:
            self.logger.write(f"{name} at step {step:,}: no checkpoint saved; {self._last_good()}")
            return
        self.logger.write(
            f"{name} at step {step:,}: checkpoint {path}\n"
            f"resume with: {checkpoint.resume_command(self.logger.run_dir)}"
        )


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


def stack_episode(episode: dict[str, list]) -> dict[str, torch.Tensor]:
    """An episode's per-step lists as the tensors `Buffer.add` takes."""
    return {
        "obs": torch.stack(episode["obs"]),
        "action": torch.stack(episode["action"]),
        "reward": torch.tensor(episode["reward"], dtype=torch.float32),
        "terminated": torch.tensor(episode["terminated"], dtype=torch.float32),
    }


def seconds_per_call(fn, repeats: int) -> float:
    """Mean seconds of `fn(1..repeats)` after one warm-up call `fn(0)`."""
    fn(0)
    started = time.perf_counter()
    for i in range(1, repeats + 1):
        fn(i)
    return (time.perf_counter() - started) / repeats


def published_curves(cfg: DictConfig) -> Path | None:
    """`reference_dir` when it holds a published TD-MPC2 curve of the task, for curve.png."""
    if not cfg.get("reference_dir"):
        return None
    reference = Path(str(cfg.reference_dir)).expanduser()
    return reference if reference_curve(reference, "tdmpc2", str(cfg.task)) else None


def resize_buffer_state(state: dict, capacity: int) -> dict:
    """A saved replay buffer's state for a ring of `capacity` slots (a resume with other steps).

    Slots are put in write order (oldest first), so an episode that wrapped around the
    old ring's end stays contiguous, and the write pointer follows the newest slot.
    """
    if state["capacity"] == capacity:
        return state
    filled, ptr = int(state["filled"]), int(state["ptr"])
    if filled > capacity:
        raise ValueError(f"the replay buffer holds {filled} slots, more than {capacity} now")
    order = (torch.arange(filled) + ptr) % max(filled, 1)
    resized = {**state, "capacity": capacity, "ptr": filled % capacity}
    for name in STORAGE:
        old = state[name]
        new = torch.full(
            (capacity, *old.shape[1:]), -1 if name == "episode" else 0, dtype=old.dtype
        )
        new[:filled] = old[order]
        resized[name] = new
    return resized


def _read_csv(path: Path) -> list[list[str]]:
    """A CSV log's lines, header included (an empty list for an empty file)."""
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _data_rows(path: Path) -> int:
    return max(len(_read_csv(path)) - 1, 0)


def _trim_csv(path: Path, rows: int) -> None:
    """Keeps the header and the first `rows` rows: those written before the checkpoint."""
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
