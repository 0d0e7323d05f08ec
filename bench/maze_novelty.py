"""Does the Worker's exploration bonus point where the agent has not been? On a point maze.

    python bench/maze_novelty.py bench/results/maze/ogbench-pointmaze-medium-singletask-task3-v0

For every hierarchical run under the folder (`<agent>/seed<N>/`, last checkpoint and its
replay buffer), the bonus the planner adds (the Goal-VAE's reconstruction error of the
encoded state) is averaged over 9 points in each free cell of the maze, and compared
between the cells the run's replay visited and those it never did. Point mazes only:
their observation is the x-y itself, so any place can be encoded without visiting it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.learn.common import load_trained, run_folders  # noqa: E402
from bench.learn.coordinates import maze, maze_plane  # noqa: E402

OFFSETS = torch.tensor([(dx, dy) for dx in (-1.0, 0.0, 1.0) for dy in (-1.0, 0.0, 1.0)])


def cell_novelty(run_dir: Path) -> tuple[list[float], list[float]]:
    """The bonus in each free cell the replay visited, and in each it did not."""
    trainer, payload, cfg = load_trained(run_dir)
    if not str(cfg.task).startswith("ogbench-pointmaze"):
        raise ValueError(f"{run_dir}: {cfg.task} is not a point maze")
    buffer = payload["buffer"]
    if buffer is None:
        raise ValueError(f"{run_dir}: its checkpoint holds no replay buffer (save_buffer=true)")
    layout, plane = maze(str(cfg.task)), maze_plane(str(cfg.task))
    states = buffer["obs"][buffer["has_step"]].float()
    visited = {tuple(cell) for cell in plane.cells(plane.points(states)).tolist()}  # (j, i)
    seen, unseen = [], []
    for i, j in zip(*(layout.walls == 0).nonzero(), strict=True):
        centre = torch.tensor(
            [layout.origin[0] + (j + 0.5) * layout.unit, layout.origin[1] + (i + 0.5) * layout.unit]
        )
        with torch.no_grad():
            z = trainer.agent.model.encode((centre + OFFSETS).float(), None)
            bonus = trainer.hierarchy.goal_vae.recon_error(z).mean().item()
        (seen if (int(j), int(i)) in visited else unseen).append(bonus)
    return seen, unseen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a task's folder of <agent>/seed<N> runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| agent | seed | visited cells | bonus there | unvisited cells | bonus there | ratio |")
    print("|---|---|---|---|---|---|---|")
    for run_dir, cfg in run_folders([args.out.parent], [args.out.name], []):
        if cfg.get("trainer") != "director" or not (run_dir / "checkpoint.pt").is_file():
            continue
        seen, unseen = cell_novelty(run_dir)
        mean_seen, mean_unseen = statistics.fmean(seen), statistics.fmean(unseen or [0.0])
        print(
            f"| {run_dir.parent.name} | {run_dir.name[4:]} | {len(seen)} | {mean_seen:.3f} | "
            f"{len(unseen)} | {mean_unseen:.3f} | {mean_unseen / mean_seen:.1f} |"
        )


if __name__ == "__main__":
    main()
