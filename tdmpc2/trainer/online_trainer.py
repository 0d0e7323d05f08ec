"""Online training: collect with the planner, learn from replay, one update per step."""

from __future__ import annotations

import time

import torch
from omegaconf import DictConfig

from tdmpc2.agent import TDMPC2
from tdmpc2.common.buffer import Buffer, stack_episode
from tdmpc2.common.logger import Logger
from tdmpc2.common.seed import env_rng_state, set_env_rng_state
from tdmpc2.trainer.base import Trainer


class OnlineTrainer(Trainer):
    """Upstream TD-MPC2's loop: random seeding steps, a burst of `seed_steps` updates
    once their data is in the replay, then one update per step.

    Runs exactly `steps` environment steps; evaluates at the start of the first
    episode after every `eval_freq` steps and once more at the end. A checkpoint taken
    between two steps resumes exactly (the running episode is replayed into the
    environment from its start), and so does one taken inside the pretraining burst,
    which a stop signal pauses between two updates.
    """

    def __init__(
        self, cfg: DictConfig, env, agent: TDMPC2, buffer: Buffer | None, logger: Logger
    ) -> None:
        super().__init__(cfg, env, agent, buffer, logger)
        self._episode: dict[str, list] | None = None  # the running episode's transitions
        self._episode_rng: dict | None = None  # environment RNG states before its reset
        self._episode_started = 0.0  # its wall-clock start, for steps per second
        self._next_eval = 0
        self._pretrained = False  # the pretraining burst has begun
        self._pretrain_left = 0  # its updates still to run

    def train(self) -> None:
        """Evaluate, collect, update, log: one environment step per turn."""
        cfg = self.cfg
        with self._running():
            if self._pretrain_left:  # resumed inside the pretraining burst: its step first
                self._pretrain()
                self._save_every(cfg.save_freq)
            while self._step < cfg.steps and self._signal is None:
                if self._episode is None:  # between episodes: evaluate when due, then reset
                    if self._step >= self._next_eval:
                        if not self._evaluate():
                            break
                        self._next_eval = self._step + cfg.eval_freq
                    self._new_episode()
                self._collect()  # one step: random while seeding, then the planner's
                self._learn()  # the pretraining burst once seed data is in, then one update
                self._save_every(cfg.save_freq)
            if self._signal is None:
                self._finish()
        if self._signal is not None:
            self._stop_on_signal()

    def _new_episode(self) -> None:
        self._episode_rng = env_rng_state(self.env)
        obs = self.env.reset()
        self._episode = {"obs": [obs], "action": [], "reward": [], "terminated": []}
        self._episode_started = time.time()

    def _collect(self) -> None:
        """One environment step of the running episode; when it ends, the episode goes to
        the replay and its row to train.csv."""
        phase = "seeding" if self.seeding else "training"
        episode = self._episode
        action = self.act(episode["obs"][-1], len(episode["action"]), eval_mode=False)
        obs, reward, done, info = self.env.step(action)
        episode["obs"].append(obs)
        episode["action"].append(action)
        episode["reward"].append(reward)
        episode["terminated"].append(bool(info.get("terminated", False)))
        self.after_env_step(obs, reward, done, info)
        self._step += 1
        if done:
            metrics = self._close_episode(episode, self._episode_started)
            self.logger.log({**metrics, **self._pop_means()}, "train")
            self._episode = None
        self._tick(phase)

    def after_env_step(self, obs: torch.Tensor, reward: float, done: bool, info: dict) -> None:
        """Called after every training step with what the environment returned; a no-op in
        flat TD-MPC2, which learns from the stored episode alone. Subclasses that score
        their acting step by step (e.g. against a target they chose) override it."""

    def _close_episode(self, episode: dict[str, list], started: float) -> dict[str, float]:
        """Stores the episode in the buffer and returns its train metrics."""
        n = len(episode["action"])
        self.buffer.add(stack_episode(episode))
        self._ep_idx += 1
        return {
            **self.common_metrics(),
            "episode_reward": float(sum(episode["reward"])),
            "episode_length": n,
            "steps_per_s": n / max(time.time() - started, 1e-9),
        }

    def _learn(self) -> None:
        """A step's updates: none until seed data is in the replay (`seed_steps` steps and
        one whole episode), then the pretraining burst of `seed_steps` updates, then one."""
        seed_steps = int(self.cfg.seed_steps)
        if self._pretrained:
            self._accumulate(self.update(1))
        elif self._step >= seed_steps and len(self.buffer) > 0:
            self.logger.write(f"pretraining: {seed_steps} updates on the seed data")
            self._pretrained, self._pretrain_left = True, seed_steps
            self._pretrain()

    def _pretrain(self) -> None:
        """Runs what is left of the pretraining burst; a signal pauses it between updates."""
        total = int(self.cfg.seed_steps)
        while self._pretrain_left and self._signal is None:
            self._accumulate(self.update(1))
            self._pretrain_left -= 1
            self.progress.pretraining(total - self._pretrain_left, total)
            self._tick("pretraining")
        self.progress.status("")

    def _save_every(self, freq: int) -> None:
        """A checkpoint when the step count is a multiple of `freq` (0: never here) and the
        step's updates are all done."""
        if freq and self._step % freq == 0 and not self._pretrain_left:
            self.save_checkpoint()

    def _finish(self) -> None:
        """The partial last episode goes to replay; a last evaluation and checkpoint."""
        if self._episode and self._episode["action"]:
            self._close_episode(self._episode, self._episode_started)
        self._episode = None
        if not self._evaluate():
            return
        self.finished = True
        path = self.save_checkpoint()
        self.logger.write(f"finished {self._step} steps; run directory: {self.logger.run_dir}")
        if path:
            self.logger.write(f"checkpoint: {path}")
        self._note(self.curve.summary())

    def work_left(self) -> dict[str, int]:
        cfg = self.cfg
        steps, seed = int(cfg.steps), int(cfg.seed_steps)
        if self.finished:
            return {}
        pretrain = self._pretrain_left if self._pretrained else seed * (steps >= seed)
        evals = len(range(self._next_eval, steps, int(cfg.eval_freq))) + 1  # + the last one
        eval_steps = evals * int(cfg.eval_episodes) * int(cfg.episode_length) - self._eval_done
        return {
            "seeding": max(0, min(seed, steps) - self._step),
            "pretraining": pretrain,
            "training": max(0, steps - max(self._step, seed)),
            "evaluation": max(0, eval_steps),
        }

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        episode = self._episode
        return {
            **super().state_dict(),
            "loop": {
                "episode": None if episode is None else {k: list(v) for k, v in episode.items()},
                "episode_rng": self._episode_rng,
                "episode_time": time.time() - self._episode_started,
                "next_eval": self._next_eval,
                "pretrained": self._pretrained,
                "pretrain_left": self._pretrain_left,
            },
        }

    def load_state_dict(self, state: dict) -> None:
        loop = state["loop"]
        self._episode, self._episode_rng = loop["episode"], loop["episode_rng"]
        self._episode_started = time.time() - loop["episode_time"]
        self._next_eval = int(loop["next_eval"])
        self._pretrained, self._pretrain_left = loop["pretrained"], int(loop["pretrain_left"])
        super().load_state_dict(state)

    def _restore_env(self, state: dict) -> None:
        """Replays the running episode's actions from its start, then sets the RNG states."""
        super()._restore_env(state)
        if self._episode is None:
            return
        set_env_rng_state(self.env, self._episode_rng)
        obs = self.env.reset()
        for action in self._episode["action"]:
            obs = self.env.step(action)[0]
        set_env_rng_state(self.env, state["env_rng"])
        if not torch.equal(obs, self._episode["obs"][-1]):
            self.logger.write(
                "warning: the environment replayed the running episode differently; "
                "the resumed run will not match an uninterrupted one exactly"
            )
