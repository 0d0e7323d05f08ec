"""Network building blocks of the TD-MPC2 world model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _mish_factor(x: torch.Tensor) -> torch.Tensor:
    """tanh(softplus(x)) written with one sigmoid: with u = sigmoid(-x) it is (1-u^2)/(1+u^2).

    On the CPU, ATen's fused mish is four times slower than this sequence of in-place ops.
    """
    u = torch.sigmoid(-x)
    u.mul_(u)
    return torch.sub(1, u).div_(u.add_(1))


class _CPUMish(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        t = _mish_factor(x)
        ctx.save_for_backward(x, t)
        return t * x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # d/dx x*tanh(sp(x)) = t + x * (1 - t^2) * sigmoid(x)
        x, t = ctx.saved_tensors
        dt = torch.sigmoid(x).mul_(x).mul_(1 - t * t)
        return grad * dt.add_(t)


def mish(x: torch.Tensor) -> torch.Tensor:
    """Mish; a faster formulation on the CPU, ATen's fused kernel elsewhere."""
    if x.device.type != "cpu":
        return F.mish(x)
    if torch.is_grad_enabled() and x.requires_grad:
        return _CPUMish.apply(x)
    return _mish_factor(x).mul_(x)


class Mish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mish(x)


def simnorm(x: torch.Tensor, group: int) -> torch.Tensor:
    """Softmax over consecutive groups of `group` features.

    The softmax runs over a transposed view: on the CPU, a softmax whose reduced
    dimension has stride 1 and length 8 is about ten times slower.
    """
    g = x.unflatten(-1, (-1, group)).transpose(-1, -2)
    return F.softmax(g, dim=-2).transpose(-1, -2).flatten(-2)


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
    """Linear -> (dropout) -> LayerNorm -> activation."""

    def __init__(
        self, in_dim: int, out_dim: int, act: nn.Module | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__(in_dim, out_dim)
        self.ln = nn.LayerNorm(out_dim)
        self.act = act if act is not None else Mish()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.act(self.ln(x))


def mlp(
    in_dim: int,
    hidden: list[int],
    out_dim: int,
    act: nn.Module | None = None,
    dropout: float = 0.0,
) -> nn.Sequential:
    """MLP of NormedLinear layers; the last layer is plain Linear unless `act` is given."""
    dims = [in_dim, *hidden]
    layers: list[nn.Module] = [
        NormedLinear(dims[i], dims[i + 1], dropout=dropout if i == 0 else 0.0)
        for i in range(len(hidden))
    ]
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
        self, x: torch.Tensor, heads: torch.Tensor | None = None, detach: bool = False
    ) -> torch.Tensor:
        """x [..., in_dim] -> [len(heads) or num_q, ..., out_dim].

        `detach` uses the parameters without tracking their gradients, so a policy
        loss can flow into the action without updating the critics.
        """

        def param(p: torch.Tensor) -> torch.Tensor:
            p = p.detach() if detach else p
            return p if heads is None else p[heads]

        lead = x.shape[:-1]
        n = len(heads) if heads is not None else self.num_q
        h = x.reshape(1, -1, x.shape[-1]).expand(n, -1, -1)
        for i in range(3):
            h = torch.baddbmm(param(self.biases[i]), h, param(self.weights[i]))
            if i == 2:
                break
            if i == 0 and self.dropout > 0:
                h = F.dropout(h, self.dropout, self.training)
            h = F.layer_norm(h, h.shape[-1:])
            h = mish(torch.addcmul(param(self.ln_biases[i]), h, param(self.ln_weights[i])))
        return h.reshape(n, *lead, h.shape[-1])


def init_weights(module: nn.Module) -> None:
    """Truncated-normal weights and zero biases, as in the public TD-MPC2."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
