"""Environments by task name: DeepMind Control (the suite and TD-MPC2's own tasks),
Gymnasium (`gym-<Id>`), OGBench mazes (`ogbench-<id>`), Meta-World (`mw-<name>`) and
`toy-reach`.

`make_env(cfg)` builds the task's environment and writes the shapes the agent needs into
`cfg`; every environment follows the contract of `wrappers.TensorWrapper`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from omegaconf.errors import MissingMandatoryValue

from tdmpc2.envs import dmcontrol, gymnasium, metaworld, ogbench, toy
from tdmpc2.envs.multitask import MultitaskEnv, task_names
from tdmpc2.envs.wrappers import ActionRepeat, TensorWrapper, TimeLimit
from tdmpc2.envs.wrappers.pixels import Pixels

# Listed when a task is unknown; raw suite names and any registered gym id also work.
KNOWN_TASKS: tuple[str, ...] = tuple(
    sorted(
        {
            *dmcontrol.TASKS,
            *dmcontrol.CUSTOM_TASK_NAMES,
            *gymnasium.TASKS,
            *metaworld.TASKS,
            *ogbench.TASKS,
            *toy.TASKS,
        }
    )
)


def _builder(task: str) -> Callable[[str, int], TimeLimit]:
    """The module that builds `task`; unknown names fail here, before any simulator loads."""
    if task in toy.TASKS:
        return toy.make
    if ogbench.is_task(task):
        return ogbench.make
    if metaworld.is_task(task):
        return metaworld.make
    if gymnasium.is_task(task):
        return gymnasium.make
    if dmcontrol.resolve(task) is not None:
        return dmcontrol.make
    close = difflib.get_close_matches(task, KNOWN_TASKS, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ValueError(f"Unknown task '{task}'{hint}. Known tasks: {', '.join(KNOWN_TASKS)}")


def terminates(task: str) -> bool:
    """Whether the task's episodes end before the time limit, so `episodic` defaults to
    true: Gymnasium tasks that end on a fall, and the mazes, which end at the goal."""
    return gymnasium.terminates(task) or ogbench.is_task(task)


def _repeated(task: str, env: TimeLimit, repeat: int) -> TimeLimit:
    """`env` with each action held for `repeat` simulator steps and its time limit cut to
    match (rounded up): the knob that sets how many agent steps a maze's corridor takes,
    hence how far the planner's horizon reaches."""
    if _builder(task) in (dmcontrol.make, metaworld.make):
        raise ValueError(
            f"action_repeat={repeat}: {task} keeps TD-MPC2's action repeat of 2; the key "
            "applies to gym-, ogbench- and toy tasks"
        )
    return TimeLimit(ActionRepeat(env.env, repeat), -(-env.max_episode_steps // repeat))


def _is_unset(cfg: Any, key: str) -> bool:
    try:
        return getattr(cfg, key, None) is None
    except MissingMandatoryValue:  # `???` in the config
        return True


def make_env(cfg: Any) -> TensorWrapper | MultitaskEnv:
    """Builds `cfg.task` seeded with `cfg.seed` and records its shapes in `cfg`.

    Sets `obs_shape` (keyed by `obs`: state or rgb), `action_dim` and `episode_length`, and
    `seed_steps` and `episodic` unless they were given explicitly (an override on the
    command line wins over the default; see `terminates` for the tasks that are episodic
    by default). With `obs=rgb` the task is rendered at 64x64, 3 frames stacked;
    `action_repeat` holds each action for that many simulator steps (see `_repeated`).
    """
    if cfg.get("multitask"):
        return _make_multitask_env(cfg)
    task, seed = str(cfg.task), int(cfg.seed)
    obs = str(cfg.get("obs") or "state")
    env = _builder(task)(task, seed)
    if cfg.get("action_repeat") is not None:
        env = _repeated(task, env, int(cfg.action_repeat))
    if obs == "rgb":
        env = Pixels(env)
    env = TensorWrapper(env, seed)
    cfg.obs_shape = {obs: tuple(env.observation_space.shape)}
    cfg.action_dim = int(env.action_space.shape[0])
    cfg.episode_length = int(env.max_episode_steps)
    if _is_unset(cfg, "seed_steps"):
        cfg.seed_steps = max(1000, 5 * cfg.episode_length)
    if _is_unset(cfg, "episodic"):
        cfg.episodic = terminates(task)
    return env


def _make_multitask_env(cfg: Any) -> MultitaskEnv:
    """Every task of the set; `obs_shape`, `action_dim` and `episode_length` are the
    largest of the set, and `tasks`, `action_dims`, `episode_lengths` list them per task."""
    names, seed = task_names(str(cfg.task)), int(cfg.seed)
    unknown = []
    for name in names:
        try:
            _builder(name)
        except ValueError:
            unknown.append(name)
    if unknown:
        raise ValueError(
            f"task={cfg.task}: {len(unknown)} of its {len(names)} tasks are not available "
            f"here: {', '.join(unknown)}"
        )
    env = MultitaskEnv([TensorWrapper(_builder(n)(n, seed), seed) for n in names])
    cfg.tasks = names
    cfg.obs_shape = {"state": (env.obs_dim,)}
    cfg.action_dim = env.action_dim
    cfg.obs_dims = env.obs_dims
    cfg.action_dims = env.action_dims
    cfg.episode_lengths = env.episode_lengths
    cfg.episode_length = max(env.episode_lengths)
    if _is_unset(cfg, "seed_steps"):
        cfg.seed_steps = max(1000, 5 * cfg.episode_length)
    if _is_unset(cfg, "episodic"):
        cfg.episodic = any(terminates(name) for name in names)
    return env


__all__ = ["KNOWN_TASKS", "make_env"]
