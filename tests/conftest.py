"""Shared fixtures: small configs composed exactly as train.py composes them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from tdmpc2.common.parser import parse_cfg

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; training never needs it

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = str(ROOT / "tdmpc2")

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


def make_cfg(overrides: list[str], obs_dim: int = 5, action_dim: int = 3) -> DictConfig:
    """Composed and parsed config with the environment fields filled in by hand."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    cfg = parse_cfg(cfg, overrides)
    cfg.obs_shape = {"state": [obs_dim]}
    cfg.action_dim = action_dim
    cfg.episode_length = 100
    cfg.seed_steps = 1000
    return cfg


@pytest.fixture
def tiny_cfg() -> DictConfig:
    torch.manual_seed(0)
    return make_cfg(TINY)
