"""The TD-MPC2 implicit world model: encoder, latent dynamics, reward, policy prior, Q ensemble."""

from __future__ import annotations

import copy

import torch
from omegaconf import DictConfig
from torch import nn

from tdmpc2.common import layers
from tdmpc2.common.math import TwoHot, gaussian_logprob, squash


def two_heads(num_q: int, device: torch.device) -> slice | torch.Tensor:
    """Two distinct heads drawn uniformly, as the index `QEnsemble` takes.

    Eagerly a strided slice `i:j+1:j-i` (i < j; min and avg do not depend on the order):
    a view of the stacked parameters instead of a copy of the two heads' weights. It is
    drawn with the CPU generator, so reading it costs no device sync. Compiled code keeps
    an index tensor, which it can trace.
    """
    if torch.compiler.is_compiling():
        return torch.randperm(num_q, device=device)[:2]
    i, j = sorted(torch.randperm(num_q)[:2].tolist())
    return slice(i, j + 1, j - i)


class WorldModel(nn.Module):
    """All learned components; planning and training live in `tdmpc2.agent.TDMPC2`."""

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__()
        latent, act, mlp_dim = cfg.latent_dim, cfg.action_dim, cfg.mlp_dim
        self.action_dim = act
        # Multi-task: a learned embedding of the task, appended to every network's input.
        task_dim = int(cfg.task_dim) if cfg.multitask else 0
        self.pixels = cfg.obs == "rgb"  # multi-task runs are state-only (parser.check_multitask)
        if self.pixels:
            self._encoder = layers.PixelEncoder(
                tuple(cfg.obs_shape["rgb"]), cfg.num_channels, latent, cfg.simnorm_dim
            )
        else:
            self._encoder = layers.mlp(
                cfg.obs_shape["state"][0] + task_dim,
                max(cfg.num_enc_layers - 1, 1) * [cfg.enc_dim],
                latent,
                act=layers.SimNorm(cfg.simnorm_dim),
            )
        latent += task_dim  # what the heads read: [z, task embedding]
        self._dynamics = layers.mlp(
            latent + act, 2 * [mlp_dim], cfg.latent_dim, act=layers.SimNorm(cfg.simnorm_dim)
        )
        self._reward = layers.mlp(latent + act, 2 * [mlp_dim], cfg.num_bins)
        self._pi = layers.mlp(latent, 2 * [mlp_dim], 2 * act)
        self._Qs = layers.QEnsemble(cfg.num_q, latent + act, mlp_dim, cfg.num_bins, cfg.dropout)
        # Episodic tasks: the logit that the episode ended on arriving at latent z.
        self.episodic = bool(cfg.episodic)
        if self.episodic:
            self._termination = layers.mlp(latent, 2 * [mlp_dim], 1)
        self.apply(layers.init_weights)
        if cfg.multitask:
            # max_norm: every row used is rescaled to norm <= 1 when looked up.
            self._task_emb = nn.Embedding(len(cfg.tasks), task_dim, max_norm=1)
            masks = torch.zeros(len(cfg.tasks), act)
            for i, dims in enumerate(cfg.action_dims):
                masks[i, :dims] = 1
            # 1 in each task's own action dimensions, 0 in the padding.
            self.register_buffer("action_masks", masks)
        # Zero-initialised output layers start reward and value predictions at exactly 0.
        nn.init.zeros_(self._reward[-1].weight)
        nn.init.zeros_(self._Qs.weights[-1])
        self._target_Qs = copy.deepcopy(self._Qs).requires_grad_(False)
        self.two_hot = TwoHot(cfg.num_bins, cfg.vmin, cfg.vmax)
        self.log_std_min = float(cfg.log_std_min)
        self.log_std_dif = float(cfg.log_std_max - cfg.log_std_min)
        # Built last and only when asked for, so runs without it draw the same weights.
        self._decoder = None
        if cfg.decoder_coef:
            obs_dim = cfg.obs_shape["state"][0]
            self._decoder = layers.mlp(cfg.latent_dim, [cfg.enc_dim], obs_dim)
            self._decoder.apply(layers.init_weights)
            # The observations' running mean and mean square: the decoder predicts them
            # standardised, as a maze's coordinates (0 to 30) would take Adam tens of
            # thousands of steps to reach from 0.
            self.register_buffer("obs_moments", torch.zeros(2, obs_dim))
            self.register_buffer("obs_batches", torch.zeros(()))

    def train(self, mode: bool = True) -> WorldModel:
        super().train(mode)
        self._target_Qs.train(False)
        return self

    @torch.no_grad()
    def soft_update_target_Q(self, tau: float) -> None:
        """Polyak averaging of the target critics."""
        torch._foreach_lerp_(list(self._target_Qs.parameters()), list(self._Qs.parameters()), tau)

    def task_emb(self, x: torch.Tensor, task: torch.Tensor | None) -> torch.Tensor:
        """[x, embedding of task]; x itself when there is no task (a single-task run).

        `task` holds task indices broadcastable to x's leading dimensions: a 0-dim tensor
        (planning) or one index per batch row [B] (training, x [..., B, features]).
        """
        if task is None:
            return x
        emb = self._task_emb(task)
        return torch.cat([x, emb.expand(*x.shape[:-1], -1)], dim=-1)

    def encode(self, obs: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        return self._encoder(self.task_emb(obs, task))

    def _obs_scale(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean, square = self.obs_moments
        return mean, (square - mean.pow(2)).clamp_min(1e-4).sqrt()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The state observation read back from latent z (only with `decoder_coef` > 0)."""
        mean, std = self._obs_scale()
        return self._decoder(z) * std + mean

    def decoder_loss(self, zs: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Squared error [T] of the standardised observations [T, B, obs] read back from
        their latents [T, B, latent]; in training it first folds the batch into the moments
        (the running mean over the first 100 batches, then a moving average)."""
        if self.training:
            with torch.no_grad():
                batch = torch.stack([obs.mean(dim=(0, 1)), obs.pow(2).mean(dim=(0, 1))])
                self.obs_batches += 1
                self.obs_moments.lerp_(batch, self.obs_batches.reciprocal().clamp_min(0.01))
        mean, std = self._obs_scale()
        return (self._decoder(zs) - (obs - mean) / std).pow(2).mean(dim=(1, 2))

    def augment(self, obs: torch.Tensor) -> torch.Tensor:
        """Training batches of pixels get a random shift of up to 3 pixels (DrQ's 4 at
        84x84, scaled to 64x64); state observations pass unchanged."""
        return layers.random_shift(obs, pad=3) if self.pixels else obs

    def next(
        self, z: torch.Tensor, a: torch.Tensor, task: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self._dynamics(torch.cat([self.task_emb(z, task), a], dim=-1))

    def reward(
        self, z: torch.Tensor, a: torch.Tensor, task: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Reward logits over the two-hot bins."""
        return self._reward(torch.cat([self.task_emb(z, task), a], dim=-1))

    def termination(self, z: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [..., 1] that the episode ended on arriving at z (episodic tasks only)."""
        return self._termination(self.task_emb(z, task))

    def step(
        self, z: torch.Tensor, a: torch.Tensor, task: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(next(z, a), reward(z, a)) for latents z [N or 1, latent] and actions a [N, action].

        A one-row z is shared by all N actions (the planner's first step): its share of
        both input layers is computed once instead of N times.
        """
        z = self.task_emb(z, task)
        # Iterators, not slices: slicing a Sequential builds a new module on every call.
        dynamics, reward_head = iter(self._dynamics), iter(self._reward)
        first_dynamics, first_reward = next(dynamics), next(reward_head)
        if z.shape[0] == 1 and a.shape[0] > 1:
            next_z = first_dynamics.forward_shared(z, a)
            reward = first_reward.forward_shared(z, a)
        else:
            za = torch.cat([z, a], dim=-1)
            next_z, reward = first_dynamics(za), first_reward(za)
        for layer in dynamics:
            next_z = layer(next_z)
        for layer in reward_head:
            reward = layer(reward)
        return next_z, reward

    def pi(
        self, z: torch.Tensor, task: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Samples the tanh-Gaussian policy prior: (mean, action, log-prob, log-std).

        With a task, mean, noise and log-std are zero in its padded action dimensions, so
        its actions are 0 there and the log-prob changes by a constant only.
        """
        mu, log_std = self._pi(self.task_emb(z, task)).chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * self.log_std_dif * (torch.tanh(log_std) + 1)
        eps = torch.randn_like(mu)
        if task is not None:
            mask = self.action_masks[task]
            mu, log_std, eps = mu * mask, log_std * mask, eps * mask
        log_pi = gaussian_logprob(eps, log_std)
        mu, action, log_pi = squash(mu, mu + eps * log_std.exp(), log_pi)
        return mu, action, log_pi, log_std

    def pi_action(self, z: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """The action of `pi(z)` (the same random draw) without its log-probability."""
        mu, log_std = self._pi(self.task_emb(z, task)).chunk(2, dim=-1)
        log_std = torch.tanh(log_std).add_(1).mul_(0.5 * self.log_std_dif).add_(self.log_std_min)
        action = torch.addcmul(mu, torch.randn_like(mu), log_std.exp_()).tanh_()
        return action if task is None else action.mul_(self.action_masks[task])

    def Q(
        self,
        z: torch.Tensor,
        a: torch.Tensor,
        return_type: str = "min",
        target: bool = False,
        detach: bool = False,
        task: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Q-values.

        `all` returns the logits of every head [num_q, ..., num_bins]. `min` and `avg`
        evaluate only two randomly chosen heads and return [..., 1]: the same
        distribution of results as evaluating all heads and then picking two (min and avg
        are symmetric, so with two heads no draw is needed). `detach` (the policy loss)
        freezes the critics and the task embedding: only d/d action is computed.
        """
        qnet = self._target_Qs if target else self._Qs
        z = self.task_emb(z, task)
        if detach:  # a policy loss must not move the embedding the world model learns
            z = z.detach()
        heads = None  # all heads; with num_q == 2 these are the two chosen ones in some order
        if return_type != "all" and qnet.num_q > 2:
            heads = two_heads(qnet.num_q, z.device)
        if detach:
            q = qnet(z, heads=heads, detach=True, action=a)
        else:
            q = qnet(torch.cat([z, a], dim=-1), heads=heads)
        if return_type == "all":
            return q
        q = self.two_hot.decode(q)
        if return_type == "min":
            return torch.minimum(q[0], q[1])
        if return_type == "avg":
            return 0.5 * (q[0] + q[1])
        raise ValueError(f"unknown return_type {return_type!r} (expected all, min or avg)")
