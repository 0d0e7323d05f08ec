"""Whole-run progress: a bar on a terminal, one plain line per event elsewhere (CI, log
files, Slurm), and a time left that counts every phase of the run, evaluations included.

The time left is the work left in each phase (random seeding steps, pretraining updates,
training steps, evaluation steps) times that phase's seconds per unit: first from a few
timed calls at start, then from the run itself (a moving average).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from tqdm import tqdm

PHASES = ("seeding", "pretraining", "training", "evaluation")
SMOOTHING = 0.02  # weight of the newest measurement in a phase's seconds per unit
REFRESH_S = 0.5  # least seconds between two redraws of the bar
LINE_EVERY = 20  # off a terminal, a progress line every 1/LINE_EVERY of the run's steps
PRETRAIN_LINES = 10  # ... and of the pretraining burst


def duration(seconds: float) -> str:
    """`1h 05m`, `4m 10s`, `12s`."""
    s = max(round(seconds), 0)
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


class Progress:
    """Moves with every unit of work and knows how long the rest will take.

    `work_left()` returns the units left per phase (the trainer's loop state is the truth);
    `costs` are seconds per unit per phase. `mode` is "bar", "lines" or "off"; the default
    picks a bar on a terminal and lines elsewhere.
    """

    def __init__(
        self,
        total_steps: int,
        step: int,
        work_left: Callable[[], dict[str, int]],
        costs: dict[str, float],
        write: Callable[[str], None],
        mode: str | None = None,
    ) -> None:
        self.mode = mode or ("bar" if sys.stderr.isatty() else "lines")
        self.total = total_steps
        self.step = step
        self.work_left = work_left
        self.costs = dict(costs)
        self.write = write
        self._status = ""
        self._last: tuple[str, float] | None = None  # (phase, time) of the last advance
        self._drawn = 0.0
        self._next_line = self._line_after(step)
        self._bar = None
        if self.mode == "bar":
            self._bar = tqdm(
                total=total_steps,
                initial=step,
                unit="step",
                dynamic_ncols=True,
                bar_format="{desc}{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                "[{elapsed} elapsed{postfix}]",
            )
            self._bar.set_postfix_str(f"{duration(self.time_left())} left")

    @classmethod
    def off(cls) -> Progress:
        """A display that keeps no books and shows nothing (evaluation scripts, tests)."""
        return cls(0, 0, dict, {}, lambda line: None, mode="off")

    def time_left(self) -> float:
        left = self.work_left()
        return sum(n * self.costs.get(phase, 0.0) for phase, n in left.items())

    def estimate_line(self, timed: str) -> str:
        """One line: expected wall time of what is left, per phase."""
        left = self.work_left()
        parts = [
            f"{phase} {duration(left[phase] * self.costs.get(phase, 0.0))}"
            for phase in PHASES
            if left.get(phase)
        ]
        return f"expected wall time: {duration(self.time_left())} ({', '.join(parts)}); {timed}"

    # ------------------------------------------------------------ events
    def advance(self, phase: str, n: int = 1) -> None:
        """`n` units of `phase` done: learns the phase's pace, moves the display."""
        if self.mode == "off":
            return
        now = time.perf_counter()
        if self._last is not None and self._last[0] == phase:
            measured = (now - self._last[1]) / n
            self.costs[phase] += SMOOTHING * (measured - self.costs.get(phase, measured))
        self._last = (phase, now)
        if phase in ("seeding", "training"):
            self.step += n
            if self._bar is not None:
                self._bar.update(n)
            elif self.step >= self._next_line:
                self._next_line = self._line_after(self.step)
                pct = 100 * self.step / max(self.total, 1)
                self.write(
                    f"{phase} | step {self.step:,}/{self.total:,} ({pct:.0f}%) | {self._eta()}"
                )
        self._redraw(now)

    def status(self, text: str) -> None:
        """What the bar says the run is doing (e.g. `eval 2/10`); shown on a terminal only."""
        self._status = text
        self._redraw(time.perf_counter())

    def event(self, text: str) -> None:
        """A line worth keeping off a terminal (an evaluation episode, a pretraining tenth)."""
        if self.mode == "lines":
            self.write(f"{text} | {self._eta()}")

    def pretraining(self, done: int, total: int) -> None:
        self.status(f"pretraining {done:,}/{total:,}")
        if done == total or done % max(total // PRETRAIN_LINES, 1) == 0:
            self.event(f"pretraining | update {done:,}/{total:,}")

    def pause(self) -> None:
        """Forgets the last event's time, so a gap (an evaluation's logging, a plot) is not
        counted as work of the next phase."""
        self._last = None

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # ------------------------------------------------------------ drawing
    def _eta(self) -> str:
        return f"{duration(self.time_left())} left"

    def _line_after(self, step: int) -> int:
        every = max(self.total // LINE_EVERY, 1)
        return (step // every + 1) * every

    def _redraw(self, now: float) -> None:
        if self._bar is None or now - self._drawn < REFRESH_S:
            return
        self._drawn = now
        self._bar.set_description_str(f"{self._status} " if self._status else "", refresh=False)
        self._bar.set_postfix_str(self._eta(), refresh=False)
        self._bar.refresh()
