"""Offline training from replay files saved by online runs."""

from __future__ import annotations

import time
from typing import ClassVar

import torch
from omegaconf import DictConfig

from tdmpc2.common.evaluation import each_task
from tdmpc2.common.multitask_buffer import MultitaskBuffer
from tdmpc2.trainer.base import Trainer


class OfflineTrainer(Trainer):
    """`steps` gradient updates on a fixed replay buffer, with periodic evaluation."""

    log_freq = 500
    phase_costs: ClassVar[dict[str, tuple[str, ...]]] = {
        "training": ("update",),
        "evaluation": ("env", "act"),
    }

    def train(self) -> None:
        cfg = self.cfg
        row_started, row_step = time.time(), self._step
        with self._running():
            while self._step < cfg.steps and self._signal is None:
                if self._step % cfg.eval_freq == 0 and not self._evaluate():
                    break
                self._accumulate(self.update(1))
                self._step += 1
                self._tick("training")
                if self._step % self.log_freq == 0 or self._step == cfg.steps:
                    rate = (self._step - row_step) / max(time.time() - row_started, 1e-9)
                    row = {**self.common_metrics(), **self._pop_means(), "steps_per_s": rate}
                    self.logger.log(row, "train")
                    row_started, row_step = time.time(), self._step
                if cfg.save_freq and self._step % cfg.save_freq == 0:
                    self.save_checkpoint()
            evaluated = self._signal is None and self._evaluate()
        if not evaluated:
            self._stop_on_signal()
            return
        self.finished = True
        path = self.save_checkpoint()
        self.logger.write(f"finished {self._step} updates; checkpoint: {path}")

    def eval(self, episodes: int | None = None, video: bool = False) -> dict[str, float]:
        """Multi-task: every task of the set in turn, `episode_reward+<task>` for each and
        their mean as `episode_reward` (the same for success); video of the first task."""
        if not self.cfg.multitask:
            return super().eval(episodes, video)
        one = super().eval
        return each_task(self.cfg.tasks, self.env, lambda first: one(episodes, video and first))

    def work_left(self) -> dict[str, int]:
        cfg = self.cfg
        steps, freq = int(cfg.steps), int(cfg.eval_freq)
        if self.finished:
            return {}
        evals = len(range(-(-self._step // freq) * freq, steps, freq)) + 1  # + the last one
        lengths = cfg.episode_lengths if cfg.multitask else [cfg.episode_length]
        eval_steps = evals * int(cfg.eval_episodes) * sum(lengths) - self._eval_done
        return {"training": steps - self._step, "evaluation": max(0, eval_steps)}

    def _scratch_buffer(self, cfg: DictConfig, episode: dict[str, torch.Tensor]):
        """Multi-task: the random episode (padded by the set's environment) as task 0's data."""
        buffer = super()._scratch_buffer(cfg, episode)
        if not cfg.multitask:
            return buffer
        b = self.buffer
        return MultitaskBuffer([(0, buffer)], b.obs_dim, b.action_dim, b.batch_size, b.device)

    # ------------------------------------------------------------ checkpoints
    def _buffer_state(self) -> dict:
        """Only the sampling generator: the data is the replay file the run started from."""
        return {"generator": self.buffer.state_dict()["generator"]}

    def _load_buffer_state(self, state: dict) -> None:
        self.buffer.load_state_dict({**self.buffer.state_dict(), "generator": state["generator"]})
