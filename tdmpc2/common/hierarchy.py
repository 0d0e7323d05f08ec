"""Director-style hierarchy beside a TD-MPC2 agent: a Manager sets goals, the planner
(the Worker) pursues them. It acts and learns on its own, so the trainers
(trainer/director_trainer.py) and evaluate.py act with the same code and checkpoints."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch
from omegaconf import DictConfig

from tdmpc2.agent import TDMPC2
from tdmpc2.common.buffer import Buffer
from tdmpc2.common.goal_vae import GoalVAE
from tdmpc2.common.goal_worker import GoalWorker, sample_relabelled
from tdmpc2.common.manager import Manager
from tdmpc2.common.multitask_buffer import MultitaskBuffer
from tdmpc2.common.parser import ConfigError
from tdmpc2.common.planning_terms import GoalTerm, NoveltyTerm, PlanningTerm, cosine_max

Replay = Buffer | MultitaskBuffer


def check_director_cfg(cfg: DictConfig) -> None:
    """Rejects Director settings that cannot work, before anything trains."""
    m, w = cfg.manager, cfg.worker
    for key, value in (
        ("manager.goal_interval", m.goal_interval),
        ("manager.decisions", m.decisions),
        ("manager.batch_size", m.batch_size),
        ("manager.update_every", m.update_every),
        ("worker.batch_size", w.batch_size),
        ("worker.relabel_offset", w.relabel_offset),
    ):
        if int(value) < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")
    if int(m.batch_size) > int(w.batch_size):
        raise ConfigError(
            f"manager.batch_size ({m.batch_size}) must be <= worker.batch_size ({w.batch_size}): "
            "the Manager imagines from the Worker's replay latents"
        )
    for key, value in (
        ("worker.goal_coef", w.goal_coef),
        ("worker.novelty_coef", w.novelty_coef),
        ("worker.task_coef", w.task_coef),
        ("worker.value_spread_floor", w.value_spread_floor),
        ("worker.goal_temperature", w.goal_temperature),
    ):
        if float(value) < 0:
            raise ConfigError(f"{key} must be >= 0, got {value}")
    for key, value in (("manager.frontier", m.frontier), ("worker.task_share", w.task_share)):
        if not 0 <= float(value) <= 1:
            raise ConfigError(f"{key} must be in [0, 1], got {value}")
    if int(m.frontier_hold) < 1:
        raise ConfigError(f"manager.frontier_hold must be >= 1, got {m.frontier_hold}")
    if not 0 <= int(m.frontier_reach) <= FRONTIER_CANDIDATES:
        raise ConfigError(
            f"manager.frontier_reach must be in [0, {FRONTIER_CANDIDATES}], got {m.frontier_reach}"
        )
    if int(m.frontier_path) < 0:
        raise ConfigError(f"manager.frontier_path must be >= 0, got {m.frontier_path}")
    if int(m.frontier_path) > 0 and int(m.frontier_reach) > 0:
        raise ConfigError(
            "manager.frontier_path and manager.frontier_reach both pick the frontier goal "
            "during its hold: set one of them to 0"
        )
    if int(m.frontier_path) > 0 and cfg.multitask:
        raise ConfigError(
            "manager.frontier_path follows one task's stored episodes: not with a task set"
        )
    if m.frontier_then not in ("manager", "random"):
        raise ConfigError(f"manager.frontier_then must be manager or random, got {m.frontier_then}")
    if m.frontier_then == "random" and int(m.frontier_path) == 0:
        raise ConfigError(
            "manager.frontier_then=random starts where the frontier path ends: "
            "set manager.frontier_path > 0"
        )
    if m.frontier_space not in ("latent", "obs"):
        raise ConfigError(f"manager.frontier_space must be latent or obs, got {m.frontier_space}")
    if m.exploration not in ("recon", "rarity"):
        raise ConfigError(f"manager.exploration must be recon or rarity, got {m.exploration}")
    if w.goal_scale not in ("spread", "range"):
        raise ConfigError(f"worker.goal_scale must be spread or range, got {w.goal_scale}")


def keys_for(cls: type, group: DictConfig) -> dict:
    """The keys of a config group (`goal_vae`, `manager`, `worker`) that `cls` takes as
    constructor arguments: a key added to the group and to the constructor reaches it
    with no edit here. Keys the hierarchy reads itself (`manager.goal_interval`, ...) are
    not arguments and stay in the group."""
    params = inspect.signature(cls).parameters
    return {key: value for key, value in group.items() if key in params}


FRONTIER_CANDIDATES = 1024  # replay states a frontier goal or a rarity is measured among
FRONTIER_NEIGHBOURS = 8  # a state's rarity: the distance to its 8th-nearest candidate


def rarity(
    z: torch.Tensor, reference: torch.Tensor | None = None, k: int = FRONTIER_NEIGHBOURS
) -> torch.Tensor:
    """Distance from each latent [N, latent] to its k-th nearest in `reference` [M, latent]
    (default: the other latents of z): large where the replay is sparse. On three
    pointmaze-medium checkpoints the rarest of 1,024 fell in the rarest quarter of visited
    cells 55-77% of the time; the Goal-VAE's worst reconstruction 20-42%, k=32 5-28%,
    each dimension first scaled to unit spread 14-80%
    (bench/results/maze-explore/frontier-choice.md)."""
    if reference is None:  # the nearest is the latent itself
        return torch.cdist(z, z).topk(k + 1, largest=False).values[:, -1]
    return torch.cdist(z, reference).topk(k, largest=False).values[:, -1]


def stored_path(replay: Buffer, slot: int) -> torch.Tensor:
    """The slots of the stored episode that holds `slot`, from its first observation to
    it. An episode is written to consecutive slots; a start the ring has overwritten is
    left out."""
    index = int(replay._index[slot])
    slots = (slot - index + torch.arange(index + 1)) % replay.capacity
    return slots[replay._episode[slots] == replay._episode[slot]]


def cut_loops(path: torch.Tensor) -> torch.Tensor:
    """The indices of the states of `path` [L, D] left after skipping its loops: from each
    kept state, on to the last later state no further from it than a mean step of the
    path. A stored episode wanders: on pointmaze-medium task 1 its 116-170 steps to the
    frontier came down to 14-22 this way (bench/results/maze-explore, round 5)."""
    distance = torch.cdist(path, path)
    step = distance.diagonal(1).mean()
    keep = [0]
    while keep[-1] < len(path) - 1:
        near = int((distance[keep[-1]] <= step).nonzero().max())
        keep.append(max(near, keep[-1] + 1))
    return torch.tensor(keep, device=path.device)


def empty_stats() -> dict[str, list]:
    return {"codes": [], "reached": [], "similarity": [], "frontier": []}


def goal_metrics(stats: dict[str, list]) -> dict[str, float]:
    """Code perplexity and goal reach (share of intervals ending nearer their goal, mean
    similarity at their end) of the episodes behind `stats`."""
    metrics = {}
    if stats["codes"]:
        metrics["goal/perplexity"] = GoalVAE.perplexity(torch.cat(stats["codes"]))
    if stats["reached"]:
        metrics["goal/reached"] = sum(stats["reached"]) / len(stats["reached"])
        metrics["goal/similarity"] = sum(stats["similarity"]) / len(stats["similarity"])
    if stats["frontier"]:
        metrics["goal/frontier"] = sum(stats["frontier"]) / len(stats["frontier"])
    return metrics


class Hierarchy:
    """The Goal-VAE, the Manager and the goal-conditioned Worker beside a TD-MPC2 agent.

    Every `goal_interval` steps the Manager picks a code from the current latent, the
    Goal-VAE decodes it into a goal latent, and the planner adds a goal term to its
    imagined return, valued beyond its horizon by the goal critic. Each update (after the
    world model's) trains the Goal-VAE and the goal critic and policy on replay
    transitions with relabelled goals, and the Manager in imagination: from replay
    latents it picks codes, the goal policy plays each interval in the world model, and
    the Manager is rewarded with the predicted reward plus an exploration bonus for where
    the interval ends: the Goal-VAE's reconstruction error (Director), or with
    `manager.exploration=rarity` that latent's distance to its neighbours in the replay.

    Multi-task: the Goal-VAE, the Manager and the goal Worker take no task embedding.
    They read latents, which the encoder makes from the observation and the task
    embedding, so a latent already carries its task as far as the world model needs
    it; the modules keep the single-task shapes and one code space serves every task.
    The task enters where the world model is used (encoding, imagined steps, the
    task's discount and Q) and as the action mask that keeps the goal policy at 0 in a
    task's padded action dimensions.
    """

    # evaluate.py: the goal weight (0: the control planner), whether evaluation steers by
    # goals at all, and how the Manager picks its codes.
    control_keys = ("worker.goal_coef", "worker.eval_goals", "manager.deterministic")

    def __init__(self, cfg: DictConfig, agent: TDMPC2) -> None:
        check_director_cfg(cfg)
        self.cfg, self.agent = cfg, agent
        g, m, w = cfg.goal_vae, cfg.manager, cfg.worker
        self.goal_vae = GoalVAE(
            **keys_for(GoalVAE, g),
            latent_dim=cfg.latent_dim,
            simnorm_dim=cfg.simnorm_dim,
            device=agent.device,
        )
        self.manager = Manager(
            **keys_for(Manager, m),
            latent_dim=cfg.latent_dim,
            n_latents=g.n_latents,
            n_classes=g.n_classes,
            device=agent.device,
        )
        self.worker = GoalWorker(
            **keys_for(GoalWorker, w),
            latent_dim=cfg.latent_dim,
            action_dim=cfg.action_dim,
            tau=cfg.tau,
            entropy_coef=cfg.entropy_coef,
            log_std_min=cfg.log_std_min,
            log_std_max=cfg.log_std_max,
            grad_clip=cfg.grad_clip_norm,
            device=agent.device,
        )
        self.interval = int(m.goal_interval)
        self._goal: torch.Tensor | None = None
        self._frontier: torch.Tensor | None = None  # the running episode's frontier goal
        self._frontier_left = 0  # intervals it is still held for
        self._path: torch.Tensor | None = None  # manager.frontier_path: latents leading there
        self._path_points: torch.Tensor | None = None  # the same states in frontier_space
        self._path_at = 0  # the path's state nearest the agent
        self._path_stalled = 0  # steps since the agent last moved along the path
        self._exploring = False  # manager.frontier_then=random: past the path's end
        self._task_episode = False  # worker.task_share: this training episode plans as evaluation
        self._start_similarity: torch.Tensor | None = None  # of the running interval
        self._updates = 0  # counts towards manager.update_every across resumes
        self._stats = empty_stats()  # of the running training episode
        self._eval_stats = empty_stats()  # of the running evaluation

    # ------------------------------------------------------------ acting
    def act(
        self,
        obs: torch.Tensor,
        t: int,
        eval_mode: bool,
        task: int | None = None,
        replay: Replay | None = None,
        random_act: Callable[[], torch.Tensor] | None = None,
        seeding: bool = False,
    ) -> torch.Tensor:
        """The action at step `t` of an episode (of `task` in a task set), after choosing a
        goal every `goal_interval` steps. Training passes its `replay`, which frontier goals
        come from, and `random_act`, the action taken while `seeding` (goals are then
        random codes) and past the frontier with `manager.frontier_then=random`.
        Evaluation needs neither."""
        if t % self.interval == 0:
            self._choose_goal(obs, t, eval_mode, task, replay, seeding)
        if self._path is not None and not seeding:
            self._follow_path(obs, task)
        if seeding or self._exploring:
            if random_act is None:
                raise ValueError("random actions while seeding or exploring: pass `random_act`")
            return random_act()
        terms = self.planning_terms(eval_mode)
        return self.agent.act(obs, t0=t == 0, eval_mode=eval_mode, task=task, terms=terms)

    def planning_terms(self, eval_mode: bool) -> list[PlanningTerm]:
        """What the planner adds to the task value this step: the goal term (valued beyond
        the horizon by the goal critic) and, while training with `worker.novelty_coef`,
        the Manager's exploration bonus (the Goal-VAE's reconstruction error).

        While training the task value weighs `worker.task_coef` (Director's worker: 0,
        goals alone); evaluation, and the `worker.task_share` of training episodes that
        plan as it does, plans for the task, towards the goal only with
        `worker.eval_goals`. The Manager still picks codes in evaluation without goals, so
        its goal reach there says where it would have led the planner. Built each step
        from the config, so evaluate.py's control keys take effect on a loaded run.
        """
        w, agent = self.cfg.worker, self.agent
        eval_mode = eval_mode or self._task_episode
        if eval_mode and not w.eval_goals:
            return []
        shared = {"scale": agent.scale, "mode": w.goal_scale}
        shared["value_spread_floor"] = w.value_spread_floor
        goal = GoalTerm(
            self._goal,
            goal_discount=w.goal_discount,
            goal_temperature=w.goal_temperature,
            horizon=self.cfg.horizon,
            coef=w.goal_coef,
            goal_value=self.worker.value,
            action_masks=getattr(agent.model, "action_masks", None),
            task_weight=1.0 if eval_mode else float(w.task_coef),
            **shared,
        )
        if eval_mode or float(w.novelty_coef) <= 0:
            return [goal]
        return [goal, NoveltyTerm(self.goal_vae.recon_error, coef=w.novelty_coef, **shared)]

    def _encode(self, obs: torch.Tensor, task: int | None) -> torch.Tensor:
        if task is not None:
            task = torch.tensor(task, device=self.agent.device)
        with torch.no_grad():
            return self.agent.model.encode(obs.to(self.agent.device).unsqueeze(0), task)

    def _choose_goal(
        self,
        obs: torch.Tensor,
        t: int,
        eval_mode: bool,
        task: int | None = None,
        replay: Replay | None = None,
        seeding: bool = False,
    ) -> None:
        """Random codes while seeding, then the Manager's: sampled in evaluation too, as
        Director's are (only the planner acts greedily there), so an episode's goals change
        and its goal reach means something; `manager.deterministic` takes the mode.

        With `manager.frontier`, that share of training episodes first heads for a goal at
        the replay's frontier (`_frontier_goal`), held for `manager.frontier_hold`
        intervals, long enough to cross several cells of a maze (goal similarity is too
        flat there to tell arrival from being stuck); then the Manager's goals take over.
        With `manager.frontier_reach` k, the frontier goal is picked again at every interval
        of the hold among the k replay states nearest the agent: a step towards the rarer
        side that the Worker can reach, where one far goal was not reached. With
        `manager.frontier_path`, the Worker is led there along the stored episode that
        reached it (`_follow_path`); with `manager.frontier_then=random`, the rest of the
        episode from there takes random actions, as Go-Explore explores from the state it
        returned to.
        """
        z = self._encode(obs, task)
        stats = self._eval_stats if eval_mode else self._stats
        if t > 0:
            self._close_interval(z, stats)
        training = not eval_mode and not seeding
        if t == 0 or not training:
            self._frontier = self._path = self._path_points = None
            self._exploring = False
        elif self._frontier is not None:
            self._frontier_left -= 1
            if self._frontier_left <= 0:
                self._frontier = self._path = self._path_points = None
            elif int(self.cfg.manager.frontier_reach) > 0:
                self._frontier = self._frontier_goal(replay, near=z)
        if t == 0 and training:
            self._task_episode = False
        share = float(self.cfg.manager.frontier)
        # The draws only happen with their shares on, so runs without them keep their RNG.
        if t == 0 and training and share > 0 and torch.rand(()) < share:
            if replay is None:
                raise ValueError("manager.frontier draws goals from the replay: pass `replay`")
            if int(self.cfg.manager.frontier_path) > 0:
                self._path, self._path_points = self._frontier_path(replay)
                self._path_at = self._path_stalled = 0
                self._frontier = self._path[-1:]
            else:
                near = z if int(self.cfg.manager.frontier_reach) > 0 else None
                self._frontier = self._frontier_goal(replay, near)
            self._frontier_left = int(self.cfg.manager.frontier_hold)
        task_share = float(self.cfg.worker.task_share)
        if t == 0 and training and self._frontier is None and task_share > 0:
            self._task_episode = bool(torch.rand(()) < task_share)
        with torch.no_grad():
            if self._frontier is not None:
                self._goal = self._frontier
                code = self.goal_vae.encode(self._frontier, sample=False)
            else:
                if seeding:
                    code = self.goal_vae.sample_code((1,))
                else:
                    code = self.manager.act(z, deterministic=bool(self.cfg.manager.deterministic))
                self._goal = self.goal_vae.decode(code)
        stats["codes"].append(code)
        stats["frontier"].append(float(self._frontier is not None))
        self._start_similarity = cosine_max(z, self._goal)

    @torch.no_grad()
    def _frontier_goal(self, replay: Replay, near: torch.Tensor | None = None) -> torch.Tensor:
        """The latent [1, latent] of the rarest of FRONTIER_CANDIDATES replay states, the
        one farthest from its neighbours in `_frontier_points`; with `near` [1, latent], the
        rarest of the `manager.frontier_reach` candidates nearest it. A real state, unlike
        a decoded code that names the replay's bulk. Not the Goal-VAE's reconstruction
        error: its pick fell in the rarest quarter of visited maze cells 9-22% of the time
        (bench/results/maze-frontier)."""
        batch = replay.sample(FRONTIER_CANDIDATES)
        z = self.agent.model.encode(batch["obs"][0], batch.get("task"))
        rare = rarity(self._frontier_points(batch["obs"][0], z))
        if near is not None:
            k = int(self.cfg.manager.frontier_reach)
            nearest = torch.cdist(near, z).squeeze(0).topk(k, largest=False).indices
            return z[nearest[rare[nearest].argmax()]].unsqueeze(0)
        return z[rare.argmax()].unsqueeze(0)

    @torch.no_grad()
    def _frontier_path(self, replay: Buffer) -> tuple[torch.Tensor, torch.Tensor]:
        """The latents [L, latent] of the stored episode that reached the rarest of
        FRONTIER_CANDIDATES replay states (the pick of `_frontier_goal`), from its start
        to that state, and the same states in `manager.frontier_space` [L, D]; its loops
        cut there (`cut_loops`). A way there made of states the Worker can reach one after
        another, where it reached one frontier goal 5-10 cells off in 2 of 80 episodes
        (bench/results/maze-explore)."""
        starts = replay._draw_starts(FRONTIER_CANDIDATES)  # as `sample` draws them
        obs = replay._stacked_obs(starts).to(self.agent.device)
        encode = self.agent.model.encode
        rare = rarity(self._frontier_points(obs, encode(obs)))
        path = replay._stacked_obs(stored_path(replay, int(starts[rare.argmax()])))
        z = encode(path.to(self.agent.device))
        points = self._frontier_points(path.to(self.agent.device), z)
        keep = cut_loops(points)
        return z[keep], points[keep]

    @torch.no_grad()
    def _follow_path(self, obs: torch.Tensor, task: int | None) -> None:
        """Moves the goal along the frontier path, `manager.frontier_path` states ahead of
        the path's state nearest the agent in `manager.frontier_space` (looked for no
        further than twice that ahead of the last, so the path is skipped only where the
        agent cut it). Not in latent space where observations are states: on task 4
        latents 9 maze units apart lay nearer than a step, and the nearest state crept
        on while the agent stood still (bench/results/maze-explore, round 5). The path
        ends at its last state, or where the agent has not moved along it for a goal
        interval (the Worker pressed on a wall for 100-200 steps there); the goal is then
        the frontier itself, held as `manager.frontier_hold` says, or with
        `manager.frontier_then=random` random actions explore from there."""
        lead, z = int(self.cfg.manager.frontier_path), self._encode(obs, task)
        point = self._frontier_points(obs.to(z.device).unsqueeze(0), z)
        window = self._path_points[self._path_at : self._path_at + 2 * lead]
        ahead = int(torch.cdist(point, window).argmin())
        self._path_at += ahead
        self._path_stalled = 0 if ahead else self._path_stalled + 1
        last = len(self._path) - 1
        self._goal = self._path[min(self._path_at + lead, last)].unsqueeze(0)
        if self._path_at >= last or self._path_stalled >= self.interval:
            self._path = self._path_points = None
            self._exploring = self.cfg.manager.frontier_then == "random"

    def _frontier_points(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """States [N, D] where frontier goals are picked and their paths cut and followed:
        their latents z, or with `manager.frontier_space=obs` their observations (for
        low-dimensional state observations: on pointmaze-medium task 1 latent rarity
        picked states in the start's room, and on task 4 latents 9 maze units apart lay
        nearer than one step, bench/results/maze-explore)."""
        if self.cfg.manager.frontier_space == "obs":
            return obs.flatten(1).float()
        return z

    @torch.no_grad()
    def _replay_latents(self, replay: Replay) -> torch.Tensor:
        """FRONTIER_CANDIDATES latents of replay states, [N, latent]."""
        batch = replay.sample(FRONTIER_CANDIDATES)
        return self.agent.model.encode(batch["obs"][0], batch.get("task"))  # task: [N]

    def _close_interval(self, z: torch.Tensor, stats: dict) -> None:
        """Goal reach of the interval that ends at latent z: did it end nearer its goal
        than it started, and how similar to the goal is its last latent?"""
        if self._start_similarity is None:
            return
        similarity = cosine_max(z, self._goal)
        stats["reached"].append(float(similarity > self._start_similarity))
        stats["similarity"].append(float(similarity))
        self._start_similarity = None

    # ------------------------------------------------------------ goal metrics
    def end_episode(self, obs: torch.Tensor, task: int | None = None) -> None:
        """A training episode ended at `obs`: its last interval counts towards goal reach."""
        self._close_interval(self._encode(obs, task), self._stats)

    def episode_metrics(self) -> dict[str, float]:
        """Goal metrics of the training episode that ended (train.csv); then resets."""
        metrics = goal_metrics(self._stats)
        self._stats = empty_stats()
        return metrics

    def eval_metrics(self) -> dict[str, float]:
        """Goal metrics of the evaluation's intervals, named for eval.csv (`goal_reached`,
        ...); then resets. An episode's last, partial interval is left out: evaluation
        has no end-of-episode hook."""
        metrics = goal_metrics(self._eval_stats)
        self._eval_stats = empty_stats()
        self._start_similarity = None
        return {k.replace("/", "_"): v for k, v in metrics.items()}

    # ------------------------------------------------------------ learning
    def update(self, replay: Replay, step: int) -> dict:
        """After a world-model update at training step `step`: the Goal-VAE, goal critic and
        policy on relabelled replay; the Manager in imagination every
        `manager.update_every` updates. Multi-task batches carry each row's task: the
        Manager imagines with its start's."""
        model, w = self.agent.model, self.cfg.worker
        batch = sample_relabelled(replay, int(w.relabel_offset), int(w.batch_size))
        task = batch.get("task")  # [B] task indices in multi-task training
        mask = None if task is None else model.action_masks[task]
        with torch.no_grad():
            z, next_z, future_z = model.encode(
                torch.stack([batch["obs"], batch["next_obs"], batch["goal_obs"]]), task
            )
        metrics = self.goal_vae.update(z, step)
        half = len(z) // 2  # hindsight goals, and goals the Manager could hand out
        with torch.no_grad():
            decoded = self.goal_vae.decode(self.goal_vae.sample_code((len(z) - half,)))
        goal = torch.cat([future_z[:half], decoded])
        task_value = functools.partial(self._task_value, task=task)
        terminated = batch["terminated"].unsqueeze(-1) if self.cfg.episodic else None
        metrics.update(
            self.worker.update(z, batch["action"], next_z, goal, task_value, mask, terminated)
        )
        self._updates += 1
        m = self.cfg.manager
        if self._updates % int(m.update_every) == 0:
            n = int(m.batch_size)
            reference = self._replay_latents(replay) if m.exploration == "rarity" else None
            interval = functools.partial(
                self._imagine_interval,
                task=None if task is None else task[:n],
                reference=reference,
            )
            imagined = self.manager.imagine(z[:n], interval, int(m.decisions))
            metrics.update(self.manager.update(*imagined))
        return metrics

    def _task_value(
        self, z: torch.Tensor, action: torch.Tensor, task: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The world model's Q over its running range, critics frozen (d/d action only)."""
        q = self.agent.model.Q(z, action, return_type="avg", detach=True, task=task)
        return self.agent.scale(q)

    @torch.no_grad()
    def _imagine_interval(
        self,
        z: torch.Tensor,
        code: torch.Tensor,
        task: torch.Tensor | None = None,
        reference: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One goal interval in the world model under the goal policy: (last latents,
        discounted predicted reward, exploration bonus of the last latents, 1 where the
        interval ended the episode). The bonus is their `rarity` among the `reference`
        replay latents when given, else the Goal-VAE's reconstruction error. With `task`
        [B], each row steps and discounts as its task does. On episodic tasks rewards
        stop at the first predicted termination, as in planning."""
        model, goal = self.agent.model, self.goal_vae.decode(code)
        mask = None if task is None else model.action_masks[task]
        gamma = self.agent._gamma(task)
        ret, discount = torch.zeros(len(z), device=z.device), 1.0
        alive = torch.ones(len(z), device=z.device)
        for _ in range(self.interval):
            action = self.worker.pi(z, goal, mask)[1]
            z, reward = model.step(z, action, task)
            ret += discount * alive * model.two_hot.decode(reward).squeeze(-1)
            if self.cfg.episodic:
                alive = alive * (model.termination(z, task).squeeze(-1) <= 0)
            discount = discount * gamma
        bonus = self.goal_vae.recon_error(z) if reference is None else rarity(z, reference)
        return z, ret, bonus, 1 - alive

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """The checkpoint's entries of the hierarchy: its networks and optimisers, and under
        `director` the running goal, the interval's start, the update count and the
        training episode's goal stats and whether it plans as evaluation."""
        return {
            "goal_vae": self.goal_vae.state_dict(),
            "goal_vae_optim": self.goal_vae.optim_state_dict(),
            "manager": self.manager.state_dict(),
            "manager_optim": self.manager.optim_state_dict(),
            "goal_worker": self.worker.state_dict(),
            "goal_worker_optim": self.worker.optim_state_dict(),
            "director": {
                "goal": self._goal,
                "frontier": {
                    "goal": self._frontier,
                    "left": self._frontier_left,
                    "path": self._path,
                    "points": self._path_points,
                    "at": self._path_at,
                    "stalled": self._path_stalled,
                    "exploring": self._exploring,
                },
                "start_similarity": self._start_similarity,
                "task_episode": self._task_episode,
                "updates": self._updates,
                "stats": {k: list(v) for k, v in self._stats.items()},
            },
        }

    def load_models(self, state: dict) -> None:
        """The learned parts (networks, optimisers, return scales): all acting needs."""
        self.goal_vae.load_state_dict(state["goal_vae"])
        self.goal_vae.load_optim_state_dict(state["goal_vae_optim"])
        self.manager.load_state_dict(state["manager"])
        self.manager.load_optim_state_dict(state["manager_optim"])
        self.worker.load_state_dict(state["goal_worker"])
        self.worker.load_optim_state_dict(state["goal_worker_optim"])

    def load_state_dict(self, state: dict, models: bool = True) -> None:
        """The whole state of `state_dict`; `models=False` when `load_models` ran already
        (a trainer loads every model first)."""
        if models:
            self.load_models(state)
        director = state["director"]
        self._goal, self._start_similarity = director["goal"], director["start_similarity"]
        # Absent before manager.frontier; a (goal, best, stalls) tuple before frontier_hold,
        # whose episode then goes on with the Manager's goals.
        frontier = director.get("frontier")
        if isinstance(frontier, dict):
            self._frontier, self._frontier_left = frontier["goal"], int(frontier["left"])
            self._path, self._path_at = frontier.get("path"), int(frontier.get("at", 0))
            self._path_stalled = int(frontier.get("stalled", 0))
            self._path_points = frontier.get("points", self._path)  # latent before round 5
            self._exploring = bool(frontier.get("exploring", False))
        else:
            self._frontier, self._frontier_left = None, 0
            self._path = self._path_points = None
            self._path_at = self._path_stalled = 0
            self._exploring = False
        self._task_episode = bool(director.get("task_episode", False))  # absent before task_share
        self._updates = int(director["updates"])
        self._stats = {**empty_stats(), **{k: list(v) for k, v in director["stats"].items()}}
