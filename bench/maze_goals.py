"""Do the Manager's goals lead past the replay's frontier, does its reward pay for that, and
does the Worker get there? On a point maze.

    python bench/maze_goals.py bench/results/maze-frontier/<task>   # its run folders
    python bench/maze_goals.py <task folder> --agents frontier-explore --seeds 1 2   # some

For every hierarchical run under the folder (`<agent>/seed<N>/`, last checkpoint and its
replay buffer), three Markdown tables with a row per run:

1. Where goals point. A visited maze cell's rarity is the share of the replay's training
   states in cells visited more often than it: 0 for the most visited cell, near 1 for
   the rarest. Mean rarity of the replay's own states (the bulk, a baseline), of goals
   decoded from the Manager's codes at 512 replay latents and of 64 goals the trainer's
   `_frontier_goal` picks, each placed at its nearest replay state, and the share of
   each in the rarest quarter of the visited cells.
2. What the Manager's exploration reward pays: one imagined goal interval
   (`_imagine_interval`) from each of the 512 latents with its code; the mean bonus for
   goals 3 or more cells along the maze from the start's cell against nearer ones, its
   Spearman correlation with that distance and with the rarity of the interval's end,
   and how far the end lies from the start.
3. Whether the Worker gets there: goal/reached, goal/similarity and goal/frontier of
   train.csv over the last 20% of training episodes.
4. Whether the Worker reaches a frontier goal in the real maze: 8 episodes from the
   task's start, each led by one `_frontier_goal` for `manager.frontier_hold` intervals
   (the episode's length at most) with the training-mode planner, as frontier episodes
   train; then random actions as long towards the same goal. Cells along the maze to the
   goal's cell at the start, the fewest on the way, and the share that reach it.
5. Whether the goal similarity tracks the maze: `cosine_max` between 2,000 random pairs
   of replay latents, by cells along the maze between them, and its Spearman correlation
   with that distance. A similarity that rises again with distance pays far states like
   near ones, so nothing leads the Worker further than the dip.

Point mazes only: their observation is the x-y itself, so every replay state has a cell.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.learn.common import fmt, load_trained, nearest_states, run_folders  # noqa: E402
from bench.learn.coordinates import maze, maze_plane  # noqa: E402
from tdmpc2.common.buffer import Buffer  # noqa: E402
from tdmpc2.common.curves import read_rows  # noqa: E402
from tdmpc2.common.planning_terms import cosine_max  # noqa: E402

STARTS = 512  # replay latents the Manager picks codes at
FRONTIERS = 64  # calls to the hierarchy's _frontier_goal
EPISODES = 8  # real-maze episodes led by a frontier goal (table 4)
PAIRS = 2000  # replay latent pairs whose similarity is set against their distance (table 5)
APART = (0, 1, 2, 3, 4, 5)  # cells along the maze; the last column is this many or more
FAR = 3  # cells along the maze from the start: a far goal
LAST = 0.2  # share of the last training episodes goal reach is averaged over
REACH = ("goal/reached", "goal/similarity", "goal/frontier")


def cell_rarity(cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each state's cell (n, 2): the share of all states in cells visited more often
    than it, and whether it is one of the rarest quarter of the visited cells by visits
    (ties with the quarter's most visited cell included). Ranking cells by visits rather
    than by raw counts makes runs of different lengths comparable."""
    _, inverse, counts = torch.unique(cells, dim=0, return_inverse=True, return_counts=True)
    more = counts.unsqueeze(0) > counts.unsqueeze(1)  # [cell, other]: other visited more
    rarity = (more * counts).sum(1) / counts.sum()
    cutoff = counts.sort().values[math.ceil(len(counts) / 4) - 1]
    return rarity[inverse].float(), (counts <= cutoff)[inverse]


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Rank correlation of two series: the bonus need not grow linearly with distance or
    rarity to pay for it. nan for fewer than 3 pairs or a constant series."""
    if len(x) < 3:
        return math.nan

    def ranks(v: torch.Tensor) -> torch.Tensor:  # ties share their mean rank
        _, inverse, counts = torch.unique(v, return_inverse=True, return_counts=True)
        first = counts.cumsum(0) - counts
        return (first + (counts - 1) / 2).double()[inverse]

    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    scale = rx.norm() * ry.norm()
    return float((rx * ry).sum() / scale) if scale > 0 else math.nan


@torch.no_grad()
def goals_and_bonus(run_dir: Path) -> tuple[list[float], list[float], list[float]]:
    """(where goals point: table 1's numbers, what the bonus pays: table 2's, the real
    maze's frontier reach and the similarity by distance: tables 4 and 5's) of a run's
    last checkpoint, its replay buffer loaded back so `_frontier_goal` can sample it."""
    trainer, payload, cfg = load_trained(run_dir)
    task = str(cfg.task)
    if not task.startswith("ogbench-pointmaze"):
        raise ValueError(f"{run_dir}: {task} is not a point maze")
    state = payload["buffer"]
    if state is None:
        raise ValueError(f"{run_dir}: its checkpoint holds no replay buffer (save_buffer=true)")
    torch.manual_seed(0)  # after building, which seeds with the run's own seed
    device = trainer.agent.device
    trainer.buffer = Buffer.from_state(state, device)
    layout, where = maze(task), maze_plane(task)
    states = state["obs"][state["has_step"]].float()
    cells = where.cells(where.points(states)).flip(-1)  # (i, j): the layout's row, column
    rarity, rare = cell_rarity(cells)
    z = trainer.agent.model.encode(states.to(device), None)

    starts = torch.randint(len(z), (STARTS,))
    hierarchy = trainer.hierarchy
    codes = hierarchy.manager.act(z[starts])
    goals = nearest_states(z, hierarchy.goal_vae.decode(codes)).cpu()
    picked = torch.cat([hierarchy._frontier_goal(trainer.buffer) for _ in range(FRONTIERS)])
    frontier = nearest_states(z, picked).cpu()
    where_goals = [len(torch.unique(cells, dim=0))]
    for index in (slice(None), goals, frontier):
        where_goals += [float(rarity[index].mean()), float(rare[index].float().mean())]

    end_z, _, bonus, _ = hierarchy._imagine_interval(z[starts], codes)
    ends, bonus = nearest_states(z, end_z).cpu(), bonus.cpu()
    away = layout.path_lengths(cells[starts], cells[goals])
    travelled = layout.path_lengths(cells[starts], cells[ends])
    known = ~away.isnan()
    far, near = known & (away >= FAR), known & (away < FAR)

    def mean(values: torch.Tensor) -> float:
        return float(values.mean()) if len(values) else math.nan

    pays = [
        int(far.sum()),
        mean(bonus[far]),
        int(near.sum()),
        mean(bonus[near]),
        spearman(away[known], bonus[known]),
        spearman(rarity[ends], bonus),
        mean(away[known]),
        mean(travelled[~travelled.isnan()]),
    ]
    reach = frontier_reach(trainer, cfg, z, cells)
    return where_goals, pays, reach + similarity_by_distance(layout, z, cells)


def similarity_by_distance(layout: Any, z: torch.Tensor, cells: torch.Tensor) -> list[float]:
    """Table 5's numbers: the mean `cosine_max` of PAIRS random replay pairs that lie each
    of APART cells along the maze apart (the last: that many or more), then Spearman's rho
    of similarity and distance."""
    generator = torch.Generator().manual_seed(0)
    i, j = (torch.randint(len(z), (PAIRS,), generator=generator) for _ in range(2))
    similarity = cosine_max(z[i], z[j]).squeeze(-1).cpu()
    apart = layout.path_lengths(cells[i], cells[j])
    known = ~apart.isnan()
    means = []
    for cells_apart in APART:
        at = known & (apart >= cells_apart if cells_apart == APART[-1] else apart == cells_apart)
        means.append(float(similarity[at].mean()) if at.any() else math.nan)
    return [*means, spearman(apart[known], similarity[known])]


def frontier_reach(
    trainer: Any, cfg: DictConfig, z: torch.Tensor, cells: torch.Tensor
) -> list[float]:
    """Table 4's numbers: [goal from start, fewest on the way: Worker, random, reached:
    Worker, random], means over EPISODES, in cells along the maze."""
    hierarchy, env, where = trainer.hierarchy, trainer.env, maze_plane(str(cfg.task))
    layout = maze(str(cfg.task))
    cfg.manager.frontier = 1.0  # every episode starts with a frontier goal
    steps = min(int(cfg.manager.frontier_hold) * hierarchy.interval, int(cfg.episode_length))
    measured = []
    for _ in range(EPISODES):
        goal_cell, row = None, []
        for policy in ("worker", "random"):
            obs = env.reset()
            places = [obs.float()]
            for t in range(steps):
                if policy == "random":
                    action = env.rand_act()
                else:
                    action = hierarchy.act(
                        obs, t, eval_mode=False, replay=trainer.buffer, random_act=env.rand_act
                    )
                    if goal_cell is None:  # where the frontier goal picked at t=0 lies
                        goal_cell = cells[nearest_states(z, hierarchy._frontier)].cpu()
                obs, _, done, _ = env.step(action)
                places.append(obs.float())
                if done:
                    break
            visited = where.cells(where.points(torch.stack(places))).flip(-1)
            lengths = layout.path_lengths(visited, goal_cell.expand_as(visited))
            if not row:  # the goal from the Worker's start
                row.append(float(lengths[0]))
            row.append(float(lengths.nan_to_num(math.inf).min()))
        measured.append(row)
    rows = torch.tensor(measured)
    return [*rows.mean(0).tolist(), *(rows[:, 1:] == 0).float().mean(0).tolist()]


def goal_reach(run_dir: Path) -> tuple[int, list[float]]:
    """(training episodes counted, mean of each REACH column over the last LAST of the
    run's training episodes; nan for a column it does not log): the Worker's reach of
    the goals it was handed late in training, not while seeding."""
    path = run_dir / "train.csv"
    rows = read_rows(path) if path.is_file() else []
    last = rows[len(rows) - math.ceil(LAST * len(rows)) :]
    means = []
    for key in REACH:
        values = [float(row[key]) for row in last if row.get(key)]
        means.append(statistics.fmean(values) if values else math.nan)
    return len(last), means


Row = tuple[str, str, list[float], list[float], list[float], int, list[float]]


def tables(runs: Sequence[Row]) -> str:
    """The five Markdown tables, a row per (agent, seed, goals, bonus, real-maze frontier
    reach and similarity by distance, episodes, reach)."""
    lines = [
        "Where goals point. Rarity of a visited cell: the share of replay states in cells "
        "visited more often (0: the most visited cell). Goals placed at their nearest "
        f"replay state; {STARTS} Manager goals, {FRONTIERS} frontier goals.",
        "",
        "| agent | seed | visited cells | replay: rarity | replay: rarest quarter "
        "| Manager goals: rarity | Manager goals: rarest quarter "
        "| frontier goals: rarity | frontier goals: rarest quarter |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for agent, seed, where_goals, *_ in runs:
        cells, *shares = where_goals
        lines.append(f"| {agent} | {seed} | {cells} | " + " | ".join(map(fmt, shares)) + " |")
    lines += [
        "",
        f"What the exploration bonus pays: one imagined goal interval from each of the "
        f"{STARTS} starts; far goals lie {FAR} or more cells along the maze from the start's "
        "cell; rho is Spearman's.",
        "",
        "| agent | seed | far goals | bonus, far | near goals | bonus, near "
        "| rho(goal distance, bonus) | rho(end rarity, bonus) | goal from start (cells) "
        "| end from start (cells) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for agent, seed, _, pays, *_ in runs:
        far, far_bonus, near, near_bonus, *rest = pays
        lines.append(
            f"| {agent} | {seed} | {far} | {fmt(far_bonus, 3)} | {near} | {fmt(near_bonus, 3)} | "
            + " | ".join(fmt(v) for v in rest)
            + " |"
        )
    lines += [
        "",
        f"Whether the Worker gets there: the last {100 * LAST:.0f}% of training episodes.",
        "",
        "| agent | seed | episodes | " + " | ".join(REACH) + " |",
        "|---|---|---|---|---|---|",
    ]
    for agent, seed, _, _, _, episodes, reach in runs:
        lines.append(f"| {agent} | {seed} | {episodes} | " + " | ".join(map(fmt, reach)) + " |")
    lines += [
        "",
        f"Whether the Worker reaches a frontier goal in the real maze: {EPISODES} episodes "
        "from the start, each led by one frontier goal for `manager.frontier_hold` "
        "intervals, then random actions as long; cells along the maze to the goal's cell.",
        "",
        "| agent | seed | goal from start | fewest: Worker | fewest: random "
        "| reached: Worker | reached: random |",
        "|---|---|---|---|---|---|---|",
    ]
    for agent, seed, _, _, real, *_ in runs:
        lines.append(f"| {agent} | {seed} | " + " | ".join(map(fmt, real[:5])) + " |")
    apart = [f"{n} cells" for n in APART[:-1]] + [f"{APART[-1]}+ cells"]
    lines += [
        "",
        f"Whether the goal similarity tracks the maze: mean `cosine_max` of {PAIRS:,} random "
        "replay pairs by cells along the maze between them; rho is Spearman's.",
        "",
        "| agent | seed | " + " | ".join(apart) + " | rho(cells, similarity) |",
        "|---|---|" + "---|" * (len(APART) + 1),
    ]
    for agent, seed, _, _, real, *_ in runs:
        lines.append(f"| {agent} | {seed} | " + " | ".join(fmt(v, 3) for v in real[5:]) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a point maze's folder of <agent>/seed<N> runs")
    parser.add_argument("--agents", nargs="+", default=(), help="these agents only")
    parser.add_argument("--seeds", nargs="+", type=int, default=(), help="these seeds only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runs = []
    for run_dir, cfg in run_folders([args.out.parent], [args.out.name], args.agents):
        hierarchical = cfg.get("trainer") == "director" and (run_dir / "checkpoint.pt").is_file()
        if not hierarchical or (args.seeds and int(cfg.seed) not in args.seeds):
            continue
        where_goals, pays, real = goals_and_bonus(run_dir)
        episodes, reach = goal_reach(run_dir)
        name, seed = run_dir.parent.name, run_dir.name[4:]
        runs.append((name, seed, where_goals, pays, real, episodes, reach))
    if not runs:
        parser.error(f"no hierarchical run with a checkpoint under {args.out}")
    print(tables(runs))


if __name__ == "__main__":
    main()
