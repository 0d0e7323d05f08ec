#!/usr/bin/env bash
# The cup-catch ablation's control: the Worker's novelty bonus without goals (flat-nov),
# at the budget, planning settings and evaluation protocol of sparse-novelty's director-nov.
# worker.value_spread_floor=0 is the behaviour of the code that trained director-nov
# (the floor came later), so the two runs differ only in worker.goal_coef.
set -euo pipefail
python bench/learning.py run --out bench/results/cup-catch-ablation --tasks cup-catch \
    --steps 10000 --eval-freq 2000 --eval-episodes 2 --seeds 1 2 3 --jobs 3 --agents \
    "flat-nov=trainer=director,worker.goal_coef=0,worker.novelty_coef=1,manager.return_floor=0.01,manager.entropy_target=0.5,worker.value_spread_floor=0"
