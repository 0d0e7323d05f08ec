"""Checkpoint files: atomic writes, a format version, rotation, resuming, and clear errors.

A run directory holds `checkpoint_<step>.pt` files (the `keep_checkpoints` most recently
written ones) and `checkpoint.pt`, the latest of them (a hard link, or a copy where the
file system has none). Each file is self-contained: the config it was trained with, the
models and optimisers, counters, random states, the replay buffer and the logs' lengths.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from tdmpc2.common.parser import ConfigError, apply_preset, defaults

FORMAT_VERSION = 2  # 2: full resume state (loop, buffer, environment, logs)
LATEST = "checkpoint.pt"
STEP_FILE = re.compile(r"checkpoint_(\d+)\.pt")
# Keys whose values must agree between a checkpoint and the config that loads it.
MATCH_KEYS = ("obs_shape", "action_dim", "latent_dim", "mlp_dim", "enc_dim", "num_q", "num_bins")
# Keys a resumed run may change: how it runs and for how long, never what it learns.
RESUME_KEYS = (
    "steps",
    "save_freq",
    "keep_checkpoints",
    "max_nonfinite",
    "device",
    "threads",
    "progress_bar",
    "reference_dir",
    "save_video",
    "enable_wandb",
)
TRAIN_SCRIPT = Path(__file__).resolve().parents[1] / "train.py"


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


def step_files(run_dir: Path) -> list[Path]:
    """The run's `checkpoint_<step>.pt` files, oldest written first."""
    files = [p for p in run_dir.glob("checkpoint_*.pt") if STEP_FILE.fullmatch(p.name)]
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, int(STEP_FILE.fullmatch(p.name)[1])))


def save_step(run_dir: Path, step: int, state: dict, cfg: DictConfig, keep: int) -> Path:
    """Writes `checkpoint_<step>.pt`, makes it `checkpoint.pt`, keeps the newest `keep` files.

    Pruning goes by write order, so files left by an abandoned future of a run resumed
    from an older checkpoint go first and the file just written always stays.
    """
    path = save(run_dir / f"checkpoint_{step}.pt", state, cfg)
    tmp = run_dir / (LATEST + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)
    except OSError:  # no hard links here: a copy is as good, only larger
        shutil.copyfile(path, tmp)
    os.replace(tmp, run_dir / LATEST)
    others = [p for p in step_files(run_dir) if p != path]
    for old in others[: max(len(others) - (keep - 1), 0)]:
        old.unlink(missing_ok=True)
    return path


def resolve_path(path: str | Path) -> Path:
    """A checkpoint file, or the latest checkpoint inside a run directory."""
    path = Path(str(path)).expanduser()
    if path.is_dir():
        files = step_files(path)  # the newest one if stopped before linking checkpoint.pt
        path = path / LATEST if (path / LATEST).is_file() or not files else files[-1]
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def load(path: str | Path, cfg: DictConfig | None = None) -> dict:
    """Reads a checkpoint; with `cfg`, checks it fits the model that cfg describes."""
    path = resolve_path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(
            f"{path}: not a readable checkpoint, truncated or corrupt ({one_line(err)})"
        ) from err
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path}: not a checkpoint written by this project")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format version {payload['format_version']}, expected {FORMAT_VERSION}"
        )
    if cfg is not None:
        check(path, payload, cfg)
    return payload


def check(path: Path, payload: dict, cfg: DictConfig) -> None:
    """Raises if the checkpoint's task or shapes differ from those `cfg` builds."""
    saved = payload["cfg"]
    if saved.get("task") != cfg.task:
        raise CheckpointError(f"{path}: trained on task {saved.get('task')}, not {cfg.task}")
    for key in MATCH_KEYS:
        want = OmegaConf.to_container(cfg)[key] if key in cfg else None
        if key in saved and saved[key] != want:
            raise CheckpointError(f"{path}: {key} is {saved[key]} in the file, {want} here")


def check_kind(state: dict, kind: str) -> None:
    """Raises unless the checkpoint holds the kind of agent (a trainer's `kind`) that loads it."""
    if state.get("kind", "tdmpc2") != kind:
        raise CheckpointError(f"checkpoint holds a {state.get('kind')} agent, this run is {kind}")


def one_line(err: Exception) -> str:
    """An exception as one short line: its type and its message with newlines folded."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}" if text else type(err).__name__


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turns any failure to load a checkpoint's contents into one CheckpointError line."""
    try:
        yield
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from err
    except (KeyError, RuntimeError, TypeError, ValueError, IndexError) as err:
        raise CheckpointError(f"{path}: does not fit this run ({one_line(err)})") from err


@dataclass
class ResumePoint:
    """A checkpoint to continue from and the config the continued run uses."""

    path: Path
    payload: dict
    cfg: DictConfig


def saved_config(payload: dict) -> DictConfig:
    """The run's config from its checkpoint; keys added to config.yaml since it was saved
    take their defaults (inside key groups too), so older checkpoints still
    resume and evaluate."""
    added = _missing(defaults(), payload["cfg"])
    return OmegaConf.merge(OmegaConf.create(added), OmegaConf.create(payload["cfg"]))


def _missing(default: dict, saved: dict) -> dict:
    """The keys of `default` that `saved` lacks, at any depth, placeholders (`???`) left out."""
    added = {}
    for key, value in default.items():
        if key in ("defaults", "hydra") or value == "???":
            continue
        if key not in saved:
            added[key] = value
        elif isinstance(value, dict) and isinstance(saved[key], dict):
            nested = _missing(value, saved[key])
            if nested:
                added[key] = nested
    return added


def resume_point(cfg: DictConfig, overrides: list[str]) -> ResumePoint:
    """The checkpoint `cfg.resume` names and the saved config a resumed run uses.

    Command-line overrides may change only RESUME_KEYS; any other key must repeat
    the saved value (so the original command line plus `resume=...` works).
    """
    path = resolve_path(cfg.resume)
    payload = load(path)
    saved = saved_config(payload)
    requested = apply_preset(cfg, overrides)
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if key == "resume":
            continue
        value = OmegaConf.select(requested, key)
        if key in RESUME_KEYS:
            OmegaConf.update(saved, key, value)
        elif value != OmegaConf.select(saved, key):
            raise ConfigError(
                f"resume: {key}={value} differs from the run's config "
                f"({key}={OmegaConf.select(saved, key)}); on resume only "
                f"{', '.join(RESUME_KEYS)} may change"
            )
    step, steps = int(payload["step"]), int(saved.steps)
    if steps < step or (payload.get("finished") and steps == step):
        state = "finished" if payload.get("finished") else "stopped"
        raise ConfigError(
            f"resume: {path} {state} at step {step}, steps={steps}; "
            f"pass steps=N with N > {step} to train longer"
        )
    saved.work_dir = str(path.parent)
    saved.resume = None
    return ResumePoint(path, payload, saved)


def resume_command(run_dir: Path) -> str:
    """The command line that continues the run in `run_dir`."""
    script = os.path.relpath(TRAIN_SCRIPT)
    return f"python {shlex.quote(script)} resume={shlex.quote(str(run_dir))}"


class OwnOptimisers:
    """For modules that build their own optimisers (named in `OPTIMISERS`): their
    states, which `nn.Module.state_dict()` leaves out."""

    OPTIMISERS: tuple[str, ...] = ()

    def optim_state_dict(self) -> dict:
        return {name: getattr(self, name).state_dict() for name in self.OPTIMISERS}

    def load_optim_state_dict(self, state: dict) -> None:
        """Loads a copy: torch's loader would otherwise share (and step) the given tensors."""
        state = copy.deepcopy(state)
        for name in self.OPTIMISERS:
            getattr(self, name).load_state_dict(state[name])
