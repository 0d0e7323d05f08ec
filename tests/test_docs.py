"""The docs stay true to the code: the commands, config keys and links they name exist.

Cheap (nothing trains): reads README.md, DIRECTOR_INTEGRATION_SUMMARY.md, docs/*.md and
the study reports bench/results/*/README.md, composes the config once, and asks each
argparse script (bench/*.py) for its `--help`, once per subcommand used.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import ROOT, compose_cfg, rolled_back

DOCS = sorted(
    {
        ROOT / "README.md",
        ROOT / "DIRECTOR_INTEGRATION_SUMMARY.md",
        *ROOT.glob("docs/*.md"),
        *ROOT.glob("bench/results/*/README.md"),
    }
)
IDS = [str(p.relative_to(ROOT)) for p in DOCS]

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`([^`]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
KEY = re.compile(r"^([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)=")
AGENT = re.compile(r"^[A-Za-z0-9_.-]+=[A-Za-z0-9_.]+=")  # NAME=key=value: a benchmark agent
PLACEHOLDERS = {"key", "k"}  # `key=value` written as a pattern, not as a key
SHELL_STOP = {">", ">>", "|", "&&", "||", ";", "2>&1"}


def snippets(path: Path) -> list[str]:
    """Each command-like piece of code: a fenced block's lines (backslash continuations
    joined) and each inline code span (its line breaks as spaces)."""
    text = path.read_text()
    out = []
    for block in FENCE.findall(text):
        out += [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    prose = FENCE.sub("", text)
    out += [" ".join(span.split()) for span in INLINE.findall(prose)]
    return out


def words(snippet: str) -> list[str]:
    """Shell words up to a redirection or pipe, comments dropped; each word split again on
    whitespace (a quoted `ARGS="steps=1 model_size=1"` holds several overrides)."""
    try:
        tokens = shlex.split(snippet, comments=True)
    except ValueError:  # an unbalanced quote in prose code: plain words will do
        tokens = snippet.split()
    out = []
    for token in tokens:
        if token in SHELL_STOP:
            break
        out += token.split()
    return out


def commands(path: Path) -> list[list[str]]:
    """Every `python ...` command: its words after `python`."""
    found = []
    for snippet in snippets(path):
        ws = words(snippet)
        for i, w in enumerate(ws):
            if re.fullmatch(r"(\S*/)?python3?", w) and i + 1 < len(ws):
                found.append(ws[i + 1 :])
    return found


def override_keys(path: Path) -> set[str]:
    """Config keys of every `key=value` override in the file's code (agents' names, `+key=`,
    `hydra.*`, `hydra/...` group overrides and shell variables aside)."""
    keys = set()
    for snippet in snippets(path):
        for word in words(snippet):
            word = word.strip("[](),'\"")
            if AGENT.match(word):
                word = word.split("=", 1)[1]
            for piece in word.split(","):
                match = KEY.match(piece)
                python_kwarg = piece.endswith("=None")  # `goal=None`: code, not an override
                if match and not match[1].startswith("hydra.") and not python_kwarg:
                    keys.add(match[1])
    return keys - PLACEHOLDERS


@functools.cache
def config_tree() -> dict:
    """config.yaml (with director.yaml when present), as train.py composes them, plus the
    task presets' keys; MISSING (`???`) fields kept as keys."""
    tree = OmegaConf.to_container(compose_cfg([]), resolve=False)
    for preset in sorted((ROOT / "tdmpc2" / "configs" / "task").glob("*.yaml")):
        tree = merge(tree, OmegaConf.to_container(OmegaConf.load(preset), resolve=False))
    return tree


def merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def has_key(tree: dict, dotted: str) -> bool:
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@functools.cache
def script_help(script: str, sub: str | None = None) -> str:
    """`python SCRIPT [SUB] --help`, or "" for a Hydra entry point (whose flags are
    Hydra's own)."""
    if "@hydra.main" in (ROOT / script).read_text():
        return ""
    argv = [sys.executable, script, *([sub] if sub else []), "--help"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(argv[1:])} failed: {done.stderr[-500:]}"
    return done.stdout


def subcommands(help_text: str) -> list[str]:
    """The subcommands an argparse help lists (a `{a,b,c}` line of its own among the
    positional arguments; an option's choices follow the option's name instead)."""
    match = re.search(r"^  \{([\w,-]+)\}", help_text, re.M)
    return match[1].split(",") if match else []


def flags(argv: list[str]) -> list[str]:
    """The `--long` options a command passes (`[--a|--b]` placeholders included)."""
    out = []
    for word in argv:
        for piece in word.strip("[]").split("|"):
            if piece.startswith("--"):
                out.append(piece.split("=", 1)[0])
    return out


def problems_of_command(argv: list[str]) -> list[str]:
    command = "python " + " ".join(argv)
    if argv[0] == "-m":
        module = argv[1]
        if module.split(".")[0] not in {"tdmpc2", "bench", "tests"}:
            return []  # an installed tool (pytest, pip)
        path = ROOT / (module.replace(".", "/") + ".py")
        return [] if path.is_file() else [f"{command}: no module {module} in the repository"]
    script, rest = argv[0], argv[1:]
    if not (ROOT / script).is_file():
        return [f"{command}: no script {script}"]
    if not script.endswith(".py"):
        return []
    help_text = script_help(script)
    if not help_text:
        return []
    subs = subcommands(help_text)
    if subs:
        positional = [w for w in rest if not w.startswith("-")]
        if not positional or positional[0] not in subs:
            found = positional[0] if positional else "nothing"
            return [f"{command}: subcommand {found}, expected one of {', '.join(subs)}"]
        help_text = script_help(script, positional[0])
    return [
        f"{command}: {script} has no option {flag}"
        for flag in flags(rest)
        if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_text)
    ]


@pytest.mark.parametrize("path", DOCS, ids=IDS)
def test_python_commands_name_scripts_subcommands_and_options_that_exist(path):
    problems = [p for argv in commands(path) for p in problems_of_command(argv)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DOCS, ids=IDS)
def test_override_keys_exist_in_the_composed_config(path):
    tree = config_tree()
    keys = override_keys(path)
    missing = sorted(k for k in keys if not has_key(tree, k) and not rolled_back(k))
    assert not missing, f"{path.name}: keys not in the config: {', '.join(missing)}"


@pytest.mark.parametrize("path", DOCS, ids=IDS)
def test_relative_links_point_at_files_that_exist(path):
    broken = []
    for target in LINK.findall(FENCE.sub("", path.read_text())):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor in the same page
        file = path.parent / target.split("#", 1)[0]
        if not file.exists() and not rolled_back(os.path.relpath(file, ROOT)):
            broken.append(target)
    assert not broken, f"{path.name}: broken links: {', '.join(broken)}"


def test_the_checks_find_what_they_check():
    """The parsers on a sample: a command, an agent spec, a placeholder, a group override."""
    sample = ROOT / "README.md"
    assert ["tdmpc2/train.py", "task=walker-walk", "steps=100000"] in commands(sample)
    assert any(argv[:2] == ["-m", "tdmpc2.train"] for argv in commands(sample))
    line = 'python bench/learning.py run --agents flat "g0=trainer=director,worker.goal_coef=0"'
    assert words(line)[-1] == "g0=trainer=director,worker.goal_coef=0"
    assert problems_of_command(["bench/learning.py", "walk"])  # no such subcommand
    assert problems_of_command(["bench/learning.py", "run", "--no-such-flag"])
    assert not problems_of_command(["bench/learning.py", "report", "--steps", "6000"])
    assert problems_of_command(["bench/missing.py"])
    tree = config_tree()
    assert has_key(tree, "obs_shape")
    assert not has_key(tree, "goal_coef") and not has_key(tree, "worker.no_such_key")
