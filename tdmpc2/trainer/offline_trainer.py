"""Offline training from replay files saved by online runs."""

from __future__ import annotations

import time

import torch

from tdmpc2.trainer.base import Trainer


class OfflineTrainer(Trainer):
    """`steps` gradient updates on a fixed replay buffer, with periodic evaluation."""

    log_freq = 500

    def train(self) -> None:
        cfg = self.cfg
        bar = self.logger.progress(total=cfg.steps, initial=self._step)
        sums: dict[str, torch.Tensor] = {}
        n, started = 0, time.time()
        while self._step < cfg.steps:
            if self._step % cfg.eval_freq == 0:
                self.logger.log({**self.common_metrics(), **self.eval()}, "eval")
            for k, v in self.agent.update(self.buffer).items():
                sums[k] = sums.get(k, 0) + v
            n += 1
            self._step += 1
            bar.update(1)
            if self._step % self.log_freq == 0 or self._step == cfg.steps:
                rate = n / max(time.time() - started, 1e-9)
                means = {k: float(v) / n for k, v in sums.items()}
                self.logger.log({**self.common_metrics(), **means, "steps_per_s": rate}, "train")
                sums, n, started = {}, 0, time.time()
            if cfg.save_freq and self._step % cfg.save_freq == 0:
                self.save_checkpoint()
        bar.close()
        self.logger.log({**self.common_metrics(), **self.eval()}, "eval")
        path = self.save_checkpoint()
        self.logger.write(f"finished {self._step} updates; checkpoint: {path}")
