"""Evaluate a saved agent: `python tdmpc2/evaluate.py task=walker-walk checkpoint=RUN_DIR`.

`checkpoint` is a checkpoint file or a run directory; `save_video=true` writes an MP4
of the first episode into the run directory (a warning, not a crash, without a renderer).
The checkpoint's own config is used, so model sizes and other settings need not be
repeated; `eval_episodes`, `seed`, `save_video`, `device` and `threads` may be overridden,
and the trainer's `control_keys` (none for flat TD-MPC2) when given on the command line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("MUJOCO_GL", "egl")

import hydra
from omegaconf import DictConfig, OmegaConf

from tdmpc2.common import checkpoint
from tdmpc2.common.parser import ConfigError, apply_preset, quote_task_list
from tdmpc2.common.threads import ThreadShare
from tdmpc2.envs.wrappers.render import RendererError
from tdmpc2.train import build, cli_overrides, trainer_class

EVAL_KEYS = ("eval_episodes", "seed", "save_video", "device", "threads")


def evaluate(cfg: DictConfig, overrides: list[str]) -> dict[str, float]:
    if not cfg.checkpoint:
        raise ConfigError("checkpoint=PATH is required (a checkpoint file or a run directory)")
    path = checkpoint.resolve_path(cfg.checkpoint)
    payload = checkpoint.load(path)
    task = apply_preset(cfg, overrides).task
    saved = checkpoint.saved_config(payload)
    if saved.task != task:
        raise checkpoint.CheckpointError(f"{path}: trained on task {saved.task}, not {task}")
    for key in EVAL_KEYS:
        saved[key] = cfg[key]
    control_keys = trainer_class(saved).control_keys
    for key in control_keys:
        if any(o.split("=", 1)[0].lstrip("+") == key for o in overrides):
            if OmegaConf.select(saved, key) is None:
                raise ConfigError(f"{key}: {path} was not trained with that key")
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key))
    saved.work_dir = str(path.parent / "eval")
    saved.checkpoint = str(path)
    trainer = build(saved, [], with_buffer=False)
    checkpoint.check(path, payload, trainer.cfg)  # shapes and sizes must fit the rebuilt model
    with checkpoint.reading(path):
        trainer.load_models(payload)
    share = ThreadShare(trainer.cfg.threads)  # threads=auto: a fair share beside other runs
    share.refresh(force=True)
    try:
        results = trainer.eval(video=cfg.save_video)
    finally:
        share.close()
    control = {k: OmegaConf.select(saved, k) for k in control_keys}
    control = {k: v for k, v in control.items() if v is not None}
    trainer.logger.log({"step": payload["step"], **control, **results}, "eval")
    trainer.logger.finish()
    return results


@hydra.main(config_path=None, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg, cli_overrides())
    except (ConfigError, ValueError, FileNotFoundError, ImportError, RendererError) as err:
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:
        print("interrupted: evaluation not finished", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    sys.argv = quote_task_list(sys.argv)
    main()
