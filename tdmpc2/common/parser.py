"""Turns the composed Hydra config into the run config: presets, model size, device, run dir."""

from __future__ import annotations

import difflib
from datetime import datetime
from pathlib import Path

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf

from tdmpc2.envs.multitask import is_task_set, task_names

CONFIG_DIR = Path(__file__).resolve().parents[1]
PRESET_DIR = CONFIG_DIR / "configs" / "task"

MODEL_SIZE = {  # widths of the public TD-MPC2 model sizes (millions of parameters)
    1: {"enc_dim": 256, "mlp_dim": 384, "latent_dim": 128, "num_enc_layers": 2, "num_q": 2},
    5: {"enc_dim": 256, "mlp_dim": 512, "latent_dim": 512, "num_enc_layers": 2, "num_q": 5},
    19: {"enc_dim": 1024, "mlp_dim": 1024, "latent_dim": 768, "num_enc_layers": 3, "num_q": 5},
    48: {"enc_dim": 1792, "mlp_dim": 1792, "latent_dim": 768, "num_enc_layers": 4, "num_q": 5},
    317: {"enc_dim": 4096, "mlp_dim": 4096, "latent_dim": 1376, "num_enc_layers": 5, "num_q": 8},
}


# Counts and their smallest sensible value: a 0 here would divide by zero, loop forever
# or train on nothing, so it fails at start with one line instead.
COUNTS = {
    "steps": 1,
    "batch_size": 1,
    "horizon": 1,
    "eval_freq": 1,
    "eval_episodes": 1,
    "iterations": 1,
    "num_samples": 1,
    "num_bins": 2,
    "buffer_size": 1,
    "enc_dim": 1,
    "mlp_dim": 1,
    "latent_dim": 1,
    "num_enc_layers": 1,
    "simnorm_dim": 1,
    "num_channels": 1,
    "save_freq": 0,
    "keep_checkpoints": 1,
    "max_nonfinite": 1,
}
POSITIVE = ("lr", "discount_denom", "temperature", "min_std", "max_std", "tau")
MULTITASK_TASK_DIM = 96  # the public TD-MPC2's task embedding width; task_dim=0 picks it


def quote_task_list(argv: list[str]) -> list[str]:
    """`task=a,b` on a single run's command line names a task set: quoted for Hydra, which
    otherwise stops asking whether a list, a string or a sweep was meant. With -m it
    stays a sweep over tasks."""
    if "-m" in argv or "--multirun" in argv:
        return argv
    return [
        f"task='{a[5:]}'" if a.startswith("task=") and "," in a and a[5] not in "'\"[" else a
        for a in argv
    ]


def key_groups() -> list[Path]:
    """YAML files in tdmpc2/configs/ beside config.yaml: groups of keys an extension of
    the agent adds (none in flat TD-MPC2), each listed in config.yaml's `defaults` as
    `optional configs: <name>` so Hydra composes it."""
    return sorted((CONFIG_DIR / "configs").glob("*.yaml"))


def register_configs() -> None:
    """Hands config.yaml and the `key_groups` to Hydra's ConfigStore.

    Pointed at the tdmpc2/ folder, Hydra would take its sub-packages (trainer/, envs/)
    for config groups, and a `trainer=...` override would fail as a group override.
    """
    store = ConfigStore.instance()
    store.store(name="config", node=OmegaConf.load(CONFIG_DIR / "config.yaml"))
    for path in key_groups():
        node = OmegaConf.load(path)
        store.store(group="configs", name=path.stem, node=node, package="_global_")


class ConfigError(ValueError):
    """A bad setting, reported as one line before any work starts."""


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def apply_preset(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """Expands `task=<preset>` into the preset's keys; command-line overrides still win."""
    path = PRESET_DIR / f"{cfg.task}.yaml"
    if not path.is_file():
        if "_" in str(cfg.task) and "-" not in str(cfg.task):
            close = difflib.get_close_matches(str(cfg.task), presets(), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"Unknown preset '{cfg.task}'{hint}. Presets: {', '.join(presets()) or 'none'}"
            )
        return cfg
    preset = OmegaConf.load(path)
    known = set(cfg.keys())  # `key in cfg` is False for a key still `???` (model widths)
    missing = [k for k in preset if k not in known]
    if missing:
        raise ConfigError(f"preset {path.name} sets unknown keys: {', '.join(map(str, missing))}")
    cfg = OmegaConf.merge(cfg, preset)
    cli = [o for o in overrides if "=" in o and not o.lstrip("+~").startswith("task=")]
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist([o.lstrip("+") for o in cli]))


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} asked for, but CUDA is not available (use device=auto)")
    return name


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def defaults() -> dict:
    """config.yaml with the `key_groups`' keys: the types overrides must keep."""
    cfg = OmegaConf.load(CONFIG_DIR / "config.yaml")
    for path in key_groups():
        cfg = OmegaConf.merge(cfg, OmegaConf.load(path))
    return OmegaConf.to_container(cfg)  # `???` (filled in later) stays a string


def check_types(cfg: DictConfig, default: dict, prefix: str = "") -> None:
    """Each value has its default's type (an int where a float is expected is fine), so
    `lr=abc` fails naming the key instead of deep inside the first update."""
    for key, expected in default.items():
        if key in ("defaults", "hydra") or key not in cfg or OmegaConf.is_missing(cfg, key):
            continue
        name, value = f"{prefix}{key}", cfg[key]
        if isinstance(expected, dict):
            _check(isinstance(value, DictConfig), f"{name} must be a group of keys, got {value!r}")
            check_types(value, expected, f"{name}.")
        elif isinstance(expected, bool):
            _check(isinstance(value, bool), f"{name} must be true or false, got {value!r}")
        elif isinstance(expected, int | float):
            number = isinstance(value, int | float) and not isinstance(value, bool)
            whole = isinstance(expected, float) or (number and float(value).is_integer())
            kind = "a number" if isinstance(expected, float) else "an integer"
            _check(number and whole, f"{name} must be {kind}, got {value!r}")


def parse_cfg(cfg: DictConfig, overrides: list[str] | None = None) -> DictConfig:
    """Validates and completes the config; every mistake becomes a ConfigError."""
    if isinstance(cfg.task, ListConfig):  # task=[a,b]: the same set as task=a,b
        cfg.task = ",".join(str(t) for t in cfg.task)
    cfg = apply_preset(cfg, overrides or [])
    OmegaConf.set_struct(cfg, False)
    check_types(cfg, defaults())
    _check(
        cfg.episodic in (None, True, False),
        f"episodic must be true, false or null (the task's default), got {cfg.episodic!r}",
    )
    repeat = cfg.action_repeat
    _check(
        repeat is None
        or (isinstance(repeat, int) and not isinstance(repeat, bool) and repeat >= 1),
        f"action_repeat must be null (the task's own) or an integer >= 1, got {repeat!r}",
    )
    check_multitask(cfg)
    _check(
        repeat is None or not cfg.multitask,
        f"action_repeat={repeat}: a task set keeps each task's own action repeat",
    )
    _check(cfg.model_size in MODEL_SIZE, f"model_size must be one of {sorted(MODEL_SIZE)}")
    for key, value in MODEL_SIZE[cfg.model_size].items():
        if OmegaConf.is_missing(cfg, key):
            cfg[key] = value
    for key, low in COUNTS.items():
        _check(int(cfg[key]) >= low, f"{key} must be >= {low}, got {cfg[key]}")
    for key in POSITIVE:
        _check(float(cfg[key]) > 0, f"{key} must be > 0, got {cfg[key]}")
    _check(cfg.obs in ("state", "rgb"), f"obs must be state or rgb, got {cfg.obs!r}")
    _check(
        cfg.obs == "rgb" or cfg.num_channels == defaults()["num_channels"],
        f"num_channels={cfg.num_channels}: the conv encoder's width, used only with obs=rgb",
    )
    _check(cfg.decoder_coef >= 0, f"decoder_coef must be >= 0, got {cfg.decoder_coef}")
    _check(
        not cfg.decoder_coef or cfg.obs == "state",
        f"decoder_coef={cfg.decoder_coef}: the decoder reconstructs state observations only",
    )
    _check(
        cfg.min_std <= cfg.max_std, f"min_std ({cfg.min_std}) must be <= max_std ({cfg.max_std})"
    )
    _check(cfg.latent_dim % cfg.simnorm_dim == 0, "latent_dim must be a multiple of simnorm_dim")
    _check(cfg.num_q >= 2, f"num_q must be >= 2 (two heads are drawn), got {cfg.num_q}")
    _check(
        0 <= cfg.num_pi_trajs < cfg.num_samples,
        f"num_pi_trajs ({cfg.num_pi_trajs}) must be below num_samples ({cfg.num_samples})",
    )
    _check(
        0 < cfg.num_elites <= cfg.num_samples,
        f"num_elites ({cfg.num_elites}) must be in [1, num_samples={cfg.num_samples}]",
    )
    if cfg.reference_dir:
        reference = Path(str(cfg.reference_dir)).expanduser()
        _check(reference.is_dir(), f"reference_dir: no folder at {reference}")
    cfg.device = resolve_device(str(cfg.device))
    threads = str(cfg.threads)
    _check(
        threads == "auto" or (threads.isdigit() and int(threads) >= 1),
        f"threads must be auto or a count >= 1, got {cfg.threads}",
    )
    if threads != "auto":
        torch.set_num_threads(int(threads))
    return cfg


def check_multitask(cfg: DictConfig) -> None:
    """A task set (mt30, mt80 or a comma list) turns multi-task training on, as in the public
    TD-MPC2; multitask and task_dim fail on a single task instead of doing nothing."""
    task = str(cfg.task)
    if is_task_set(task):
        cfg.multitask = True
    multitask = "multi-task training"
    if not cfg.multitask:
        _check(
            cfg.task_dim == 0,
            f"task_dim={cfg.task_dim}: the task embedding is for {multitask} "
            "(task=mt30, mt80 or a comma list of tasks)",
        )
        return
    _check(
        is_task_set(task),
        f"multitask=true needs a task set (task=mt30, mt80 or a comma list such as "
        f"cartpole-swingup,walker-walk), got task={task}",
    )
    try:
        task_names(task)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    low = f"task_dim must be >= 0 (0 picks {MULTITASK_TASK_DIM}), got {cfg.task_dim}"
    _check(cfg.task_dim >= 0, low)
    cfg.task_dim = cfg.task_dim or MULTITASK_TASK_DIM
    _check(cfg.obs == "state", f"obs={cfg.obs}: {multitask} takes state observations only")
    _check(
        bool(cfg.data_dir),
        f"{multitask} is offline: pass data_dir=FOLDER holding replay files of the set's tasks",
    )


def check_replay(cfg: DictConfig) -> None:
    """An online run's buffer must hold an episode, and a batch must fit the data at hand.

    Needs `episode_length` and `seed_steps`, so it runs once the environment is built;
    without it a too-small buffer fails only when the first episode ends.
    """
    _check(
        int(cfg.steps) >= int(cfg.horizon),
        f"steps ({cfg.steps}) must be at least the horizon ({cfg.horizon}): "
        "updates train on subsequences of that many steps",
    )
    slots = int(cfg.episode_length) + 1
    _check(
        int(cfg.buffer_size) >= slots,
        f"buffer_size ({cfg.buffer_size}) cannot hold one episode of {cfg.task} "
        f"({cfg.episode_length} steps need {slots} slots)",
    )
    available = min(int(cfg.buffer_size), int(cfg.seed_steps))
    _check(
        int(cfg.batch_size) <= available,
        f"batch_size ({cfg.batch_size}) is larger than the replay data: the first update sees "
        f"{available} transitions (seed_steps={cfg.seed_steps}, buffer_size={cfg.buffer_size})",
    )


def make_run_dir(cfg: DictConfig) -> Path:
    """Creates the run directory (work_dir, or a fresh folder under logs/)."""
    if cfg.work_dir:
        run_dir = Path(str(cfg.work_dir)).expanduser()
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path("logs") / str(cfg.task) / str(cfg.exp_name) / f"seed{cfg.seed}-{stamp}"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"run directory {run_dir} is not writable: {err.strerror}") from err
    return run_dir.resolve()
