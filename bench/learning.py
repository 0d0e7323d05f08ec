"""Learning benchmark entry point: `python bench/learning.py <run|report|control|final|
coverage> ...` (`--help` on each). The jobs live in the package `bench/learn/`, one module
each; see bench/learn/cli.py for examples."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tdmpc2, bench

from bench.learn.cli import main

if __name__ == "__main__":
    main()
