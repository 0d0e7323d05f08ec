# Frontier goals by latent density (run from the repository root): pointmaze-medium task 4
# (the goal 10 cells along the maze; no setting was tuned on it), 8,000 steps. Flat ran at
# commit e8ab437, frontier-density seed 1 at f716740 and seed 2 at 2a3ed23 (the same
# Director code); one process per core.
T=ogbench-pointmaze-medium-singletask-task4-v0
M="trainer=director,manager.return_floor=0.01,manager.entropy_target=0.5"
COMMON=(--tasks $T --steps 8000 --eval-freq 2000 --eval-episodes 3 --jobs 1 --model-size 1
  --overrides action_repeat=4 mlp_dim=128 enc_dim=128 latent_dim=64 num_samples=256
  num_elites=32 iterations=4 batch_size=128 seed_steps=2000 save_buffer=true)
python bench/learning.py run --out bench/results/maze-explore "${COMMON[@]}" --seeds 1 2 3 \
  --agents flat
# Seeds 1-2 ran (2026-12-07); seed 3 and the control (director-goals) did not fit the session.
python bench/learning.py run --out bench/results/maze-explore "${COMMON[@]}" --seeds 1 2 \
  --agents "frontier-density=$M,manager.frontier=0.5"
