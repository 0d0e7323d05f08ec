"""OGBench's long-horizon mazes, named `ogbench-<id>`: `ogbench-pointmaze-medium-singletask-v0`.

The mazes are sparse and long: -1 every step, 0 on reaching the goal, which
ends the episode, and a goal far enough that random actions never reach it in 1,000 steps.
They are episodic by default (the goal ends the episode). `ogbench` is an optional extra
(`pip install -e '.[ogbench]'`); names resolve without it, and building one fails with a
line that names the extra. The agent's x-y is the observation's first two entries.
"""

from __future__ import annotations

import difflib

from tdmpc2.envs.gymnasium import Gymnasium
from tdmpc2.envs.wrappers import TimeLimit

PREFIX = "ogbench-"
MISSING = "OGBench tasks need the optional extra: pip install -e '.[ogbench]' (ogbench 1.2.2)"
ROBOTS = ("pointmaze", "antmaze", "humanoidmaze")
MAZES = ("medium", "large", "giant", "teleport")
TASKS: tuple[str, ...] = tuple(
    f"{PREFIX}{robot}-{maze}-singletask{variant}-v0"
    for robot in ROBOTS
    for maze in MAZES
    for variant in ("", *(f"-task{i}" for i in range(1, 6)))
)
XY = slice(0, 2)  # where the agent's position sits in every maze's observation


def is_task(name: str) -> bool:
    return name.startswith(PREFIX)


def make(name: str, seed: int) -> TimeLimit:
    """The maze with its own episode length (1,000 steps; humanoidmaze 2,000)."""
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(
            f"Unknown OGBench task '{name}'{hint}: expected "
            f"{PREFIX}<{'|'.join(ROBOTS)}>-<{'|'.join(MAZES)}>-singletask[-task1..5]-v0"
        )
    try:
        import ogbench  # noqa: F401  (registers the gymnasium ids)
    except ImportError as err:
        raise ImportError(MISSING) from err
    env = Gymnasium(name[len(PREFIX) :], seed)
    return TimeLimit(env, env.max_episode_steps)
