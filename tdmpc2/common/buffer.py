"""Replay buffer of whole episodes in preallocated tensors.

An episode of L steps takes L+1 consecutive slots of a ring: slot k holds obs_k and,
for k < L, the action, reward and termination flag of the step obs_k -> obs_{k+1}.
Each slot also records its episode id and its index inside the episode, so a start
slot is valid when the H following slots hold the same episode's transitions; the
check is two lookups, which keeps sampling independent of the capacity.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

FORMAT_VERSION = 1
MAX_REDRAWS = 100


class Buffer:
    """Uniform sampling of `horizon+1`-long subsequences that never cross an episode."""

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        action_dim: int,
        horizon: int,
        batch_size: int,
        device: torch.device | str = "cpu",
        seed: int | None = None,
    ) -> None:
        self.capacity = int(capacity)
        self.obs_shape = tuple(obs_shape)
        self.action_dim = int(action_dim)
        self.horizon = int(horizon)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self._obs = torch.zeros(self.capacity, *self.obs_shape)
        self._action = torch.zeros(self.capacity, self.action_dim)
        self._reward = torch.zeros(self.capacity)
        self._terminated = torch.zeros(self.capacity)
        self._episode = torch.full((self.capacity,), -1, dtype=torch.long)
        self._length = torch.zeros(self.capacity, dtype=torch.long)  # length of the slot's episode
        self._index = torch.zeros(self.capacity, dtype=torch.long)  # position inside the episode
        self._ptr = 0
        self._filled = 0  # slots written so far; the ring fills from slot 0 up
        self.num_episodes = 0
        self._generator = torch.Generator()
        if seed is not None:
            self._generator.manual_seed(int(seed))

    def __len__(self) -> int:
        """Number of stored transitions (slots that start a step)."""
        filled = self._episode >= 0
        return int((filled & (self._index < self._length)).sum())

    def add(self, episode: dict[str, torch.Tensor]) -> None:
        """Appends an episode: obs [L+1, ...], action [L, A], reward [L], terminated [L]."""
        steps = episode["action"].shape[0]
        if steps + 1 > self.capacity:
            raise ValueError(f"episode of {steps} steps does not fit a buffer of {self.capacity}")
        if episode["obs"].shape[0] != steps + 1:
            raise ValueError("an episode needs one more observation than actions")
        slots = (self._ptr + torch.arange(steps + 1)) % self.capacity
        self._obs[slots] = episode["obs"].float().cpu()
        self._action[slots[:-1]] = episode["action"].float().cpu()
        self._reward[slots[:-1]] = episode["reward"].float().cpu().flatten()
        self._terminated[slots[:-1]] = episode["terminated"].float().cpu().flatten()
        self._action[slots[-1]] = 0
        self._reward[slots[-1]] = 0
        self._terminated[slots[-1]] = 0
        self._episode[slots] = self.num_episodes
        self._length[slots] = steps
        self._index[slots] = torch.arange(steps + 1)
        self._ptr = int((self._ptr + steps + 1) % self.capacity)
        self._filled = min(self._filled + steps + 1, self.capacity)
        self.num_episodes += 1

    def _valid(self, start: torch.Tensor) -> torch.Tensor:
        end = (start + self.horizon) % self.capacity
        same = (self._episode[start] >= 0) & (self._episode[start] == self._episode[end])
        # Equal ids at both ends mean one contiguous episode, unless it was partly
        # overwritten in between: then the index would not have advanced by H.
        return same & (self._index[end] - self._index[start] == self.horizon)

    def sample(self, batch_size: int | None = None) -> dict[str, torch.Tensor]:
        """obs [H+1, B, ...], action [H, B, A], reward [H, B, 1], terminated [H, B, 1]."""
        n = batch_size or self.batch_size
        filled = max(self._filled, 1)
        start = torch.randint(filled, (n,), generator=self._generator)
        for _ in range(MAX_REDRAWS):
            bad = ~self._valid(start)
            if not bad.any():
                break
            start[bad] = torch.randint(filled, (int(bad.sum()),), generator=self._generator)
        else:
            raise RuntimeError(
                f"buffer holds no subsequence of length {self.horizon + 1} yet "
                f"({self.num_episodes} episodes stored)"
            )
        idx = (start.unsqueeze(0) + torch.arange(self.horizon + 1).unsqueeze(1)) % self.capacity
        step = idx[:-1]
        batch = {
            "obs": self._obs[idx],
            "action": self._action[step],
            "reward": self._reward[step].unsqueeze(-1),
            "terminated": self._terminated[step].unsqueeze(-1),
        }
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    # ------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "capacity": self.capacity,
            "obs_shape": self.obs_shape,
            "action_dim": self.action_dim,
            "obs": self._obs,
            "action": self._action,
            "reward": self._reward,
            "terminated": self._terminated,
            "episode": self._episode,
            "length": self._length,
            "index": self._index,
            "ptr": self._ptr,
            "filled": self._filled,
            "num_episodes": self.num_episodes,
            "generator": self._generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        for key in ("capacity", "obs_shape", "action_dim"):
            saved = tuple(state[key]) if key == "obs_shape" else state[key]
            if saved != getattr(self, key):
                raise ValueError(
                    f"replay buffer {key} is {saved} in the file, {getattr(self, key)} here"
                )
        self._obs, self._action = state["obs"], state["action"]
        self._reward, self._terminated = state["reward"], state["terminated"]
        self._episode, self._length, self._index = state["episode"], state["length"], state["index"]
        self._ptr, self.num_episodes = state["ptr"], state["num_episodes"]
        self._filled = state["filled"]
        self._generator.set_state(state["generator"])

    def save(self, path: str | Path) -> None:
        """Atomic write: a crash mid-save never leaves a truncated file behind."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: torch.device | str = "cpu",
        horizon: int | None = None,
        batch_size: int | None = None,
    ) -> Buffer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"replay buffer not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
            version = state["format_version"]
        except Exception as err:
            raise ValueError(f"{path}: not a replay buffer file ({type(err).__name__})") from err
        if version != FORMAT_VERSION:
            raise ValueError(f"{path}: replay format {version}, expected {FORMAT_VERSION}")
        buffer = cls(
            state["capacity"],
            state["obs_shape"],
            state["action_dim"],
            horizon or 3,
            batch_size or 256,
            device,
        )
        buffer.load_state_dict(state)
        return buffer
