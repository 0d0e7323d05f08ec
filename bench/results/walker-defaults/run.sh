# The hierarchy's current defaults on walker-walk (run from the repository root), at the
# budget and settings of ../learning: 8,000 steps, model_size 1, 2 evaluation episodes
# every 2,000 steps, one thread per run. Flat's runs there are the baseline (flat's code
# path has not changed since they ran).
python bench/learning.py run --out bench/results/walker-defaults --tasks walker-walk \
  --agents director --seeds 1 2 3 --steps 8000 --jobs 3 --model-size 1
