# Director's worker on the maze (run from the repository root): the planner led by goals
# alone while training (worker.task_coef=0), no novelty bonus, goals held 16 or 32 steps.
COMMON=(--tasks ogbench-pointmaze-medium-singletask-task3-v0 --steps 8000 --eval-freq 2000
  --eval-episodes 3 --jobs 2 --model-size 1
  --overrides action_repeat=4 mlp_dim=128 enc_dim=128 latent_dim=64 num_samples=256
  num_elites=32 iterations=4 batch_size=128 seed_steps=2000 save_buffer=true)
GOALS=trainer=director,worker.task_coef=0,manager.return_floor=0.01,manager.entropy_target=0.5
K16="goal-worker-k16=$GOALS,manager.goal_interval=16,manager.gamma=0.85,worker.relabel_offset=32"
K32="goal-worker-k32=$GOALS,manager.goal_interval=32,manager.gamma=0.73,worker.relabel_offset=64"
# One-seed pilots of both intervals, then the 32-step one on two more seeds.
python bench/learning.py run --out bench/results/maze-worker "${COMMON[@]}" --seeds 1 --agents "$K16" "$K32"
python bench/learning.py run --out bench/results/maze-worker "${COMMON[@]}" --seeds 2 3 --agents "$K32"
