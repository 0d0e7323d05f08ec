# Frontier goals, pilot (run from the repository root): pointmaze-medium task 1 (the goal
# 10 cells along the maze; no setting was tuned on it), 8,000 steps, seed 1.
T=ogbench-pointmaze-medium-singletask-task1-v0
M="trainer=director,manager.return_floor=0.01,manager.entropy_target=0.5"
COMMON=(--tasks $T --steps 8000 --eval-freq 2000 --eval-episodes 3 --jobs 2 --model-size 1
  --overrides action_repeat=4 mlp_dim=128 enc_dim=128 latent_dim=64 num_samples=256
  num_elites=32 iterations=4 batch_size=128 seed_steps=2000 save_buffer=true)
# Round A, at commit 12e1988 (a frontier goal let go after one interval that ends no nearer).
python bench/learning.py run --out bench/results/maze-frontier "${COMMON[@]}" --seeds 1 \
  --agents "frontier=$M,manager.frontier=0.5" director-goals
# Round B, at commit e56ce0e (held until 3 intervals in a row end no nearer than the best).
python bench/learning.py run --out bench/results/maze-frontier "${COMMON[@]}" --seeds 1 \
  --agents "frontier-p3=$M,manager.frontier=0.5" flat
