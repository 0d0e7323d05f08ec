"""Network building blocks of the TD-MPC2 world model."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tdmpc2.common import cpu_kernels

LOG2E = 1.0 / math.log(2.0)
_ONE, _MINUS_ONE = torch.ones(()), -torch.ones(())


def _mish_parts(
    x: torch.Tensor, max_exponent: float = math.inf, keep_p: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """p = 1 + e^x and d = 1 + p^2, so that tanh(softplus(x)) = 1 - 2/d.

    e^x comes from exp2: on the CPU, ATen's exp (and sigmoid) take about twice as long
    as exp2, and the transcendental is most of an activation's cost. A large x gives
    p = d = inf, hence 2/d = 0 and the exact limit mish(x) = x; capping the base-2
    exponent at `max_exponent` keeps p and d finite for the backward pass instead.
    Without `keep_p`, d overwrites p: one allocation fewer.
    """
    p = torch.mul(x, LOG2E)
    if max_exponent < math.inf:
        p.clamp_max_(max_exponent)
    p = p.exp2_().add_(1)
    return p, torch.addcmul(_ONE, p, p, out=None if keep_p else p)


class _CPUMish(torch.autograd.Function):
    """Mish with a five-pass backward over saved p and d (ATen's takes three transcendentals)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        # 2^40: d stays finite in fp32, and 2x/d is below x's rounding for any larger x.
        p, d = _mish_parts(x, max_exponent=40.0)
        ctx.save_for_backward(x, p, d)
        return torch.addcdiv(x, x, d, value=-2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # mish' = t + x sigmoid(x) (1 - t^2) with t = 1 - 2/d and sigmoid(x) = (p - 1)/p,
        # which is 1 + 2 (2xk - 1)/d with k = (p^2 - p)/d = 1 - (1 + p)/d.
        x, p, d = ctx.saved_tensors
        k = torch.add(p, 1)
        k = torch.addcdiv(_ONE, k, d, value=-1, out=k)
        k = torch.addcmul(_MINUS_ONE, x, k, value=2, out=k)
        return torch.addcdiv(_ONE, k, d, value=2, out=k).mul_(grad)


def mish(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Mish; a faster formulation on the CPU, ATen's fused kernel elsewhere.

    `inplace` lets a caller that owns `x` (a fresh LayerNorm output) skip one
    allocation; it is ignored while autograd records `x`.
    """
    recording = torch.is_grad_enabled() and x.requires_grad
    if x.device.type != "cpu":
        return F.mish(x, inplace=inplace and not recording)
    if recording:
        return _CPUMish.apply(x)
    _, d = _mish_parts(x, keep_p=False)
    if inplace:
        return x.addcdiv_(x, d, value=-2)
    return torch.addcdiv(x, x, d, value=-2)


def _bernoulli_positions(n: int, p: float) -> torch.Tensor:
    """Indices in [0, n) of i.i.d. Bernoulli(p) successes, from Geometric(p) gaps between them."""
    log_q, found, start = math.log1p(-p), [], 0.0
    while start < n:
        m = int(n * p + 6 * math.sqrt(n * p) + 16)  # enough gaps to pass n, nearly always
        u = torch.rand(m, dtype=torch.float64)
        gaps = torch.floor(torch.log1p(-u) / log_q).add_(1)  # P(gap = k) = (1-p)^(k-1) p
        positions = torch.cumsum(gaps, 0).add_(start - 1)
        found.append(positions)
        start = float(positions[-1]) + 1  # a CPU tensor: no device sync
    positions = torch.cat(found)
    return positions[positions < n].long()


class _SparseDropout(torch.autograd.Function):
    """Scales by 1 / (1 - p) and zeroes the dropped positions, forward and backward: no
    dense mask is written or read."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, positions: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(positions)
        ctx.scale = scale
        y = x.contiguous() * scale
        return y.view(-1).index_fill_(0, positions, 0).view_as(y)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (positions,) = ctx.saved_tensors
        g = grad.contiguous() * ctx.scale
        return g.view(-1).index_fill_(0, positions, 0).view_as(g), None, None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout; on the CPU only the dropped positions are drawn.

    ATen draws one random number per element, about 6 ns each on the benchmark CPU and
    most of the cost of a dropout at p = 0.01. The gaps between i.i.d. Bernoulli(p) drops
    are i.i.d. Geometric(p), so drawing the gaps gives exactly the same distribution of
    masks from about p * numel random numbers. Compiled code keeps F.dropout, whose mask
    inductor draws inside the fused kernel.
    """
    if not training or p == 0:
        return x
    if x.device.type != "cpu" or p >= 1 or torch.compiler.is_compiling():
        return F.dropout(x, p, training)
    return _SparseDropout.apply(x, _bernoulli_positions(x.numel(), p), 1 / (1 - p))


_UNIT_AFFINE: dict[tuple[int, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}


def normalize(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm over the last dimension, without an affine transform.

    On the CPU, ATen's LayerNorm kernel runs twice as fast with a weight and a bias as
    without them, so a cached unit weight and zero bias are passed there.
    """
    if x.device.type != "cpu":
        return F.layer_norm(x, x.shape[-1:], eps=eps)
    key = (x.shape[-1], x.dtype)
    if key not in _UNIT_AFFINE:
        with torch.inference_mode(False):  # also usable by autograd later
            _UNIT_AFFINE[key] = (
                torch.ones(key[0], dtype=x.dtype),
                torch.zeros(key[0], dtype=x.dtype),
            )
    return F.layer_norm(x, x.shape[-1:], *_UNIT_AFFINE[key], eps)


class Mish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mish(x)


def simnorm(x: torch.Tensor, group: int) -> torch.Tensor:
    """Softmax over consecutive groups of `group` features.

    A plain softmax over the last dimension: on torch 2.13's CPU kernels it is about 1.5x
    faster than the same softmax over a transposed view, or than a manual exp/sum.
    """
    return F.softmax(x.unflatten(-1, (-1, group)), dim=-1).flatten(-2)


class SimNorm(nn.Module):
    """Simplicial normalisation: keeps latents on a product of simplices, bounding them."""

    def __init__(self, group: int = 8) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return simnorm(x, self.group)

    def extra_repr(self) -> str:
        return f"group={self.group}"


class NormedLinear(nn.Linear):
    """Linear -> LayerNorm -> activation. (The Q heads' dropout lives in QEnsemble.)"""

    def __init__(self, in_dim: int, out_dim: int, act: nn.Module | None = None) -> None:
        super().__init__(in_dim, out_dim)
        self.ln = nn.LayerNorm(out_dim)
        self.act = act if act is not None else Mish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fusable(x):
            return self._fused(F.linear(x, self.weight), self.bias)
        return self._normalize_activate(F.linear(x, self.weight, self.bias))

    def forward_shared(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """forward([z, a]) for one row z [1, k] shared by every row of a [N, in - k].

        z's share of the matmul runs once and is broadcast as the bias of a's share.
        """
        k = z.shape[-1]
        zw = torch.addmm(self.bias, z, self.weight[:, :k].T)
        if self._fusable(a):
            return self._fused(a @ self.weight[:, k:].T, zw)
        return self._normalize_activate(torch.addmm(zw, a, self.weight[:, k:].T))

    def _fusable(self, x: torch.Tensor) -> bool:
        return isinstance(self.act, Mish | SimNorm) and cpu_kernels.usable(x)

    def _fused(self, xw: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """The native kernel adds the bias: the matmul skips broadcasting it into its output."""
        simplex = self.act.group if isinstance(self.act, SimNorm) else 0
        ln = self.ln
        return cpu_kernels.ln_act(xw, ln.weight, ln.bias, ln.eps, lin_bias=bias, simplex=simplex)

    def _normalize_activate(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x, self.ln.normalized_shape, self.ln.weight, self.ln.bias, self.ln.eps)
        return mish(x, inplace=True) if isinstance(self.act, Mish) else self.act(x)


def mlp(
    in_dim: int,
    hidden: list[int],
    out_dim: int,
    act: nn.Module | None = None,
) -> nn.Sequential:
    """MLP of NormedLinear layers; the last layer is plain Linear unless `act` is given."""
    dims = [in_dim, *hidden]
    layers: list[nn.Module] = [NormedLinear(dims[i], dims[i + 1]) for i in range(len(hidden))]
    layers.append(NormedLinear(dims[-1], out_dim, act=act) if act else nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*layers)


class QEnsemble(nn.Module):
    """`num_q` Q-networks evaluated as one batched computation.

    Weights are stacked along a leading head dimension so any subset of heads runs
    as a few batched matmuls; the planner and the TD target only need two heads.
    Layout per head: Linear -> dropout -> LN -> Mish -> Linear -> LN -> Mish -> Linear.
    """

    def __init__(
        self, num_q: int, in_dim: int, hidden_dim: int, out_dim: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.num_q = num_q
        self.dropout = dropout
        dims = [(in_dim, hidden_dim), (hidden_dim, hidden_dim), (hidden_dim, out_dim)]
        self.weights = nn.ParameterList(torch.empty(num_q, i, o) for i, o in dims)
        self.biases = nn.ParameterList(torch.zeros(num_q, 1, o) for _, o in dims)
        self.ln_weights = nn.ParameterList(torch.ones(num_q, 1, hidden_dim) for _ in range(2))
        self.ln_biases = nn.ParameterList(torch.zeros(num_q, 1, hidden_dim) for _ in range(2))
        for w in self.weights:
            nn.init.trunc_normal_(w, std=0.02)

    def forward(
        self,
        x: torch.Tensor,
        heads: torch.Tensor | slice | None = None,
        detach: bool = False,
        action: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [..., in_dim] -> [selected heads (all num_q by default), ..., out_dim].

        `heads` indexes the head dimension: an index tensor, or a slice, which selects
        the heads' parameters as views instead of copies.

        `detach` uses the parameters without tracking their gradients, so a policy
        loss can flow into the action without updating the critics. With `action`, the
        input is [x, action] and the two parts multiply their own rows of the first
        weight: no concatenated copy, and no gradient computed for a part that needs none
        (the policy loss only needs d/d action).
        """

        def param(p: torch.Tensor) -> torch.Tensor:
            p = p.detach() if detach else p
            return p if heads is None else p[heads]

        lead, k = x.shape[:-1], x.shape[-1]
        w = param(self.weights[0])
        n = w.shape[0]
        fuse = cpu_kernels.usable(x)
        h = x.reshape(1, -1, k).expand(n, -1, -1)
        h = torch.baddbmm(param(self.biases[0]), h, w[:, :k])
        if action is not None:
            a = action.reshape(1, -1, action.shape[-1]).expand(n, -1, -1)
            h = torch.baddbmm(h, a, w[:, k:])
        for i in (1, 2):
            if i == 1 and self.dropout > 0:
                h = dropout(h, self.dropout, self.training)
            ln_w, ln_b = param(self.ln_weights[i - 1]), param(self.ln_biases[i - 1])
            if fuse:
                h = cpu_kernels.ln_act(h, ln_w, ln_b)
            else:
                h = mish(torch.addcmul(ln_b, normalize(h), ln_w), inplace=True)
            h = torch.baddbmm(param(self.biases[i]), h, param(self.weights[i]))
        return h.reshape(n, *lead, h.shape[-1])


def init_weights(module: nn.Module) -> None:
    """Truncated-normal linear and orthogonal (ReLU gain) conv weights, zero biases, as in
    the public TD-MPC2."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
    elif isinstance(module, nn.Conv2d):
        nn.init.orthogonal_(module.weight, nn.init.calculate_gain("relu"))
    else:
        return
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def random_shift(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Each image [..., C, H, W] shifted by up to `pad` pixels each way, independently
    (edges replicated): DrQ's augmentation, which keeps a pixel encoder from overfitting."""
    lead, (c, h, w) = x.shape[:-3], x.shape[-3:]
    x = x.reshape(-1, c, h, w)
    n = x.shape[0]
    padded = F.pad(x.float(), (pad, pad, pad, pad), mode="replicate")
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n, 1), device=x.device)
    rows = (dy + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (dx + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    channel = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, channel, rows, cols].to(x.dtype).reshape(*lead, c, h, w)


class PixelEncoder(nn.Module):
    """Stacked uint8 frames [..., C, 64, 64] -> latent, as TD-MPC2's conv encoder.

    Four ReLU convolutions (strides 2, 2, 2, 1: 64 -> 4 pixels) read the frames scaled to
    [-0.5, 0.5] inside the model, so the replay keeps bytes; a NormedLinear with SimNorm
    maps the features to `latent_dim`, which keeps every model size's latent width.
    """

    def __init__(
        self, obs_shape: tuple[int, ...], channels: int, latent_dim: int, simnorm_dim: int
    ) -> None:
        super().__init__()
        c = channels
        self.convs = nn.Sequential(
            nn.Conv2d(obs_shape[0], c, 7, stride=2),
            nn.ReLU(),
            nn.Conv2d(c, c, 5, stride=2),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, stride=1),
            nn.Flatten(),
        )
        with torch.no_grad():
            features = self.convs(torch.zeros(1, *obs_shape)).shape[-1]
        self.out = NormedLinear(features, latent_dim, act=SimNorm(simnorm_dim))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:]).float().div_(255).sub_(0.5)
        return self.out(self.convs(x)).reshape(*lead, -1)
