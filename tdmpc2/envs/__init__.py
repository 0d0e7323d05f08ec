"""Environment construction by task name."""

from __future__ import annotations

import difflib

from omegaconf import DictConfig

from tdmpc2.envs.wrappers.tensor import TensorEnv

TOY_TASKS = ("toy-reach",)


def known_tasks() -> list[str]:
    from tdmpc2.envs import dmcontrol, gymnasium

    return sorted([*dmcontrol.task_table(), *gymnasium.known_tasks(), *TOY_TASKS])


def _unknown(task: str) -> ValueError:
    names = known_tasks()
    close = difflib.get_close_matches(task, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ValueError(f"Unknown task '{task}'{hint}. Known tasks: {', '.join(names)}")


def make_env(cfg: DictConfig) -> TensorEnv:
    """Builds the task's environment; records obs_shape, action_dim, episode_length in `cfg`."""
    from tdmpc2.envs import dmcontrol, gymnasium

    task, seed = str(cfg.task), int(cfg.seed)
    if task == "toy-reach":
        from tdmpc2.envs.toy import ToyReach

        raw, length = ToyReach(seed), ToyReach.episode_length
    elif task.startswith(gymnasium.PREFIX):
        import gymnasium as gym

        env_id = task[len(gymnasium.PREFIX) :]
        if env_id not in gym.registry:
            raise _unknown(task)
        raw = gymnasium.Gymnasium(env_id, seed)
        length = raw.max_episode_steps
    else:
        table = dmcontrol.task_table()
        if task not in table:
            raise _unknown(task)
        raw, length = dmcontrol.DMControl(*table[task], seed), dmcontrol.EPISODE_LENGTH
    env = TensorEnv(raw, length, seed)
    cfg.obs_shape = {"state": list(env.observation_space.shape)}
    cfg.action_dim = int(env.action_space.shape[0])
    cfg.episode_length = length
    return env
