"""Each task preset is what a study measured, or says it is not.

A preset's first line is either `# Measured: bench/results/<study>/<task>/<agent> (...)`,
a folder of runs (`seed<k>/config.yaml`) whose saved config the preset composes to, key
for key, or `# Unmeasured...`. Nothing trains here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tdmpc2.common.parser import parse_cfg
from tests.conftest import ROOT, compose_cfg

PRESETS = sorted((ROOT / "tdmpc2" / "configs" / "task").glob("*.yaml"))
MEASURED = re.compile(r"^# Measured: (bench/results/\S+)")

# Keys that say where and how a run is watched, not what it learns, and keys filled in
# from the environment when it starts.
ASIDE = {
    "work_dir", "run_dir", "exp_name", "seed", "device", "threads", "eval_freq",
    "eval_episodes", "checkpoint", "resume", "save_agent", "save_freq", "keep_checkpoints",
    "save_video", "save_csv", "save_buffer", "progress_bar", "reference_dir",
    "enable_wandb", "wandb_project", "wandb_entity", "max_nonfinite", "compile",
    "obs_shape", "action_dim", "episode_length", "discount",
}  # fmt: skip
# Keys added after some studies ran, at the value the code then had implicitly.
ADDED_SINCE = {
    "action_repeat": None,
    "worker.value_spread_floor": 0.0,
    "worker.task_coef": 1.0,
    "worker.eval_goals": True,
    "manager.frontier": 0.0,
    "manager.frontier_hold": 16,  # acts only with manager.frontier > 0
    "manager.exploration": "recon",
    "worker.goal_temperature": 0.0,
    "manager.frontier_reach": 0,  # acts only with manager.frontier > 0
    "manager.frontier_path": 0,  # acts only with manager.frontier > 0
    "manager.frontier_space": "latent",  # acts only with manager.frontier > 0
    "manager.frontier_then": "manager",  # acts only with manager.frontier_path > 0
    "decoder_coef": 0.0,
    "worker.task_share": 0.0,
}


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "obs_shape":
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def composed(preset: Path) -> dict:
    args = [f"task={preset.stem}"]
    cfg = parse_cfg(compose_cfg(args), args)
    return flat(OmegaConf.to_container(cfg, resolve=False))


def differences(ours: dict, saved: dict) -> dict:
    """Keys whose values differ, (ours, the study's), bookkeeping aside. A key the study's
    config lacks counts at its value of then; `episodic` null is the task's own (off on
    DeepMind Control, as the saved runs show); unset seed_steps is max(1000, 5 x length)."""
    diff = {}
    for key in sorted(set(ours) | set(saved)):
        if key in ASIDE:
            continue
        theirs = saved.get(key, ADDED_SINCE.get(key, "<absent>"))
        mine = ours.get(key, "<absent>")
        if key == "seed_steps" and mine == "???":
            mine = max(1000, 5 * int(saved["episode_length"]))
        if key == "episodic" and mine is None:
            mine = theirs
        if mine != theirs:
            diff[key] = (mine, theirs)
    return diff


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_each_preset_is_its_studys_setting_or_says_it_is_unmeasured(preset):
    first = preset.read_text().splitlines()[0]
    if first.startswith("# Unmeasured"):
        return
    match = MEASURED.match(first)
    assert match, f"{preset.name}: first line neither '# Measured: <runs>' nor '# Unmeasured'"
    runs = sorted((ROOT / match[1]).glob("seed*/config.yaml"))
    assert runs, f"{preset.name}: no saved runs under {match[1]}"
    ours = composed(preset)
    for saved in runs:
        diff = differences(ours, flat(OmegaConf.to_container(OmegaConf.load(saved))))
        assert not diff, f"{preset.name} against {saved.relative_to(ROOT)}: {diff}"


def test_the_comparison_catches_a_difference():
    saved = {"steps": 10000, "worker.novelty_coef": 1, "threads": 1, "episode_length": 500}
    ours = {"steps": 100000, "worker.novelty_coef": 1.0, "threads": "auto"}
    ours |= {"seed_steps": "???", "worker.value_spread_floor": 0.01}
    assert differences(ours, saved) == {
        "seed_steps": (2500, "<absent>"),
        "steps": (100000, 10000),
        "worker.value_spread_floor": (0.01, 0.0),
    }
