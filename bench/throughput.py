"""Throughput of the real agent on this machine: act, update, steps/s, memory and GFLOP/s.

python bench/throughput.py --task walker-walk --model-size 5 [--agent flat|director|both]
                           [--obs state|rgb]
                           [--compile|--no-compile] [--threads N] [--quick] [--json PATH]
python bench/throughput.py --sweep [--threads N] [--json PATH]   # scaling table (markdown)

The trainer comes from the project's own config path (Hydra compose + `tdmpc2.train.build`),
so flat runs time OnlineTrainer and `--agent director` times DirectorTrainer with the same
hyperparameters. One random-policy episode fills the replay buffer, then a short window of
the training loop runs exactly the trainer's act / env.step / hooks / update and is timed.
`--agent both` builds the two trainers in one process and times them in alternating short
windows, so that their steps/s ratio (the Director's overhead) does not carry the drift of
a shared machine between two separate runs.

GFLOP/s come from an analytic count of the matmul FLOPs the implementation executes
(layer shapes x rows; backward about twice the forward), against the dense fp32 matmul
peak measured in the same run at the same thread count. Timings on a shared CPU are noisy:
compare medians of repeated runs, and report ratios rather than absolute times.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MUJOCO_GL", "egl")

import torch  # noqa: E402
from hydra import compose, initialize  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from tqdm import tqdm  # noqa: E402

from tdmpc2.common.buffer import stack_episode  # noqa: E402
from tdmpc2.train import build  # noqa: E402  (registers the configs)
from tdmpc2.trainer.base import Trainer  # noqa: E402

# The public TD-MPC2 on this machine (CUDA calls moved to the CPU, torch 2.13, 2 threads,
# walker-walk): seconds of act + update per step, as measured for issue 5.
ANCHOR = {5: 0.74 + 0.69, 1: 0.25 + 0.21}
# One-factor-at-a-time scaling around the defaults: (model_size, num_samples, horizon).
SWEEP = [
    (1, 512, 3),
    (5, 512, 3),
    (19, 512, 3),
    (5, 128, 3),
    (5, 256, 3),
    (5, 1024, 3),
    (5, 512, 1),
    (5, 512, 5),
]


# ---------------------------------------------------------------- FLOP counts
def mlp_macs(dims: list[int]) -> int:
    """Multiply-accumulates per row of an MLP with these layer widths."""
    return sum(a * b for a, b in itertools.pairwise(dims))


def encoder_macs(cfg: DictConfig) -> int:
    """Per observation: the state MLP, or the pixel encoder's convolutions and projection."""
    if cfg.obs == "state":
        hidden = [cfg.enc_dim] * max(cfg.num_enc_layers - 1, 1)
        return mlp_macs([cfg.obs_shape["state"][0], *hidden, cfg.latent_dim])
    channels, size, _ = cfg.obs_shape["rgb"]
    macs = 0
    for kernel, stride in ((7, 2), (5, 2), (3, 2), (3, 1)):  # layers.PixelEncoder
        size = (size - kernel) // stride + 1
        macs += size * size * cfg.num_channels * channels * kernel * kernel
        channels = cfg.num_channels
    return macs + channels * size * size * cfg.latent_dim


def flop_counts(cfg: DictConfig) -> tuple[float, float]:
    """Matmul FLOPs of one act (MPPI) and one update, as this implementation executes them.

    Act: every iteration rolls out the N - n_pi sampled sequences for H steps (dynamics
    + reward), then runs the policy and two Q heads on all N final latents; the first
    step's latent is shared, so its part of the dynamics and reward input layers runs
    once, not per row. Plus the encoder, and the n_pi policy-prior trajectories: their
    actions, and their rollout once per act. Update: encoder on H+1 observation batches,
    TD target (policy + two target heads), dynamics rollout, reward, all Q heads, and the
    policy loss over H+1 latents (policy + two frozen heads). Backward is counted as twice
    the forward for everything that gets parameter gradients; the frozen heads of the
    policy loss only pass input gradients to the action (once their forward, minus the
    latent's columns).
    """
    L, A, m, bins = cfg.latent_dim, cfg.action_dim, cfg.mlp_dim, cfg.num_bins
    enc = encoder_macs(cfg)
    dyn = mlp_macs([L + A, m, m, L])
    rew = mlp_macs([L + A, m, m, bins])
    pi = mlp_macs([L, m, m, 2 * A])
    q = mlp_macs([L + A, m, m, bins])
    H, N, n_pi, B = cfg.horizon, cfg.num_samples, cfg.num_pi_trajs, cfg.batch_size
    shared = L * 2 * m  # the latent's columns of the dynamics and reward input layers

    def rollout(rows: int) -> int:
        return rows * H * (dyn + rew) - (rows - 1) * shared

    per_iteration = rollout(N - n_pi) + N * (pi + 2 * q)
    act = enc + n_pi * (H * pi + (H - 1) * dyn) + rollout(n_pi) + cfg.iterations * per_iteration
    no_grad = B * H * (enc + pi + 2 * q)  # next-observation latents and TD targets
    world_model = B * enc + B * H * (dyn + rew + cfg.num_q * q)
    policy = B * (H + 1) * pi
    frozen_q = B * (H + 1) * 2 * q
    update = (
        no_grad + 3 * world_model + 3 * policy + frozen_q + (frozen_q - B * (H + 1) * 2 * L * m)
    )
    return 2.0 * act, 2.0 * update


def peak_gflops(repeats: int = 20) -> float:
    """Dense fp32 matmul rate (512x512 @ 512x512) at the current thread count: best of 5."""
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    for _ in range(3):
        a @ b
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * 512**3 / best / 1e9


# ---------------------------------------------------------------- the trainer
def make_trainer(args: argparse.Namespace, extra: list[str], work_dir: str) -> Trainer:
    """The trainer exactly as `python tdmpc2/train.py <overrides>` would build it."""
    overrides = [
        f"task={args.task}",
        f"obs={args.obs}",
        f"model_size={args.model_size}",
        "device=cpu",
        f"compile={str(args.compile).lower()}",
        f"work_dir={work_dir}",
        "steps=100000",  # sizes the replay buffer like a 100k-step run
        "progress_bar=false",
        "save_agent=false",
        "enable_wandb=false",
    ]
    if args.agent == "director":
        overrides.append("trainer=director")
    if args.threads is not None:
        overrides.append(f"threads={args.threads}")
    overrides += extra + args.override
    with initialize(config_path=None, version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return build(cfg, overrides)


def fill_buffer(trainer: Trainer, max_steps: int) -> None:
    """One random-policy episode (at most `max_steps` steps) into the replay buffer.

    Then the trainer counts its seeding as done, so its act() plans from the first call.
    """
    env = trainer.env
    obs = env.reset()
    episode: dict[str, list] = {"obs": [obs], "action": [], "reward": [], "terminated": []}
    done = False
    while not done and len(episode["action"]) < max_steps:
        action = env.rand_act()
        obs, reward, done, info = env.step(action)
        episode["obs"].append(obs)
        episode["action"].append(action)
        episode["reward"].append(reward)
        episode["terminated"].append(float(info.get("terminated", False)))
    trainer.buffer.add(stack_episode(episode))
    trainer._step = int(trainer.cfg.seed_steps)


def train_window(trainer: Trainer, steps: int) -> dict[str, list[float] | float]:
    """`steps` steps of the online loop: the trainer's act, env.step, hooks and update.

    Returns the per-step act, env and update times and the window's wall time.
    """
    env, times = trainer.env, {"act": [], "env": [], "update": []}
    obs, t = None, 0
    start = time.perf_counter()
    for _ in range(steps):
        if obs is None:
            obs, t = env.reset(), 0
        t0 = time.perf_counter()
        action = trainer.act(obs, t, eval_mode=False)
        t1 = time.perf_counter()
        obs, reward, done, info = env.step(action)
        trainer.after_env_step(obs, reward, done, info)
        t2 = time.perf_counter()
        trainer.update(1)
        t3 = time.perf_counter()
        times["act"].append(t1 - t0)
        times["env"].append(t2 - t1)
        times["update"].append(t3 - t2)
        t += 1
        obs = None if done else obs
    return {**times, "wall": time.perf_counter() - start}


def prepare(args: argparse.Namespace, agent: str, extra: list[str], work_dir: str) -> Trainer:
    """A trainer with a filled buffer, past its first calls (allocations, compilation)."""
    trainer = make_trainer(argparse.Namespace(**{**vars(args), "agent": agent}), extra, work_dir)
    fill_buffer(trainer, 64 if args.quick else trainer.cfg.episode_length)
    return trainer


def warm_up(trainer: Trainer, args: argparse.Namespace) -> float:
    """Untimed first steps; returns their wall time."""
    start = time.perf_counter()
    train_window(trainer, 1 if args.quick else args.warmup)
    return time.perf_counter() - start


def summarize(
    trainer: Trainer,
    agent: str,
    args: argparse.Namespace,
    timed: dict,
    warmup_s: float,
    peak: float,
) -> dict:
    """One result dict from the timed steps of a trainer."""
    cfg = trainer.cfg
    window = len(timed["act"])
    act_s = statistics.median(timed["act"])
    update_s = statistics.median(timed["update"])
    flops_act, flops_update = flop_counts(cfg)
    result = {
        "task": str(cfg.task),
        "obs": str(cfg.obs),
        "model_size": int(cfg.model_size),
        "agent": agent,
        "trainer": type(trainer).__name__,
        "compile": bool(cfg.compile),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "quick": bool(args.quick),
        "num_samples": int(cfg.num_samples),
        "horizon": int(cfg.horizon),
        "params_m": sum(p.numel() for p in trainer.agent.model.parameters() if p.requires_grad)
        / 1e6,
        "steps_measured": window,
        "warmup_s": warmup_s,
        "act_s": act_s,
        "update_s": update_s,
        "act_update_s": act_s + update_s,
        "env_s": statistics.median(timed["env"]),
        "steps_per_s": window / timed["wall"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gflop_act": flops_act / 1e9,
        "gflop_update": flops_update / 1e9,
        "gflops_act": flops_act / act_s / 1e9,
        "gflops_update": flops_update / update_s / 1e9,
        "peak_gflops": peak,
    }
    anchor = ANCHOR.get(result["model_size"])
    public_setting = result["task"] == "walker-walk" and result["obs"] == "state"
    if anchor and public_setting and not args.quick and not args.override:
        result["anchor_act_update_s"] = anchor
        result["ratio_to_anchor"] = result["act_update_s"] / anchor
    return result


def measure(args: argparse.Namespace, extra: list[str] | None = None) -> dict:
    """Builds the trainer, warms it up, times a window of training; one result dict."""
    with tempfile.TemporaryDirectory(prefix="throughput-") as work_dir:
        trainer = prepare(args, args.agent, extra or [], work_dir)
        warmup_s = warm_up(trainer, args)
        timed = train_window(trainer, 3 if args.quick else args.repeats)
    return summarize(trainer, args.agent, args, timed, warmup_s, peak_gflops())


def measure_both(args: argparse.Namespace) -> dict:
    """Flat and director trainers in one process, timed in alternating windows.

    Each round runs a window of a few steps of each, in an order that flips every round,
    so both see the same machine speed; `--repeats` is rounded up to whole windows. The
    peak RSS is the process's, holding both trainers.
    """
    kinds, chunk = ("flat", "director"), 1 if args.quick else 5
    steps = 2 if args.quick else args.repeats
    timed = {k: {"act": [], "env": [], "update": [], "wall": 0.0} for k in kinds}
    with tempfile.TemporaryDirectory(prefix="throughput-") as work_dir:
        trainers = {k: prepare(args, k, [], f"{work_dir}/{k}") for k in kinds}
        warmup_s = {k: warm_up(t, args) for k, t in trainers.items()}
        for round_ in tqdm(
            range(math.ceil(steps / chunk)), desc="flat/director", disable=args.quick
        ):
            for kind in kinds if round_ % 2 == 0 else kinds[::-1]:
                window = train_window(trainers[kind], chunk)
                for key in ("act", "env", "update"):
                    timed[kind][key] += window[key]
                timed[kind]["wall"] += window["wall"]
    peak = peak_gflops()
    out = {k: summarize(trainers[k], k, args, timed[k], warmup_s[k], peak) for k in kinds}
    out["director_vs_flat"] = out["director"]["steps_per_s"] / out["flat"]["steps_per_s"]
    return out


# ---------------------------------------------------------------- reports
def print_result(r: dict) -> None:
    print(
        f"{r['trainer']} | {r['task']} ({r['obs']}) | "
        f"model_size {r['model_size']} ({r['params_m']:.2f} M) | compile {r['compile']} | "
        f"threads {r['threads']} | torch {r['torch']}" + (" | quick" if r["quick"] else "")
    )
    rows = [
        ("act (MPPI)", f"{r['act_s']:.4f} s", f"{r['gflop_act']:.1f} GFLOP, {r['gflops_act']:.1f}"),
        (
            "update",
            f"{r['update_s']:.4f} s",
            f"{r['gflop_update']:.1f} GFLOP, {r['gflops_update']:.1f}",
        ),
        ("act + update", f"{r['act_update_s']:.4f} s", ""),
        ("env.step", f"{r['env_s']:.4f} s", ""),
        ("training loop", f"{r['steps_per_s']:.2f} steps/s", f"over {r['steps_measured']} steps"),
        ("peak RSS", f"{r['peak_rss_mb']:.0f} MB", ""),
        ("matmul peak", f"{r['peak_gflops']:.1f} GFLOP/s", "512x512 @ 512x512"),
    ]
    if "ratio_to_anchor" in r:
        rows.append(
            ("vs public", f"{r['ratio_to_anchor']:.2f} x", f"of {r['anchor_act_update_s']:.2f} s")
        )
    print(f"{'':16}{'median':>18}  analytic work, GFLOP/s")
    for name, value, note in rows:
        print(f"{name:16}{value:>18}  {note}")


def sweep(args: argparse.Namespace) -> list[dict]:
    """s/act and s/update as model_size, num_samples and horizon grow; a markdown table."""
    results = []
    for size, samples, horizon in tqdm(SWEEP, desc="sweep", disable=args.quick):
        args.model_size = size
        results.append(measure(args, [f"num_samples={samples}", f"horizon={horizon}"]))
    print(
        "| model_size | num_samples | horizon | s/act | s/update | GFLOP act | "
        "GFLOP/s act | GFLOP/s update |\n|---|---|---|---|---|---|---|---|"
    )
    for r in results:
        print(
            f"| {r['model_size']} | {r['num_samples']} | {r['horizon']} | {r['act_s']:.3f} | "
            f"{r['update_s']:.3f} | {r['gflop_act']:.1f} | {r['gflops_act']:.0f} | "
            f"{r['gflops_update']:.0f} |"
        )
    print(f"threads {results[0]['threads']}, matmul peak {results[0]['peak_gflops']:.0f} GFLOP/s")
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--task", default="walker-walk")
    p.add_argument("--model-size", type=int, default=5)
    p.add_argument("--obs", choices=("state", "rgb"), default="state", help="rgb: 64x64 frames")
    p.add_argument(
        "--agent",
        choices=("flat", "director", "both"),
        default="flat",
        help="both: the two trainers side by side in one process, and their steps/s ratio",
    )
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--threads", type=int, default=None, help="default: the config's `threads`")
    p.add_argument("--repeats", type=int, default=10, help="measured training steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed training steps first")
    p.add_argument("--quick", action="store_true", help="the real model, a short window: for tests")
    p.add_argument("--sweep", action="store_true", help="scaling table instead of one run")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        help="instead of timing: cProfile this many training steps of --agent (flat or\n"
        "director) and print the 40 calls with the most cumulative time",
    )
    p.add_argument("override", nargs="*", default=[], help="extra Hydra overrides (key=value)")
    return p.parse_args(argv)


def profile(args: argparse.Namespace) -> None:
    """Where a training step's time goes: cumulative time per call over `--profile` steps,
    after the warm-up (profiling slows small calls more than large ones)."""
    import cProfile
    import pstats

    with tempfile.TemporaryDirectory(prefix="throughput-") as work_dir:
        trainer = prepare(args, args.agent, [], work_dir)
        warm_up(trainer, args)
        profiler = cProfile.Profile()
        profiler.runcall(train_window, trainer, args.profile)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if (args.sweep or args.profile) and args.agent == "both":
        raise SystemExit("--sweep and --profile take one agent: --agent flat or --agent director")
    if args.profile:
        profile(args)
        return
    if args.sweep:
        out: dict | list = sweep(args)
    elif args.agent == "both":
        out = measure_both(args)
        print_result(out["flat"])
        print_result(out["director"])
        print(f"director / flat steps/s: {out['director_vs_flat']:.3f} (alternating windows)")
    else:
        out = measure(args)
        print_result(out)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
