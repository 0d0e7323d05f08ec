"""TD-MPC2's own DeepMind Control tasks (the eleven of mt30 outside the suite): names,
published shapes, episode length, rewards that pay for what each name says, and `task=mt30`
building all thirty tasks and starting offline training on data in the published layout."""

from __future__ import annotations

import pytest
import torch

from tdmpc2.envs import KNOWN_TASKS, dmcontrol
from tdmpc2.envs.multitask import TASK_SETS
from tdmpc2.train import build
from tdmpc2.trainer.base import Trainer
from tests.conftest import TINY, compose_cfg
from tests.test_envs import innermost, make
from tests.test_multitask import _public_file, read_csv

# (obs, action) dims of each task in the published mt30 data (before padding to 24 and 6).
PUBLISHED = {
    "walker-walk-backwards": (24, 6),
    "walker-run-backwards": (24, 6),
    "cheetah-run-backwards": (17, 6),
    "cheetah-run-front": (17, 6),
    "cheetah-run-back": (17, 6),
    "cheetah-jump": (17, 6),
    "hopper-hop-backwards": (15, 4),
    "reacher-three-easy": (8, 3),
    "reacher-three-hard": (8, 3),
    "cup-spin": (8, 2),
    "pendulum-spin": (3, 1),
}


def suite_env(task: str, seed: int = 1):
    """The dm_control environment under the task's wrappers, reset once."""
    env = innermost(make(task, seed)[0])._env
    env.reset()
    return env


def reward_at(env, qpos: dict | None = None, qvel: dict | None = None) -> float:
    """The task's reward in the state given by named joint positions and velocities (all
    others zero), the physics recomputed as the simulator would after a step."""
    physics = env.physics
    with physics.reset_context():
        physics.data.qpos[:] = 0
        physics.data.qvel[:] = 0
        for joint, value in (qpos or {}).items():
            physics.named.data.qpos[joint] = value
        for joint, value in (qvel or {}).items():
            physics.named.data.qvel[joint] = value
    return float(env.task.get_reward(physics))


# ------------------------------------------------------------ names and shapes
def test_the_custom_tasks_are_the_eleven_mt30_tasks_outside_the_suite():
    custom = TASK_SETS["mt30"][19:]
    assert set(dmcontrol.CUSTOM_TASK_NAMES) == set(custom) == set(PUBLISHED)
    assert set(custom) <= set(KNOWN_TASKS) and not set(custom) & set(dmcontrol.TASKS)
    assert dmcontrol.resolve("cup-spin") == dmcontrol.resolve("ball_in_cup-spin")
    assert dmcontrol.resolve("cheetah-run_backwards") == ("cheetah", "run_backwards")
    assert dmcontrol.resolve("reacher-three-medium") is None
    with pytest.raises(ValueError, match="did you mean 'cheetah-run-backwards'"):
        make("cheetah-run-backward")


@pytest.mark.parametrize("task", sorted(PUBLISHED))
def test_a_custom_task_has_the_published_shapes_and_500_step_episodes(task):
    env, cfg = make(task)
    obs_dim, action_dim = PUBLISHED[task]
    assert (tuple(cfg.obs_shape["state"]), cfg.action_dim) == ((obs_dim,), action_dim)
    assert (cfg.episode_length, cfg.seed_steps, cfg.episodic) == (500, 2500, False)
    assert torch.equal(env.reset(), make(task, seed=1)[0].reset())  # seeded
    steps, done = 0, False
    while not done:
        obs, reward, done, info = env.step(env.rand_act())
        steps += 1
        assert obs.shape == (obs_dim,) and torch.isfinite(obs).all()
        assert 0 <= reward <= 2 and not info["terminated"]  # two simulator rewards in [0, 1]
        assert done == (steps == 500)
    dm_env = innermost(env)._env  # 1,000 control steps: action repeat 2
    assert dm_env.physics.data.time == pytest.approx(1000 * dm_env.control_timestep())


def test_walker_and_cheetah_floors_reach_twice_as_far_behind_the_start():
    for task, floor, behind in (
        ("walker-walk-backwards", "floor", 252),
        ("cheetah-jump", "ground", 102),
    ):
        model = suite_env(task).physics.named.model
        assert model.geom_pos[floor, "x"] - model.geom_size[floor, 0] == pytest.approx(-behind)


# ------------------------------------------------------------ rewards
@pytest.mark.parametrize(
    ("task", "speed"),
    [
        ("walker-walk-backwards", 1.0),
        ("walker-run-backwards", 8.0),
        ("cheetah-run-backwards", 8.0),
        ("hopper-hop-backwards", 1.0),
    ],
)
def test_backwards_tasks_pay_for_moving_backwards(task, speed):
    env = suite_env(task)  # qpos 0 is upright: walker and hopper stand, the cheetah lies
    backwards = reward_at(env, qvel={"rootx": -speed})
    forwards = reward_at(env, qvel={"rootx": speed})
    still = reward_at(env)
    assert backwards == pytest.approx(1.0)
    assert forwards <= still < backwards and forwards < 0.2
    assert reward_at(env, qvel={"rootx": -speed / 2}) < backwards  # slower pays less


@pytest.mark.parametrize(("tilt", "raised"), [(0.8, "bfoot"), (-0.8, "ffoot")])
def test_cheetah_one_foot_runs_pay_for_their_raised_foot_and_forward_speed(tilt, raised):
    front, back = suite_env("cheetah-run-front"), suite_env("cheetah-run-back")
    pose = {"rootz": 1.0, "rooty": tilt}
    run_front = reward_at(front, pose, {"rootx": 6.0})
    run_back = reward_at(back, pose, {"rootx": 6.0})
    z = front.physics.named.data.xpos
    assert z[raised, "z"] > 1.5 > z["bfoot" if raised == "ffoot" else "ffoot", "z"]
    assert (run_front > run_back) == (raised == "bfoot")
    assert max(run_front, run_back) == pytest.approx(1.0)
    assert reward_at(front, pose) < 0.2  # up but not running
    assert reward_at(front, qvel={"rootx": 6.0}) < 0.1  # running on the ground


def test_cheetah_jump_pays_for_height_on_the_spot():
    env = suite_env("cheetah-jump")
    on_ground, in_air = reward_at(env), reward_at(env, {"rootz": 1.5})
    assert on_ground < 0.25 and in_air == pytest.approx(1.0)
    assert reward_at(env, {"rootz": 1.5}, {"rootx": 6.0}) < in_air  # drifting pays less
    assert reward_at(env, {"rootz": 0.5}) < in_air  # lower pays less


@pytest.mark.parametrize(
    ("task", "radius"), [("reacher-three-easy", 0.05), ("reacher-three-hard", 0.015)]
)
def test_reacher_three_reaches_with_three_links(task, radius):
    env = suite_env(task)
    physics = env.physics
    assert (physics.model.nq, physics.model.nu) == (3, 3)
    assert physics.named.model.geom_size["target", 0] == pytest.approx(radius)
    assert reward_at(env) == 0  # arm straight: its finger 27 cm out, targets within 20 cm
    straight = physics.named.data.geom_xpos["finger", :2].copy()
    assert straight == pytest.approx([0.27, 0.0])
    for offset, paid in ((0.0, True), (0.04, radius > 0.04), (0.2, False)):
        physics.named.model.geom_pos["target", "x"] = straight[0]
        physics.named.model.geom_pos["target", "y"] = straight[1] + offset
        physics.forward()
        assert float(env.task.get_reward(physics)) == (1.0 if paid else 0.0)
        assert env.task.get_observation(physics)["to_target"] == pytest.approx([0.0, offset])


def test_cup_spin_pays_for_a_fast_ball_away_from_the_cup():
    env = suite_env("cup-spin")
    inside = []
    for _ in range(20):
        env.reset()
        inside.append(env.physics.in_target())
        assert env.task.get_reward(env.physics) == 0 or not inside[-1]
    assert sum(inside) >= 14  # the ball starts in the cup in about 9 of 10 episodes
    far = {"ball_x": 0.3, "ball_z": -0.3}
    assert reward_at(env, far, {"ball_x": 6.0}) == pytest.approx(1.0)
    assert reward_at(env, far) == pytest.approx(1 / 3)  # far but still
    assert reward_at(env, far, {"ball_x": 3.0}) == pytest.approx(2 / 3)  # half the speed


def test_pendulum_spin_pays_for_angular_speed_either_way():
    env = suite_env("pendulum-spin")
    assert reward_at(env) == 0
    for speed in (9.0, -9.0, 12.0):
        assert reward_at(env, qvel={"hinge": speed}) == pytest.approx(1.0)
    assert reward_at(env, qvel={"hinge": -4.5}) == pytest.approx(0.5)


# ------------------------------------------------------------ mt30
def test_mt30_builds_all_thirty_tasks_and_starts_offline_training(tmp_path, monkeypatch):
    """All thirty environments, one published-layout file per task (padded to 24 and 6),
    four updates; each evaluation steps every task a few times instead of 500 steps."""
    names = list(TASK_SETS["mt30"])
    data = tmp_path / "data"
    data.mkdir()
    for index in range(len(names)):
        _public_file(data / f"chunk_{index}.pt", task=index, episodes=1, length=500)
    evaluated: list[tuple[int, int]] = []

    def short_eval(self, episodes=None, video=False):
        obs, total = self.env.reset(), 0.0
        for t in range(3):
            obs, reward, _, _ = self.env.step(self.act(obs, t, eval_mode=True))
            total += reward
        evaluated.append((self.env.task, obs.shape[0]))
        return {"episode_reward": total, "episode_success": 0.0}

    monkeypatch.setattr(Trainer, "eval", short_eval)
    args = [*TINY, "task=mt30", f"data_dir={data}", "steps=4", "eval_freq=4", "threads=1"]
    args += ["eval_episodes=1", "progress_bar=false", f"work_dir={tmp_path / 'run'}"]
    trainer = build(compose_cfg(args), args)
    cfg = trainer.cfg
    assert list(cfg.tasks) == names and len(trainer.env.envs) == 30
    assert (tuple(cfg.obs_shape["state"]), cfg.action_dim) == ((24,), 6)
    dims = dict(zip(names, zip(cfg.obs_dims, cfg.action_dims, strict=True), strict=True))
    assert {task: dims[task] for task in PUBLISHED} == PUBLISHED
    assert set(cfg.episode_lengths) == {500} and len(trainer.buffer.parts) == 30

    trainer.train()
    assert trainer.finished and trainer._step == 4
    assert evaluated == [(task, 24) for task in range(30)] * 2  # at step 0 and at the end
    rows = read_csv(tmp_path / "run" / "eval.csv")
    assert [int(row["step"]) for row in rows] == [0, 4]
    assert all(f"episode_reward+{task}" in rows[-1] for task in names)
