"""Replay buffer: subsequences stay inside one episode through wrap-around and overwrites."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from tdmpc2.common.buffer import Buffer

H, B = 3, 64


def episode(ep_id: int, length: int) -> dict[str, torch.Tensor]:
    """obs = (episode id, t), so every sample reveals where it came from."""
    t = torch.arange(length + 1, dtype=torch.float32)
    return {
        "obs": torch.stack([torch.full_like(t, ep_id), t], dim=-1),
        "action": torch.stack([t[:-1], -t[:-1]], dim=-1),
        "reward": t[:-1] + 0.5,
        "terminated": t[:-1] == length - 1,  # bool is accepted
    }


def check_batch(batch: dict[str, torch.Tensor], lengths: dict[int, int]) -> None:
    """Each column: obs_t..obs_{t+H} of one episode and the steps leaving obs_t..obs_{t+H-1}."""
    obs = batch["obs"]
    assert obs.shape == (H + 1, B, 2)
    assert batch["action"].shape == (H, B, 2)
    assert batch["reward"].shape == batch["terminated"].shape == (H, B, 1)
    assert batch["terminated"].dtype == torch.float32
    ep, t = obs[..., 0], obs[..., 1]
    assert (ep == ep[:1]).all(), "a subsequence crossed episodes"
    assert (t[1:] - t[:-1] == 1).all(), "steps are not consecutive"
    ends = torch.tensor([lengths[int(e)] for e in ep[0]], dtype=torch.float32)
    assert (t[-1] <= ends).all(), "ran past an episode's last observation"
    assert torch.equal(batch["action"][..., 0], t[:-1])
    assert torch.equal(batch["reward"][..., 0], t[:-1] + 0.5)
    assert torch.equal(batch["terminated"][..., 0], (t[:-1] == ends - 1).float())


@pytest.mark.parametrize("capacity", [23, 57])
def test_samples_never_cross_episodes_through_wraparound(capacity):
    buf = Buffer(capacity, obs_shape=(2,), action_dim=2, horizon=H, batch_size=B, seed=0)
    g = torch.Generator().manual_seed(capacity)
    lengths: dict[int, int] = {}
    for ep_id in range(40):  # many times the capacity: the ring wraps and overwrites
        # includes episodes shorter than H and ones filling nearly the whole ring
        length = int(torch.randint(1, capacity, (1,), generator=g))
        lengths[ep_id] = length
        buf.add(episode(ep_id, length))
        assert buf.num_episodes == ep_id + 1
        assert 0 < len(buf) <= capacity - 1
        try:
            batch = buf.sample()
        except RuntimeError as err:  # only when no stored remnant has H steps
            assert "no subsequence" in str(err)
            continue
        for _ in range(5):
            check_batch(batch, lengths)
            batch = buf.sample()


def test_transition_count_tracks_overwrites():
    buf = Buffer(10, (2,), 2, H, B)
    buf.add(episode(0, 4))  # slots 0-4
    buf.add(episode(1, 3))  # slots 5-8
    assert len(buf) == buf.num_transitions == 7
    buf.add(episode(2, 2))  # slots 9, 0, 1: episode 0 keeps obs 2..4, i.e. 2 steps
    assert len(buf) == 2 + 3 + 2


def test_every_valid_start_is_reachable_and_nothing_else():
    buf = Buffer(16, (2,), 2, H, B, seed=1)
    buf.add(episode(0, 5))
    buf.add(episode(1, 2))  # too short for H = 3: never sampled
    buf.add(episode(2, 4))
    starts = set()
    for _ in range(20):
        obs = buf.sample()["obs"][0]
        starts |= {(int(e), int(t)) for e, t in obs}
    assert starts == {(0, 0), (0, 1), (0, 2), (2, 0), (2, 1)}


def test_a_nearly_full_ring_episode_does_not_wrap_onto_itself():
    buf = Buffer(10, (2,), 2, H, B, seed=2)
    buf.add(episode(0, 9))  # slots 0-9; start 8 + 3 wraps onto slot 1 of the same episode
    check_batch(buf.sample(), {0: 9})
    buf.add(episode(1, 2))  # overwrites slots 0-2; episode 0 keeps obs 3..9
    for _ in range(10):
        check_batch(buf.sample(), {0: 9, 1: 2})


def test_rare_valid_starts_still_sample():
    """Rejection gives up on a ring of mostly too-short episodes; the exact scan does not."""
    buf = Buffer(400, (2,), 2, H, B, seed=3)
    for ep_id in range(129):
        buf.add(episode(ep_id, 2))
    buf.add(episode(129, 3))  # the only valid start
    batch = buf.sample()
    assert (batch["obs"][0] == torch.tensor([129.0, 0.0])).all()


def test_errors():
    buf = Buffer(10, (2,), 2, H, B)
    with pytest.raises(RuntimeError, match="no subsequence of length H"):
        buf.sample()
    buf.add(episode(0, 2))
    with pytest.raises(RuntimeError, match="no subsequence of length H"):
        buf.sample()
    with pytest.raises(ValueError, match="capacity is 10"):
        buf.add(episode(1, 10))
    bad = episode(1, 4)
    bad["action"] = bad["action"][:, :1]
    with pytest.raises(ValueError, match="action"):
        buf.add(bad)


def test_same_seed_same_samples_and_batch_size_override():
    bufs = [Buffer(200, (2,), 2, H, B, seed=5) for _ in range(2)]
    for buf in bufs:
        for i in range(5):
            buf.add(episode(i, 30))
    for _ in range(3):
        assert torch.equal(bufs[0].sample()["obs"], bufs[1].sample()["obs"])
    assert bufs[0].sample(batch_size=7)["action"].shape == (H, 7, 2)


def test_from_cfg():
    cfg = OmegaConf.create(
        {
            "buffer_size": 50,
            "obs": "state",
            "obs_shape": {"state": [2]},
            "action_dim": 2,
            "horizon": H,
            "batch_size": B,
            "device": "cpu",
            "seed": 0,
        }
    )
    buf = Buffer.from_cfg(cfg)
    assert (buf.capacity, buf.obs_shape, buf.horizon, buf.batch_size) == (50, (2,), H, B)


def test_save_load_round_trip(tmp_path):
    buf = Buffer(50, (2,), 2, H, B, seed=5)
    for i in range(6):  # wraps
        buf.add(episode(i, 12))
    buf.save(tmp_path / "buffer.pt")
    assert not (tmp_path / "buffer.pt.tmp").exists()
    loaded = Buffer.load(tmp_path / "buffer.pt")
    assert (loaded.horizon, loaded.batch_size) == (H, B)
    assert (len(loaded), loaded.num_episodes) == (len(buf), buf.num_episodes)
    for a, b in zip(buf.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
    for _ in range(3):  # the generator state travels too
        assert all(
            torch.equal(x, y)
            for x, y in zip(buf.sample().values(), loaded.sample().values(), strict=True)
        )
    buf.add(episode(6, 12))
    loaded.add(episode(6, 12))
    assert torch.equal(buf.sample()["obs"], loaded.sample()["obs"])
    assert Buffer.load(tmp_path / "buffer.pt", horizon=5, batch_size=4).sample()["obs"].shape == (
        6,
        4,
        2,
    )


def test_load_state_dict_rejects_another_shape():
    state = Buffer(50, (2,), 2, H, B).state_dict()
    with pytest.raises(ValueError, match="obs_shape"):
        Buffer(50, (3,), 2, H, B).load_state_dict(state)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pt"):
        Buffer.load(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"bad\.pt: not a replay buffer file"):
        Buffer.load(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match=r"other\.pt: not a replay buffer file"):
        Buffer.load(other)


@pytest.mark.parametrize("episodic", [False, True])
def test_a_runs_replay_keeps_every_step_when_episodes_end_early(episodic):
    """train.py sizes the ring for the run: on an episodic task, early ends make more
    episodes (one slot each beyond their steps) than full-length ones would."""
    from tdmpc2.train import replay_slots

    steps, length = 40, 10
    cfg = OmegaConf.create({"steps": steps, "episode_length": length, "episodic": episodic})
    buf = Buffer(replay_slots(cfg), obs_shape=(2,), action_dim=2, horizon=H, batch_size=B)
    # Full-length episodes; on an episodic task, the worst case: every episode one step.
    lengths = [1] * steps if episodic else [length] * (steps // length)
    for ep_id, n in enumerate(lengths):
        buf.add(episode(ep_id, n))
    assert len(buf) == steps
