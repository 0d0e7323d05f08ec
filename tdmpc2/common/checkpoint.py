"""Checkpoint files: atomic writes, a format version, and clear errors on a bad file."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

FORMAT_VERSION = 1
# Keys whose values must agree between a checkpoint and the config that loads it.
MATCH_KEYS = ("obs_shape", "action_dim", "latent_dim", "mlp_dim", "enc_dim", "num_q", "num_bins")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with the file and the reason."""


def save(path: str | Path, state: dict, cfg: DictConfig) -> Path:
    """Writes `state` plus format version and config to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "cfg": OmegaConf.to_container(cfg, resolve=True),
        **state,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def resolve_path(path: str | Path) -> Path:
    """A checkpoint file, or the newest checkpoint.pt inside a run directory."""
    path = Path(str(path)).expanduser()
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def load(path: str | Path, cfg: DictConfig | None = None) -> dict:
    """Reads a checkpoint; with `cfg`, checks it fits the model that cfg describes."""
    path = resolve_path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__})") from err
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path}: not a checkpoint written by this project")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format version {payload['format_version']}, expected {FORMAT_VERSION}"
        )
    if cfg is not None:
        saved = payload["cfg"]
        if saved.get("task") != cfg.task:
            raise CheckpointError(f"{path}: trained on task {saved.get('task')}, not {cfg.task}")
        for key in MATCH_KEYS:
            want = OmegaConf.to_container(cfg)[key] if key in cfg else None
            if key in saved and saved[key] != want:
                raise CheckpointError(f"{path}: {key} is {saved[key]} in the file, {want} here")
    return payload
