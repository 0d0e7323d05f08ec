# Three of mt30's custom tasks: short online runs that save their replay, then offline
# multi-task training on the three replays (run from the repository root).
C="model_size=1 mlp_dim=128 enc_dim=128 latent_dim=64 num_samples=128 iterations=3 threads=1 progress_bar=false"
for task in pendulum-spin walker-walk-backwards cup-spin; do
  python tdmpc2/train.py task=$task $C steps=1500 seed_steps=1000 eval_freq=1500 \
    eval_episodes=2 save_buffer=true work_dir=bench/results/parity/mt30-subset/replays/$task
done
python tdmpc2/train.py task=pendulum-spin,walker-walk-backwards,cup-spin $C \
  data_dir=bench/results/parity/mt30-subset/replays steps=500 eval_freq=250 eval_episodes=2 work_dir=bench/results/parity/mt30-subset/offline
# random actions, 30 episodes each (cached in <task>/random.json)
python -c "from pathlib import Path; from bench.learn.report import random_return as r; [print(t, round(r(Path('bench/results/parity/mt30-subset'), t), 1)) for t in ('pendulum-spin', 'walker-walk-backwards', 'cup-spin')]"
