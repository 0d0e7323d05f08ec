"""Invariants of the TD-MPC2 building blocks and of the agent."""

from __future__ import annotations

import pytest
import torch

from tdmpc2.agent import TDMPC2
from tdmpc2.common.layers import QEnsemble, simnorm
from tdmpc2.common.math import TwoHot, discount_for, symexp, symlog
from tdmpc2.common.parser import MODEL_SIZE, ConfigError
from tdmpc2.common.world_model import WorldModel
from tests.conftest import TINY, make_cfg


def test_simnorm_groups_sum_to_one_and_match_plain_softmax():
    x = torch.randn(7, 64) * 5
    y = simnorm(x, 8)
    groups = y.view(7, 8, 8)
    assert torch.allclose(groups.sum(-1), torch.ones(7, 8), atol=1e-6)
    assert torch.allclose(y, torch.softmax(x.view(7, 8, 8), -1).view(7, 64), atol=1e-6)


def test_symlog_inverse():
    x = torch.linspace(-1000, 1000, 101)
    assert torch.allclose(symexp(symlog(x)), x, rtol=1e-4, atol=1e-4)


def test_two_hot_round_trip_and_cross_entropy_minimum():
    th = TwoHot(101, -10, 10)
    x = torch.tensor([[-50.0], [-1.3], [0.0], [0.7], [12.0], [400.0]])
    enc = th.encode(x)
    assert torch.allclose(enc.sum(-1), torch.ones(6))
    assert ((enc > 0).sum(-1) <= 2).all()
    # Decoding the log of a two-hot target gives the value back.
    assert torch.allclose(th.decode(torch.log(enc + 1e-12)), x, rtol=1e-3, atol=1e-3)
    logits = torch.log(enc + 1e-12)
    assert (th.cross_entropy(logits, x) <= th.cross_entropy(torch.zeros(6, 101), x)).all()


def test_two_hot_of_nan_is_a_nan_loss_not_a_crash():
    th = TwoHot(101, -10, 10)
    x = torch.tensor([[float("nan")], [1.0]])
    loss = th.cross_entropy(torch.zeros(2, 101), x)
    assert torch.isnan(loss[0]).all() and torch.isfinite(loss[1]).all()


@pytest.mark.parametrize(
    ("length", "expected"), [(500, 0.99), (1000, 0.995), (10, 0.95), (100, 0.95)]
)
def test_discount_rule(length, expected):
    assert discount_for(length, 5, 0.95, 0.995) == pytest.approx(expected)


def test_q_ensemble_subset_equals_full():
    q = QEnsemble(5, 10, 16, 7).eval()
    for w in q.weights:
        torch.nn.init.normal_(w)
    x = torch.randn(3, 4, 10)
    full = q(x)
    heads = torch.tensor([3, 1])
    assert full.shape == (5, 3, 4, 7)
    assert torch.allclose(q(x, heads=heads), full[heads], atol=1e-5)
    # Reference: each head as a plain loop over layers.
    h = x
    for i in range(3):
        h = h @ q.weights[i][2] + q.biases[i][2]
        if i < 2:
            h = torch.nn.functional.layer_norm(h, h.shape[-1:])
            h = torch.nn.functional.mish(h * q.ln_weights[i][2] + q.ln_biases[i][2])
    assert torch.allclose(full[2], h, atol=1e-4)


@pytest.mark.parametrize(("size", "millions"), [(1, 1.21), (5, 4.96)])
def test_model_sizes_match_public_parameter_counts(size, millions):
    cfg = make_cfg([f"model_size={size}", "device=cpu"], obs_dim=24, action_dim=6)
    model = WorldModel(cfg)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n / 1e6 == pytest.approx(millions, abs=0.01)
    assert cfg.num_q == MODEL_SIZE[size]["num_q"]


def test_planning_returns_bounded_actions(tiny_cfg):
    agent = TDMPC2(tiny_cfg)
    obs = torch.randn(5)
    for t0, eval_mode in [(True, False), (False, False), (False, True)]:
        a = agent.act(obs, t0=t0, eval_mode=eval_mode)
        assert a.shape == (3,)
        assert torch.isfinite(a).all()
        assert a.abs().max() <= 1


def test_planning_is_deterministic_under_a_seed(tiny_cfg):
    agent = TDMPC2(tiny_cfg)
    obs = torch.randn(5)
    torch.manual_seed(3)
    a1 = agent.act(obs, t0=True)
    torch.manual_seed(3)
    a2 = agent.act(obs, t0=True)
    assert torch.equal(a1, a2)


class FixedBatch:
    """A buffer stand-in that always returns the same batch."""

    def __init__(self, cfg):
        g = torch.Generator().manual_seed(0)
        H, B = cfg.horizon, cfg.batch_size
        self.batch = {
            "obs": torch.randn(H + 1, B, 5, generator=g),
            "action": torch.rand(H, B, 3, generator=g) * 2 - 1,
            "reward": torch.randn(H, B, 1, generator=g),
            "terminated": torch.zeros(H, B, 1),
        }

    def sample(self):
        return self.batch


def test_update_lowers_loss_on_a_fixed_batch(tiny_cfg):
    agent = TDMPC2(tiny_cfg)
    buffer = FixedBatch(tiny_cfg)
    first = agent.update(buffer)
    for _ in range(150):
        last = agent.update(buffer)
    assert set(first) >= {"consistency_loss", "reward_loss", "value_loss", "pi_loss"}
    assert float(last["reward_loss"]) < 0.7 * float(first["reward_loss"])
    assert float(last["total_loss"]) < float(first["total_loss"])
    assert all(torch.isfinite(v).all() for v in last.values())


def test_the_decoder_reads_the_state_back_from_the_latent(tiny_cfg):
    tiny_cfg.decoder_coef = 1.0
    agent = TDMPC2(tiny_cfg)
    buffer = FixedBatch(tiny_cfg)
    obs = buffer.batch["obs"] = buffer.batch["obs"] * 3 + 20  # far from the decoder's 0
    first = agent.update(buffer)
    for _ in range(150):
        last = agent.update(buffer)
    assert float(last["decoder_loss"]) < 0.5 * float(first["decoder_loss"])
    with torch.no_grad():
        read = agent.model.decode(agent.model.encode(obs))
    assert (read - obs).pow(2).mean() < 0.5 * obs.var(dim=(0, 1)).mean()  # in the obs' units
    assert torch.allclose(agent.model.obs_moments[0], obs.mean(dim=(0, 1)), atol=1e-3)
    copy = TDMPC2(tiny_cfg)
    copy.load_state_dict(agent.state_dict())
    with torch.no_grad():
        assert torch.equal(copy.model.decode(copy.model.encode(obs)), read)


def test_no_decoder_by_default(tiny_cfg):
    agent = TDMPC2(tiny_cfg)
    assert agent.model._decoder is None
    assert not any("decoder" in k or "obs_" in k for k in agent.model.state_dict())
    assert "decoder_loss" not in agent.update(FixedBatch(tiny_cfg))


def test_a_nan_reward_skips_the_update_and_leaves_the_weights(tiny_cfg):
    agent = TDMPC2(tiny_cfg)
    buffer = FixedBatch(tiny_cfg)
    buffer.batch["reward"][0, 0, 0] = float("nan")
    before = [p.clone() for p in agent.model.parameters()]
    assert agent.update(buffer) == {"nonfinite": 1.0}
    assert all(torch.equal(a, b) for a, b in zip(before, agent.model.parameters(), strict=True))


def test_target_critics_follow_online_critics_slowly(tiny_cfg):
    agent = TDMPC2(tiny_cfg)
    before = [p.clone() for p in agent.model._target_Qs.parameters()]
    agent.update(FixedBatch(tiny_cfg))
    for b, t, q in zip(
        before, agent.model._target_Qs.parameters(), agent.model._Qs.parameters(), strict=True
    ):
        assert not t.requires_grad
        assert torch.allclose(t, torch.lerp(b, q.detach(), tiny_cfg.tau), atol=1e-6)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("steps=0", "steps must be >= 1"),
        ("model_size=7", "model_size must be one of"),
        ("num_elites=1000", "num_elites"),
        ("task=director_walkr_walk", "Unknown preset"),
    ],
)
def test_bad_settings_are_rejected(override, message):
    with pytest.raises(ConfigError, match=message):
        make_cfg([*TINY, override])
