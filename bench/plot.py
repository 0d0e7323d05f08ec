"""Learning curves of run directories, optionally over the published reference curves.

python bench/plot.py RUN_DIR [RUN_DIR ...] [--reference ../shared/reference]
                     [--task walker-walk] [--methods tdmpc2,sac,dreamerv3] [--out curve.png]

The drawing is `tdmpc2.common.curves.plot_runs`, the same that writes each run's curve.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tdmpc2.common.curves import Panel, plot_runs  # noqa: E402


def goal_panel() -> Panel | None:
    """The hierarchy's goal metrics panel; None once the Director extension is rolled back."""
    try:
        from tdmpc2.trainer.director_trainer import GOAL_PANEL
    except ImportError:
        return None
    return GOAL_PANEL


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--reference", type=Path, help="the shared reference folder")
    parser.add_argument("--task", help="task of the published curves (default: the runs' task)")
    parser.add_argument("--methods", default="tdmpc2", help="comma-separated published methods")
    parser.add_argument("--out", type=Path, help="PNG path (default: RUN_DIR0/curve.png)")
    args = parser.parse_args(argv)
    try:
        methods = args.methods.split(",")
        out = plot_runs(args.run_dirs, args.reference, args.task, args.out, methods, goal_panel())
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    print(out)


if __name__ == "__main__":
    main()
