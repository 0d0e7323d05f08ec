"""Evaluate a saved agent: `python tdmpc2/evaluate.py task=walker-walk checkpoint=RUN_DIR`.

`checkpoint` is a checkpoint file or a run directory; results go to RUN_DIR/eval/eval.csv,
and `save_video=true` writes an MP4 of the first episode to RUN_DIR/eval/videos/ (a
warning, not a crash, without a renderer).
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
import torch
from omegaconf import DictConfig, OmegaConf

from tdmpc2.common import checkpoint
from tdmpc2.common.evaluation import each_task, run_episodes
from tdmpc2.common.parser import ConfigError, apply_preset, quote_task_list
from tdmpc2.common.threads import ThreadShare
from tdmpc2.envs.wrappers.render import RendererError
from tdmpc2.train import cli_overrides, setup, trainer_class

EVAL_KEYS = ("eval_episodes", "seed", "save_video", "device", "threads")


def evaluate(cfg: DictConfig, overrides: list[str]) -> dict[str, float]:
    """Evaluates a checkpoint as its training's evaluations did, without a trainer: the
    agent acts alone, or through the trainer's `extension` (what it learned beside the
    agent), built and loaded from the checkpoint. Results go to eval/eval.csv."""
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
    cls, run, env, agent, _, logger = setup(saved, [], with_buffer=False)
    extension = None if cls.extension is None else cls.extension(run, agent)
    checkpoint.check(path, payload, run)  # shapes and sizes must fit the rebuilt model
    with checkpoint.reading(path):
        checkpoint.check_kind(payload, cls.kind)
        agent.load_state_dict(payload["agent"])
        if extension is not None:
            extension.load_models(payload)

    def act(obs: torch.Tensor, t: int) -> torch.Tensor:
        task = env.task if run.multitask else None
        if extension is None:
            return agent.act(obs, t0=t == 0, eval_mode=True, task=task)
        return extension.act(obs, t, eval_mode=True, task=task)

    def episodes(first: bool) -> dict[str, float]:
        """The episodes of one task (of a set); a video of the first task's first one."""
        record = bool(run.save_video) and first
        results, frames = run_episodes(env, act, int(run.eval_episodes), record, logger.write)
        if frames:
            logger.save_video(frames, payload["step"])
        return results

    share = ThreadShare(run.threads)  # threads=auto: a fair share beside other runs
    share.refresh(force=True)
    try:
        results = each_task(run.tasks, env, episodes) if run.multitask else episodes(True)
    finally:
        share.close()
    if extension is not None:
        results.update(extension.eval_metrics())
    control = {k: OmegaConf.select(saved, k) for k in control_keys}
    control = {k: v for k, v in control.items() if v is not None}
    logger.log({"step": payload["step"], **control, **results}, "eval")
    logger.finish()
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
