"""Keeps a failed MuJoCo render from taking the process down on the next attempt.

Without a working OpenGL backend the first MuJoCo render raises, but a second attempt in
the same process aborts in C++ (uncatchable). After one failure, later renders of any
MuJoCo environment raise the first error again instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_first_failure: str | None = None


@contextmanager
def mujoco_render_guard() -> Iterator[None]:
    """Wrap every MuJoCo render call; errors still propagate to the caller."""
    global _first_failure
    if _first_failure is not None:
        raise RuntimeError(f"MuJoCo rendering failed earlier in this process: {_first_failure}")
    try:
        yield
    except Exception as err:
        _first_failure = f"{type(err).__name__}: {err}"
        raise
