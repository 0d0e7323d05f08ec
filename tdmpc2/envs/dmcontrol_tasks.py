"""The DeepMind Control task tables, by suite spelling: what `dmcontrol` resolves names
against and `dmcontrol_custom` builds. A module of its own, importing nothing, so that
neither of those two has to import the other."""

from __future__ import annotations

SHORT_DOMAINS = {"cup": "ball_in_cup", "pointmass": "point_mass"}
SUITE_TASKS: dict[str, tuple[str, ...]] = {
    "acrobot": ("swingup", "swingup_sparse"),
    "ball_in_cup": ("catch",),
    "cartpole": (
        "balance",
        "balance_sparse",
        "swingup",
        "swingup_sparse",
        "two_poles",
        "three_poles",
    ),
    "cheetah": ("run",),
    "dog": ("stand", "walk", "trot", "run", "fetch"),
    "finger": ("spin", "turn_easy", "turn_hard"),
    "fish": ("upright", "swim"),
    "hopper": ("stand", "hop"),
    "humanoid": ("stand", "walk", "run", "run_pure_state"),
    "humanoid_CMU": ("stand", "walk", "run"),
    "lqr": ("lqr_2_1", "lqr_6_2"),
    "manipulator": ("bring_ball", "bring_peg", "insert_ball", "insert_peg"),
    "pendulum": ("swingup",),
    "point_mass": ("easy", "hard"),
    "quadruped": ("walk", "run", "escape", "fetch"),
    "reacher": ("easy", "hard"),
    "stacker": ("stack_2", "stack_4"),
    "swimmer": ("swimmer6", "swimmer15"),
    "walker": ("stand", "walk", "run"),
}
# TD-MPC2's own tasks on suite domains, in suite spelling (see dmcontrol_custom).
CUSTOM_TASKS: dict[str, tuple[str, ...]] = {
    "walker": ("walk_backwards", "run_backwards"),
    "cheetah": ("run_backwards", "run_front", "run_back", "jump"),
    "hopper": ("hop_backwards",),
    "reacher": ("three_easy", "three_hard"),
    "ball_in_cup": ("spin",),
    "pendulum": ("spin",),
}
