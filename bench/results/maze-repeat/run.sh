# The maze grid with each action held 4 simulator steps (run from the repository root).
COMMON=(--tasks ogbench-pointmaze-medium-singletask-task3-v0 --steps 8000 --eval-freq 2000
  --eval-episodes 3 --jobs 2 --model-size 1
  --overrides action_repeat=4 mlp_dim=128 enc_dim=128 latent_dim=64 num_samples=256
  num_elites=32 iterations=4 batch_size=128 seed_steps=2000 save_buffer=true)
# The first attempt at a maze setting (one seed; stopped there, see README.md).
python bench/learning.py run --out bench/results/maze-repeat "${COMMON[@]}" --seeds 1 --agents \
  "director-explore=trainer=director,worker.goal_coef=2,manager.exploration_weight=1,manager.return_floor=0.01,manager.entropy_target=0.5"
# The ablation: flat, flat + bonus, goals + bonus.
python bench/learning.py run --out bench/results/maze-repeat "${COMMON[@]}" --seeds 1 2 3 \
  --agents flat flat-nov director-nov
# The structural variant: goals and bonus, goals held 32 steps (run beside the ablation).
python bench/learning.py run --out bench/results/maze-repeat "${COMMON[@]}" --seeds 1 2 3 \
  --agents director-nov-k32 --jobs 1
# Goals without the bonus (added 2026-12-06, second session: the ablation's missing row).
python bench/learning.py run --out bench/results/maze-repeat "${COMMON[@]}" --seeds 1 2 3 \
  --agents director-goals
