"""Torch CPU threads for a run: every core when it runs alone, a fair share when runs
share the machine. Two runs with two threads each on two cores ran about 5x slower per
step than with one each, so `threads=auto` keeps the total at the number of cores.

Runs find each other through a folder of pid files (one per training process, holding
its thread setting), so a Hydra multirun, a parallel grid or two terminals all count.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

REGISTRY = Path(tempfile.gettempdir()) / "tdmpc2-runs"
RECHECK_S = 2.0  # seconds between looks at the registry


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. under Slurm or taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class ThreadShare:
    """Registers this process as a running training; `refresh` keeps an `auto` share.

    The share is the cores left over by runs with a fixed `threads`, split evenly among
    the `auto` runs, at least 1. A fixed setting is applied once and only registered.
    """

    def __init__(self, setting: int | str, registry: Path = REGISTRY) -> None:
        self.auto = str(setting) == "auto"
        self.cores = available_cores()
        self.threads = self.cores if self.auto else int(setting)
        self._path = registry / str(os.getpid())
        self._checked = float("-inf")
        try:
            registry.mkdir(parents=True, exist_ok=True)
            self._path.write_text(str(setting))
        except OSError:  # a read-only temp dir: count this run alone
            self._path = None
        torch.set_num_threads(self.threads)

    def others(self) -> tuple[int, int]:
        """(other auto runs, threads of other fixed runs) alive now; stale files removed."""
        autos, fixed = 0, 0
        if self._path is None:
            return autos, fixed
        for path in self._path.parent.iterdir():
            if path == self._path or not path.name.isdigit():
                continue
            if not _alive(int(path.name)):
                path.unlink(missing_ok=True)
                continue
            try:
                setting = path.read_text().strip()
            except OSError:  # finished while we looked
                continue
            if setting == "auto":
                autos += 1
            elif setting.isdigit():
                fixed += int(setting)
        return autos, fixed

    def refresh(self, force: bool = False) -> str | None:
        """Sets the `auto` share if it changed; returns a line saying so, else None."""
        now = time.monotonic()
        if not self.auto or (not force and now - self._checked < RECHECK_S):
            return None
        self._checked = now
        autos, fixed = self.others()
        share = max(1, (self.cores - fixed) // (autos + 1))
        if share == self.threads and not force:
            return None
        self.threads = share
        torch.set_num_threads(share)
        others = [f"{autos} other run{'s' * (autos > 1)} with threads=auto"] * bool(autos)
        others += [f"{fixed} threads held by runs with a fixed count"] * bool(fixed)
        return f"threads: {share} of {self.cores} cores ({'; '.join(others) or 'no other runs'})"

    def close(self) -> None:
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None
