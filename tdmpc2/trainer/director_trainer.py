"""Director-style hierarchy: a Manager sets goals, the TD-MPC2 planner (Worker) pursues them."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from tdmpc2.agent import TDMPC2
from tdmpc2.common.buffer import Buffer
from tdmpc2.common.goal_vae import GOAL_REWARDS, GoalVAE
from tdmpc2.common.logger import Logger
from tdmpc2.common.manager import Manager
from tdmpc2.common.parser import ConfigError
from tdmpc2.trainer.online_trainer import OnlineTrainer


def check_director_cfg(cfg: DictConfig) -> None:
    """Rejects Director settings that cannot work, before anything trains."""
    m, w = cfg.manager, cfg.worker
    if int(m.goal_interval) < 1:
        raise ConfigError(f"manager.goal_interval must be >= 1, got {m.goal_interval}")
    if int(m.rollout_len) < 1:
        raise ConfigError(f"manager.rollout_len must be >= 1, got {m.rollout_len}")
    if w.goal_reward not in GOAL_REWARDS:
        raise ConfigError(
            f"worker.goal_reward must be one of {', '.join(GOAL_REWARDS)}, got '{w.goal_reward}'"
        )
    if float(w.goal_coef) < 0:
        raise ConfigError(f"worker.goal_coef must be >= 0, got {w.goal_coef}")


class DirectorTrainer(OnlineTrainer):
    """Online training of the world model, the Goal-VAE and the Manager together.

    Every `goal_interval` steps the Manager picks a code from the current latent, the
    Goal-VAE decodes it into a goal latent, and the planner adds a goal term to its
    imagined rewards. The Manager learns on its own timescale from the environment
    reward summed over each interval (plus an optional exploration bonus). An
    episode's end, time limit included, ends the Manager's trajectory: no bootstrap.
    """

    kind = "director"

    def __init__(
        self, cfg: DictConfig, env, agent: TDMPC2, buffer: Buffer | None, logger: Logger
    ) -> None:
        check_director_cfg(cfg)
        super().__init__(cfg, env, agent, buffer, logger)
        g, m = cfg.goal_vae, cfg.manager
        self.goal_vae = GoalVAE(
            latent_dim=cfg.latent_dim,
            n_latents=g.n_latents,
            n_classes=g.n_classes,
            hidden_dim=g.hidden_dim,
            kl_weight=g.kl_weight,
            temp_start=g.temp_start,
            temp_min=g.temp_min,
            anneal_steps=g.anneal_steps,
            simnorm_dim=cfg.simnorm_dim,
            lr=g.lr,
            device=agent.device,
        )
        self.manager = Manager(
            latent_dim=cfg.latent_dim,
            n_latents=g.n_latents,
            n_classes=g.n_classes,
            hidden_dim=m.hidden_dim,
            lr=m.lr,
            gamma=m.gamma,
            lam=m.lam,
            entropy_coef=m.entropy_coef,
            device=agent.device,
        )
        self.interval = int(m.goal_interval)
        self._goal: torch.Tensor | None = None
        self._pending: dict | None = None  # the manager decision whose interval is running
        self._rollout: list[dict] = []  # finished manager transitions awaiting an update
        self._reset_stats()

    # ------------------------------------------------------------ acting
    def _encode(self, obs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.agent.model.encode(obs.to(self.agent.device).unsqueeze(0))

    def act(self, obs: torch.Tensor, t: int, eval_mode: bool) -> torch.Tensor:
        if t % self.interval == 0:
            self._choose_goal(obs, t, eval_mode)
        if not eval_mode:
            z = self._encode(obs)
            self._stats["distance"] += torch.linalg.vector_norm(z - self._goal)
            self._stats["steps"] += 1
            if self.seeding:
                return self.env.rand_act()
        return self.agent.act(obs, t0=t == 0, eval_mode=eval_mode, goal=self._goal)

    def _choose_goal(self, obs: torch.Tensor, t: int, eval_mode: bool) -> None:
        z = self._encode(obs)
        if not eval_mode and self.seeding:
            code = self.goal_vae.sample_code((1,))
        else:
            greedy = eval_mode or bool(self.cfg.manager.deterministic)
            code = self.manager.act(z, deterministic=greedy)
        with torch.no_grad():
            self._goal = self.goal_vae.decode(code)
        if eval_mode:
            return
        self._stats["codes"].append(code)
        if t > 0:
            self._close_transition(obs, done=False)
        if not self.seeding:
            self._pending = {"obs": obs, "code": code, "reward": 0.0}

    def after_env_step(self, obs: torch.Tensor, reward: float, done: bool, info: dict) -> None:
        if self._pending is not None:
            self._pending["reward"] += reward
        if done:
            self._close_transition(obs, done=True)

    def _close_transition(self, next_obs: torch.Tensor, done: bool) -> None:
        """Finishes the running manager decision; updates the Manager once a rollout is full."""
        if self._pending is None:
            return
        reward = self._pending["reward"]
        weight = float(self.cfg.manager.exploration_weight)
        if weight > 0:
            reward += weight * float(self.goal_vae.recon_error(self._encode(next_obs)))
        self._rollout.append({**self._pending, "reward": reward, "done": float(done)})
        self._pending = None
        if len(self._rollout) >= int(self.cfg.manager.rollout_len):
            self._update_manager(next_obs)

    def _update_manager(self, bootstrap_obs: torch.Tensor) -> None:
        obs = torch.stack([tr["obs"] for tr in self._rollout] + [bootstrap_obs])
        with torch.no_grad():
            z = self.agent.model.encode(obs.to(self.agent.device)).unsqueeze(1)
        codes = torch.cat([tr["code"] for tr in self._rollout]).unsqueeze(1)
        rewards = torch.tensor([[tr["reward"]] for tr in self._rollout], device=z.device)
        dones = torch.tensor([[tr["done"]] for tr in self._rollout], device=z.device)
        self._manager_metrics = self.manager.update(z, codes, rewards, dones)
        self._rollout = []

    # ---------------------------------------------------------- learning
    def update(self, num_updates: int) -> dict[str, torch.Tensor]:
        metrics: dict = {}
        for _ in range(num_updates):
            metrics = {f"worker/{k}": v for k, v in self._agent_update().items()}
            with torch.no_grad():
                z = self.agent.model.encode(self.buffer.sample()["obs"][0])
            metrics.update(self.goal_vae.update(z, self._step))
        return metrics

    # ----------------------------------------------------------- logging
    def _reset_stats(self) -> None:
        self._stats: dict = {"codes": [], "distance": 0.0, "steps": 0}
        self._manager_metrics: dict[str, float] = {}

    def _close_episode(self, episode: dict[str, list], started: float) -> dict[str, float]:
        metrics = super()._close_episode(episode, started)
        if self._stats["codes"]:
            codes = torch.cat(self._stats["codes"])
            metrics["goal/perplexity"] = self.goal_vae.perplexity(codes)
            metrics["goal/distance"] = float(self._stats["distance"]) / max(self._stats["steps"], 1)
        metrics.update(self._manager_metrics)
        self._reset_stats()
        return metrics

    # ------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """Adds the Goal-VAE, the Manager and the running goal, decision and rollout."""
        stats = {**self._stats, "codes": list(self._stats["codes"])}
        stats["distance"] = float(stats["distance"])  # a tensor that `+=` changes in place
        return {
            **super().state_dict(),
            "goal_vae": self.goal_vae.state_dict(),
            "goal_vae_optim": self.goal_vae.optim_state_dict(),
            "manager": self.manager.state_dict(),
            "manager_optim": self.manager.optim_state_dict(),
            "director": {
                "goal": self._goal,
                "pending": None if self._pending is None else dict(self._pending),
                "rollout": list(self._rollout),
                "stats": {
                    **stats,
                    "codes": list(stats["codes"]),
                    "distance": float(stats["distance"]),
                },
                "manager_metrics": dict(self._manager_metrics),
            },
        }

    def load_models(self, state: dict) -> None:
        super().load_models(state)
        self.goal_vae.load_state_dict(state["goal_vae"])
        self.goal_vae.load_optim_state_dict(state["goal_vae_optim"])
        self.manager.load_state_dict(state["manager"])
        self.manager.load_optim_state_dict(state["manager_optim"])

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        director = state["director"]
        self._goal, self._pending = director["goal"], director["pending"]
        self._rollout, self._stats = director["rollout"], director["stats"]
        self._manager_metrics = director["manager_metrics"]
