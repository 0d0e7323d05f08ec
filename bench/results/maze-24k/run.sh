# The maze ablation trained on to 24,000 agent steps (run from the repository root): the
# 16,000-step runs of ../maze-16k, copied here and resumed with a larger `steps`.
T=ogbench-pointmaze-medium-singletask-task3-v0
for agent in flat flat-nov director-goals; do
  mkdir -p bench/results/maze-24k/$T/$agent
  cp -a bench/results/maze-16k/$T/$agent/seed{1,2,3} bench/results/maze-24k/$T/$agent/
done
COMMON=(--tasks $T --steps 24000 --eval-freq 2000 --eval-episodes 3 --jobs 2 --model-size 1
  --overrides action_repeat=4 mlp_dim=128 enc_dim=128 latent_dim=64 num_samples=256
  num_elites=32 iterations=4 batch_size=128 seed_steps=2000 save_buffer=true)
python bench/learning.py run --out bench/results/maze-24k "${COMMON[@]}" --seeds 1 2 3 \
  --agents director-goals flat-nov flat
