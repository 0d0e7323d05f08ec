"""The goal-conditioned Worker half: goal critic targets, bounds, updates, what gradients reach."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tdmpc2.common.buffer import Buffer
from tdmpc2.common.goal_worker import GoalWorker, sample_relabelled
from tdmpc2.common.layers import simnorm
from tests.test_buffer import B, H, episode
from tests.test_pixels import stacked_episode

L, A = 16, 3  # latent and action widths


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: a second thread only contends (conftest restores the default)."""
    torch.set_num_threads(1)


def latents(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return simnorm(torch.randn(n, L, generator=g) * 3, 8)


def actions(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, A, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def small_worker(**kwargs) -> GoalWorker:
    torch.manual_seed(0)
    return GoalWorker(L, A, **{"hidden_dim": 32, "goal_discount": 0.8, **kwargs})


def randomised(worker: GoalWorker, std: float = 0.5) -> GoalWorker:
    """Non-zero critic heads, and target critics that differ from the online ones."""
    with torch.no_grad():
        for p in worker.parameters():  # the target critics included
            p.add_(torch.randn_like(p) * std)
    return worker


def cosine_max_by_hand(z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    dot = (z * g).sum(-1, keepdim=True)
    return dot / torch.maximum((z * z).sum(-1, keepdim=True), (g * g).sum(-1, keepdim=True))


def snapshot(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_critics_start_at_zero_with_frozen_copies_as_targets():
    worker = small_worker()
    z, g, a = latents(5, 0), latents(5, 1), actions(5, 2)
    assert torch.equal(worker.q(z, a, g), torch.zeros(2, 5, 1))
    assert torch.equal(worker.q(z, a, g, target=True), torch.zeros(2, 5, 1))
    assert all(not p.requires_grad for p in worker._target_Qs.parameters())
    # Zero critics: the target is the similarity of the next latent alone.
    expected = 0.2 * cosine_max_by_hand(z, g)
    assert torch.allclose(worker.td_target(z, g), expected, atol=1e-6)
    assert torch.allclose(worker.td_target(g, g), torch.full((5, 1), 0.2), atol=1e-6)


def test_td_target_is_the_formula_from_the_target_critics():
    """(1 - gd) * cosine_max(z', g) + gd * min_i target Q_i(z', a', g) with a' ~ pi_g(z', g)."""
    worker = randomised(small_worker(), std=0.05)
    with torch.no_grad():
        worker._target_Qs.biases[-1].fill_(0.5)  # Q values inside [0, 1]: no clamping
    next_z, g = latents(7, 0), latents(7, 1)
    torch.manual_seed(3)
    target = worker.td_target(next_z, g)
    torch.manual_seed(3)  # the same policy sample
    with torch.no_grad():
        action = worker.pi(next_z, g)[1]
        heads = worker._target_Qs(torch.cat([next_z, g, action], -1))  # inputs [z, g, a]
        q = torch.minimum(heads[0], heads[1])
    assert ((q > 0) & (q < 1)).any()
    expected = 0.2 * cosine_max_by_hand(next_z, g) + 0.8 * q.clamp(0, 1)
    assert target.shape == (7, 1)
    assert torch.allclose(target, expected, atol=1e-6)
    # The online critics play no part in it.
    with torch.no_grad():
        for p in worker._Qs.parameters():
            p.add_(1.0)
    torch.manual_seed(3)
    assert torch.equal(worker.td_target(next_z, g), target)


def test_td_target_pays_the_similarity_at_the_goal_temperature():
    """With worker.goal_temperature the critic sums exp((cosine - 1) / temperature)."""
    worker = randomised(small_worker(goal_temperature=0.05), std=0.05)
    next_z, g = latents(7, 0), latents(7, 1)
    torch.manual_seed(3)
    target = worker.td_target(next_z, g)
    worker.goal_temperature = 0.0
    torch.manual_seed(3)  # the same policy sample, so the same critic part
    plain = worker.td_target(next_z, g)
    cosine = cosine_max_by_hand(next_z, g)
    assert torch.allclose(target - plain, 0.2 * (torch.exp((cosine - 1) / 0.05) - cosine))


def test_goal_values_and_targets_stay_in_the_unit_interval():
    worker = randomised(small_worker(), std=2.0)
    z, g, a = latents(64, 0), latents(64, 1), actions(64, 2)
    raw = worker.q(z, a, g, target=True)
    assert (raw < 0).any() and (raw > 1).any()  # unbounded heads: the bounds are not free
    value = worker.value(z, g[:1])  # one goal for all latents, as the planner passes it
    assert value.shape == (64, 1)
    assert ((value >= 0) & (value <= 1)).all()
    target = worker.td_target(z, g)
    assert ((target >= 0) & (target <= 1)).all()
    assert not value.requires_grad and not target.requires_grad


def test_update_steps_policy_and_critics_and_moves_targets_by_polyak():
    worker = randomised(small_worker(tau=0.1), std=0.05)
    z, next_z, g, a = latents(32, 0), latents(32, 1), latents(32, 2), actions(32, 3)
    pi, qs, targets = (snapshot(m) for m in (worker._pi, worker._Qs, worker._target_Qs))
    metrics = worker.update(z, a, next_z, g, lambda z, a: a.sum(-1, keepdim=True))
    assert set(metrics) == {"worker/goal_q_loss", "worker/goal_pi_loss", "worker/goal_value"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in metrics.values())
    assert changed(pi, worker._pi) and changed(qs, worker._Qs)
    # The targets move exactly one Polyak step towards the updated critics.
    for old, new, online in zip(
        targets, worker._target_Qs.parameters(), worker._Qs.parameters(), strict=True
    ):
        assert torch.allclose(new, old + 0.1 * (online - old), atol=1e-6)
        assert new.grad is None
    assert all(p.grad is None for p in worker._Qs.parameters())  # the policy step's froze them


def test_critic_update_regresses_on_the_td_target():
    """Many steps on one batch with frozen targets: Q approaches the fixed TD target."""
    worker = small_worker(tau=0.0, lr=3e-3)
    z, next_z, g, a = latents(16, 0), latents(16, 1), latents(16, 2), actions(16, 3)
    for _ in range(300):
        worker.update(z, a, next_z, g, lambda z, a: torch.zeros(len(z), 1))
    # tau = 0 leaves the targets at zero: the target is the similarity term alone.
    expected = 0.2 * cosine_max_by_hand(next_z, g)
    with torch.no_grad():
        q = worker.q(z, a, g)
    assert torch.allclose(q, expected.expand(2, -1, -1), atol=0.02)


def test_task_value_gradients_reach_only_the_policy():
    """The frozen task critic steers pi_g through its action, but neither it nor the
    encoder the latents came from gets a gradient."""
    worker = small_worker()
    encoder = nn.Linear(5, L)  # trainable, as the world model's encoder is
    critic = nn.Linear(L + A, 1).requires_grad_(False)  # frozen, as the planner's Q is
    obs = torch.randn(3, 8, 5)
    z, next_z, g = (simnorm(encoder(o), 8) for o in obs)
    a = actions(8, 0)

    def task_value(z, a):
        return critic(torch.cat([z, a], -1))

    def policy_after(value_fn) -> list[torch.Tensor]:
        other = small_worker()
        torch.manual_seed(5)
        other.update(z, a, next_z, g, value_fn)
        return snapshot(other._pi)

    torch.manual_seed(5)
    worker.update(z, a, next_z, g, task_value)
    assert all(p.grad is None for p in encoder.parameters())
    assert all(p.grad is None for p in critic.parameters())
    with_task = snapshot(worker._pi)
    without = policy_after(lambda z, a: torch.zeros(len(z), 1))
    assert any(not torch.equal(p, q) for p, q in zip(with_task, without, strict=True))


def test_task_coef_zero_leaves_the_policy_to_the_goal_alone():
    """Director's worker (task_coef 0): two task values however different train the
    same goal policy; with task_coef 1 they do not."""
    z, a, next_z, g = latents(8, 0), actions(8, 1), latents(8, 2), latents(8, 3)
    for task_coef, same in ((0.0, True), (1.0, False)):
        policies = []
        for scale in (1.0, -5.0):
            worker = randomised(small_worker(task_coef=task_coef))
            torch.manual_seed(4)
            worker.update(z, a, next_z, g, lambda z, a, s=scale: s * a.sum(-1, keepdim=True))
            policies.append(snapshot(worker._pi))
        equal = all(torch.equal(x, y) for x, y in zip(*policies, strict=True))
        assert equal == same


def test_optimiser_state_round_trips():
    worker = randomised(small_worker(), std=0.05)
    batch = (latents(8, 0), actions(8, 1), latents(8, 2), latents(8, 3))

    def task_value(z, a):
        return -a.pow(2).sum(-1, keepdim=True)

    worker.update(*batch, task_value)
    other = small_worker()
    other.load_state_dict(worker.state_dict())
    other.load_optim_state_dict(worker.optim_state_dict())
    for w in (worker, other):
        torch.manual_seed(9)
        w.update(*batch, task_value)
    for p, q in zip(worker.parameters(), other.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"goal_discount": 1.0}, "worker.goal_discount must be in \\[0, 1\\), got 1.0"),
        ({"goal_discount": -0.1}, "worker.goal_discount must be in \\[0, 1\\)"),
        ({"hidden_dim": 0}, "worker.hidden_dim and worker.lr must be > 0"),
        ({"lr": 0.0}, "worker.hidden_dim and worker.lr must be > 0"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GoalWorker(L, A, **kwargs)


def test_td_target_stops_at_a_true_termination():
    """Where z' ended the episode its similarity counts once and nothing follows it."""
    worker = randomised(small_worker(), std=0.05)
    with torch.no_grad():
        worker._target_Qs.biases[-1].fill_(0.5)
    next_z, g = latents(6, 0), latents(6, 1)
    terminated = torch.tensor([[1.0], [0.0], [1.0], [0.0], [0.0], [1.0]])
    torch.manual_seed(3)
    cut = worker.td_target(next_z, g, terminated=terminated)
    torch.manual_seed(3)
    full = worker.td_target(next_z, g)
    ended = terminated.bool().squeeze(-1)
    assert torch.allclose(cut[ended], 0.2 * cosine_max_by_hand(next_z, g)[ended], atol=1e-6)
    assert torch.equal(cut[~ended], full[~ended])
    assert (full[ended] > cut[ended]).all()


# ------------------------------------------------------------ hindsight relabelling
def check_relabelled(batch, lengths, max_offset: int, n: int):
    """obs_t, the step leaving it, obs_{t+1}, and a goal 1..max_offset steps later in the
    same episode. Returns t and the goal's t."""
    for key in ("obs", "action", "next_obs", "goal_obs"):
        assert batch[key].shape == (n, 2), key
    ep, t = batch["obs"].unbind(-1)
    for key in ("next_obs", "goal_obs"):
        assert torch.equal(batch[key][:, 0], ep), f"{key} crossed episodes"
    assert torch.equal(batch["next_obs"][:, 1], t + 1)
    assert torch.equal(batch["action"][:, 0], t)
    goal_t = batch["goal_obs"][:, 1]
    offset = goal_t - t
    assert ((offset >= 1) & (offset <= max_offset)).all()
    ends = torch.tensor([lengths[int(e)] for e in ep], dtype=torch.float32)
    assert (goal_t <= ends).all(), "a goal past the episode's last observation"
    assert torch.equal(batch["terminated"], (t == ends - 1).float())  # the step into the end
    return t, goal_t


@pytest.mark.parametrize("capacity", [23, 57])
def test_relabelled_goals_come_later_in_the_same_episode(capacity):
    """Through wrap-around and overwrites, as subsequences do."""
    buf = Buffer(capacity, obs_shape=(2,), action_dim=2, horizon=H, batch_size=B, seed=0)
    g = torch.Generator().manual_seed(capacity)
    lengths: dict[int, int] = {}
    offsets = set()
    for ep_id in range(40):
        lengths[ep_id] = int(torch.randint(1, capacity, (1,), generator=g))
        buf.add(episode(ep_id, lengths[ep_id]))
        try:
            batch = sample_relabelled(buf, max_offset=5)
        except RuntimeError as err:
            assert "no subsequence" in str(err)
            continue
        t, goal_t = check_relabelled(batch, lengths, 5, B)
        offsets |= set((goal_t - t).int().tolist())
    assert offsets == {1, 2, 3, 4, 5}


def test_relabelled_goals_past_the_episode_end_fall_back_to_the_next_obs():
    """One 6-step episode, offsets drawn from 1..50: from obs_t an offset d reaches obs_{t+d}
    only for d <= 6 - t; every other draw gives obs_{t+1}, not the last obs."""
    buf = Buffer(100, (2,), 2, H, B, seed=4)
    buf.add(episode(0, 6))  # starts t = 0..3 (H = 3)
    n = 4000
    t, goal_t = check_relabelled(sample_relabelled(buf, 50, batch_size=n), {0: 6}, 50, n)
    for start in range(4):
        goals = goal_t[t == start]
        assert len(goals) > 500
        next_share = (goals == start + 1).float().mean().item()
        assert abs(next_share - (45 + start) / 50) < 0.05  # 1 + the 44 + t overshooting draws
        assert (goals == 6).float().mean().item() < 0.05  # not clamped to the episode's end
    assert (goal_t - t == 6).any()  # obs_0 -> obs_6: the last obs is a goal too
    # max_offset = 1: the goal is always the next observation.
    batch = sample_relabelled(buf, 1, batch_size=64)
    assert torch.equal(batch["goal_obs"], batch["next_obs"])


def test_relabelled_pixel_transitions_rebuild_their_frame_stacks():
    buf = Buffer(40, (9, 64, 64), 2, 3, 64, seed=0, obs_dtype=torch.uint8, frame_stack=3)
    for episode_id in range(7):  # the ring wraps and cuts older episodes
        buf.add(stacked_episode(episode_id, 11))
    relabelled = sample_relabelled(buf, max_offset=4, batch_size=32)
    for key in ("obs", "next_obs", "goal_obs"):
        assert relabelled[key].shape == (32, 9, 64, 64)
