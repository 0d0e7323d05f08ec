#!/usr/bin/env bash
# Verify, back up, roll back or re-apply the Director extension of this TD-MPC2 fork.
# Run `bash apply_director_patches.sh --help` for the subcommands.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

PATCH=patches/director.patch   # flat -> Director edits of the two modified files
RESTORE=.director_restore      # where rollback keeps the Director files
MODIFIED=(tdmpc2/agent.py tdmpc2/train.py tdmpc2/config.yaml)
ADDED=(
  tdmpc2/common/goal_vae.py
  tdmpc2/common/manager.py
  tdmpc2/common/goal_worker.py
  tdmpc2/common/planning_terms.py
  tdmpc2/common/hierarchy.py
  tdmpc2/trainer/director_trainer.py
  tdmpc2/configs/director.yaml
  tdmpc2/configs/task/director_walker_walk.yaml
  tdmpc2/configs/task/director_humanoid_walk.yaml
  tdmpc2/configs/task/director_cup_catch.yaml
  tdmpc2/configs/task/director_pointmaze.yaml
  tests/test_director.py
  tests/test_director_multitask.py
  tests/test_director_cases.py
  tests/test_goal_vae.py
  tests/test_goal_worker.py
  tests/test_manager.py
  tests/test_planning_terms.py
  test_director_integration.py
)
if [[ -n "${PYTHON:-}" ]]; then PY=$PYTHON
elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
else PY=python3; fi
# A model and budget small enough for a smoke run of a few seconds on the CPU.
SMOKE=(model_size=1 mlp_dim=64 enc_dim=64 latent_dim=32 num_samples=64 num_elites=8
       num_pi_trajs=4 iterations=2 batch_size=16 steps=300 seed_steps=200 eval_freq=300
       eval_episodes=1 progress_bar=false device=cpu threads=1)

usage() {
  cat <<'TXT'
usage: apply_director_patches.sh [verify|backup|rollback|apply] [--force] [--dry-run]

  verify     (default) check the extension is complete and works: files, the edits
             (trainer selection, planning terms), Hydra configs, imports, and a
             CPU smoke run of task=director_walker_walk. Exits non-zero if any check fails.
  backup     copy tdmpc2/train.py and tdmpc2/agent.py to .backup files
             (an existing, different backup is kept unless --force).
  rollback   return to flat TD-MPC2: Director files move to .director_restore/, the two
             edited files get their flat versions (patches/director.patch reversed), and
             a flat smoke run proves it. --dry-run lists the steps and changes nothing.
  apply      put the extension back from .director_restore/ (byte for byte), or from the
             git history when that folder is missing, then verify.

Every subcommand is idempotent and refuses to overwrite work it cannot keep.
TXT
}

say() { printf '%s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

all_added_present() { local f; for f in "${ADDED[@]}"; do [[ -f $f ]] || return 1; done; }
no_added_present() { local f; for f in "${ADDED[@]}"; do [[ ! -e $f ]] || return 1; done; }

# applied | flat | mixed
state() {
  if all_added_present && git apply -R --check "$PATCH" 2>/dev/null; then echo applied
  elif no_added_present && git apply --check "$PATCH" 2>/dev/null; then echo flat
  else echo mixed; fi
}

smoke() {  # smoke TASK: a tiny training run on the CPU that must write a checkpoint
  local dir; dir=$(mktemp -d)
  "$PY" tdmpc2/train.py "task=$1" "${SMOKE[@]}" "work_dir=$dir" >"$dir/out.log" 2>&1 \
    || { tail -5 "$dir/out.log"; rm -rf "$dir"; return 1; }
  [[ -f $dir/checkpoint.pt ]] || { echo "no checkpoint written"; rm -rf "$dir"; return 1; }
  rm -rf "$dir"
}

FAILS=0
check() {  # check LABEL COMMAND...: one line of the checklist
  local label=$1 out; shift
  if out=$("$@" 2>&1); then say "  [ok]   $label"
  else say "  [FAIL] $label"; printf '%s\n' "$out" | tail -4 | sed 's/^/         /'; FAILS=$((FAILS + 1)); fi
}

files_present() { local f m=0; for f in "${ADDED[@]}"; do [[ -f $f ]] || { echo "missing $f"; m=1; }; done; return $m; }

# The checks that need Python run in one interpreter: each start-up costs seconds.
python_checks() {
  local failed=0
  "$PY" - <<'PY' || failed=$?
import inspect

def modules_import():
    import tdmpc2.common.goal_vae, tdmpc2.common.manager, tdmpc2.common.hierarchy  # noqa
    import tdmpc2.trainer.director_trainer  # noqa

def trainer_selection():
    from hydra import compose, initialize
    from tdmpc2.common.parser import parse_cfg
    from tdmpc2.train import trainer_class
    for overrides, expected in [
        (["task=walker-walk"], "OnlineTrainer"),
        (["task=director_walker_walk"], "DirectorTrainer"),
        (["task=walker-walk", "data_dir=/some/replay"], "OfflineTrainer"),
    ]:
        with initialize(config_path=None, version_base="1.3"):
            cfg = parse_cfg(compose("config", overrides=overrides), overrides)
        got = trainer_class(cfg).__name__
        assert got == expected, f"{overrides}: {got}, expected {expected}"

def term_planning():
    from tdmpc2.agent import TDMPC2
    for name in ("act", "_plan", "_estimate_value"):
        params = inspect.signature(getattr(TDMPC2, name)).parameters
        assert "terms" in params and params["terms"].default == (), f"TDMPC2.{name} takes no terms"

def configs():
    from hydra import compose, initialize
    import tdmpc2.train  # registers the configs
    from tdmpc2.common.parser import parse_cfg
    overrides = ["task=director_walker_walk", "manager.goal_interval=5", "goal_vae.n_latents=4"]
    with initialize(config_path=None, version_base="1.3"):
        cfg = parse_cfg(compose("config", overrides=overrides), overrides)
    assert cfg.task == "walker-walk" and cfg.trainer == "director"
    assert cfg.manager.goal_interval == 5 and cfg.goal_vae.n_latents == 4
    assert cfg.goal_vae.n_classes == 8 and cfg.worker.goal_coef == 0.5
    assert cfg.worker.goal_scale == "spread"

failed = 0
for label, check in [
    ("Director modules import", modules_import),
    ("train.py selects DirectorTrainer / OnlineTrainer / OfflineTrainer", trainer_selection),
    ("agent.py plans with planning terms (act, _plan, _estimate_value)", term_planning),
    ("Director configs compose under Hydra, overrides reach them", configs),
]:
    try:
        check()
        print(f"  [ok]   {label}")
    except Exception as err:
        failed += 1
        print(f"  [FAIL] {label}\n         {type(err).__name__}: {err}")
raise SystemExit(failed)
PY
  FAILS=$((FAILS + failed))
}

verify() {
  say "Director extension in $ROOT"
  FAILS=0
  check "Director files present" files_present
  python_checks
  check "smoke run: task=director_walker_walk on the CPU" smoke director_walker_walk
  if ((FAILS)); then say "verify: $FAILS check(s) failed"; return 1; fi
  say "verify: all checks passed"
}

backup() {
  local f
  for f in "${MODIFIED[@]}"; do
    if [[ -f $f.backup ]] && cmp -s "$f" "$f.backup"; then say "backup: $f.backup is up to date"
    elif [[ -f $f.backup && $FORCE != 1 ]]; then
      die "$f.backup exists and differs from $f; use --force to overwrite it"
    else cp -p "$f" "$f.backup"; say "backup: copied $f -> $f.backup"; fi
  done
}

run() {  # run CMD...: do it, or only print it with --dry-run
  if ((DRY_RUN)); then say "  would: $*"; else "$@"; fi
}

rollback() {
  case $(state) in
    flat) say "rollback: already flat TD-MPC2, nothing to do"; return 0 ;;
    mixed) die "the tree is neither the full extension nor flat TD-MPC2 (edited files or missing ones?); refusing to touch it" ;;
  esac
  [[ -e $RESTORE ]] && die "$RESTORE/ exists from an earlier rollback; run 'apply' or move it away first"
  say "rollback: Director -> flat TD-MPC2${DRY_RUN:+ }$( ((DRY_RUN)) && echo '(dry run, nothing changes)')"
  local f
  for f in "${ADDED[@]}"; do
    run mkdir -p "$RESTORE/$(dirname "$f")"
    run mv "$f" "$RESTORE/$f"
    ((DRY_RUN)) || say "  moved $f -> $RESTORE/$f"
  done
  for f in "${MODIFIED[@]}"; do
    run mkdir -p "$RESTORE/$(dirname "$f")"
    run cp -p "$f" "$RESTORE/$f"
  done
  run git apply -R "$PATCH"
  ((DRY_RUN)) && return 0
  say "  restored the flat ${MODIFIED[*]} (kept the Director versions in $RESTORE/)"
  FAILS=0
  check "smoke run: flat task=walker-walk on the CPU" smoke walker-walk
  ((FAILS == 0)) || die "flat smoke run failed"
  say "rollback: done; 'bash apply_director_patches.sh apply' puts the extension back"
}

apply_ext() {
  case $(state) in
    applied) say "apply: the extension is already in place ('verify' checks it)"; return ;;
    mixed) die "the tree is neither the full extension nor flat TD-MPC2; refusing to touch it" ;;
  esac
  local f
  if [[ -d $RESTORE ]]; then
    # The flat files must be exactly what rollback left, or restoring would drop edits.
    local tmp; tmp=$(mktemp -d)
    for f in "${MODIFIED[@]}"; do mkdir -p "$tmp/$(dirname "$f")"; cp -p "$f" "$tmp/$f"; done
    (cd "$tmp" && git apply "$ROOT/$PATCH")
    for f in "${MODIFIED[@]}"; do
      if ! cmp -s "$tmp/$f" "$RESTORE/$f" && [[ $FORCE != 1 ]]; then
        rm -rf "$tmp"
        die "$f was edited since the rollback; restoring would lose that (use --force)"
      fi
    done
    rm -rf "$tmp"
    for f in "${ADDED[@]}" "${MODIFIED[@]}"; do
      mkdir -p "$(dirname "$f")"; mv "$RESTORE/$f" "$f"; say "  restored $f"
    done
    rm -rf "$RESTORE"
  else
    git rev-parse --git-dir >/dev/null 2>&1 || die "no $RESTORE/ and no git history to apply from"
    for f in "${ADDED[@]}"; do
      git cat-file -e "HEAD:$f" 2>/dev/null || die "HEAD has no $f to restore"
    done
    for f in "${ADDED[@]}"; do
      mkdir -p "$(dirname "$f")"; git show "HEAD:$f" >"$f"; say "  restored $f from git HEAD"
    done
    git apply "$PATCH"
    say "  applied $PATCH"
  fi
  verify
}

CMD=verify FORCE=0 DRY_RUN=0
for arg in "$@"; do
  case $arg in
    verify|backup|rollback|apply) CMD=$arg ;;
    --force) FORCE=1 ;;
    --dry-run) DRY_RUN=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$arg'" ;;
  esac
done
if ((DRY_RUN)) && [[ $CMD != rollback ]]; then die "--dry-run applies to rollback only"; fi

case $CMD in
  verify) verify ;;
  backup) backup ;;
  rollback) rollback ;;
  apply) apply_ext ;;
esac
