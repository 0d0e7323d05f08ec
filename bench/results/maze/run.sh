# The maze ablation grid (run from the repository root).
python bench/learning.py run --out bench/results/maze \
  --tasks ogbench-pointmaze-medium-singletask-task3-v0 --steps 8000 --eval-freq 8000 \
  --eval-episodes 1 --seeds 1 2 3 --jobs 2 --model-size 1 \
  --overrides mlp_dim=128 enc_dim=128 latent_dim=64 num_samples=256 num_elites=32 \
    iterations=4 batch_size=128 seed_steps=2000 save_buffer=true \
  --agents flat \
    "flat-nov=trainer=director,worker.goal_coef=0,worker.novelty_coef=1,manager.return_floor=0.01,manager.entropy_target=0.5" \
    "director-goals=trainer=director,manager.return_floor=0.01,manager.entropy_target=0.5" \
    "director-nov=trainer=director,worker.novelty_coef=1,manager.return_floor=0.01,manager.entropy_target=0.5" \
    "director-nov-k32=trainer=director,worker.novelty_coef=1,manager.return_floor=0.01,manager.entropy_target=0.5,manager.goal_interval=32,manager.gamma=0.73,worker.relabel_offset=64"
