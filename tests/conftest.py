"""Shared fixtures: small configs composed exactly as train.py composes them."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize
from omegaconf import DictConfig

from tdmpc2.common.parser import parse_cfg, register_configs

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; training never needs it
if os.environ.get("PYTEST_XDIST_WORKER"):  # parallel workers share the cores, a few each
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
register_configs()

ROOT = Path(__file__).resolve().parents[1]

# The Director extension, absent after `bash apply_director_patches.sh rollback`. Its test
# cases live in the files that script adds; checks of the whole repository (every doc, every
# bench agent) skip the items only the extension has while it is rolled back.
DIRECTOR = (ROOT / "tdmpc2" / "configs" / "director.yaml").is_file()
DIRECTOR_GROUPS = ("goal_vae", "manager", "worker")  # director.yaml's config groups
ADDED = re.search(
    r"^ADDED=\((.*?)\)", (ROOT / "apply_director_patches.sh").read_text(), re.M | re.S
)
DIRECTOR_FILES = set(ADDED[1].split())  # the files the script adds, by relative path


def rolled_back(item: str) -> bool:
    """Whether `item`, a config key or a repository path, belongs to the Director extension
    while it is rolled back."""
    return not DIRECTOR and (item.split(".")[0] in DIRECTOR_GROUPS or item in DIRECTOR_FILES)


# A model small enough for unit tests to run in milliseconds.
TINY = [
    "model_size=1",
    "mlp_dim=64",
    "enc_dim=64",
    "latent_dim=32",
    "num_samples=64",
    "num_elites=8",
    "num_pi_trajs=4",
    "iterations=2",
    "batch_size=16",
    "device=cpu",
]


def compose_cfg(overrides: list[str]) -> DictConfig:
    """The config exactly as `python tdmpc2/train.py <overrides>` composes it."""
    with initialize(config_path=None, version_base="1.3"):
        return compose("config", overrides=overrides)


def make_cfg(overrides: list[str], obs_dim: int = 5, action_dim: int = 3) -> DictConfig:
    """Composed and parsed config with the environment fields filled in by hand."""
    cfg = parse_cfg(compose_cfg(overrides), overrides)
    cfg.obs_shape = {"state": [obs_dim]}
    cfg.action_dim = action_dim
    cfg.episode_length = 100
    cfg.seed_steps = 1000
    return cfg


@pytest.fixture
def tiny_cfg() -> DictConfig:
    torch.manual_seed(0)
    return make_cfg(TINY)


@pytest.fixture(scope="module", autouse=True)
def restore_threads():
    """threads=1 is process-wide: every test module starts from the default again."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
