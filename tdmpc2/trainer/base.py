"""What every trainer shares: evaluation rollouts and checkpoints."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from tdmpc2.agent import TDMPC2
from tdmpc2.common import checkpoint
from tdmpc2.common.buffer import Buffer
from tdmpc2.common.logger import Logger
from tdmpc2.common.seed import rng_state, set_rng_state


class Trainer:
    """Owns the loop around an agent; subclasses decide where the data comes from."""

    kind = "tdmpc2"

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

    def train(self) -> None:
        raise NotImplementedError

    @property
    def seeding(self) -> bool:
        """True while training acts randomly to fill the buffer."""
        return self._step < int(self.cfg.seed_steps)

    def act(self, obs: torch.Tensor, t: int, eval_mode: bool) -> torch.Tensor:
        """The acting policy at step `t` of an episode; random while seeding."""
        if not eval_mode and self.seeding:
            return self.env.rand_act()
        return self.agent.act(obs, t0=t == 0, eval_mode=eval_mode)

    def eval(self, episodes: int | None = None, video: bool = False) -> dict[str, float]:
        """Mean return over evaluation episodes with the deterministic planner."""
        returns, successes, frames = [], [], []
        for i in range(episodes or self.cfg.eval_episodes):
            obs, done, ep_return, t = self.env.reset(), False, 0.0, 0
            record = video and i == 0
            if record:
                frames = self._frame(frames)
            while not done:
                action = self.act(obs, t, eval_mode=True)
                obs, reward, done, info = self.env.step(action)
                ep_return += reward
                t += 1
                if record and frames is not None:
                    frames = self._frame(frames)
            returns.append(ep_return)
            successes.append(info.get("success", 0.0))
        if video and frames:
            self.logger.save_video(frames, self._step)
        return {
            "episode_reward": float(np.mean(returns)),
            "episode_success": float(np.mean(successes)),
        }

    def _frame(self, frames: list | None) -> list | None:
        """Appends a rendered frame; on the first failure warns once and stops recording."""
        if frames is None:
            return None
        try:
            frames.append(self.env.render())
        except Exception as err:  # no OpenGL context, missing EGL/OSMesa, ...
            warnings.warn(
                f"video disabled: cannot render ({type(err).__name__}: {err}); "
                "set MUJOCO_GL=egl or MUJOCO_GL=osmesa with a renderer installed",
                stacklevel=2,
            )
            return None
        return frames

    def common_metrics(self) -> dict[str, float]:
        elapsed = time.time() - self._start_time
        return {"step": self._step, "episode": self._ep_idx, "elapsed_time": elapsed}

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {
            "kind": self.kind,
            "agent": self.agent.state_dict(),
            "step": self._step,
            "episode": self._ep_idx,
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind", "tdmpc2") != self.kind:
            raise checkpoint.CheckpointError(
                f"checkpoint holds a {state.get('kind')} agent, this run is {self.kind}"
            )
        self.agent.load_state_dict(state["agent"])
        self._step = state["step"]
        self._ep_idx = state["episode"]
        set_rng_state(state["rng"])

    def save_checkpoint(self) -> Path | None:
        if not self.cfg.save_agent:
            return None
        path = checkpoint.save(self.logger.run_dir / "checkpoint.pt", self.state_dict(), self.cfg)
        if self.cfg.save_buffer and self.buffer is not None:
            self.buffer.save(self.logger.run_dir / "buffer.pt")
        return path
