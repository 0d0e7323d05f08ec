"""TD-MPC2 agent: MPPI planning with a learned world model, and its update."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import sys
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from tdmpc2.common.math import discount_for, gumbel_sample
from tdmpc2.common.planning_terms import Terms
from tdmpc2.common.scale import RunningScale
from tdmpc2.common.world_model import WorldModel


def keep_freed_memory() -> None:
    """Stops glibc from handing freed tensors back to the OS on the CPU.

    By default a tensor above glibc's mmap threshold (about 1 MB, adapted at run time)
    is mmap'ed on allocation and unmapped when freed, so every such tensor of the next
    update is page-faulted and zeroed again: some 20,000 page faults, a quarter of an
    update's time at model_size 1 on the 2-core benchmark machine. Serving blocks up to
    32 MB from the heap and never trimming it reuses the memory instead; peak RSS stays
    the peak of what is in use. A no-op without glibc.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # from <malloc.h>
    mallopt(m_mmap_threshold, 32 * 1024 * 1024)  # glibc's maximum on 64-bit systems
    mallopt(m_trim_threshold, 1 << 30)


def compiled(fn: Callable) -> Callable:
    """`fn` through torch.compile; if compiling fails, one warning and `fn` eagerly from then on."""
    compiled_fn = torch.compile(fn)
    failed = False

    @functools.wraps(fn)
    def run(*args, **kwargs):
        nonlocal failed
        if not failed:
            try:
                return compiled_fn(*args, **kwargs)
            except Exception as err:  # inductor needs a C++ compiler; any backend error
                failed = True
                warnings.warn(
                    f"torch.compile of {fn.__name__} failed, running it eagerly "
                    f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})",
                    stacklevel=2,
                )
        return fn(*args, **kwargs)

    return run


class TDMPC2:
    """Plans with MPPI over latent rollouts and learns the world model by TD and consistency."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        if self.device.type == "cpu":
            keep_freed_memory()
        self.model = WorldModel(cfg).to(self.device)
        encoder_params = list(self.model._encoder.parameters())
        encoder_ids = {id(p) for p in encoder_params}
        # Fused Adam: one kernel per parameter on the CPU and on CUDA instead of a chain of
        # elementwise ops per parameter; its step counters live on the device, no host sync.
        self.optim = torch.optim.Adam(
            [
                {"params": encoder_params, "lr": cfg.lr * cfg.enc_lr_scale},
                {
                    "params": [
                        p
                        for n, p in self.model.named_parameters()
                        if id(p) not in encoder_ids and not n.startswith(("_pi.", "_target_Qs."))
                    ]
                },
            ],
            lr=cfg.lr,
            fused=True,
        )
        self.pi_optim = torch.optim.Adam(
            self.model._pi.parameters(), lr=cfg.lr, eps=1e-5, fused=True
        )
        self.scale = RunningScale(cfg.tau).to(self.device)
        self.discount = discount_for(
            cfg.episode_length, cfg.discount_denom, cfg.discount_min, cfg.discount_max
        )
        if cfg.multitask:  # each task's discount from its own episode length
            self._discounts = torch.tensor(
                [
                    discount_for(L, cfg.discount_denom, cfg.discount_min, cfg.discount_max)
                    for L in cfg.episode_lengths
                ],
                device=self.device,
            )
            self._action_dims = torch.tensor(cfg.action_dims, device=self.device).float()
        self._prev_mean = torch.zeros(cfg.horizon, cfg.action_dim, device=self.device)
        self._rho = cfg.rho ** torch.arange(cfg.horizon + 1, device=self.device, dtype=torch.float)
        self.model.eval()
        if cfg.get("compile", False):
            # The planner's rollouts (on the CPU the native LayerNorm kernel stays an opaque
            # operator in the graph). Compiling the update's losses too was measured slower
            # than eager on the 2-core CPU.
            self._estimate_value = compiled(self._estimate_value)

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(
        self,
        obs: torch.Tensor,
        t0: bool = False,
        eval_mode: bool = False,
        task: int | None = None,
        terms: Terms = (),
    ) -> torch.Tensor:
        """Action in [-1, 1] for one observation; `t0` marks the first step of an episode."""
        obs = obs.to(self.device, non_blocking=True).unsqueeze(0)
        if task is not None:
            task = torch.tensor(task, device=self.device)
        if self.cfg.mpc:
            return self._plan(obs, t0=t0, eval_mode=eval_mode, task=task, terms=terms).cpu()
        mu, pi, _, _ = self.model.pi(self.model.encode(obs, task), task)
        return (mu if eval_mode else pi)[0].cpu()

    def _gamma(self, task: torch.Tensor | None) -> float | torch.Tensor:
        """The discount: the run's, or each given task's (shaped like `task`)."""
        return self.discount if task is None else self._discounts[task]

    @torch.no_grad()
    def _rollout(
        self,
        z: torch.Tensor,
        actions: torch.Tensor,
        task: torch.Tensor | None = None,
        terms: Terms = (),
    ) -> tuple:
        """Discounted reward sum [N, 1] of latent rollouts, their last latents, the
        discount after the horizon, and which rollouts are still alive: on episodic tasks
        [N, 1], 0 after a predicted termination (no reward or value after it), else 1;
        then each term's sum of `step` parts.

        z is [N, latent], or [1, latent] when all N rollouts start from the same latent.
        """
        G, discount, alive, gamma = 0, 1.0, 1.0, self._gamma(task)
        parts = [0] * len(terms)
        for t in range(self.cfg.horizon):
            z, reward = self.model.step(z, actions[t], task)
            reward = self.model.two_hot.decode(reward)
            G = G + discount * alive * reward
            for i, term in enumerate(terms):
                parts[i] = parts[i] + term.step(t, z, discount, alive)
            if self.model.episodic:
                alive = alive * (self.model.termination(z, task) <= 0)
            discount *= gamma
        return G, z, discount, alive, *parts

    @torch.no_grad()
    def _estimate_value(
        self,
        z: torch.Tensor,
        actions: torch.Tensor,
        task: int | None = None,
        prefix: tuple | None = None,
        terms: Terms = (),
    ) -> torch.Tensor:
        """Discounted return of latent rollouts plus the policy's Q at the end: [N, 1];
        with planning `terms` (common/planning_terms.py), times their task weights plus
        what each adds.

        `prefix` is the `_rollout` of rows rolled out before, placed ahead of these: the
        policy prior's trajectories keep their actions through all MPPI iterations and
        the rollout is deterministic, so only their terminal value is drawn again.
        """
        G, z, discount, alive, *parts = self._rollout(z, actions, task, terms)
        if prefix is not None:
            G, z = torch.cat([prefix[0], G]), torch.cat([prefix[1], z])
            if self.model.episodic:
                alive = torch.cat([prefix[3], alive])
            parts = [torch.cat([p, q]) for p, q in zip(prefix[4:], parts, strict=True)]
        action = self.model.pi_action(z, task)
        value = G + discount * alive * self.model.Q(z, action, return_type="avg", task=task)
        total = math.prod(term.task_weight for term in terms) * value if terms else value
        for term, part in zip(terms, parts, strict=True):
            total = total + term.value(part, z, alive, value, task)
        return total

    @torch.no_grad()
    def _plan(
        self,
        obs: torch.Tensor,
        t0: bool = False,
        eval_mode: bool = False,
        task: int | None = None,
        terms: Terms = (),
    ) -> torch.Tensor:
        """MPPI over action sequences, seeded with policy-prior rollouts; returns [action_dim].

        With a `task` (a 0-dim index), its padded action dimensions stay 0.
        """
        cfg = self.cfg
        z = self.model.encode(obs, task)
        H, A, N, n_pi = cfg.horizon, cfg.action_dim, cfg.num_samples, cfg.num_pi_trajs
        actions = torch.empty(H, N, A, device=self.device)
        if n_pi > 0:
            _z = z.expand(n_pi, -1)
            for t in range(H):
                actions[t, :n_pi] = self.model.pi_action(_z, task)
                if t < H - 1:
                    _z = self.model.next(_z, actions[t, :n_pi], task)

        mean = torch.zeros(H, A, device=self.device)
        std = torch.full((H, A), float(cfg.max_std), device=self.device)
        if not t0:
            mean[:-1] = self._prev_mean[1:]
        # z stays one row: every rollout starts from it (see _rollout). The policy prior's
        # trajectories are rolled out once, not once per iteration.
        prefix = self._rollout(z, actions[:, :n_pi], task, terms) if n_pi > 0 else None
        sampled = actions[:, n_pi:]
        mask = None if task is None else self.model.action_masks[task]
        for _ in range(cfg.iterations):
            noise = torch.randn(H, N - n_pi, A, device=self.device)
            torch.addcmul(mean.unsqueeze(1), std.unsqueeze(1), noise, out=sampled).clamp_(-1, 1)
            if mask is not None:
                sampled.mul_(mask)
            value = self._estimate_value(z, sampled, task, prefix, terms)
            value = value.nan_to_num_(0).squeeze(1)
            elite_value, elite_idxs = torch.topk(value, cfg.num_elites, sorted=False)
            elite_actions = actions[:, elite_idxs]
            score = torch.exp(cfg.temperature * (elite_value - elite_value.max()))
            score = score / score.sum()
            mean = torch.einsum("e,hea->ha", score, elite_actions)
            var = torch.einsum("e,hea->ha", score, (elite_actions - mean.unsqueeze(1)).pow(2))
            std = var.sqrt().clamp(cfg.min_std, cfg.max_std)

        chosen = elite_actions[:, gumbel_sample(score)]
        self._prev_mean.copy_(mean)
        action = chosen[0]
        if not eval_mode:
            action = action + std[0] * torch.randn(A, device=self.device)
        action = action.clamp(-1, 1)
        return action if mask is None else action * mask

    # ---------------------------------------------------------------- learning
    @torch.no_grad()
    def _td_target(
        self,
        next_z: torch.Tensor,
        reward: torch.Tensor,
        terminated: torch.Tensor,
        task: torch.Tensor | None = None,
    ) -> torch.Tensor:
        action = self.model.pi_action(next_z, task)
        q = self.model.Q(next_z, action, return_type="min", target=True, task=task)
        discount = self.discount if task is None else self._gamma(task).unsqueeze(-1)
        return reward + discount * (1 - terminated) * q

    def update_pi(self, zs: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """Policy prior step: maximise running-scaled Q plus entropy over all rolled-out latents."""
        _, pis, log_pis, _ = self.model.pi(zs, task)
        qs = self.model.Q(zs, pis, return_type="avg", detach=True, task=task)
        self.scale.update(qs[0])
        qs = self.scale(qs)
        # Entropy scaled by the action dimension (each task's own), as in the public TD-MPC2.
        dims = self.cfg.action_dim if task is None else self._action_dims[task].unsqueeze(-1)
        entropy = -log_pis * dims
        per_step = (self.cfg.entropy_coef * entropy + qs).mean(dim=(1, 2))
        pi_loss = -(per_step * self._rho[: len(per_step)]).mean()
        pi_loss.backward()
        if task is not None:  # the embedding learns with the world model, as the encoder does
            self.model._task_emb.weight.grad = None
        torch.nn.utils.clip_grad_norm_(self.model._pi.parameters(), self.cfg.grad_clip_norm)
        self.pi_optim.step()
        self.pi_optim.zero_grad(set_to_none=True)
        return pi_loss.detach()

    def losses(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """World-model losses on a batch of subsequences; also returns the rolled-out latents."""
        cfg = self.cfg
        obs, action = self.model.augment(batch["obs"]), batch["action"]
        reward, terminated = batch["reward"], batch["terminated"]
        task = batch.get("task")  # [B] task indices in multi-task training
        with torch.no_grad():
            next_z = self.model.encode(obs[1:], task)
            td_targets = self._td_target(next_z, reward, terminated, task)

        z = self.model.encode(obs[0], task)
        zs = [z]
        for t in range(cfg.horizon):
            z = self.model.next(z, action[t], task)
            zs.append(z)
        zs = torch.stack(zs)
        rho = self._rho[: cfg.horizon]

        consistency = (F.mse_loss(zs[1:], next_z, reduction="none").mean(dim=(1, 2)) * rho).mean()
        two_hot = self.model.two_hot
        reward_ce = two_hot.cross_entropy(self.model.reward(zs[:-1], action, task), reward)
        reward_loss = (reward_ce.mean(dim=(1, 2)) * rho).mean()
        qs = self.model.Q(zs[:-1], action, return_type="all", task=task)
        value_ce = two_hot.cross_entropy(qs, td_targets)  # one two-hot target for every head
        value_loss = (value_ce.mean(dim=(0, 2, 3)) * rho).mean()
        total = (
            cfg.consistency_coef * consistency
            + cfg.reward_coef * reward_loss
            + cfg.value_coef * value_loss
        )
        parts = {
            "consistency_loss": consistency,
            "reward_loss": reward_loss,
            "value_loss": value_loss,
        }
        if cfg.decoder_coef:  # the dynamics must carry what the decoder reads
            decoder = self.model.decoder_loss(zs, batch["obs"])
            parts["decoder_loss"] = (decoder * self._rho).mean()
            total = total + cfg.decoder_coef * parts["decoder_loss"]
        if self.model.episodic:  # did the episode end on arriving at each rolled-out latent?
            logits = self.model.termination(zs[1:], task)
            parts["termination_loss"] = F.binary_cross_entropy_with_logits(logits, terminated)
            total = total + cfg.termination_coef * parts["termination_loss"]
        return total, parts, zs

    def update(self, buffer) -> dict[str, torch.Tensor]:
        """One gradient step on the world model and one on the policy prior.

        Returns 0-dim tensors: the caller converts them when it logs. A non-finite loss
        skips the step (parameters and optimiser states untouched) and returns
        `{"nonfinite": 1.0}`; checking it is the one host sync of an update.
        """
        batch = buffer.sample()
        self.model.train()
        total, parts, zs = self.losses(batch)
        if not torch.isfinite(total):
            self.model.eval()
            return {"nonfinite": torch.ones(())}
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.optim.param_groups[0]["params"] + self.optim.param_groups[1]["params"],
            self.cfg.grad_clip_norm,
        )
        self.optim.step()
        self.optim.zero_grad(set_to_none=True)
        pi_loss = self.update_pi(zs.detach(), batch.get("task"))
        self.model.soft_update_target_Q(self.cfg.tau)
        self.model.eval()
        metrics = {k: v.detach() for k, v in parts.items()}
        metrics.update(total_loss=total.detach(), pi_loss=pi_loss, grad_norm=grad_norm)
        metrics["pi_scale"] = self.scale.value
        metrics["nonfinite"] = torch.zeros(())
        return metrics

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optim": self.optim.state_dict(),
            "pi_optim": self.pi_optim.state_dict(),
            "scale": self.scale.state_dict(),
            "prev_mean": self._prev_mean.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optim.load_state_dict(state["optim"])
        self.pi_optim.load_state_dict(state["pi_optim"])
        self.scale.load_state_dict(state["scale"])
        self._prev_mean.copy_(state["prev_mean"])
