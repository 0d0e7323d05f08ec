"""Train a TD-MPC2 agent: `python tdmpc2/train.py task=walker-walk steps=100000`.

Any config key can be overridden (see tdmpc2/config.yaml); `task` also accepts a
preset from tdmpc2/configs/task/. Sweeps: add `-m seed=1,2,3 hydra/launcher=submitit_local`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python tdmpc2/train.py`: make `import tdmpc2` work
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("MUJOCO_GL", "egl")

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from tdmpc2.agent import TDMPC2
from tdmpc2.common import checkpoint
from tdmpc2.common.buffer import Buffer
from tdmpc2.common.checkpoint import CheckpointError
from tdmpc2.common.logger import Logger
from tdmpc2.common.multitask_buffer import MultitaskBuffer, load_replays
from tdmpc2.common.parser import (
    ConfigError,
    check_replay,
    make_run_dir,
    parse_cfg,
    quote_task_list,
    register_configs,
)
from tdmpc2.common.seed import set_seed
from tdmpc2.envs import make_env
from tdmpc2.envs.wrappers.render import RendererError
from tdmpc2.trainer.base import NonFiniteError, Trainer
from tdmpc2.trainer.director_trainer import DirectorTrainer, OfflineDirectorTrainer
from tdmpc2.trainer.offline_trainer import OfflineTrainer
from tdmpc2.trainer.online_trainer import OnlineTrainer

register_configs()


def trainer_class(cfg: DictConfig) -> type[Trainer]:
    """Multitask or a data_dir -> offline, else online; `trainer: director` -> the
    hierarchy over that loop."""
    if cfg.trainer == "director":
        return OfflineDirectorTrainer if cfg.multitask or cfg.data_dir else DirectorTrainer
    if cfg.multitask or cfg.data_dir:
        return OfflineTrainer
    if cfg.trainer != "online":
        raise ConfigError(f"unknown trainer '{cfg.trainer}' (expected: online or director)")
    return OnlineTrainer


def replay_buffer(cfg: DictConfig, cls: type[Trainer]) -> Buffer | MultitaskBuffer:
    """The offline trainer reads saved replay (all of a task set's files when multi-task);
    online ones start an empty buffer."""
    if cfg.multitask:
        return load_replays(cfg)
    if issubclass(cls, OfflineTrainer):
        path = Path(str(cfg.data_dir)).expanduser()
        path = path / "buffer.pt" if path.is_dir() else path
        if not path.is_file():
            raise ConfigError(
                f"data_dir: no replay file at {path} (save one with save_buffer=true)"
            )
        return Buffer.load(path, device=cfg.device, horizon=cfg.horizon, batch_size=cfg.batch_size)
    return Buffer.from_cfg(cfg, capacity=min(int(cfg.buffer_size), replay_slots(cfg)))


def replay_slots(cfg: DictConfig) -> int:
    """Slots that hold every step of the run: an episode of L steps takes L+1. Episodes
    that end early (episodic tasks) are more episodes, so more slots, than full-length
    ones: at most one per step."""
    steps = int(cfg.steps)
    episodes = steps if cfg.episodic else steps // int(cfg.episode_length) + 1
    return steps + episodes + 1


def setup(
    cfg: DictConfig, overrides: list[str], with_buffer: bool = True
) -> tuple[type[Trainer], DictConfig, Any, TDMPC2, Buffer | MultitaskBuffer | None, Logger]:
    """Config -> the trainer class and what it runs: the parsed config, environment,
    agent, replay buffer and logger (a new run directory). evaluate.py acts with them
    without a trainer."""
    cfg = parse_cfg(cfg, overrides)
    set_seed(cfg.seed)
    env = make_env(cfg)
    cls = trainer_class(cfg)
    if OmegaConf.is_missing(cfg, "seed_steps"):
        cfg.seed_steps = max(1000, 5 * cfg.episode_length)
    if not issubclass(cls, OfflineTrainer):
        check_replay(cfg)
    buffer = replay_buffer(cfg, cls) if with_buffer else None
    run_dir = make_run_dir(cfg)
    cfg.run_dir = str(run_dir)
    OmegaConf.save(cfg, run_dir / "config.yaml")
    return cls, cfg, env, TDMPC2(cfg), buffer, Logger(cfg, run_dir)


def build(cfg: DictConfig, overrides: list[str], with_buffer: bool = True) -> Trainer:
    """Config -> environment, agent, buffer, logger and the trainer that runs them.

    With `resume=RUN_DIR` the checkpoint's saved config is used (see checkpoint.RESUME_KEYS)
    and the trainer continues from the checkpoint's state.
    """
    resume = checkpoint.resume_point(cfg, overrides) if cfg.get("resume") else None
    if resume is not None:
        cfg, overrides = resume.cfg, []
    cls, cfg, *parts = setup(cfg, overrides, with_buffer)
    trainer = cls(cfg, *parts)
    if resume is not None:
        checkpoint.check(resume.path, resume.payload, cfg)
        trainer.resume(resume.path, resume.payload)
    return trainer


def cli_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


@hydra.main(config_path=None, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Exit status: 0 done, 1 a bad setting or a failing run, 128 + signal when stopped
    by SIGINT (130) or SIGTERM (143) after saving a checkpoint."""
    try:
        trainer = build(cfg, cli_overrides())
    except (
        ConfigError,
        CheckpointError,
        ValueError,
        FileNotFoundError,
        ImportError,
        RendererError,
    ) as err:
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:
        print("interrupted while starting: nothing to save", file=sys.stderr)
        sys.exit(130)
    c = trainer.cfg
    trainer.logger.write(
        f"{type(trainer).__name__} | task {c.task} | model_size {c.model_size} "
        f"({sum(p.numel() for p in trainer.agent.model.parameters() if p.requires_grad):,} "
        f"parameters) | steps {c.steps:,} | device {c.device}\nrun directory: {c.run_dir}"
    )
    try:
        trainer.train()
    except NonFiniteError as err:
        sys.exit(f"error: {err}")
    finally:
        trainer.logger.finish()
    if trainer.stopped_by is not None:
        sys.exit(128 + trainer.stopped_by)


if __name__ == "__main__":
    sys.argv = quote_task_list(sys.argv)
    main()
