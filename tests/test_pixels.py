"""Pixel observations: rendering and frame stacks, one-frame replay storage, the conv
encoder with its augmentation, and short runs (toy task, DeepMind Control; the Director's, on
Gymnasium too: test_director_cases.py)."""

from __future__ import annotations

import csv
import ctypes.util
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import DictConfig

from tdmpc2.agent import TDMPC2
from tdmpc2.common import buffer as buffer_module
from tdmpc2.common.buffer import Buffer
from tdmpc2.common.layers import PixelEncoder, random_shift
from tdmpc2.common.parser import parse_cfg
from tdmpc2.envs import make_env
from tdmpc2.envs.wrappers.pixels import Pixels
from tdmpc2.envs.wrappers.render import RendererError
from tdmpc2.envs.wrappers.timelimit import TimeLimit
from tests.conftest import ROOT, TINY, compose_cfg, make_cfg

FRAME = (3, 64, 64)
ENV = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}


def toy_pixels_cfg() -> DictConfig:
    return parse_cfg(compose_cfg(["task=toy-reach", "obs=rgb", *TINY]), [])


def test_the_environment_stacks_the_last_three_frames_as_uint8():
    cfg = toy_pixels_cfg()
    env = make_env(cfg)
    assert tuple(cfg.obs_shape["rgb"]) == (9, 64, 64)
    first = env.reset()
    assert first.dtype == torch.uint8 and first.shape == (9, 64, 64)
    assert torch.equal(first[:3], first[3:6]) and torch.equal(first[3:6], first[6:])
    previous = first
    for _ in range(3):
        obs = env.step(torch.ones(2))[0]
        assert torch.equal(obs[:6], previous[3:])  # older frames move up by one
        previous = obs
    assert not torch.equal(obs[6:], first[6:])  # the point moved


def stacked_episode(episode_id: int, steps: int) -> dict[str, torch.Tensor]:
    """Frames whose every pixel holds 12 x episode + step (steps <= 11), stacked as the
    environment does."""
    frames = [torch.full(FRAME, 12 * episode_id + t, dtype=torch.uint8) for t in range(steps + 1)]
    obs = torch.stack(
        [torch.cat([frames[max(t - k, 0)] for k in (2, 1, 0)]) for t in range(steps + 1)]
    )
    return {
        "obs": obs,
        "action": torch.zeros(steps, 2),
        "reward": torch.zeros(steps),
        "terminated": torch.zeros(steps),
    }


def test_the_replay_stores_each_frame_once_and_rebuilds_the_stacks_exactly():
    capacity, horizon = 40, 3
    buf = Buffer(
        capacity, (9, 64, 64), 2, horizon, 64, seed=0, obs_dtype=torch.uint8, frame_stack=3
    )
    assert buf._obs.shape == (capacity, *FRAME) and buf._obs.dtype == torch.uint8
    originals = {}
    for episode_id in range(7):  # 7 x 12 slots: the ring wraps and cuts older episodes
        episode = stacked_episode(episode_id, 11)
        buf.add(episode)
        originals[episode_id] = episode["obs"]
    batch = buf.sample()
    obs = batch["obs"]
    assert obs.shape == (horizon + 1, 64, 9, 64, 64) and obs.dtype == torch.uint8
    for b in range(64):
        episode_id, t = divmod(int(obs[-1, b, -1, 0, 0]), 12)
        expected = originals[episode_id][t - horizon : t + 1]
        assert torch.equal(obs[:, b], expected)  # the oldest frames were never overwritten


def test_a_saved_pixel_replay_loads_back_identically(tmp_path):
    buf = Buffer(30, (9, 64, 64), 2, 3, 8, seed=0, obs_dtype=torch.uint8, frame_stack=3)
    buf.add(stacked_episode(1, 12))
    buf.save(tmp_path / "buffer.pt")
    loaded = Buffer.load(tmp_path / "buffer.pt")
    assert loaded.frame_stack == 3 and loaded._obs.dtype == torch.uint8
    assert torch.equal(loaded.sample()["obs"], buf.sample()["obs"])


def test_a_buffer_that_cannot_fit_in_memory_fails_with_the_figure_it_needs(monkeypatch):
    monkeypatch.setattr(buffer_module, "available_memory", lambda: 2**30)
    with pytest.raises(ValueError, match=r"100,000 steps needs 1\.1 GiB .* 1\.0 GiB is available"):
        Buffer(100_000, (9, 64, 64), 6, 3, 256, obs_dtype=torch.uint8, frame_stack=3)
    Buffer(50_000, (9, 64, 64), 6, 3, 256, obs_dtype=torch.uint8, frame_stack=3)  # 0.6 GiB


def test_random_shift_translates_each_image_by_whole_pixels():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (2, 5, 9, 64, 64), dtype=torch.uint8)
    shifted = random_shift(images, pad=3)
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8
    assert torch.equal(random_shift(images, pad=0), images)
    image, moved = images[0, 0].float(), shifted[0, 0].float()
    padded = torch.nn.functional.pad(image[None], (3, 3, 3, 3), mode="replicate")[0]
    crops = [padded[:, dy : dy + 64, dx : dx + 64] for dy in range(7) for dx in range(7)]
    assert any(torch.equal(crop, moved) for crop in crops)


def test_the_pixel_encoder_maps_any_leading_shape_onto_simplices():
    encoder = PixelEncoder((9, 64, 64), channels=8, latent_dim=32, simnorm_dim=8)
    obs = torch.randint(0, 256, (4, 3, 9, 64, 64), dtype=torch.uint8)
    z = encoder(obs)
    assert z.shape == (4, 3, 32)
    assert torch.allclose(z.unflatten(-1, (4, 8)).sum(-1), torch.ones(4, 3, 4))
    assert torch.allclose(encoder(obs[1, 2]), z[1, 2], atol=1e-6)  # one observation alone


def test_updates_train_the_conv_encoder_on_shifted_frames():
    cfg = make_cfg([*TINY, "obs=rgb", "num_channels=8"])
    cfg.obs_shape = {"rgb": [9, 64, 64]}
    agent = TDMPC2(cfg)
    conv = agent.model._encoder.convs[0].weight
    before = conv.detach().clone()
    horizon, batch = cfg.horizon, cfg.batch_size
    sample = {
        "obs": torch.randint(0, 256, (horizon + 1, batch, 9, 64, 64), dtype=torch.uint8),
        "action": torch.rand(horizon, batch, cfg.action_dim) * 2 - 1,
        "reward": torch.rand(horizon, batch, 1),
        "terminated": torch.zeros(horizon, batch, 1),
    }
    agent.update(SimpleNamespace(sample=lambda: sample))
    assert not torch.equal(conv, before)


class _NoRenderer:
    observation_space = action_space = None

    def render(self, width: int, height: int) -> np.ndarray:
        raise AttributeError("'NoneType' object has no attribute 'glGetError'")


def test_no_renderer_fails_at_start_saying_what_to_install():
    with pytest.raises(RendererError, match=r"MUJOCO_GL=egl.*libosmesa6"):
        Pixels(TimeLimit(_NoRenderer(), 10))


@pytest.mark.skipif(
    ctypes.util.find_library("OSMesa") is not None, reason="OSMesa is installed here"
)
def test_train_py_with_an_unusable_renderer_is_one_line_saying_what_to_install():
    result = subprocess.run(
        [sys.executable, "tdmpc2/train.py", "task=cartpole-swingup", "obs=rgb", "model_size=1"],
        cwd=ROOT,
        env={**ENV, "MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "set MUJOCO_GL=egl" in last


def train(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "tdmpc2/train.py", *args, "threads=1", "progress_bar=false"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def eval_returns(run_dir) -> list[float]:
    with open(run_dir / "eval.csv") as f:
        return [float(row["episode_reward"]) for row in csv.DictReader(f)]


def toy_pixel_run_trains_saves_and_evaluates(tmp_path, trainer: list[str]) -> None:
    """A short pixel run of `trainer` on the toy task; evaluate.py loads its checkpoint."""
    run_dir = tmp_path / "run"
    train(
        [
            "task=toy-reach",
            "obs=rgb",
            *trainer,
            *TINY,
            "num_channels=8",
            "steps=100",
            "seed_steps=50",
            "eval_freq=100",
            "eval_episodes=1",
            f"work_dir={run_dir}",
        ]
    )
    assert len(eval_returns(run_dir)) == 2
    payload = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert any(key.startswith("_encoder.convs") for key in payload["agent"]["model"])
    result = subprocess.run(
        [
            sys.executable,
            "tdmpc2/evaluate.py",
            "task=toy-reach",
            f"checkpoint={run_dir / 'checkpoint.pt'}",
            "eval_episodes=1",
            "threads=1",
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "return" in result.stdout


def test_a_pixel_run_on_the_toy_task_trains_saves_and_evaluates(tmp_path):
    toy_pixel_run_trains_saves_and_evaluates(tmp_path, ["trainer=online"])


def test_a_pixel_run_on_deepmind_control_renders_and_learns_from_frames(tmp_path):
    run_dir = tmp_path / "cartpole"
    train(
        [
            "task=cartpole-swingup",
            "obs=rgb",
            *TINY,
            "num_channels=8",
            "steps=510",
            "seed_steps=20",  # updates start when the first 500-step episode ends
            "eval_freq=510",
            "eval_episodes=1",
            f"work_dir={run_dir}",
        ]
    )
    assert all(np.isfinite(eval_returns(run_dir)))
    with open(run_dir / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and np.isfinite(float(rows[-1]["episode_reward"]))
