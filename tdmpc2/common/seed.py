"""Seeding of every random number generator a run touches, and their states for checkpoints."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

# Attributes through which environment wrappers, simulators and dm_control tasks hold
# the next layer; the walk below follows only these, never physics or model objects.
ENV_LINKS = ("env", "_env", "_task")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def rng_state() -> dict:
    """States of all global generators, so a resumed run draws the same numbers."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _env_generators(env: Any, path: str = "") -> dict[str, Any]:
    """Every generator in an environment stack, by attribute path (e.g. `env.env._rng`).

    Simulators keep their own: the toy task a numpy Generator, dm_control tasks a
    RandomState, Gymnasium envs a Generator, the tensor wrapper a torch Generator.
    """
    found: dict[str, Any] = {}
    for name, value in vars(env).items():
        if isinstance(value, np.random.RandomState | np.random.Generator | torch.Generator):
            found[f"{path}{name}"] = value
        elif name in ENV_LINKS and hasattr(value, "__dict__"):
            found.update(_env_generators(value, f"{path}{name}."))
        elif name == "envs":  # a task set's environments (MultitaskEnv)
            for i, env_i in enumerate(value):
                found.update(_env_generators(env_i, f"{path}{name}.{i}."))
    return found


def env_rng_state(env: Any) -> dict[str, Any]:
    """The states of the environment's generators (see `_env_generators`)."""
    state: dict[str, Any] = {}
    for path, gen in _env_generators(env).items():
        if isinstance(gen, np.random.RandomState):
            state[path] = gen.get_state()
        elif isinstance(gen, np.random.Generator):
            state[path] = gen.bit_generator.state
        else:
            state[path] = gen.get_state()
    return state


def set_env_rng_state(env: Any, state: dict[str, Any]) -> None:
    """Puts saved generator states back into an environment built the same way."""
    generators = _env_generators(env)
    for path, saved in state.items():
        gen = generators.get(path)
        if gen is None:
            raise ValueError(f"the environment has no random generator at {path}")
        if isinstance(gen, np.random.RandomState):
            gen.set_state(saved)
        elif isinstance(gen, np.random.Generator):
            gen.bit_generator.state = saved
        else:
            gen.set_state(saved)
