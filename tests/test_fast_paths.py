"""The optimised paths equal plain reference computations written out here.

References use ATen's own ops (F.mish, F.layer_norm, softmax, a per-head loop, the
planner's loop over the unfused modules) on fixed inputs; agreement is to float tolerance.
"""

from __future__ import annotations

import collections
import importlib.util
import math
import os
import warnings

import pytest
import torch
import torch.nn.functional as F

from tdmpc2.agent import TDMPC2, compiled
from tdmpc2.common import cpu_kernels, layers
from tdmpc2.common.layers import NormedLinear, QEnsemble, dropout, mish, normalize, simnorm
from tdmpc2.common.math import TwoHot
from tdmpc2.common.world_model import two_heads
from tests.conftest import TINY, make_cfg


def plain_mlp(seq: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Linear -> LayerNorm -> Mish (or SimNorm) layer by layer, with ATen's reference ops."""
    for layer in seq:
        x = F.linear(x, layer.weight, layer.bias)
        if isinstance(layer, NormedLinear):
            x = F.layer_norm(x, x.shape[-1:], layer.ln.weight, layer.ln.bias, layer.ln.eps)
            if isinstance(layer.act, layers.SimNorm):
                x = torch.softmax(x.unflatten(-1, (-1, layer.act.group)), -1).flatten(-2)
            else:
                x = F.mish(x)
    return x


def plain_q(q: QEnsemble, x: torch.Tensor, head: int) -> torch.Tensor:
    """One Q head as a plain loop over its layers."""
    for i in range(3):
        x = x @ q.weights[i][head] + q.biases[i][head]
        if i < 2:
            x = F.layer_norm(x, x.shape[-1:]) * q.ln_weights[i][head] + q.ln_biases[i][head]
            x = F.mish(x)
    return x


def randomised(agent: TDMPC2) -> TDMPC2:
    """Non-trivial weights: the zero-initialised output layers would hide mistakes."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in agent.model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return agent


@pytest.fixture
def agent() -> TDMPC2:
    torch.manual_seed(0)
    return randomised(TDMPC2(make_cfg([*TINY, "num_q=5"])))


# ---------------------------------------------------------------- activations
def test_mish_matches_aten_forward_and_backward():
    x = torch.cat([torch.linspace(-100, 100, 4001), torch.tensor([0.0, 1e-6, -1e-6, 1e4, -1e4])])
    ref = F.mish(x.double())
    assert torch.allclose(mish(x).double(), ref, rtol=1e-6, atol=1e-5)
    assert torch.allclose(mish(x.clone(), inplace=True).double(), ref, rtol=1e-6, atol=1e-5)
    xg = x.clone().requires_grad_()
    mish(xg).backward(torch.ones_like(x))
    xr = x.double().requires_grad_()
    F.mish(xr).backward(torch.ones_like(xr))
    assert torch.isfinite(xg.grad).all()
    assert torch.allclose(xg.grad.double(), xr.grad, atol=1e-5)
    assert torch.autograd.gradcheck(
        mish, (torch.randn(30, dtype=torch.double, requires_grad=True),)
    )


def test_normalize_and_simnorm_match_plain_ops():
    x = torch.randn(6, 40) * 4
    assert torch.allclose(normalize(x), F.layer_norm(x, (40,)), atol=1e-6)
    y = torch.randn(5, 24) * 30  # large logits: the softmax must stay finite
    ref = torch.softmax(y.view(5, 3, 8).double(), -1).view(5, 24)
    assert torch.allclose(simnorm(y, 8).double(), ref, atol=1e-6)


def test_dropout_has_the_bernoulli_distribution():
    torch.manual_seed(0)
    x = torch.ones(1000, 1000, requires_grad=True)
    p = 0.01
    y = dropout(x, p, training=True)
    kept = y != 0
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    rate = 1 - kept.float().mean().item()
    assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / x.numel())
    rows = (~kept).float().mean(1)  # drops spread evenly, not clustered
    assert abs(rows[:500].mean().item() - rows[500:].mean().item()) < 0.002
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() / (1 - p))
    assert dropout(x, p, training=False) is x


# ---------------------------------------------------------------- native kernels
needs_kernels = pytest.mark.skipif(cpu_kernels.library() is None, reason="kernels not built")


def close_to_scale(x: torch.Tensor, ref: torch.Tensor, rel: float = 1e-5) -> bool:
    """Float32 agreement for sums over many terms: errors relative to the largest entry."""
    return bool((x - ref).abs().max() <= rel * ref.abs().max() + 1e-6)


def reference_ln_act(x, lin_bias, weight, bias, simplex):
    v = F.layer_norm(x + lin_bias, x.shape[-1:]) * weight + bias
    if simplex:
        return torch.softmax(v.unflatten(-1, (-1, simplex)), -1).flatten(-2)
    return F.mish(v)


@needs_kernels
@pytest.mark.parametrize("groups", [None, 3])
@pytest.mark.parametrize("train_params", [True, False])
@pytest.mark.parametrize("simplex", [0, 8])
def test_native_ln_act_matches_aten_in_float64(groups, train_params, simplex):
    """Forward and all four gradients, Mish and SimNorm. 72 columns are not a multiple of
    the kernel's lanes, and a few large weights push the activation's input to +-100
    (Mish's capped exponent; softmax terms that underflow)."""
    g = torch.Generator().manual_seed(0)
    shape, pshape = ((groups, 29, 72), (groups, 1, 72)) if groups else ((37, 72), (72,))
    x = torch.randn(shape, generator=g, dtype=torch.double) * 3
    weight = torch.rand(pshape, generator=g, dtype=torch.double) + 0.5
    weight[..., :3] = 40.0
    bias, lin_bias = (torch.randn(pshape, generator=g, dtype=torch.double) for _ in range(2))
    grad = torch.randn(shape, generator=g, dtype=torch.double)
    ref_in = [
        t.clone().requires_grad_(i == 0 or train_params)
        for i, t in enumerate((x, lin_bias, weight, bias))
    ]
    ref = reference_ln_act(*ref_in, simplex)
    ref.backward(grad)
    fast_in = [
        t.float().requires_grad_(r.requires_grad)
        for t, r in zip((x, lin_bias, weight, bias), ref_in, strict=True)
    ]
    x32, lin_bias32, weight32, bias32 = fast_in
    fast = cpu_kernels.ln_act(x32, weight32, bias32, lin_bias=lin_bias32, simplex=simplex)
    fast.backward(grad.float())
    assert torch.allclose(fast.double(), ref, rtol=1e-5, atol=1e-5)
    for f, r in zip(fast_in, ref_in, strict=True):
        if not r.requires_grad:
            assert f.grad is None
            continue
        assert f.grad.shape == r.grad.shape
        assert close_to_scale(f.grad.double(), r.grad)
    with torch.no_grad():  # the inference path (no saved tensors) gives the same values
        again = cpu_kernels.ln_act(x32, weight32, bias32, lin_bias=lin_bias32, simplex=simplex)
    assert torch.equal(again, fast)


@needs_kernels
@pytest.mark.parametrize("simplex", [0, 8])
def test_native_ln_act_propagates_nan_per_row(simplex):
    x = torch.randn(4, 64)
    x[1, 5] = float("nan")
    y = cpu_kernels.ln_act(x, torch.ones(64), torch.zeros(64), simplex=simplex)
    assert torch.isnan(y[1]).all()
    assert torch.isfinite(y[[0, 2, 3]]).all()


def test_kernel_build_failure_warns_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.delenv("TDMPC2_CPU_KERNELS", raising=False)  # the suite may run without them
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    with pytest.warns(UserWarning, match="could not build the fused CPU kernels"):
        assert cpu_kernels.library.__wrapped__() is None
    monkeypatch.setenv("TDMPC2_CPU_KERNELS", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cpu_kernels.library.__wrapped__() is None


@needs_kernels
def test_native_and_aten_layers_agree(agent, monkeypatch):
    """The same step, Q heads and their gradients with the kernels and without them."""
    m = agent.model.train()
    z = simnorm(torch.randn(6, 32), 8)
    a = torch.rand(6, 3) * 2 - 1

    def run():
        m.zero_grad(set_to_none=True)
        torch.manual_seed(3)  # the same dropout masks
        next_z, reward = m.step(z, a)
        q = m.Q(z, a, return_type="all")
        # Squares: the SimNorm output sums to a constant, so its plain sum has no gradient.
        (next_z.square().sum() + reward.square().sum() + q.square().sum()).backward()
        with torch.no_grad():
            shared = m.step(z[:1], a)
        grads = [p.grad.clone() for p in m.parameters() if p.grad is not None]
        return [next_z, reward, q, *shared], grads

    native, native_grads = run()
    monkeypatch.setattr(cpu_kernels, "usable", lambda x: False)
    aten, aten_grads = run()
    assert len(native_grads) == len(aten_grads) > 0
    for f, r in zip(native + native_grads, aten + aten_grads, strict=True):
        assert close_to_scale(f, r)


# ---------------------------------------------------------------- world model
def test_step_equals_the_plain_dynamics_and_reward(agent):
    m = agent.model
    z = simnorm(torch.randn(7, 32), 8)
    a = torch.rand(7, 3) * 2 - 1
    za = torch.cat([z, a], -1)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            next_z, reward = m.step(z, a)
        assert torch.allclose(next_z, plain_mlp(m._dynamics, za), atol=1e-5)
        assert torch.allclose(reward, plain_mlp(m._reward, za), atol=1e-5)
        assert torch.allclose(next_z, m.next(z, a), atol=1e-5)
    # One latent shared by every action: its product with the weights is broadcast.
    with torch.no_grad():
        next_z, reward = m.step(z[:1], a)
    za = torch.cat([z[:1].expand(7, -1), a], -1)
    assert torch.allclose(next_z, plain_mlp(m._dynamics, za), atol=1e-5)
    assert torch.allclose(reward, plain_mlp(m._reward, za), atol=1e-5)


def test_planning_sees_every_optimiser_step(agent):
    """No copy of the weights is cached: after fused-Adam updates the planner's step still
    equals the plain modules, and both moved."""
    cfg = agent.cfg
    g = torch.Generator().manual_seed(0)
    H, B = cfg.horizon, cfg.batch_size
    batch = {
        "obs": torch.randn(H + 1, B, 5, generator=g),
        "action": torch.rand(H, B, 3, generator=g) * 2 - 1,
        "reward": torch.randn(H, B, 1, generator=g),
        "terminated": torch.zeros(H, B, 1),
    }

    class Fixed:
        def sample(self):
            return batch

    z = simnorm(torch.randn(1, 32), 8)
    a = torch.rand(6, 3) * 2 - 1
    with torch.no_grad():
        before = agent.model.step(z, a)[0]
    for _ in range(3):
        agent.update(Fixed())
    with torch.no_grad():
        after = agent.model.step(z, a)[0]
    za = torch.cat([z.expand(6, -1), a], -1)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, plain_mlp(agent.model._dynamics, za), atol=1e-5)


def test_pi_action_is_the_action_of_pi(agent):
    z = simnorm(torch.randn(9, 32), 8)
    torch.manual_seed(5)
    expected = agent.model.pi(z)[1]
    torch.manual_seed(5)
    assert torch.allclose(agent.model.pi_action(z), expected, atol=1e-6)


def test_batched_q_heads_equal_a_loop_over_heads(agent):
    q = agent.model._Qs.eval()
    z = simnorm(torch.randn(4, 6, 32), 8)
    a = torch.rand(4, 6, 3) * 2 - 1
    za = torch.cat([z, a], -1)
    heads = torch.tensor([4, 1])
    split = q(z, heads=heads, action=a)
    for i, head in enumerate(heads.tolist()):
        assert torch.allclose(q(za)[head], plain_q(q, za, head), atol=1e-5)
        assert torch.allclose(split[i], plain_q(q, za, head), atol=1e-5)
    # The policy loss's frozen critics: gradients reach the action only, and equal the
    # gradients of the plain computation.
    a1 = a.clone().requires_grad_()
    q(z, heads=heads, detach=True, action=a1).sum().backward()
    assert all(p.grad is None for p in q.parameters())
    a2 = a.clone().requires_grad_()
    sum(plain_q(q, torch.cat([z, a2], -1), h) for h in heads.tolist()).sum().backward()
    assert torch.allclose(a1.grad, a2.grad, rtol=1e-4, atol=1e-4)


def test_two_heads_are_a_view_of_two_distinct_heads(agent):
    """Every pair is drawn, the slice shares the weights' memory, and it computes what an
    index of the same heads computes."""
    q = agent.model._Qs.eval()
    pairs = collections.Counter()
    for _ in range(300):
        heads = two_heads(q.num_q, torch.device("cpu"))
        pairs[tuple(range(q.num_q)[heads])] += 1
    assert len(pairs) == q.num_q * (q.num_q - 1) // 2
    assert all(len(p) == 2 and p[0] < p[1] for p in pairs)
    w = q.weights[1]
    assert w[heads].untyped_storage().data_ptr() == w.untyped_storage().data_ptr()
    za = torch.cat([simnorm(torch.randn(6, 32), 8), torch.rand(6, 3) * 2 - 1], -1)
    index = torch.tensor(range(q.num_q)[heads])
    assert torch.allclose(q(za, heads=heads), q(za, heads=index), atol=1e-6)


def test_two_hot_cross_entropy_broadcasts_one_target_over_heads():
    th = TwoHot(101, -10, 10)
    logits = torch.randn(5, 3, 8, 101)
    target = torch.randn(3, 8, 1) * 20
    expanded = th.cross_entropy(logits, target.unsqueeze(0).expand(5, -1, -1, -1))
    assert torch.allclose(th.cross_entropy(logits, target), expanded)


def test_bins_built_during_planning_still_serve_autograd():
    th = TwoHot(11, -1, 1)
    with torch.inference_mode():
        th.decode(torch.randn(2, 11))
    logits = torch.randn(2, 11, requires_grad=True)
    th.decode(logits).sum().backward()
    assert logits.grad is not None


# ---------------------------------------------------------------- planning
def plain_value(agent: TDMPC2, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """The planner's value estimate with the unfused modules and a per-head Q loop."""
    m, cfg = agent.model, agent.cfg
    z = z.expand(actions.shape[1], -1)
    G, discount = 0, 1.0
    for t in range(cfg.horizon):
        reward = m.two_hot.decode(plain_mlp(m._reward, torch.cat([z, actions[t]], -1)))
        z = plain_mlp(m._dynamics, torch.cat([z, actions[t]], -1))
        G = G + discount * reward
        discount *= agent.discount
    action = m.pi(z)[1]
    heads = torch.randperm(cfg.num_q)[:2].tolist()
    za = torch.cat([z, action], -1)
    q = [m.two_hot.decode(plain_q(m._Qs, za, h)) for h in heads]
    return G + discount * 0.5 * (q[0] + q[1])


def test_value_estimate_equals_the_plain_loop(agent):
    z = simnorm(torch.randn(1, 32), 8)
    actions = torch.rand(agent.cfg.horizon, 50, 3) * 2 - 1
    torch.manual_seed(11)
    fast = agent._estimate_value(z, actions)
    torch.manual_seed(11)
    with torch.no_grad():
        ref = plain_value(agent, z, actions)
    assert fast.shape == (50, 1)
    assert torch.allclose(fast, ref, rtol=1e-4, atol=1e-4)


def test_cached_prior_rollouts_give_the_same_values(agent):
    """The planner rolls the policy prior's trajectories out once: with their rollout
    passed as a prefix, the values equal those of rolling out every row each time."""
    z = simnorm(torch.randn(1, 32), 8)
    actions = torch.rand(agent.cfg.horizon, 50, 3) * 2 - 1
    torch.manual_seed(5)
    full = agent._estimate_value(z, actions)
    prefix = agent._rollout(z, actions[:, :7])
    torch.manual_seed(5)  # the same terminal draws (policy noise and Q heads)
    cached = agent._estimate_value(z, actions[:, 7:], prefix=prefix)
    assert cached.shape == (50, 1)
    assert torch.allclose(cached, full, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- compile
def test_compile_failure_warns_once_and_runs_eagerly(monkeypatch):
    def broken(fn):
        def fail(*args, **kwargs):
            raise RuntimeError("no C++ compiler")

        return fail

    monkeypatch.setattr(torch, "compile", broken)
    calls = []

    def double(x):
        calls.append(x)
        return 2 * x

    run = compiled(double)
    with pytest.warns(UserWarning, match="torch.compile of double failed"):
        assert run(3) == 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run(4) == 8
    assert calls == [3, 4]


@pytest.mark.skipif(importlib.util.find_spec("torch._inductor") is None, reason="no inductor")
@pytest.mark.parametrize("native", [True, False])
def test_compiled_step_equals_eager(agent, monkeypatch, native):
    """The compiled hot path computes what the eager one does: with the native kernel as
    an opaque operator in the graph, and with inductor's own LayerNorm/Mish code."""
    if native and cpu_kernels.library() is None:
        pytest.skip("kernels not built")
    if os.environ.get("ATEN_CPU_CAPABILITY"):
        # Inductor generates its own vector code whatever ATen dispatches to: under an
        # emulated instruction set torch 2.13 fails to build it (default) or its result
        # differs from eager beyond rounding (avx2 on an AVX2 machine): not our code.
        pytest.skip("inductor's code generation does not follow ATEN_CPU_CAPABILITY")
    if not native:
        monkeypatch.setattr(cpu_kernels, "usable", lambda x: False)
    z = simnorm(torch.randn(1, 32), 8)
    a = torch.rand(16, 3) * 2 - 1
    with torch.no_grad():
        eager = agent.model.step(z, a)
    kernel_calls = []
    run_kernel = cpu_kernels._forward  # what the graph's operator runs

    def counted(*args, **kwargs):
        kernel_calls.append(1)
        return run_kernel(*args, **kwargs)

    monkeypatch.setattr(cpu_kernels, "_forward", counted)
    torch._dynamo.reset()  # a graph traced in the other mode must not be reused
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        fast = compiled(agent.model.step)(z, a)
    # A fallback to eager would make the comparison vacuous.
    assert not [str(w.message) for w in caught if "torch.compile of" in str(w.message)]
    # Dynamics and reward: three and two normalised layers, natively or not at all.
    assert len(kernel_calls) == (5 if native else 0)
    for f, e in zip(fast, eager, strict=True):
        assert torch.allclose(f, e, atol=1e-5)
