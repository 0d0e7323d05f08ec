"""Where would each way of ranking replay states put a frontier goal? (maze-explore study)

Runs bench/maze_goals.py's first table on the maze-frontier pilot's three hierarchy
checkpoints with `rarity` (and for one variant `_frontier_goal`) swapped for each
candidate ranking, and prints the share of frontier goals in the rarest quarter of the
visited cells. Run from the repository root:

    python bench/results/maze-explore/frontier_choice.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench import maze_goals  # noqa: E402

PILOT = ROOT / "bench/results/maze-frontier/ogbench-pointmaze-medium-singletask-task1-v0"
AGENTS = ("director-goals", "frontier", "frontier-p3")


def scaled(z: torch.Tensor) -> torch.Tensor:
    """Each latent dimension scaled to unit spread first."""
    return KNN((z - z.mean(0)) / z.std(0).clamp_min(1e-6))


def by_observation(self, replay) -> torch.Tensor:
    """Ranked by the observations' density (state tasks only), the latent returned."""
    obs = replay.sample(dt.FRONTIER_CANDIDATES)["obs"][0]
    return self.agent.model.encode(obs)[KNN(obs.float()).argmax()].unsqueeze(0)


def recon_error(self, replay) -> torch.Tensor:
    """The pilot's ranking: the Goal-VAE's reconstruction error."""
    z = self.agent.model.encode(replay.sample(dt.FRONTIER_CANDIDATES)["obs"][0])
    return z[self.goal_vae.recon_error(z).argmax()].unsqueeze(0)


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    try:  # after --help, which works without the extension
        from tdmpc2.common import hierarchy as dt
    except ImportError:
        sys.exit(
            "error: this study needs the Director extension: bash apply_director_patches.sh apply"
        )
    KNN, PICK = dt.rarity, dt.Hierarchy._frontier_goal
    VARIANTS = {
        "latent, 8th-nearest (the code's)": (KNN, PICK),
        "latent, 32nd-nearest": (lambda z: KNN(z, k=32), PICK),
        "latent scaled, 8th-nearest": (scaled, PICK),
        "Goal-VAE reconstruction error": (KNN, recon_error),
        "observation, 8th-nearest": (KNN, by_observation),
    }
    missing = [a for a in AGENTS if not (PILOT / a / "seed1/checkpoint.pt").exists()]
    if missing:
        sys.exit(
            f"no checkpoint for {', '.join(missing)} under {PILOT.relative_to(ROOT)}: "
            "run bench/results/maze-frontier/run.sh first (checkpoints are not in git)"
        )
    print("| ranking | " + " | ".join(AGENTS) + " |")
    print("|---|" + "---|" * len(AGENTS))
    for name, (rank, pick) in VARIANTS.items():
        dt.rarity, dt.Hierarchy._frontier_goal = rank, pick
        shares = [maze_goals.goals_and_bonus(PILOT / a / "seed1")[0][6] for a in AGENTS]
        print(f"| {name} | " + " | ".join(f"{s:.2f}" for s in shares) + " |", flush=True)
