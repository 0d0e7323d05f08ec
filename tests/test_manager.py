"""The Manager: GAE, acting, the actor-critic update, a bandit it must solve."""

from __future__ import annotations

import math

import pytest
import torch

from tdmpc2.common.layers import simnorm
from tdmpc2.common.manager import Manager, gae

METRIC_KEYS = {
    "manager/actor_loss",
    "manager/critic_loss",
    "manager/entropy",
    "manager/advantage",
    "manager/return",
    "manager/value",
}


def latents(*shape: int, dim: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return simnorm(torch.randn(*shape, dim, generator=g) * 3, 8)


def small_manager(**kwargs) -> Manager:
    torch.manual_seed(0)
    return Manager(32, **{"n_latents": 3, "n_classes": 5, "hidden_dim": 32, **kwargs})


def rollout(manager: Manager, t: int = 6, b: int = 4):
    z = latents(t + 1, b)
    codes = manager.act(z[:-1].reshape(-1, 32)).view(t, b, manager.n_latents, manager.n_classes)
    rewards = torch.randn(t, b, generator=torch.Generator().manual_seed(2))
    dones = torch.zeros(t, b)
    dones[t // 2, b // 2] = 1.0
    return z, codes, rewards, dones


def test_gae_matches_hand_computation():
    gamma, lam = 0.9, 0.5
    # Column 0: the episode ends after t=1. Column 1: no done, zero values.
    rewards = torch.tensor([[1.0, 1.0], [0.0, 1.0], [2.0, 1.0]])
    values = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]])
    dones = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    adv, ret = gae(rewards, values, dones, gamma, lam)
    # Column 0:
    # t=2: delta = 2 + 0.9*4 - 3 = 2.6;              A2 = 2.6
    # t=1: delta = 0 + 0 (done) - 2 = -2;            A1 = -2 (the recursion stops too)
    # t=0: delta = 1 + 0.9*2 - 1 = 1.8;              A0 = 1.8 + 0.9*0.5*(-2) = 0.9
    # returns = A + V[:-1] = [1.9, 0.0, 5.6]
    # Column 1 (values 0): delta_t = 1; A2 = 1, A1 = 1 + 0.45 = 1.45, A0 = 1 + 0.45*1.45 = 1.6525
    assert torch.allclose(adv, torch.tensor([[0.9, 1.6525], [-2.0, 1.45], [2.6, 1.0]]))
    assert torch.allclose(ret, torch.tensor([[1.9, 1.6525], [0.0, 1.45], [5.6, 1.0]]))


def test_gae_with_lambda_one_is_the_bootstrapped_discounted_return():
    rewards = torch.tensor([[1.0], [1.0], [1.0]])
    values = torch.tensor([[5.0], [-3.0], [7.0], [20.0]])
    _, ret = gae(rewards, values, torch.zeros(3, 1), gamma=0.9, lam=1.0)
    # The intermediate values drop out: 1 + 0.9 + 0.81 + 0.729*20, 1 + 0.9 + 0.81*20, 1 + 0.9*20
    assert torch.allclose(ret, torch.tensor([[17.29], [18.1], [19.0]]))


def test_gae_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="T\\+1 values"):
        gae(torch.zeros(3, 1), torch.zeros(3, 1), torch.zeros(3, 1), 0.9, 0.9)


def test_initial_policy_is_uniform_and_value_zero():
    manager = small_manager()
    z = latents(4)
    assert torch.equal(manager.logits(z), torch.zeros(4, 3, 5))
    assert torch.equal(manager.value(z), torch.zeros(4))
    assert torch.allclose(manager.dist(z).entropy(), torch.full((4,), 3 * math.log(5)))


def test_act_returns_one_hot_codes():
    manager = small_manager()
    codes = manager.act(latents(4))
    assert codes.shape == (4, 3, 5)
    assert codes.dtype == torch.float32
    assert ((codes == 0) | (codes == 1)).all()
    assert torch.equal(codes.sum(-1), torch.ones(4, 3))
    assert not codes.requires_grad


def test_deterministic_act_is_the_repeatable_argmax():
    manager = small_manager()
    torch.nn.init.normal_(manager.actor[-1].weight)  # a non-uniform policy
    z = latents(4)
    greedy = manager.act(z, deterministic=True)
    assert torch.equal(greedy, manager.act(z, deterministic=True))
    assert torch.equal(greedy.argmax(-1), manager.logits(z).argmax(-1))
    assert torch.equal(greedy.sum(-1), torch.ones(4, 3))


def test_update_metrics_are_complete_and_use_unnormalised_advantages():
    manager = small_manager()
    z, codes, rewards, dones = rollout(manager)
    manager.critic[-1].bias.data.fill_(0.3)  # non-zero values, so the metrics are informative
    with torch.no_grad():
        values = manager.value(z)
    adv, ret = gae(rewards, values, dones, manager.gamma, manager.lam)
    before = [p.clone() for p in manager.parameters()]
    metrics = manager.update(z, codes, rewards, dones)
    assert set(metrics) == METRIC_KEYS
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert metrics["manager/advantage"] == pytest.approx(adv.mean().item(), abs=1e-6)
    assert metrics["manager/return"] == pytest.approx(ret.mean().item(), abs=1e-6)
    assert metrics["manager/value"] == pytest.approx(0.3, abs=1e-6)
    assert metrics["manager/entropy"] == pytest.approx(3 * math.log(5), rel=1e-5)
    changed = [not torch.equal(a, b) for a, b in zip(before, manager.parameters(), strict=True)]
    assert any(changed)


def test_update_with_a_single_transition_stays_finite():
    manager = small_manager()
    z, codes, rewards, dones = rollout(manager, t=1, b=1)
    metrics = manager.update(z, codes, rewards, dones)
    assert all(math.isfinite(v) for v in metrics.values())


def test_manager_learns_a_bandit():
    torch.manual_seed(0)
    manager = Manager(32, n_latents=2, n_classes=4, hidden_dim=32, lr=3e-3, entropy_coef=1e-3)
    t, b = 16, 8
    z = latents(1).expand(t + 1, b, 32).contiguous()
    for _ in range(200):
        codes = manager.act(z[:-1].reshape(-1, 32)).view(t, b, 2, 4)
        rewards = codes[:, :, 0, 2]  # 1 when slot 0 picks class 2
        manager.update(z, codes, rewards, torch.zeros(t, b))
    assert manager.act(z[0, :1], deterministic=True)[0, 0].argmax().item() == 2


def test_optimiser_state_round_trips():
    manager = small_manager()
    manager.update(*rollout(manager))
    other = small_manager()
    other.load_state_dict(manager.state_dict())
    other.load_optim_state_dict(manager.optim_state_dict())
    batch = rollout(manager)
    manager.update(*batch)
    other.update(*batch)
    for p, q in zip(manager.parameters(), other.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_latents": 0}, "manager.n_latents must be >= 1, got 0"),
        ({"n_classes": 1}, "manager.n_classes must be >= 2, got 1"),
        ({"gamma": 1.5}, "manager.gamma must be in \\[0, 1\\]"),
        ({"lam": -0.1}, "manager.lam must be in \\[0, 1\\]"),
        ({"entropy_coef": -1.0}, "manager.entropy_coef must be >= 0"),
        ({"grad_clip": 0.0}, "manager.grad_clip must be > 0"),
        ({"lr": 0.0}, "manager.lr must be > 0"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Manager(32, **{"n_latents": 2, "n_classes": 3, "hidden_dim": 8, **kwargs})
