"""Replay of a task set for offline multi-task training.

`load_replays` reads every replay file under `data_dir`: `buffer.pt` files written by this
project's online runs (`save_buffer=true`), and files in the format the public TD-MPC2
mt30/mt80 data are published in: a mapping (a pickled TensorDict there) of `obs`
[E, L+1, obs], `action` [E, L+1, action], `reward` [E, L+1] and `task` [E, L+1], one row
per episode, where entry t holds the observation at step t and the action and reward that
led to it (entry 0 has none) and `task` indexes the task set in its published order.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from tdmpc2.common.buffer import Buffer
from tdmpc2.common.checkpoint import one_line

PUBLIC_KEYS = ("obs", "action", "reward", "task")


class MultitaskBuffer:
    """Batches drawn uniformly over the transitions of several single-task buffers.

    Observations and actions are zero-padded to the set's largest; `task` holds each
    row's task index [B]. Otherwise a batch is what `Buffer.sample` returns.
    """

    def __init__(
        self,
        parts: list[tuple[int, Buffer]],
        obs_dim: int,
        action_dim: int,
        batch_size: int,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        self.parts = parts
        self.obs_dim, self.action_dim, self.batch_size = obs_dim, action_dim, batch_size
        self.device = torch.device(device)
        self._weights = torch.tensor([float(len(buffer)) for _, buffer in parts])
        self._generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return sum(len(buffer) for _, buffer in self.parts)

    def sample(self, batch_size: int | None = None) -> dict[str, torch.Tensor]:
        """Subsequences as `Buffer.sample` returns them ([steps, B, ...]), plus `task` [B]."""
        return self.draw(batch_size, lambda buffer, n: buffer.sample(n), dim=1)

    def draw(
        self,
        batch_size: int | None,
        draw: Callable[[Buffer, int], dict[str, torch.Tensor]],
        dim: int,
    ) -> dict[str, torch.Tensor]:
        """`draw(part, count)` from each part, the counts drawn in proportion to the parts'
        sizes; observations (every key ending in `obs`) and actions padded to the set's
        widest, the pieces joined along the batch `dim`. Public so that other ways of
        sampling a single-task `Buffer` get their multi-task version from it."""
        n = batch_size or self.batch_size
        picks = torch.multinomial(self._weights, n, replacement=True, generator=self._generator)
        counts = torch.bincount(picks, minlength=len(self.parts)).tolist()
        pieces, tasks = [], []
        for count, (task, buffer) in zip(counts, self.parts, strict=True):
            if count:
                pieces.append(draw(buffer, count))
                tasks.append(torch.full((count,), task, dtype=torch.long))
        batch = {}
        for key in pieces[0]:
            parts = [piece[key] for piece in pieces]
            width = self.action_dim if key == "action" else self.obs_dim
            if key == "action" or key.endswith("obs"):
                parts = [F.pad(x, (0, width - x.shape[-1])) for x in parts]
            batch[key] = torch.cat(parts, dim=dim)
        batch["task"] = torch.cat(tasks).to(self.device)
        return batch

    def state_dict(self) -> dict:
        """The sampling generators: the data are the replay files the run started from."""
        parts = [buffer.state_dict()["generator"] for _, buffer in self.parts]
        return {"generator": [self._generator.get_state(), *parts]}

    def load_state_dict(self, state: dict) -> None:
        own, *parts = state["generator"]
        self._generator.set_state(own)
        for (_, buffer), generator in zip(self.parts, parts, strict=True):
            buffer.load_state_dict({**buffer.state_dict(), "generator": generator})


def _read(path: Path) -> object:
    """A replay file's contents. Ours load as plain tensors; the published data are pickled
    TensorDicts, which only a full unpickle (and the tensordict package) can read."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(f"{path}: not a readable replay file ({one_line(err)})") from err


def load_replays(cfg: DictConfig) -> MultitaskBuffer:
    """Every replay file under `cfg.data_dir` (checkpoints aside), one buffer per file and
    task; each task of the set must have data, and every file must belong to the set."""
    root = Path(str(cfg.data_dir)).expanduser()
    files = [root] if root.is_file() else sorted(root.rglob("*.pt"))
    files = [f for f in files if not f.name.startswith("checkpoint")]
    if not files:
        raise ValueError(
            f"data_dir: no replay files (*.pt) at {root}; online runs write them with "
            "save_buffer=true"
        )
    parts: list[tuple[int, Buffer]] = []
    for path in files:
        data = _read(path)
        if isinstance(data, dict) and "format_version" in data:
            parts.append(_own_replay(path, data, cfg))
        elif hasattr(data, "keys") and set(PUBLIC_KEYS) <= set(data.keys()):
            parts += _public_replay(path, data, cfg, seed=int(cfg.seed) + len(parts))
        else:
            raise ValueError(
                f"{path}: neither a replay buffer of this project nor a file with the keys "
                f"{', '.join(PUBLIC_KEYS)} of the published TD-MPC2 data"
            )
    missing = sorted(set(cfg.tasks) - {cfg.tasks[task] for task, _ in parts})
    if missing:
        raise ValueError(f"data_dir: {root} holds no replay of {', '.join(missing)}")
    obs_dim, action_dim = cfg.obs_shape["state"][0], cfg.action_dim
    return MultitaskBuffer(parts, obs_dim, action_dim, cfg.batch_size, cfg.device, cfg.seed)


def _own_replay(path: Path, state: dict, cfg: DictConfig) -> tuple[int, Buffer]:
    """A `buffer.pt` of an online run; its task is recorded in it (or, in files written
    before it was, in the run's config.yaml beside it)."""
    try:
        buffer = Buffer.from_state(state, cfg.device, cfg.horizon, cfg.batch_size)
    except Exception as err:
        raise ValueError(f"{path}: not a usable replay buffer ({one_line(err)})") from err
    name = buffer.task
    if name is None and (path.parent / "config.yaml").is_file():
        name = OmegaConf.load(path.parent / "config.yaml").get("task")
    if name not in cfg.tasks:
        raise ValueError(
            f"{path}: a replay of task {name}, which is not in the task set "
            f"({', '.join(cfg.tasks)})"
        )
    task = list(cfg.tasks).index(name)
    shapes = (buffer.obs_shape[0], buffer.action_dim)
    expected = (cfg.obs_dims[task], cfg.action_dims[task])
    if shapes != expected:
        raise ValueError(
            f"{path}: {name} replay with (obs, action) dims {shapes}, its environment has "
            f"{expected}"
        )
    return task, buffer


def _public_replay(path: Path, data, cfg: DictConfig, seed: int) -> list[tuple[int, Buffer]]:
    """Episodes in the published mt30/mt80 layout, one buffer per task they hold."""
    obs, action = data["obs"].float(), data["action"].float()
    episodes, slots = obs.shape[:2]
    reward = data["reward"].float().reshape(episodes, slots)
    task = data["task"].reshape(episodes, slots)[:, 0].long()
    # A TensorDict refuses `key in td`: its keys() view answers instead.
    terminated = (
        data["terminated"].float().reshape(episodes, slots)
        if "terminated" in set(data.keys())
        else torch.zeros(episodes, slots)
    )
    if obs.shape[-1] > cfg.obs_shape["state"][0] or action.shape[-1] > cfg.action_dim:
        raise ValueError(
            f"{path}: obs and action dims ({obs.shape[-1]}, {action.shape[-1]}) exceed the "
            f"task set's ({cfg.obs_shape['state'][0]}, {cfg.action_dim})"
        )
    outside = task[(task < 0) | (task >= len(cfg.tasks))]
    if len(outside):
        raise ValueError(
            f"{path}: episodes of task index {int(outside[0])}, which is not in the task set "
            f"{cfg.task} ({len(cfg.tasks)} tasks, indices in its published order)"
        )
    parts = []
    for index in task.unique().tolist():
        rows = (task == index).nonzero().squeeze(1)
        if slots - 1 != cfg.episode_lengths[index]:
            raise ValueError(
                f"{path}: episodes of {slots - 1} steps for {cfg.tasks[index]}, whose episodes "
                f"have {cfg.episode_lengths[index]}"
            )
        buffer = Buffer(
            len(rows) * slots,
            (obs.shape[-1],),
            action.shape[-1],
            cfg.horizon,
            cfg.batch_size,
            cfg.device,
            seed + len(parts),
            task=cfg.tasks[index],
        )
        for row in rows.tolist():
            buffer.add(
                {
                    "obs": obs[row],
                    "action": action[row, 1:],
                    "reward": reward[row, 1:],
                    "terminated": terminated[row, 1:],
                }
            )
        parts.append((index, buffer))
    return parts
