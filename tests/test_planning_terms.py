"""Planning terms: the goal and novelty terms the hierarchy adds to the planner's value."""

from __future__ import annotations

import pytest
import torch

from tdmpc2.agent import TDMPC2
from tdmpc2.common.layers import simnorm
from tdmpc2.common.planning_terms import (
    TERM_SPREAD_FLOOR,
    GoalTerm,
    GoalValue,
    Novelty,
    NoveltyTerm,
    PlanningTerm,
)
from tests.conftest import TINY, make_cfg
from tests.test_fast_paths import plain_mlp, plain_q, randomised


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def director_cfg(extra: list[str] | None = None):
    return make_cfg([*TINY, "trainer=director", *(extra or [])])


def make_terms(
    agent: TDMPC2,
    goal: torch.Tensor | None = None,
    goal_value: GoalValue | None = None,
    novelty: Novelty | None = None,
    task_weight: float = 1.0,
) -> list[PlanningTerm]:
    """The terms the hierarchy builds, from the agent's config."""
    w = agent.cfg.worker
    shared = {"scale": agent.scale, "mode": w.goal_scale}
    shared["value_spread_floor"] = w.value_spread_floor
    terms: list[PlanningTerm] = []
    if goal is not None:
        terms.append(
            GoalTerm(
                goal,
                goal_discount=w.goal_discount,
                horizon=agent.cfg.horizon,
                coef=w.goal_coef,
                goal_value=goal_value,
                task_weight=task_weight,
                **shared,
            )
        )
    if novelty is not None:
        terms.append(NoveltyTerm(novelty, coef=w.novelty_coef, **shared))
    return terms


def sigmoid_value(z, g, mask):
    return torch.sigmoid(4 * (z - g).sum(-1, keepdim=True))


def test_no_terms_plans_exactly_like_the_flat_agent():
    """Same weights, same seed, several warm-started steps: identical actions."""
    flat = TDMPC2(make_cfg(TINY))
    worker = TDMPC2(director_cfg())
    worker.model.load_state_dict(flat.model.state_dict())

    def rollout(agent: TDMPC2, terms=()) -> torch.Tensor:
        torch.manual_seed(3)
        obs = torch.randn(6, 5)
        return torch.stack(
            [agent.act(o, t0=t == 0, eval_mode=t % 2 == 1, terms=terms) for t, o in enumerate(obs)]
        )

    assert torch.equal(rollout(flat), rollout(worker))


def test_a_zero_goal_term_plans_like_no_term():
    cfg = director_cfg(["worker.goal_coef=0.0"])
    agent = TDMPC2(cfg)
    obs = torch.randn(5)
    goal = simnorm(torch.randn(1, 32), 8)
    torch.manual_seed(7)
    flat = agent.act(obs, t0=True)
    torch.manual_seed(7)
    with_goal = agent.act(obs, t0=True, terms=make_terms(agent, goal))
    assert torch.equal(flat, with_goal)


def test_goal_term_with_range_scale_is_bounded_by_the_goal_weight():
    """With goal_scale range the whole goal term (inside the horizon and after it) is
    goal_coef * Q range * V with V in [0, 1]; the part of V after the horizon is at
    most gd^H, and reaches it when the goal value is 1."""
    cfg = director_cfg(
        ["worker.goal_coef=0.4", "worker.goal_discount=0.8", "worker.goal_scale=range"]
    )
    agent = TDMPC2(cfg)
    agent.scale.percentiles.copy_(torch.tensor([0.0, 3.0]))  # Q range 3
    weight = 0.4 * 3.0
    z = simnorm(torch.randn(1, 32), 8)
    actions = torch.rand(cfg.horizon, 40, 3) * 2 - 1
    with torch.no_grad():
        last = agent._rollout(z, actions)[1]
    tail_bound = 0.8**cfg.horizon
    for goal in (simnorm(torch.randn(1, 32), 8), last[:1]):  # a random goal; a reached one
        terms = make_terms(agent, goal)
        tail = terms[0].tail(last)
        assert tail.shape == (40, 1)
        assert (tail >= 0).all() and (tail <= tail_bound + 1e-6).all()
        term, _ = goal_term(agent, z, actions, terms)
        assert (term >= -1e-5).all() and (term <= weight + 1e-5).all()
    reached = make_terms(agent, last[:1])[0]
    assert torch.allclose(reached.tail(last[:1]), torch.tensor(tail_bound))
    ones = make_terms(agent, goal, goal_value=lambda z, g, mask: torch.ones(len(z), 1))[0]
    assert torch.allclose(ones.tail(last), torch.full((40, 1), tail_bound))
    zeros = make_terms(agent, goal, goal_value=lambda z, g, mask: torch.zeros(len(z), 1))[0]
    assert torch.equal(zeros.tail(last), torch.zeros(40, 1))


def varied_task_value(agent: TDMPC2) -> None:
    """A reward head whose output differs across candidates by far more than rounding:
    zero-initialised heads give a task value whose spread is 0 on one CPU and 1e-7 on
    another, which no ratio of spreads survives."""
    torch.manual_seed(3)
    for p in agent.model._reward.parameters():
        torch.nn.init.normal_(p, std=0.3)


def goal_term(agent: TDMPC2, z, actions, terms) -> tuple[torch.Tensor, torch.Tensor]:
    """(value with the terms - value without them, value without them) over the candidates."""
    torch.manual_seed(0)
    with_terms = agent._estimate_value(z, actions, terms=terms)
    torch.manual_seed(0)
    flat = agent._estimate_value(z, actions)
    return with_terms - flat, flat


def test_goal_term_with_spread_scale_spreads_goal_coef_times_the_task_value():
    """goal_scale spread: over the candidates, the goal term's sd is goal_coef times the
    task value's, whatever the Q range; a goal value that hardly varies weighs less."""
    cfg = director_cfg(["worker.goal_coef=0.5", "worker.goal_scale=spread"])
    agent = TDMPC2(cfg)
    varied_task_value(agent)
    torch.manual_seed(1)
    z = simnorm(torch.randn(1, 32), 8)
    actions = torch.rand(cfg.horizon, 40, 3) * 2 - 1
    goal = simnorm(torch.randn(1, 32), 8)
    for q_range in (1.0, 3.0):  # the Q range does not enter while the task value varies
        agent.scale.percentiles.copy_(torch.tensor([0.0, q_range]))
        term, flat = goal_term(agent, z, actions, make_terms(agent, goal, sigmoid_value))
        assert flat.std() > 3 * cfg.worker.value_spread_floor * q_range  # above the floor
        assert torch.allclose(term.std(), 0.5 * flat.std(), rtol=1e-3)
        assert (term >= 0).all()
    # A goal value nearly equal for every candidate: its sd counts as TERM_SPREAD_FLOOR.
    terms = make_terms(agent, goal, lambda z, g, mask: 0.5 + 1e-3 * z[:, :1])
    terms[0].step = lambda t, z, discount, alive: torch.zeros(len(z), 1)
    term, flat = goal_term(agent, z, actions, terms)
    assert term.std() < 0.5 * flat.std() * 0.2
    assert TERM_SPREAD_FLOOR == 0.01


@pytest.mark.parametrize("q_range", [1.0, 40.0])
def test_goal_term_steers_where_the_task_value_does_not_vary(q_range):
    """A task value with no spread over the candidates (zero-initialised heads: exactly 0
    on some CPUs, rounding noise on others) counts as value_spread_floor times the Q range:
    the goal term then spreads goal_coef times that and ranks the candidates alone."""
    cfg = director_cfg(["worker.goal_coef=0.5", "worker.value_spread_floor=0.02"])
    agent = TDMPC2(cfg)
    agent.scale.percentiles.copy_(torch.tensor([-q_range, 0.0]))
    torch.manual_seed(1)
    z = simnorm(torch.randn(1, 32), 8)
    actions = torch.rand(cfg.horizon, 40, 3) * 2 - 1
    goal = simnorm(torch.randn(1, 32), 8)
    term, flat = goal_term(agent, z, actions, make_terms(agent, goal, sigmoid_value))
    assert flat.std() < 1e-4  # the degenerate case, on any CPU
    expected = 0.5 * 0.02 * q_range
    assert torch.allclose(term.std(), torch.tensor(expected), rtol=0.05)
    with_goal = flat + term  # the elites are the candidates the goal value ranks first
    goal_rank = term.squeeze(-1).argsort(descending=True)[:8]
    assert set(with_goal.squeeze(-1).argsort(descending=True)[:8].tolist()) == set(
        goal_rank.tolist()
    )


def test_goal_conditioned_planning_moves_toward_the_goal():
    cfg = director_cfg(["worker.goal_coef=100.0", "num_samples=256", "iterations=4"])
    torch.manual_seed(0)
    agent = TDMPC2(cfg)
    for p in agent.model._dynamics.parameters():  # a dynamics model that reacts to actions
        torch.nn.init.normal_(p, std=0.3)
    closer = 0
    for trial in range(10):
        obs = torch.randn(5, generator=torch.Generator().manual_seed(trial))
        with torch.no_grad():
            z = agent.model.encode(obs.unsqueeze(0))
            target = agent.model.next(z, torch.ones(1, 3))

        @torch.no_grad()
        def distance(action: torch.Tensor, z=z, target=target) -> float:
            return float((agent.model.next(z, action.unsqueeze(0)) - target).norm())

        free = distance(agent.act(obs, t0=True, eval_mode=True))
        terms = make_terms(agent, target)
        steered = distance(agent.act(obs, t0=True, eval_mode=True, terms=terms))
        closer += steered < free
    assert closer >= 8


def test_novelty_term_spreads_novelty_coef_times_the_task_value():
    """The exploration bonus in the planner: the discounted novelty of the imagined
    latents, its sd over the candidates novelty_coef times the task value's; the cached
    prior rollouts carry it."""
    cfg = director_cfg(["worker.novelty_coef=0.3", "worker.goal_scale=spread"])
    agent = TDMPC2(cfg)
    varied_task_value(agent)
    terms = make_terms(agent, novelty=lambda z: z[:, :4].sum(-1))
    assert [t.name for t in terms] == ["novelty"]
    z = simnorm(torch.randn(1, 32), 8)
    actions = torch.rand(cfg.horizon, 40, 3) * 2 - 1
    term, flat = goal_term(agent, z, actions, terms)
    assert flat.std() > 3 * cfg.worker.value_spread_floor  # above the floor
    assert torch.allclose(term.std(), 0.3 * flat.std(), rtol=1e-3)
    assert (term >= 0).all()
    prefix = agent._rollout(z, actions[:, :7], terms=terms)
    torch.manual_seed(0)
    cached = agent._estimate_value(z, actions[:, 7:], prefix=prefix, terms=terms)
    assert torch.allclose(cached, flat + term, rtol=1e-5, atol=1e-5)


def test_task_weight_scales_the_task_value():
    """A term's task_weight scales the task value of every candidate (0: the goal term
    alone ranks them); the planner's choice depends on it."""
    torch.manual_seed(0)
    agent = TDMPC2(director_cfg())
    varied_task_value(agent)
    torch.manual_seed(1)
    z, goal = simnorm(torch.randn(1, 32), 8), simnorm(torch.randn(1, 32), 8)
    actions = torch.rand(agent.cfg.horizon, 40, 3) * 2 - 1
    term, flat = goal_term(agent, z, actions, make_terms(agent, goal, sigmoid_value))
    assert flat.std() > 1e-2  # a task value that would move the ranking
    torch.manual_seed(0)
    terms = make_terms(agent, goal, sigmoid_value, task_weight=0.0)
    goal_only = agent._estimate_value(z, actions, terms=terms)
    assert torch.allclose(goal_only, term, rtol=1e-4, atol=1e-5)

    obs = torch.randn(5)
    chosen = []
    for weight in (0.0, 1.0):
        torch.manual_seed(2)
        terms = make_terms(agent, goal, sigmoid_value, task_weight=weight)
        chosen.append(agent.act(obs, t0=True, terms=terms))
    assert not torch.equal(*chosen)


def test_novelty_steers_planning_towards_novel_latents():
    """With a big novelty_coef the planner's actions lead to latents the novelty function
    rates higher than the flat planner's."""
    cfg = director_cfg(["worker.novelty_coef=100.0", "num_samples=256", "iterations=4"])
    torch.manual_seed(0)
    agent = TDMPC2(cfg)
    for p in agent.model._dynamics.parameters():  # a dynamics model that reacts to actions
        torch.nn.init.normal_(p, std=0.3)
    novel = simnorm(torch.randn(1, 32, generator=torch.Generator().manual_seed(9)), 8)
    novelty_fn = lambda z: -(z - novel).norm(dim=-1)  # noqa: E731 (nearer `novel`: newer)
    more = 0
    for trial in range(10):
        obs = torch.randn(5, generator=torch.Generator().manual_seed(trial))
        with torch.no_grad():
            z = agent.model.encode(obs.unsqueeze(0))

        @torch.no_grad()
        def novelty(action: torch.Tensor, z=z) -> float:
            return float(novelty_fn(agent.model.next(z, action.unsqueeze(0))))

        actions = {}
        for name, terms in (("exploring", make_terms(agent, novelty=novelty_fn)), ("flat", [])):
            torch.manual_seed(trial)
            actions[name] = agent.act(obs, t0=True, terms=terms)
        more += novelty(actions["exploring"]) > novelty(actions["flat"])
    assert more >= 8


# ------------------------------------------------- the planner's fused paths
def plain_value(agent: TDMPC2, z: torch.Tensor, actions: torch.Tensor, goal, goal_value):
    """The planner's value estimate with a goal term, with the unfused modules and a
    per-head Q loop: a weight times V, inside the horizon (1 - gd) * gd^t times the
    similarity of each next latent, after it gd^H times the goal value of the last latent
    (its similarity without a `goal_value`). The weight is goal_coef times the Q range
    (goal_scale range) or times the candidates' value sd (at least value_spread_floor
    times the Q range) over their V's sd (at least 0.01) (spread).
    """
    m, cfg = agent.model, agent.cfg
    z = z.expand(actions.shape[1], -1)
    G, discount, V = 0, 1.0, 0
    gd = cfg.worker.goal_discount

    def similarity(z):
        dot = (z * goal).sum(-1, keepdim=True)
        return dot / torch.maximum(
            (z * z).sum(-1, keepdim=True), (goal * goal).sum(-1, keepdim=True)
        )

    for t in range(cfg.horizon):
        reward = m.two_hot.decode(plain_mlp(m._reward, torch.cat([z, actions[t]], -1)))
        z = plain_mlp(m._dynamics, torch.cat([z, actions[t]], -1))
        G = G + discount * reward
        V = V + (1 - gd) * gd**t * similarity(z)
        discount *= agent.discount
    action = m.pi(z)[1]
    heads = torch.randperm(cfg.num_q)[:2].tolist()
    za = torch.cat([z, action], -1)
    q = [m.two_hot.decode(plain_q(m._Qs, za, h)) for h in heads]
    value = G + discount * 0.5 * (q[0] + q[1])
    tail = similarity(z) if goal_value is None else goal_value(z, goal, None)
    V = V + gd**cfg.horizon * tail
    if cfg.worker.goal_scale == "range":
        return value + cfg.worker.goal_coef * agent.scale.value * V
    spread = value.std().clamp_min(cfg.worker.value_spread_floor * agent.scale.value)
    return value + cfg.worker.goal_coef * spread / V.std().clamp_min(0.01) * V


def goal_value_without_draws(z, g, mask):
    """A value beyond the horizon that is not the last latent's similarity (and draws no
    random numbers)."""
    return torch.sigmoid(3 * (z - g).sum(-1, keepdim=True) + 0.5)


@pytest.fixture
def agent() -> TDMPC2:
    torch.manual_seed(0)
    agent = randomised(TDMPC2(director_cfg()))
    agent.scale.percentiles.copy_(torch.tensor([-1.0, 1.5]))  # Q range 2.5
    return agent


@pytest.mark.parametrize(
    "goal_value, scale",
    [(None, "spread"), (goal_value_without_draws, "spread"), (goal_value_without_draws, "range")],
)
def test_value_estimate_with_a_goal_equals_the_plain_loop(agent, goal_value, scale):
    agent.cfg.worker.goal_coef = 0.7
    agent.cfg.worker.goal_scale = scale
    z = simnorm(torch.randn(1, 32), 8)
    actions = torch.rand(agent.cfg.horizon, 50, 3) * 2 - 1
    goal = simnorm(torch.randn(1, 32), 8)
    torch.manual_seed(11)
    fast = agent._estimate_value(z, actions, terms=make_terms(agent, goal, goal_value))
    torch.manual_seed(11)
    with torch.no_grad():
        ref = plain_value(agent, z, actions, goal, goal_value)
    assert fast.shape == (50, 1)
    assert torch.allclose(fast, ref, rtol=1e-4, atol=1e-4)
    torch.manual_seed(11)  # the goal term is big enough that dropping a part would show
    flat = agent._estimate_value(z, actions)
    assert (fast - flat).abs().min() > 1e-2


def test_cached_prior_rollouts_carry_the_goal_term(agent):
    """The planner rolls the policy prior's trajectories out once: with their rollout
    passed as a prefix, the values equal those of rolling out every row each time."""
    z = simnorm(torch.randn(1, 32), 8)
    actions = torch.rand(agent.cfg.horizon, 50, 3) * 2 - 1
    terms = make_terms(agent, simnorm(torch.randn(1, 32), 8), goal_value_without_draws)
    torch.manual_seed(5)
    full = agent._estimate_value(z, actions, terms=terms)
    prefix = agent._rollout(z, actions[:, :7], terms=terms)
    torch.manual_seed(5)  # the same terminal draws (policy noise and Q heads)
    cached = agent._estimate_value(z, actions[:, 7:], prefix=prefix, terms=terms)
    assert cached.shape == (50, 1)
    assert torch.allclose(cached, full, rtol=1e-5, atol=1e-5)
