# Round 6's 8,000-step frontier-decoder runs on pointmaze-medium task 4 (../maze-explore),
# trained on to 24,000 agent steps (run from the repository root): each run folder is
# copied here and resumed with a larger `steps` (replay, optimisers, RNG states and
# counters carry over). Flat's 8,000-step runs kept no checkpoint, so flat trains from
# scratch to 24,000 with the same arguments. The session ran one seed per process,
# threads=1, two to four processes on the two cores, with the arguments below.
T=ogbench-pointmaze-medium-singletask-task4-v0
D=bench/results/maze-success
mkdir -p $D/$T/frontier-decoder
cp -a bench/results/maze-explore/$T/frontier-decoder/seed{1,2,3,4,5} $D/$T/frontier-decoder/
M="trainer=director,manager.return_floor=0.01,manager.entropy_target=0.5"
W="$M,worker.task_coef=0,manager.goal_interval=32,manager.gamma=0.73,worker.relabel_offset=64"
C="$W,manager.frontier=0.5,manager.frontier_hold=8,manager.frontier_path=4,manager.frontier_space=obs"
COMMON=(--tasks $T --steps 24000 --eval-freq 2000 --eval-episodes 3 --jobs 1 --model-size 1
  --overrides action_repeat=4 mlp_dim=128 enc_dim=128 latent_dim=64 num_samples=256
  num_elites=32 iterations=4 batch_size=128 seed_steps=2000 save_buffer=true)
python bench/learning.py run --out $D "${COMMON[@]}" --seeds 1 2 3 4 5 \
  --agents "frontier-decoder=$C,manager.frontier_then=random,decoder_coef=1" flat

# Second sitting (2026-12-08): the same ten runs trained on to 32,000 agent steps (the
# checkpoints at 24,000 are replaced; the 24,000-step tables stay in final.md and
# report.md, and `report --steps 24000` reads them again from eval.csv).
python bench/learning.py run --out $D "${COMMON[@]/24000/32000}" --seeds 1 2 3 4 5 \
  --agents "frontier-decoder=$C,manager.frontier_then=random,decoder_coef=1" flat

# One seed of frontier-decoder with worker.task_share=0.5 (half the episodes not led to
# the frontier planned as evaluation plans), trained from scratch to 32,000 steps, then
# evaluated as the others (final --agents frontier-task > final-32k-frontier-task.md).
python bench/learning.py run --out $D "${COMMON[@]/24000/32000}" --seeds 5 \
  --agents "frontier-task=$C,manager.frontier_then=random,decoder_coef=1,worker.task_share=0.5"
