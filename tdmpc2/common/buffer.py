"""Replay buffer of whole episodes in preallocated CPU tensors.

An episode of L steps takes L+1 consecutive slots of a ring: slot k holds obs_k and,
for k < L, the action, reward and termination flag of the step obs_k -> obs_{k+1}.
Every slot also records its episode id and its position inside that episode, so
checking that a start slot begins a valid H-step subsequence takes two lookups and
sampling cost does not grow with the capacity.

Pixel observations (a stack of the last frames) are stored one frame per slot, as uint8,
and the stack is rebuilt from the preceding slots of the same episode when sampling:
a third of the memory of storing every stack.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from omegaconf import DictConfig

FORMAT_VERSION = 1
MAX_REDRAWS = 20  # then fall back to one exact scan of the valid starts
STORAGE = ("obs", "action", "reward", "terminated", "episode", "index", "has_step")


def available_memory() -> int | None:
    """Bytes the kernel can hand out now without swapping (Linux), else None."""
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


class Buffer:
    """Uniform sampling of (H+1)-slot subsequences that never cross an episode boundary."""

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        action_dim: int,
        horizon: int,
        batch_size: int,
        device: torch.device | str = "cpu",
        seed: int | None = None,
        obs_dtype: torch.dtype = torch.float32,
        frame_stack: int = 1,
        task: str | None = None,
    ) -> None:
        """`frame_stack` > 1: observations stack that many frames on their first dimension,
        each slot stores only the newest one."""
        if int(horizon) < 1 or int(capacity) < int(horizon) + 1:
            raise ValueError(f"capacity {capacity} cannot hold a horizon of {horizon} steps")
        self.capacity = int(capacity)
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.action_dim = int(action_dim)
        self.horizon = int(horizon)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.frame_stack = int(frame_stack)
        if self.obs_shape[0] % self.frame_stack:
            raise ValueError(f"obs_shape {self.obs_shape} does not split into {frame_stack} frames")
        frame_shape = (self.obs_shape[0] // self.frame_stack, *self.obs_shape[1:])
        self._check_memory(frame_shape, obs_dtype)
        self.task = task  # the task the episodes come from, saved so offline runs can tell
        self._obs = torch.zeros(self.capacity, *frame_shape, dtype=obs_dtype)
        self._action = torch.zeros(self.capacity, self.action_dim)
        self._reward = torch.zeros(self.capacity)
        self._terminated = torch.zeros(self.capacity)
        self._episode = torch.full((self.capacity,), -1, dtype=torch.long)  # -1 = empty
        self._index = torch.zeros(self.capacity, dtype=torch.long)  # position in its episode
        self._has_step = torch.zeros(self.capacity, dtype=torch.bool)  # slot starts a step
        self._ptr = 0
        self._filled = 0  # the ring fills slots 0, 1, ... before it wraps
        self.num_episodes = 0
        self.num_transitions = 0
        self._generator = torch.Generator()
        if seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(int(seed))

    def _check_memory(self, frame_shape: tuple[int, ...], obs_dtype: torch.dtype) -> None:
        """Fails before allocating: zeroed pages are handed out lazily, so an oversized
        buffer would otherwise be killed by the kernel hours into the run."""
        per_slot = math.prod(frame_shape) * obs_dtype.itemsize + 4 * (self.action_dim + 2) + 17
        needed, available = self.capacity * per_slot, available_memory()
        if available is not None and needed > available:
            raise ValueError(
                f"a replay buffer of {self.capacity:,} steps needs {needed / 2**30:.1f} GiB "
                f"({per_slot:,} bytes per step) and {available / 2**30:.1f} GiB is available: "
                "lower buffer_size"
            )

    @classmethod
    def from_cfg(cls, cfg: DictConfig, capacity: int | None = None) -> Buffer:
        """A buffer shaped for the run; `capacity` defaults to `buffer_size`.

        Pixels (`obs=rgb`, 3 channels per frame) are kept as uint8 frames.
        """
        pixels = cfg.obs == "rgb"
        obs_shape = tuple(cfg.obs_shape[cfg.obs])
        return cls(
            capacity=cfg.buffer_size if capacity is None else capacity,
            obs_shape=obs_shape,
            action_dim=cfg.action_dim,
            horizon=cfg.horizon,
            batch_size=cfg.batch_size,
            device=cfg.device,
            seed=cfg.seed,
            obs_dtype=torch.uint8 if pixels else torch.float32,
            frame_stack=obs_shape[0] // 3 if pixels else 1,
            task=cfg.get("task"),
        )

    def __len__(self) -> int:
        return self.num_transitions

    def add(self, episode: dict[str, torch.Tensor]) -> None:
        """Appends an episode (obs [L+1, ...], action [L, A], reward [L], terminated [L]),
        overwriting the oldest slots once the ring is full."""
        steps = episode["action"].shape[0]
        if steps < 1:
            raise ValueError("an episode needs at least one step")
        if steps + 1 > self.capacity:
            raise ValueError(
                f"an episode of {steps} steps needs {steps + 1} slots; capacity is {self.capacity}"
            )
        expected = {
            "obs": (steps + 1, *self.obs_shape),
            "action": (steps, self.action_dim),
            "reward": (steps,),
            "terminated": (steps,),
        }
        for key, shape in expected.items():
            if tuple(episode[key].shape) != shape:
                raise ValueError(
                    f"episode[{key!r}] has shape {tuple(episode[key].shape)}, expected {shape}"
                )
        slots = (self._ptr + torch.arange(steps + 1)) % self.capacity
        self.num_transitions -= int(self._has_step[slots].sum())  # overwritten steps
        newest = episode["obs"][:, -self._obs.shape[1] :]  # the last frame of each stack
        self._obs[slots] = newest.detach().cpu().to(self._obs.dtype)
        self._action[slots[:-1]] = episode["action"].detach().float().cpu()
        self._reward[slots[:-1]] = episode["reward"].detach().float().cpu()
        self._terminated[slots[:-1]] = episode["terminated"].detach().float().cpu()
        last = slots[-1]
        for stored in (self._action, self._reward, self._terminated):  # no step leaves it
            stored[last] = 0.0
        self._episode[slots] = self.num_episodes  # ids are unique: a running counter
        self._index[slots] = torch.arange(steps + 1)
        self._has_step[slots] = True
        self._has_step[last] = False
        self._ptr = int(slots[-1] + 1) % self.capacity
        self._filled = min(self._filled + steps + 1, self.capacity)
        self.num_episodes += 1
        self.num_transitions += steps

    def _valid(self, start: torch.Tensor) -> torch.Tensor:
        """Whether slots start..start+H hold one episode's obs_t..obs_{t+H}.

        Equal ids alone are not enough: when an episode fills almost the whole ring,
        start+H can wrap past its last obs back onto its (older) first slots. The
        position inside the episode must have advanced by exactly H, which also keeps
        the episode's last obs from starting a step. A frame stack also needs the frames
        before `start` that the ring has not yet overwritten.
        """
        end = (start + self.horizon) % self.capacity
        episode, index = self._episode[start], self._index[start]
        valid = (episode >= 0) & (episode == self._episode[end])
        valid &= self._index[end] - index == self.horizon
        if self.frame_stack > 1:  # the stack's oldest frame may have been overwritten
            back = torch.clamp(index, max=self.frame_stack - 1)
            first = (start - back) % self.capacity
            valid &= (self._episode[first] == episode) & (self._index[first] == index - back)
        return valid

    def _draw_starts(self, n: int) -> torch.Tensor:
        """Rejection sampling among filled slots, redrawing only the rejected ones."""
        no_data = RuntimeError(
            f"buffer holds no subsequence of length H+1 = {self.horizon + 1} yet "
            f"({self.num_episodes} episodes, {self.num_transitions} transitions stored)"
        )
        if self.num_transitions < self.horizon:
            raise no_data
        start = torch.randint(self._filled, (n,), generator=self._generator)
        for _ in range(MAX_REDRAWS):
            bad = ~self._valid(start)
            if not bad.any():
                return start
            start[bad] = torch.randint(self._filled, (int(bad.sum()),), generator=self._generator)
        # Few valid starts (e.g. mostly short episodes): draw the rest from an exact list.
        bad = ~self._valid(start)
        candidates = torch.arange(self._filled)
        candidates = candidates[self._valid(candidates)]
        if len(candidates) == 0:
            raise no_data
        pick = torch.randint(len(candidates), (int(bad.sum()),), generator=self._generator)
        start[bad] = candidates[pick]
        return start

    def _stacked_obs(self, slots: torch.Tensor) -> torch.Tensor:
        """Observations at `slots` (any shape); a frame stack is rebuilt from the slots
        before, repeating the episode's first frame as the environment's reset does."""
        if self.frame_stack == 1:
            return self._obs[slots]
        index = self._index[slots]
        past = [
            self._obs[(slots - torch.clamp(index, max=k)) % self.capacity]
            for k in range(self.frame_stack - 1, -1, -1)
        ]
        return torch.cat(past, dim=slots.dim())

    def sample(self, batch_size: int | None = None) -> dict[str, torch.Tensor]:
        """obs [H+1, B, ...], action [H, B, A], reward [H, B, 1], terminated [H, B, 1]."""
        start = self._draw_starts(batch_size or self.batch_size)
        idx = (start.unsqueeze(0) + torch.arange(self.horizon + 1).unsqueeze(1)) % self.capacity
        step = idx[:-1]
        batch = {
            "obs": self._stacked_obs(idx),
            "action": self._action[step],
            "reward": self._reward[step].unsqueeze(-1),
            "terminated": self._terminated[step].unsqueeze(-1),
        }
        return {k: v.to(self.device) for k, v in batch.items()}

    # ------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        """Everything needed to resume sampling exactly; a checkpoint can embed it."""
        return {
            "format_version": FORMAT_VERSION,
            "capacity": self.capacity,
            "obs_shape": list(self.obs_shape),
            "action_dim": self.action_dim,
            "horizon": self.horizon,
            "batch_size": self.batch_size,
            "frame_stack": self.frame_stack,
            "task": self.task,
            **{name: getattr(self, f"_{name}") for name in STORAGE},
            "ptr": self._ptr,
            "filled": self._filled,
            "num_episodes": self.num_episodes,
            "num_transitions": self.num_transitions,
            "generator": self._generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Copies a state_dict in; capacity, obs_shape and action_dim must match."""
        if state.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"replay buffer format version {state.get('format_version')}, "
                f"expected {FORMAT_VERSION}"
            )
        for key in ("capacity", "obs_shape", "action_dim"):
            saved = tuple(state[key]) if key == "obs_shape" else state[key]
            if saved != getattr(self, key):
                raise ValueError(
                    f"replay buffer {key} is {saved} in the state, {getattr(self, key)} here"
                )
        for name in STORAGE:
            current, saved = getattr(self, f"_{name}"), state[name]
            if saved.shape != current.shape or saved.dtype != current.dtype:
                raise ValueError(
                    f"replay buffer {name}: {saved.dtype} {tuple(saved.shape)}, "
                    f"expected {current.dtype} {tuple(current.shape)}"
                )
            current.copy_(saved)
        self._ptr, self._filled = int(state["ptr"]), int(state["filled"])
        self.num_episodes = int(state["num_episodes"])
        self.num_transitions = int(state["num_transitions"])
        self._generator.set_state(state["generator"])
        self.task = state.get("task", self.task)  # files from before it was saved have none

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
        """A saved buffer; horizon and batch_size default to the saved ones."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"replay buffer not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            return cls.from_state(state, device, horizon, batch_size)
        except Exception as err:  # unpickling, missing keys, wrong shapes, ...
            raise ValueError(
                f"{path}: not a replay buffer file ({type(err).__name__}: {err})"
            ) from err

    @classmethod
    def from_state(
        cls,
        state: dict,
        device: torch.device | str = "cpu",
        horizon: int | None = None,
        batch_size: int | None = None,
    ) -> Buffer:
        """A buffer holding a `state_dict`; horizon and batch_size default to the saved ones."""
        buffer = cls(
            state["capacity"],
            state["obs_shape"],
            state["action_dim"],
            horizon or state["horizon"],
            batch_size or state["batch_size"],
            device,
            obs_dtype=state["obs"].dtype,
            frame_stack=state.get("frame_stack", 1),
            task=state.get("task"),
        )
        buffer.load_state_dict(state)
        return buffer


def stack_episode(episode: dict[str, list]) -> dict[str, torch.Tensor]:
    """An episode's per-step lists as the tensors `Buffer.add` takes."""
    return {
        "obs": torch.stack(episode["obs"]),
        "action": torch.stack(episode["action"]),
        "reward": torch.tensor(episode["reward"], dtype=torch.float32),
        "terminated": torch.tensor(episode["terminated"], dtype=torch.float32),
    }


def resize_state(state: dict, capacity: int) -> dict:
    """A saved buffer's `state_dict` for a ring of `capacity` slots (a run resumed with
    other `steps`).

    Slots are put in write order (oldest first), so an episode that wrapped around the
    old ring's end stays contiguous, and the write pointer follows the newest slot.
    """
    if state["capacity"] == capacity:
        return state
    filled, ptr = int(state["filled"]), int(state["ptr"])
    if filled > capacity:
        raise ValueError(f"the replay buffer holds {filled} slots, more than {capacity} now")
    order = (torch.arange(filled) + ptr) % max(filled, 1)
    resized = {**state, "capacity": capacity, "ptr": filled % capacity}
    for name in STORAGE:
        old = state[name]
        new = torch.full(
            (capacity, *old.shape[1:]), -1 if name == "episode" else 0, dtype=old.dtype
        )
        new[:filled] = old[order]
        resized[name] = new
    return resized
