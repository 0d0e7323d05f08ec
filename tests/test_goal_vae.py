"""The discrete Goal-VAE: codes, straight-through gradients, schedule, loss, bookkeeping."""

from __future__ import annotations

import math

import pytest
import torch

from tdmpc2.common.goal_vae import GoalVAE
from tdmpc2.common.layers import simnorm

METRIC_KEYS = {
    "goal_vae/total_loss",
    "goal_vae/recon_loss",
    "goal_vae/kl_loss",
    "goal_vae/temperature",
}


def latents(*shape: int, dim: int = 32, seed: int = 0) -> torch.Tensor:
    """Random latents on SimNorm simplices, like the world model's."""
    g = torch.Generator().manual_seed(seed)
    return simnorm(torch.randn(*shape, dim, generator=g) * 3, 8)


def small_vae(**kwargs) -> GoalVAE:
    torch.manual_seed(0)
    return GoalVAE(32, **{"n_latents": 4, "n_classes": 6, "hidden_dim": 32, **kwargs})


def assert_one_hot(codes: torch.Tensor) -> None:
    assert ((codes == 0) | (codes == 1)).all()
    assert torch.equal(codes.sum(-1), torch.ones(codes.shape[:-1]))


def test_shapes_over_leading_dims():
    vae = small_vae()
    z = latents(5, 3)
    assert vae.logits(z).shape == (5, 3, 4, 6)
    assert vae.encode(z).shape == (5, 3, 4, 6)
    assert vae.decode(vae.encode(z)).shape == (5, 3, 32)
    assert vae.recon_error(z).shape == (5, 3)


@pytest.mark.parametrize("sample", [True, False])
def test_codes_are_exactly_one_hot(sample):
    vae = small_vae()
    assert_one_hot(vae.encode(latents(64), step=10, sample=sample).detach())


def test_greedy_codes_are_the_argmax_of_the_logits():
    vae = small_vae()
    z = latents(16)
    codes = vae.encode(z, sample=False)
    assert torch.equal(codes.argmax(-1), vae.logits(z).argmax(-1))


@pytest.mark.parametrize("sample", [True, False])
def test_gradients_pass_the_one_hot_codes_to_the_encoder(sample):
    vae = small_vae()
    goal = vae.decode(vae.encode(latents(16), sample=sample))
    # A weighted sum: the plain sum of a SimNorm output is constant, so its gradient is 0.
    weights = torch.randn(goal.shape, generator=torch.Generator().manual_seed(1))
    (goal * weights).sum().backward()
    for p in vae.encoder.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_decoded_goals_live_on_the_simplices():
    vae = small_vae()
    goal = vae.decode(vae.sample_code((10,))).detach()
    assert (goal >= 0).all()
    assert torch.allclose(goal.view(10, 4, 8).sum(-1), torch.ones(10, 4), atol=1e-5)


def test_temperature_anneals_exponentially_then_holds():
    vae = small_vae(temp_start=2.0, temp_min=0.5, anneal_steps=1000)
    assert vae.temperature(0) == pytest.approx(2.0)
    assert vae.temperature(500) == pytest.approx(1.0)  # 2 * (0.5 / 2) ** 0.5
    assert vae.temperature(1000) == pytest.approx(0.5)
    assert vae.temperature(10_000) == pytest.approx(0.5)
    constant = small_vae(temp_start=0.3, temp_min=0.3, anneal_steps=10)
    assert constant.temperature(0) == constant.temperature(100) == pytest.approx(0.3)


def test_sample_code_is_uniform_one_hot_and_seedable():
    vae = small_vae()
    codes = vae.sample_code((4000,))
    assert codes.shape == (4000, 4, 6)
    assert codes.device == vae.device
    assert_one_hot(codes)
    assert (codes.mean(0) - 1 / 6).abs().max() < 0.04
    assert vae.sample_code().shape == (4, 6)
    a = vae.sample_code((8,), generator=torch.Generator().manual_seed(3))
    b = vae.sample_code((8,), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_loss_metrics_and_kl_hand_values():
    vae = small_vae(kl_weight=0.5)
    z = latents(32)
    total, metrics = vae.loss(z, step=0)
    assert set(metrics) == METRIC_KEYS
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["goal_vae/total_loss"] == pytest.approx(
        metrics["goal_vae/recon_loss"] + 0.5 * metrics["goal_vae/kl_loss"], rel=1e-5
    )
    assert total.item() == pytest.approx(metrics["goal_vae/total_loss"])
    head = vae.encoder[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()  # uniform logits: usage matches the prior
    assert vae.loss(z, 0)[1]["goal_vae/kl_loss"] == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        head.bias.view(4, 6)[:, 0] = 100.0  # every state uses class 0: KL = 4 * log 6
    assert vae.loss(z, 0)[1]["goal_vae/kl_loss"] == pytest.approx(4 * math.log(6), rel=1e-4)


def test_recon_error_is_the_greedy_squared_error_without_grad():
    vae = small_vae()
    z = latents(8)
    error = vae.recon_error(z)
    assert not error.requires_grad
    with torch.no_grad():
        expected = (vae.decode(vae.encode(z, sample=False)) - z).pow(2).sum(-1)
    assert torch.allclose(error, expected)


def test_training_reduces_reconstruction_and_codes_carry_information():
    torch.manual_seed(0)
    vae = GoalVAE(32, n_latents=8, n_classes=8, hidden_dim=64, lr=1e-3, anneal_steps=200)
    z = latents(256)
    first = vae.update(z, 0)
    for step in range(1, 200):
        last = vae.update(z, step)
    assert last["goal_vae/recon_loss"] < 0.7 * first["goal_vae/recon_loss"]
    # The greedy codes beat decoding every state to the mean latent.
    mean_error = (z - z.mean(0)).pow(2).sum(-1).mean()
    assert vae.recon_error(z).mean() < 0.8 * mean_error
    assert vae.perplexity(vae.encode(z, sample=False)) > 4


def test_perplexity_counts_the_classes_in_use():
    eye = torch.eye(4)
    one_class = eye[[0, 0, 0, 0]].unsqueeze(1)  # [4 samples, 1 slot, 4 classes]
    all_classes = eye[[0, 1, 2, 3]].unsqueeze(1)
    two_classes = eye[[0, 1, 0, 1]].unsqueeze(1)
    assert GoalVAE.perplexity(one_class) == pytest.approx(1.0)
    assert GoalVAE.perplexity(all_classes) == pytest.approx(4.0)
    assert GoalVAE.perplexity(two_classes) == pytest.approx(2.0)
    # Averaged over slots: (1 + 4) / 2.
    assert GoalVAE.perplexity(torch.cat([one_class, all_classes], 1)) == pytest.approx(2.5)


def test_optimiser_state_round_trips():
    vae = small_vae()
    vae.update(latents(16), 0)
    other = small_vae()
    other.load_state_dict(vae.state_dict())
    other.load_optim_state_dict(vae.optim_state_dict())
    for a, b in zip(vae.optim.state.values(), other.optim.state.values(), strict=True):
        assert torch.equal(a["exp_avg"], b["exp_avg"])
    z = latents(16, seed=1)
    torch.manual_seed(5)
    vae.update(z, 1)
    torch.manual_seed(5)
    other.update(z, 1)
    for p, q in zip(vae.parameters(), other.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_latents": 0}, "goal_vae.n_latents must be >= 1, got 0"),
        ({"n_classes": 1}, "goal_vae.n_classes must be >= 2, got 1"),
        ({"temp_start": 0.0}, "goal_vae.temp_start must be > 0"),
        ({"temp_min": -1.0}, "goal_vae.temp_min must be > 0"),
        ({"temp_start": 0.1, "temp_min": 0.5}, "goal_vae.temp_min must be <= goal_vae.temp_start"),
        ({"anneal_steps": 0}, "goal_vae.anneal_steps must be >= 1"),
        ({"kl_weight": -1.0}, "goal_vae.kl_weight must be >= 0"),
        ({"simnorm_dim": 5}, "latent_dim"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GoalVAE(32, **{"n_latents": 2, "n_classes": 3, "hidden_dim": 8, **kwargs})
