"""Where `coverage` counts exploration, declared per task: a plane of two coordinates
taken from the observations, cut into square cells, with what to say about a window of
steps and about where goals point, and what to draw under the visited points.

cup-catch: the ball's (x, height) from the cup's target, in 5 cm cells. OGBench mazes
(`ogbench-*`): the agent's x-y (the observation's first two entries), in the maze's own
cells, with each cell's distance to the goal's cell along the maze."""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from tdmpc2.envs import ogbench

if TYPE_CHECKING:
    from matplotlib.axes import Axes

Points = Callable[[torch.Tensor], torch.Tensor]  # observations (n, obs) -> places (n, 2)


@dataclass(frozen=True)
class Plane:
    """A task's coverage plane. `points` maps observations (n, obs) to places (n, 2);
    cells are `cell`-sized squares from `origin`; `window` summarises a window of places
    for its `window_label` column, `where` a set of places (goal targets) for the table
    captioned `where_label`; `draw` puts the task's landmarks on a map's axes."""

    points: Points
    axes: tuple[str, str]
    bounds: tuple[tuple[float, float], tuple[float, float]]
    origin: tuple[float, float]
    cell: float
    cells_text: str
    window_label: str
    window: Callable[[torch.Tensor], str]
    where_label: str
    where: Callable[[torch.Tensor], str]
    draw: Callable[[Axes], None]
    free_cells: int | None = None  # how many cells can be visited at all, when known

    def cells(self, places: torch.Tensor) -> torch.Tensor:
        """Each place's integer cell (n, 2)."""
        return torch.floor((places - torch.tensor(self.origin)) / self.cell).long()

    def count(self, places: torch.Tensor) -> int:
        """How many distinct cells the places fall in."""
        return torch.unique(self.cells(places), dim=0).shape[0]


# ------------------------------------------------------------------------- cup-catch
CUP_CELL = 0.05  # metres: the cup's target is a 10 cm square, two cells a side


@functools.cache
def cup_target_offset() -> tuple[float, float]:
    """(x, z) from the ball's origin to the cup's target with every joint at zero, read
    from the task's model so the coordinates follow dm_control rather than a constant."""
    from dm_control import suite

    physics = suite.load("ball_in_cup", "catch").physics
    with physics.reset_context():
        physics.data.qpos[:] = 0
    offset = physics.named.data.site_xpos["target"] - physics.named.data.xpos["ball"]
    return float(offset[0]), float(offset[2])


def ball_from_target(obs: torch.Tensor) -> torch.Tensor:
    """cup-catch states (cup x, z, ball x, z, then velocities) -> the ball's (x, height)
    from the cup's target: (0, 0) is a catch, a negative height is below the cup."""
    dx, dz = cup_target_offset()
    return torch.stack([obs[:, 2] - obs[:, 0] - dx, obs[:, 3] - obs[:, 1] - dz], dim=1)


def ball_height(places: torch.Tensor) -> str:
    """The ball's median and 90th-percentile height from the target, and the share above
    it: the way into the cup is from above."""
    height = places[:, 1]
    median, high = height.quantile(torch.tensor([0.5, 0.9])).tolist()
    return f"{median:.2f} / {high:.2f} m, {100 * float((height > 0).float().mean()):.1f}%"


def draw_cup_target(ax: Axes) -> None:
    """The cup's target: the square a catch puts the ball in."""
    import matplotlib.pyplot as plt

    ax.add_patch(
        plt.Rectangle((-CUP_CELL, -CUP_CELL), 2 * CUP_CELL, 2 * CUP_CELL, fill=False, color="red")
    )


def cup_catch_plane(task: str) -> Plane:
    """The ball's place from the cup's target, in 5 cm cells."""
    return Plane(
        points=ball_from_target,
        axes=("ball x from target (m)", "ball height from target (m)"),
        bounds=((-0.6, 0.6), (-0.6, 0.6)),
        origin=(0.0, 0.0),
        cell=CUP_CELL,
        cells_text=f"{100 * CUP_CELL:.0f} cm squares of the ball's position from the cup's target",
        window_label="ball above the target, % of steps per window",
        window=lambda places: f"{100 * float((places[:, 1] > 0).float().mean()):.1f}",
        where_label="the ball's median / 90th-percentile height from the target, and the "
        "share above it",
        where=ball_height,
        draw=draw_cup_target,
    )


# ----------------------------------------------------------------------- OGBench mazes
@dataclass(frozen=True)
class Maze:
    """A maze's layout: `walls[i, j]` is 1 for a wall; cell (i, j) is centred at
    (origin + (j + 0.5) * unit, origin + (i + 0.5) * unit) in x-y."""

    walls: np.ndarray
    unit: float
    origin: tuple[float, float]
    start: tuple[float, float]
    goal: tuple[float, float]

    def distances(self, source: tuple[int, int] | None = None) -> torch.Tensor:
        """Each cell's distance in cells to `source` (a cell (i, j); the goal's cell by
        default) along the maze (nan: a wall or out of reach), by breadth-first search."""
        rows, cols = self.walls.shape
        if source is None:
            goal = zip(self.goal, self.origin, strict=True)
            gj, gi = (int((g - o) // self.unit) for g, o in goal)
        else:
            gi, gj = source
        dist = torch.full((rows, cols), float("nan"))
        dist[gi, gj], frontier = 0, [(gi, gj)]
        while frontier:
            i, j = frontier.pop(0)
            for a, b in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
                inside = 0 <= a < rows and 0 <= b < cols
                if inside and not self.walls[a, b] and dist[a, b].isnan():
                    dist[a, b] = dist[i, j] + 1
                    frontier.append((a, b))
        return dist

    def path_lengths(self, sources: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cells along the maze from each source cell (n, 2) (i, j) to its target cell
        (n, 2) (nan: a wall or out of reach): how far apart two places are for an agent
        that cannot cross walls, one search per distinct source."""
        searched: dict[tuple[int, int], torch.Tensor] = {}
        lengths = []
        for (i, j), (a, b) in zip(sources.tolist(), targets.tolist(), strict=True):
            if (i, j) not in searched:
                searched[i, j] = self.distances((i, j))
            lengths.append(searched[i, j][a, b])
        return torch.stack(lengths) if lengths else torch.zeros(0)


@functools.cache
def maze(task: str) -> Maze:
    """The layout, start and goal of an OGBench maze task, read from the environment."""
    import gymnasium as gym

    try:
        importlib.import_module("ogbench")  # registers the gymnasium ids
    except ImportError as err:
        raise ImportError(ogbench.MISSING) from err
    env = gym.make(task[len(ogbench.PREFIX) :])
    env.reset(seed=0)
    maze_env, info = env.unwrapped, env.unwrapped.cur_task_info
    unit = float(maze_env._maze_unit)
    origin = (-maze_env._offset_x - unit / 2, -maze_env._offset_y - unit / 2)
    walls = np.asarray(maze_env.maze_map)
    env.close()
    return Maze(walls, unit, origin, tuple(info["init_xy"]), tuple(info["goal_xy"]))


def maze_plane(task: str) -> Plane:
    """The agent's x-y in the maze's cells, with distances to the goal along the maze."""
    layout = maze(task)
    distances = layout.distances()
    rows, cols = layout.walls.shape
    x0, y0 = layout.origin
    bounds = ((x0, x0 + cols * layout.unit), (y0, y0 + rows * layout.unit))

    def to_goal(places: torch.Tensor) -> torch.Tensor:
        """Path distance in cells from each place's cell to the goal's (walls dropped)."""
        j, i = plane.cells(places).T
        d = distances[i.clamp(0, rows - 1), j.clamp(0, cols - 1)]
        return d[~d.isnan()]

    def nearest(places: torch.Tensor) -> str:
        d = to_goal(places)
        return f"{d.min():.0f}" if len(d) else "–"

    def where(places: torch.Tensor) -> str:
        d = to_goal(places)
        return (
            f"{plane.count(places)} cells, {d.median() if len(d) else math.nan:.0f} from the goal"
        )

    def draw(ax: Axes) -> None:
        ax.imshow(layout.walls, cmap="Greys", origin="lower", extent=(*bounds[0], *bounds[1]))
        ax.plot(*layout.start, "o", color="lime", mec="black", ms=9, label="start")
        ax.plot(*layout.goal, "*", color="red", mec="black", ms=14, label="goal")

    plane = Plane(
        points=lambda obs: obs[:, ogbench.XY],
        axes=("x", "y"),
        bounds=bounds,
        origin=layout.origin,
        cell=layout.unit,
        cells_text=f"the maze's {layout.unit:g} x {layout.unit:g} cells",
        window_label="fewest cells from the goal (along the maze) per window",
        window=nearest,
        where_label="the distinct maze cells they fall in, and their median distance to "
        "the goal's cell in cells along the maze",
        where=where,
        draw=draw,
        free_cells=int((layout.walls == 0).sum()),
    )
    return plane


# Task name, or prefix ending in "-", -> its plane. Tasks not here have no coverage.
PLANES: dict[str, Callable[[str], Plane]] = {
    "cup-catch": cup_catch_plane,
    ogbench.PREFIX: maze_plane,
}


def declared(task: str) -> str | None:
    """The PLANES key that declares `task`'s coordinates: its name, else a prefix."""
    if task in PLANES:
        return task
    return next((k for k in PLANES if k.endswith("-") and task.startswith(k)), None)


@functools.cache
def plane(task: str) -> Plane:
    """`task`'s coverage plane; a one-line error for a task without declared coordinates."""
    key = declared(task)
    if key is None:
        raise ValueError(
            f"no coordinates declared for task '{task}': coverage knows {known()} "
            "(PLANES in bench/learn/coordinates.py)"
        )
    return PLANES[key](task)


def known() -> str:
    """The declared tasks, prefixes as `prefix*`: `cup-catch, ogbench-*`."""
    return ", ".join(k + "*" if k.endswith("-") else k for k in PLANES)


# What `coverage` found per run, and what `coverage_plot` draws from it.
Covered = tuple[str, str, str, int, torch.Tensor]  # task, agent, seed folder, window, places
Goals = tuple[str, str, str, torch.Tensor, dict[str, torch.Tensor]]  # ..., all places, targets


def window_coverage(places: torch.Tensor, window: int, where: Plane) -> list[tuple[int, str]]:
    """Per `window` steps: distinct cells visited, and the plane's own window summary."""
    parts = [places[s : s + window] for s in range(0, len(places) - window + 1, window)]
    return [(where.count(part), where.window(part)) for part in parts]
