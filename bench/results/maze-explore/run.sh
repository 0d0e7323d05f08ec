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
# Director's worker (maze-worker's goal-worker-k32: goals alone lead the planner while
# training, held 32 steps) with frontier goals held 4 intervals, and the same without
# them as its control; seeds interleaved so that a cut session leaves matched pairs.
W="$M,worker.task_coef=0,manager.goal_interval=32,manager.gamma=0.73"
W="$W,worker.relabel_offset=64"
for seed in 1 2 3; do
  python bench/learning.py run --out bench/results/maze-explore "${COMMON[@]}" --seeds $seed \
    --agents "frontier-worker=$W,manager.frontier=0.5,manager.frontier_hold=4" \
    "goal-worker-k32=$W"
done
# The same worker with the Manager's exploration bonus by latent rarity instead of the
# Goal-VAE's reconstruction error (goal-worker-k32 is its control too). Ran: seeds 1 and
# 3 of the loop above (seed 2 stopped at step 2,000), seed 1 of this one.
for seed in 1 2 3; do
  python bench/learning.py run --out bench/results/maze-explore "${COMMON[@]}" --seeds $seed \
    --agents "rarity-worker=$W,manager.exploration=rarity"
done
# Round 3 (2026-12-07, later; commits 5a56f12-4236ea7, the same numbers for the agents
# above): five seeds of frontier-worker, goal-worker-k32 and flat (checkpoints of rounds
# 1-2 were gone, so frontier-worker seed 2 ran again from scratch), and two Worker changes
# on top of frontier-worker, each the control of the next: a longer goal discount, then a
# sharp goal similarity. One process per core (taskset), paired seeds interleaved.
for seed in 2 4 5; do
  python bench/learning.py run --out bench/results/maze-explore "${COMMON[@]}" --seeds $seed \
    --agents "frontier-worker=$W,manager.frontier=0.5,manager.frontier_hold=4" \
    "goal-worker-k32=$W"
done
python bench/learning.py run --out bench/results/maze-explore "${COMMON[@]}" --seeds 4 5 \
  --agents flat
# Ran: frontier-reach seeds 1-4, frontier-sharp seeds 1-3 (then the cores went to
# frontier-local).
F="$W,manager.frontier=0.5,manager.frontier_hold=4,worker.goal_discount=0.97"
for seed in 1 2 3 4 5; do
  python bench/learning.py run --out bench/results/maze-explore "${COMMON[@]}" --seeds $seed \
    --agents "frontier-reach=$F" "frontier-sharp=$F,worker.goal_temperature=0.01"
done
# Then (commit 4f36ccb) frontier-worker with the frontier goal picked again every interval
# among the 128 replay states nearest the agent; frontier-worker is its control. Ran: seeds
# 1-4 (seed 5 gave way to the task 1 check below).
for seed in 1 2 3 4 5; do
  python bench/learning.py run --out bench/results/maze-explore "${COMMON[@]}" --seeds $seed \
    --agents "frontier-local=$W,manager.frontier=0.5,manager.frontier_hold=4,manager.frontier_reach=128"
done
# Frontier goals against their control on task 1 (the goal 10 cells along another path),
# the same setting. Ran: frontier-worker seeds 1-3, goal-worker-k32 seeds 1-2 (seed 3 did
# not fit the session).
for seed in 1 2 3; do
  python bench/learning.py run --out bench/results/maze-explore "${COMMON[@]}" --seeds $seed \
    --tasks ogbench-pointmaze-medium-singletask-task1-v0 \
    --agents "frontier-worker=$W,manager.frontier=0.5,manager.frontier_hold=4" \
    "goal-worker-k32=$W"
done
# Round 4 (2026-12-07, commit 11f4c13): frontier-worker led along the stored episode that
# reached its frontier (manager.frontier_path=16); frontier-worker is its control (task 4,
# the same hold). Then the same held 8 intervals (long enough for the whole path), against
# flat, on task 1 (untuned). One process per core (taskset -c 0 / 1), paired seeds
# interleaved.
FP="$W,manager.frontier=0.5,manager.frontier_hold=4,manager.frontier_path=16"
for seed in 1 2 3 4 5; do
  python bench/learning.py run --out bench/results/maze-explore "${COMMON[@]}" --seeds $seed \
    --agents "frontier-path=$FP"
done
FP8="$W,manager.frontier=0.5,manager.frontier_hold=8,manager.frontier_path=16"
for seed in 1 2 3 4 5; do
  python bench/learning.py run --out bench/results/maze-explore "${COMMON[@]}" --seeds $seed \
    --tasks ogbench-pointmaze-medium-singletask-task1-v0 --agents "frontier-path-h8=$FP8" flat
done
# Then (commit 9902af1): on task 1 latent rarity picked states inside the start's room, so
# the frontier by observation rarity, task 1 only.
for seed in 1 2 3 4 5; do
  python bench/learning.py run --out bench/results/maze-explore "${COMMON[@]}" --seeds $seed \
    --tasks ogbench-pointmaze-medium-singletask-task1-v0 \
    --agents "frontier-path-obs=$FP8,manager.frontier_space=obs"
done
# Round 5 (2026-12-07, commit 144d943): after the frontier, random actions (Go-Explore).
# frontier-cut: Director's worker with frontier goals picked by observation rarity, led
# along the stored path with its loops cut (both in observation space), the goal 4 path
# states ahead, held 8 intervals; frontier-explore: the same, then random actions for the
# rest of the episode once the path ends (reached, or no progress along it for an
# interval). One process per core (taskset -c 0 for task 1, -c 1 for task 4).
FC="$W,manager.frontier=0.5,manager.frontier_hold=8,manager.frontier_path=4"
FC="$FC,manager.frontier_space=obs"
for task in 1 4; do
  for seed in 1 2 3 4 5; do
    python bench/learning.py run --out bench/results/maze-explore "${COMMON[@]}" --seeds $seed \
      --tasks ogbench-pointmaze-medium-singletask-task$task-v0 \
      --agents "frontier-explore=$FC,manager.frontier_then=random"
  done
  for seed in 1 2; do
    python bench/learning.py run --out bench/results/maze-explore "${COMMON[@]}" --seeds $seed \
      --tasks ogbench-pointmaze-medium-singletask-task$task-v0 --agents "frontier-cut=$FC"
  done
done
# Then a third seed of the control on task 1.
python bench/learning.py run --out bench/results/maze-explore "${COMMON[@]}" --seeds 3 \
  --tasks ogbench-pointmaze-medium-singletask-task1-v0 --agents "frontier-cut=$FC"
# Then, a third task (the goal 6 cells along the maze; flat's 3 seeds at this setting are
# in bench/results/maze-repeat): frontier-explore only.
for seed in 1 2 3; do
  python bench/learning.py run --out bench/results/maze-explore "${COMMON[@]}" --seeds $seed \
    --tasks ogbench-pointmaze-medium-singletask-task3-v0 \
    --agents "frontier-explore=$FC,manager.frontier_then=random"
done
# Round 6 (2026-12-07, commit b7c6d1e): frontier-explore with a state decoder on the world
# model (decoder_coef=1), so the latent keeps the position; frontier-explore is its control.
# Tasks 1, 3 and 4, 5 seeds; then flat and frontier-explore seeds 4-5 on task 3, which
# rounds 5 and maze-repeat ran with 3 seeds. One process per core (taskset -c 0 / 1).
for task in 4 3 1; do
  for seed in 1 2 3 4 5; do
    python bench/learning.py run --out bench/results/maze-explore "${COMMON[@]}" --seeds $seed \
      --tasks ogbench-pointmaze-medium-singletask-task$task-v0 \
      --agents "frontier-decoder=$FC,manager.frontier_then=random,decoder_coef=1"
  done
done
python bench/learning.py run --out bench/results/maze-explore "${COMMON[@]}" --seeds 4 5 \
  --tasks ogbench-pointmaze-medium-singletask-task3-v0 \
  --agents flat "frontier-explore=$FC,manager.frontier_then=random"
# Then flat with the decoder alone on task 4 (2 seeds, the session's budget).
python bench/learning.py run --out bench/results/maze-explore "${COMMON[@]}" --seeds 1 2 \
  --tasks ogbench-pointmaze-medium-singletask-task4-v0 --agents "flat-decoder=decoder_coef=1"
