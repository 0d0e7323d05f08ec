"""The Director hierarchy (common/hierarchy.py) over either training loop: the glue that
lets a trainer act, learn, log and checkpoint with it."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from tdmpc2.agent import TDMPC2
from tdmpc2.common.buffer import Buffer
from tdmpc2.common.curves import Panel
from tdmpc2.common.hierarchy import Hierarchy
from tdmpc2.common.logger import Logger
from tdmpc2.common.multitask_buffer import MultitaskBuffer
from tdmpc2.trainer.base import Trainer
from tdmpc2.trainer.offline_trainer import OfflineTrainer
from tdmpc2.trainer.online_trainer import OnlineTrainer

# The goal metrics of train.csv under the returns in curve.png (and bench/plot.py): code
# perplexity on the left axis (1 to the number of classes), shares on the right.
GOAL_PANEL = Panel(
    metrics={
        "goal/perplexity": ("code perplexity", "-"),
        "goal/similarity": ("goal similarity", "--"),
        "goal/reached": ("goals reached", ":"),
    },
    left=("goal/perplexity",),
    left_label="code perplexity",
    right_label="goal similarity, share reached",
)


class HierarchyTrainer(Trainer):
    """Mixed in ahead of a training loop (`DirectorTrainer`, `OfflineDirectorTrainer`): the
    world model and the hierarchy (`self.hierarchy`) trained together. Acting, learning
    and the checkpoint entries are the hierarchy's own; this adds what the loop knows:
    the seeding phase, the replay, the step, the acting task and the metric rows."""

    kind = "director"
    curve_panel = GOAL_PANEL
    control_keys = Hierarchy.control_keys
    extension = Hierarchy

    def __init__(
        self,
        cfg: DictConfig,
        env,
        agent: TDMPC2,
        buffer: Buffer | MultitaskBuffer | None,
        logger: Logger,
    ) -> None:
        super().__init__(cfg, env, agent, buffer, logger)
        self.hierarchy = Hierarchy(cfg, agent)

    def act(self, obs: torch.Tensor, t: int, eval_mode: bool) -> torch.Tensor:
        return self.hierarchy.act(
            obs,
            t,
            eval_mode,
            task=self.acting_task,
            replay=self.buffer,
            random_act=None if eval_mode else self.env.rand_act,
            seeding=not eval_mode and self.seeding,
        )

    def eval(self, episodes: int | None = None, video: bool = False) -> dict[str, float]:
        """Adds the goal reach of the evaluation's intervals."""
        return {**super().eval(episodes, video), **self.hierarchy.eval_metrics()}

    def update(self, num_updates: int) -> dict[str, torch.Tensor]:
        metrics: dict = {}
        for _ in range(num_updates):
            metrics = {f"worker/{k}": v for k, v in self._agent_update().items()}
            metrics.update(self.hierarchy.update(self.buffer, self._step))
        return metrics

    def state_dict(self) -> dict:
        return {**super().state_dict(), **self.hierarchy.state_dict()}

    def load_models(self, state: dict) -> None:
        super().load_models(state)
        self.hierarchy.load_models(state)

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)  # the models through load_models
        self.hierarchy.load_state_dict(state, models=False)


class DirectorTrainer(HierarchyTrainer, OnlineTrainer):
    """The hierarchy trained online: it acts in training too, so each training episode
    logs the goal reach of its intervals, the last one closed when the episode ends."""

    def after_env_step(self, obs: torch.Tensor, reward: float, done: bool, info: dict) -> None:
        if done:
            self.hierarchy.end_episode(obs, self.acting_task)

    def _close_episode(self, episode: dict[str, list], started: float) -> dict[str, float]:
        return {**super()._close_episode(episode, started), **self.hierarchy.episode_metrics()}


class OfflineDirectorTrainer(HierarchyTrainer, OfflineTrainer):
    """The hierarchy trained from saved replay (`data_dir`; the way a task set trains):
    each of `steps` updates trains the world model, then the hierarchy; evaluations
    act with goals on every task of a set."""
