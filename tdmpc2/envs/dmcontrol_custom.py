"""TD-MPC2's own DeepMind Control tasks: the eleven tasks of mt30 that the suite lacks.

Each is built the way dm_control builds its own tasks: a physics model of a suite domain
and a `base.Task` with the task's reward, inside `control.Environment`. Two models differ
from the suite's: the walker's and the cheetah's floors are twice as long, so that running
backwards stays on the ground (the suite's floors end 2 m behind the start, these 252 m and
102 m behind it), and the reacher has a third link (xml/reacher_three_links.xml).
Initial states, observations, time limits and control steps are the suite domain's,
except `cup-spin`, whose ball starts in the cup in 9 of 10 episodes. Every episode has
1,000 control steps: 500 agent steps at action repeat 2, like the suite's tasks.

This module imports dm_control: `dmcontrol.py` lists the names and loads it only when one
of these tasks is built.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from importlib import resources

import numpy as np
from dm_control.rl import control
from dm_control.suite import ball_in_cup, base, cheetah, common, hopper, pendulum, reacher, walker
from dm_control.utils import rewards

from tdmpc2.envs.dmcontrol_tasks import CUSTOM_TASKS

INF = float("inf")

# Walker, as in the suite's walk and run, with the target velocity reversed.
WALKER_STAND_HEIGHT = 1.2  # torso height (m) that counts as standing
WALKER_SPEEDS = {"walk_backwards": 1.0, "run_backwards": 8.0}  # m/s backwards
WALKER_FLOOR = 500.0  # floor half-length (m); the suite's is 250

# Cheetah.
CHEETAH_BACKWARDS_SPEED = 8.0  # 0.8 x the suite's run speed of 10 m/s
CHEETAH_ONE_FOOT_SPEED = 6.0  # 0.6 x the run speed, for running on one foot
CHEETAH_JUMP_DRIFT = 0.5  # speed (m/s) within which the jump is paid in full
CHEETAH_UP_HEIGHT = 1.2  # height (m) at which a body counts as up in the air
CHEETAH_FLOOR = 200.0  # floor half-length (m); the suite's is 100

# Hopper, as in the suite's hop (stand height 0.6 to 2 m), hopping backwards.
HOPPER_STAND_HEIGHT = (0.6, 2.0)
HOPPER_BACKWARDS_SPEED = 1.0  # half the suite's hop speed of 2 m/s

# Reacher: the suite's target radii (m).
REACHER_TARGETS = {"three_easy": 0.05, "three_hard": 0.015}

# Ball in cup: keep the ball away from the cup and fast.
CUP_SPIN_DISTANCE = 0.5  # ball-to-target distance (m) paid in full
CUP_SPIN_SPEED = 6.0  # ball speed (m/s) paid in full
CUP_START_OUTSIDE = 0.1  # share of episodes whose ball may start outside the cup

PENDULUM_SPIN_SPEED = 9.0  # angular speed (rad/s) paid in full, either way round

# Episode length in seconds and seconds per control step (None: one physics step): the
# suite domain's, 1,000 control steps each.
TIMING: dict[str, tuple[float, float | None]] = {
    "walker": (25.0, 0.025),
    "cheetah": (10.0, None),
    "hopper": (20.0, 0.02),
    "reacher": (20.0, None),
    "ball_in_cup": (20.0, 0.02),
    "pendulum": (20.0, None),
}


def at_least(x: float, bound: float, margin: float, value_at_margin: float) -> float:
    """1 for `x >= bound`, falling linearly to `value_at_margin` at `bound - margin`
    (and on to 0): the shaped speed and distance terms of these tasks."""
    return float(
        rewards.tolerance(
            x, (bound, INF), margin=margin, value_at_margin=value_at_margin, sigmoid="linear"
        )
    )


# ------------------------------------------------------------ walker
class WalkerBackwards(walker.PlanarWalker):
    """Stand up and move backwards at `move_speed` or faster: the suite's walker-walk and
    walker-run reward with the horizontal velocity's sign flipped."""

    def get_reward(self, physics: walker.Physics) -> float:
        standing = rewards.tolerance(
            physics.torso_height(),
            (WALKER_STAND_HEIGHT, INF),
            margin=WALKER_STAND_HEIGHT / 2,
        )
        upright = (1 + physics.torso_upright()) / 2
        stand = (3 * standing + upright) / 4
        speed = self._move_speed
        backwards = at_least(-physics.horizontal_velocity(), speed, speed / 2, 0.5)
        return float(stand * (5 * backwards + 1) / 6)


# ------------------------------------------------------------ cheetah
def _z(physics: cheetah.Physics, body: str) -> float:
    return float(physics.named.data.xpos[body, "z"])


def _up(height: float) -> float:
    """How far up in the air a body is: 1 from CHEETAH_UP_HEIGHT, Gaussian below it."""
    return float(rewards.tolerance(height, (CHEETAH_UP_HEIGHT, INF), margin=CHEETAH_UP_HEIGHT / 2))


def cheetah_run_backwards(physics: cheetah.Physics) -> float:
    """Backward speed, linear from 0 to full at CHEETAH_BACKWARDS_SPEED."""
    speed = CHEETAH_BACKWARDS_SPEED
    return at_least(-physics.speed(), speed, speed, 0.0)


def cheetah_run_on_one_foot(physics: cheetah.Physics, raised: str) -> float:
    """Run forwards with the `raised` foot and the torso up: height alone earns a sixth."""
    lifted = (3 * _up(_z(physics, raised)) + 2 * _up(_z(physics, "torso"))) / 5
    speed = CHEETAH_ONE_FOOT_SPEED
    forwards = at_least(physics.speed(), speed, speed, 0.0)
    return lifted * (5 * forwards + 1) / 6


def cheetah_stand_on_one_foot(physics: cheetah.Physics, raised: str) -> float:
    """The torso and the `raised` foot up (their mean height), with little horizontal drift."""
    high = _up((_z(physics, "torso") + _z(physics, raised)) / 2)
    drift = CHEETAH_JUMP_DRIFT
    still = float(
        rewards.tolerance(
            physics.speed(), (-drift, drift), margin=drift, value_at_margin=0, sigmoid="linear"
        )
    )
    return (5 * high + still) / 6


def cheetah_jump(physics: cheetah.Physics) -> float:
    """Up in the air on the spot: standing on the front foot and on the back foot, averaged,
    which pays most when both feet and the torso are high."""
    return (
        cheetah_stand_on_one_foot(physics, "bfoot") + cheetah_stand_on_one_foot(physics, "ffoot")
    ) / 2


CHEETAH_REWARDS: dict[str, Callable[[cheetah.Physics], float]] = {
    "run_backwards": cheetah_run_backwards,
    "run_front": lambda physics: cheetah_run_on_one_foot(physics, raised="bfoot"),
    "run_back": lambda physics: cheetah_run_on_one_foot(physics, raised="ffoot"),
    "jump": cheetah_jump,
}


class CheetahVariant(cheetah.Cheetah):
    """The suite's cheetah (reset, observation) paid by another reward."""

    def __init__(self, reward: Callable[[cheetah.Physics], float], random: int | None) -> None:
        self._reward = reward
        super().__init__(random=random)

    def get_reward(self, physics: cheetah.Physics) -> float:
        return self._reward(physics)


# ------------------------------------------------------------ hopper
class HopBackwards(hopper.Hopper):
    """Stay upright and hop backwards: the suite's hopper-hop, its speed term mirrored and
    with half the target speed."""

    def __init__(self, random: int | None) -> None:
        super().__init__(hopping=True, random=random)

    def get_reward(self, physics: hopper.Physics) -> float:
        standing = rewards.tolerance(physics.height(), HOPPER_STAND_HEIGHT)
        speed = HOPPER_BACKWARDS_SPEED
        return float(standing * at_least(-physics.speed(), speed, speed / 2, 0.5))


# ------------------------------------------------------------ ball in cup
class CupSpin(ball_in_cup.BallInCup):
    """Swing the ball around the cup: paid for the ball's distance from the cup and its
    speed, nothing while it is inside."""

    def initialize_episode(self, physics: ball_in_cup.Physics) -> None:
        """A collision-free ball, inside the cup unless this episode may start outside."""
        may_start_outside = self.random.uniform() < CUP_START_OUTSIDE
        while True:
            physics.named.data.qpos["ball_x"] = self.random.uniform(-0.2, 0.2)
            physics.named.data.qpos["ball_z"] = self.random.uniform(0.2, 0.5)
            physics.after_reset()
            if physics.data.ncon == 0 and (may_start_outside or physics.in_target()):
                break
        base.Task.initialize_episode(self, physics)  # skips the suite's own placement

    def get_reward(self, physics: ball_in_cup.Physics) -> float:
        distance = float(np.linalg.norm(physics.ball_to_target()))
        speed = float(np.linalg.norm(physics.named.data.qvel[["ball_x", "ball_z"]]))
        far = at_least(distance, CUP_SPIN_DISTANCE, CUP_SPIN_DISTANCE / 2, 0.5)
        fast = at_least(speed, CUP_SPIN_SPEED, CUP_SPIN_SPEED / 2, 0.5)
        return (1 - physics.in_target()) * (far + 2 * fast) / 3


# ------------------------------------------------------------ pendulum
class PendulumSpin(pendulum.SwingUp):
    """Spin the pole as fast as possible, either way round (reset and observation are the
    suite's swing-up)."""

    def get_reward(self, physics: pendulum.Physics) -> float:
        speed = float(np.abs(physics.angular_velocity()).sum())  # one hinge
        return at_least(speed, PENDULUM_SPIN_SPEED, PENDULUM_SPIN_SPEED / 2, 0.5)


# ------------------------------------------------------------ models and loading
def longer_floor(model: bytes | str, floor: str, half_length: float) -> str:
    """A suite model with its floor geom `floor` stretched to `half_length` along x; the
    floor's centre is kept, so it grows both ways."""
    root = ET.fromstring(model)
    geom = root.find(f".//geom[@name='{floor}']")
    if geom is None:
        raise ValueError(f"the model has no geom named {floor}")
    size = geom.attrib["size"].split()
    geom.set("size", " ".join([str(half_length), *size[1:]]))
    return ET.tostring(root, encoding="unicode")


def reacher_three_links() -> str:
    """The three-link reacher's model, package data beside this module."""
    return resources.files("tdmpc2.envs").joinpath("xml/reacher_three_links.xml").read_text()


def _physics_and_task(domain: str, task: str, seed: int) -> tuple[object, base.Task]:
    """The model and the task, built as the suite builds the domain's own tasks."""
    if domain == "walker":
        model = longer_floor(walker.get_model_and_assets()[0], "floor", WALKER_FLOOR)
        physics = walker.Physics.from_xml_string(model, common.ASSETS)
        return physics, WalkerBackwards(WALKER_SPEEDS[task], random=seed)
    if domain == "cheetah":
        model = longer_floor(cheetah.get_model_and_assets()[0], "ground", CHEETAH_FLOOR)
        physics = cheetah.Physics.from_xml_string(model, common.ASSETS)
        return physics, CheetahVariant(CHEETAH_REWARDS[task], random=seed)
    if domain == "hopper":
        return hopper.Physics.from_xml_string(*hopper.get_model_and_assets()), HopBackwards(seed)
    if domain == "reacher":
        physics = reacher.Physics.from_xml_string(reacher_three_links(), common.ASSETS)
        return physics, reacher.Reacher(REACHER_TARGETS[task], random=seed)
    if domain == "ball_in_cup":
        model = ball_in_cup.get_model_and_assets()
        return ball_in_cup.Physics.from_xml_string(*model), CupSpin(random=seed)
    if domain == "pendulum":
        model = pendulum.get_model_and_assets()
        return pendulum.Physics.from_xml_string(*model), PendulumSpin(random=seed)
    raise AssertionError(f"CUSTOM_TASKS lists {domain}-{task}, which is not built here")


def load(domain: str, task: str, seed: int) -> control.Environment:
    """The task as a dm_control environment seeded with `seed`, as `suite.load` returns
    the suite's (`domain` and `task` in suite spelling: `ball_in_cup`, `run_backwards`)."""
    if task not in CUSTOM_TASKS.get(domain, ()):
        raise ValueError(f"'{domain}-{task}' is not one of TD-MPC2's own DMControl tasks")
    physics, task_ = _physics_and_task(domain, task, seed)
    time_limit, control_timestep = TIMING[domain]
    kwargs = {} if control_timestep is None else {"control_timestep": control_timestep}
    return control.Environment(physics, task_, time_limit=time_limit, **kwargs)
