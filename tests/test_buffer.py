"""Replay buffer: subsequences stay inside one episode, through wrap-around and overwrites."""

from __future__ import annotations

import pytest
import torch

from tdmpc2.common.buffer import Buffer


def episode(ep_id: int, length: int) -> dict[str, torch.Tensor]:
    """obs encode (episode id, time step) so a sample reveals where it came from."""
    t = torch.arange(length + 1, dtype=torch.float32)
    obs = torch.stack([torch.full_like(t, ep_id), t], dim=-1)
    return {
        "obs": obs,
        "action": t[:-1, None].repeat(1, 2),
        "reward": t[:-1] + 0.5,
        "terminated": torch.zeros(length),
    }


def test_samples_never_cross_episodes_with_wraparound_and_overwrite():
    buf = Buffer(capacity=57, obs_shape=(2,), action_dim=2, horizon=3, batch_size=64, seed=0)
    g = torch.Generator().manual_seed(1)
    for ep_id in range(12):  # ~3x the capacity: the ring wraps and overwrites
        buf.add(episode(ep_id, int(torch.randint(3, 20, (1,), generator=g))))
        batch = buf.sample()
        obs = batch["obs"]
        assert obs.shape == (4, 64, 2)
        assert batch["action"].shape == (3, 64, 2)
        assert batch["reward"].shape == batch["terminated"].shape == (3, 64, 1)
        assert (obs[:, :, 0] == obs[:1, :, 0]).all(), "one episode per subsequence"
        assert (obs[1:, :, 1] - obs[:-1, :, 1] == 1).all(), "consecutive steps"
        # the action and reward belong to the step that leaves each observation
        assert torch.equal(batch["action"][:, :, 0], obs[:-1, :, 1])
        assert torch.equal(batch["reward"][..., 0], obs[:-1, :, 1] + 0.5)


def test_short_episodes_are_never_sampled():
    buf = Buffer(capacity=100, obs_shape=(2,), action_dim=2, horizon=3, batch_size=8)
    buf.add(episode(0, 2))
    with pytest.raises(RuntimeError, match="no subsequence"):
        buf.sample()
    buf.add(episode(1, 3))
    assert (buf.sample()["obs"][:, :, 0] == 1).all()


def test_same_seed_same_samples_and_save_load_round_trip(tmp_path):
    bufs = [Buffer(200, (2,), 2, 3, 32, seed=5) for _ in range(2)]
    for buf in bufs:
        for i in range(5):
            buf.add(episode(i, 30))
    assert torch.equal(bufs[0].sample()["obs"], bufs[1].sample()["obs"])
    bufs[0].save(tmp_path / "buffer.pt")
    loaded = Buffer.load(tmp_path / "buffer.pt", horizon=3, batch_size=32)
    assert len(loaded) == len(bufs[0]) == 150
    assert torch.equal(loaded.sample()["obs"], bufs[0].sample()["obs"])


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pt"):
        Buffer.load(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"bad\.pt: not a replay buffer"):
        Buffer.load(bad)
