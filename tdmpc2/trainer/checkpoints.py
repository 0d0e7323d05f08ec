"""Checkpoints as a training run writes and resumes them: between steps and at the end,
never right after a failed update, and on a stop signal the state to resume from (the
one before an evaluation the signal cut short) with the command that resumes it."""

from __future__ import annotations

import signal
from pathlib import Path

from omegaconf import DictConfig

from tdmpc2.common import checkpoint
from tdmpc2.common.buffer import Buffer
from tdmpc2.common.logger import Logger
from tdmpc2.common.multitask_buffer import MultitaskBuffer


class Checkpoints:
    """Mixed into `Trainer`: saves and restores its `state_dict` (the trainer's and its
    subclasses' state) and remembers the last good file."""

    cfg: DictConfig
    logger: Logger
    buffer: Buffer | MultitaskBuffer | None
    _step: int
    _updates: int
    _nonfinite_streak: int
    _signal: int | None
    _last_checkpoint: Path | None = None
    _saved_at: tuple[int, int] | None = None  # (step, updates) of the last save or resume
    _snapshot: dict | None = None  # the state before an evaluation a signal cut short

    def resume(self, path: Path, payload: dict) -> None:
        """Continues from a checkpoint: state in memory, CSV logs cut back to its rows."""
        with checkpoint.reading(path):
            self.load_state_dict(payload)
        self.logger.trim(payload["log_rows"])
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

    def _last_good(self) -> str:
        if self._last_checkpoint is None:
            return "no checkpoint was written"
        return f"the last good checkpoint is {self._last_checkpoint}"

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
