"""Offline training from replay files saved by online runs."""

from __future__ import annotations

import time

from tdmpc2.trainer.base import Trainer


class OfflineTrainer(Trainer):
    """`steps` gradient updates on a fixed replay buffer, with periodic evaluation."""

    log_freq = 500

    def train(self) -> None:
        cfg = self.cfg
        bar = self.logger.progress(total=cfg.steps, initial=self._step)
        row_started, row_step = time.time(), self._step
        with self._catch_signals():
            while self._step < cfg.steps and self._signal is None:
                if self._step % cfg.eval_freq == 0 and not self._evaluate():
                    break
                self._accumulate(self._agent_update())
                self._step += 1
                bar.update(1)
                if self._step % self.log_freq == 0 or self._step == cfg.steps:
                    rate = (self._step - row_step) / max(time.time() - row_started, 1e-9)
                    row = {**self.common_metrics(), **self._pop_means(), "steps_per_s": rate}
                    self.logger.log(row, "train")
                    row_started, row_step = time.time(), self._step
                if cfg.save_freq and self._step % cfg.save_freq == 0:
                    self.save_checkpoint()
            bar.close()
            evaluated = self._signal is None and self._evaluate()
        if not evaluated:
            self._stop_on_signal()
            return
        self.finished = True
        path = self.save_checkpoint()
        self.logger.write(f"finished {self._step} updates; checkpoint: {path}")

    # ------------------------------------------------------------ checkpoints
    def _buffer_state(self) -> dict:
        """Only the sampling generator: the data is the replay file the run started from."""
        return {"generator": self.buffer.state_dict()["generator"]}

    def _load_buffer_state(self, state: dict) -> None:
        self.buffer.load_state_dict({**self.buffer.state_dict(), "generator": state["generator"]})
