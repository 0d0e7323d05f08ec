# Exploration on the large maze: flat, flat + bonus, goals + bonus, actions held 4 steps
# (run from the repository root).
python bench/learning.py run --out bench/results/maze-large \
  --tasks ogbench-pointmaze-large-singletask-task1-v0 --steps 8000 --eval-freq 8000 \
  --eval-episodes 3 --seeds 1 2 3 --jobs 1 --model-size 1 \
  --overrides action_repeat=4 mlp_dim=128 enc_dim=128 latent_dim=64 num_samples=256 \
    num_elites=32 iterations=4 batch_size=128 seed_steps=2000 save_buffer=true \
  --agents flat flat-nov director-nov
