"""Online training: collect with the planner, learn from replay, one update per step."""

from __future__ import annotations

import time

import torch

from tdmpc2.trainer.base import Trainer


class OnlineTrainer(Trainer):
    """Random seeding steps, a burst of pretraining updates, then act-and-update.

    Runs exactly `steps` environment steps; evaluates at the start of the first
    episode after every `eval_freq` steps and once more at the end.
    """

    def on_episode_start(self) -> None:
        """Hook for subclasses (the hierarchy resets its goal here)."""

    def after_env_step(self, obs: torch.Tensor, reward: float, done: bool, info: dict) -> None:
        """Hook for subclasses that need every transition (the hierarchy sums rewards)."""

    def update(self, num_updates: int) -> dict[str, torch.Tensor]:
        """World-model updates; subclasses add their own modules' updates."""
        metrics: dict[str, torch.Tensor] = {}
        for _ in range(num_updates):
            metrics = self.agent.update(self.buffer)
        return metrics

    def _new_episode(self) -> tuple[torch.Tensor, dict[str, list]]:
        obs = self.env.reset()
        self.on_episode_start()
        return obs, {"obs": [obs], "action": [], "reward": [], "terminated": []}

    def _close_episode(self, episode: dict[str, list], started: float) -> dict[str, float]:
        """Stores the episode in the buffer and returns its train metrics."""
        n = len(episode["action"])
        self.buffer.add(
            {
                "obs": torch.stack(episode["obs"]),
                "action": torch.stack(episode["action"]),
                "reward": torch.tensor(episode["reward"], dtype=torch.float32),
                "terminated": torch.tensor(episode["terminated"], dtype=torch.float32),
            }
        )
        self._ep_idx += 1
        return {
            **self.common_metrics(),
            "episode_reward": float(sum(episode["reward"])),
            "episode_length": n,
            "steps_per_s": n / max(time.time() - started, 1e-9),
        }

    def _evaluate(self) -> None:
        self.logger.log({**self.common_metrics(), **self.eval(video=self.cfg.save_video)}, "eval")
        self._last_eval = self._step

    def train(self) -> None:
        cfg = self.cfg
        seed_steps = int(cfg.seed_steps)
        bar = self.logger.progress(total=cfg.steps, initial=self._step)
        sums: dict[str, torch.Tensor] = {}
        n_updates, next_eval, self._last_eval = 0, self._step, -1
        self._pretrained = self._step > seed_steps
        episode: dict[str, list] | None = None
        while self._step < cfg.steps:
            if episode is None:
                if self._step >= next_eval:
                    self._evaluate()
                    next_eval = self._step + cfg.eval_freq
                obs, episode = self._new_episode()
                started = time.time()
            t = len(episode["action"])
            action = self.act(obs, t, eval_mode=False)
            obs, reward, done, info = self.env.step(action)
            episode["obs"].append(obs)
            episode["action"].append(action)
            episode["reward"].append(reward)
            episode["terminated"].append(bool(info.get("terminated", False)))
            self.after_env_step(obs, reward, done, info)
            self._step += 1
            bar.update(1)

            if done:
                metrics = self._close_episode(episode, started)
                means = {k: float(v) / n_updates for k, v in sums.items()} if n_updates else {}
                self.logger.log({**metrics, **means}, "train")
                sums, n_updates = {}, 0
                episode = None

            if self._step >= seed_steps and len(self.buffer) > 0:
                pretrain = not self._pretrained
                if pretrain:
                    self.logger.write(f"pretraining: {seed_steps} updates on the seed data")
                    self._pretrained = True
                for k, v in self.update(seed_steps if pretrain else 1).items():
                    sums[k] = sums.get(k, 0) + v
                n_updates += 1
            if cfg.save_freq and self._step % cfg.save_freq == 0:
                self.save_checkpoint()
        bar.close()
        if episode and episode["action"]:
            self._close_episode(episode, started)  # a partial last episode still feeds replay
        if self._last_eval != self._step:
            self._evaluate()
        path = self.save_checkpoint()
        self.logger.write(f"finished {self._step} steps; run directory: {self.logger.run_dir}")
        if path:
            self.logger.write(f"checkpoint: {path}")
