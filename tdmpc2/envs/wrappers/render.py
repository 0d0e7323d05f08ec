"""OpenGL failures: one clear error at start, and no crash on a second render attempt.

Without a working OpenGL backend the first MuJoCo render raises, but a second attempt in
the same process aborts in C++ (uncatchable). After one failure, later renders of any
MuJoCo environment raise the first error again instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_first_failure: str | None = None
RENDERER_HINT = (
    "install EGL (Debian: libegl1 libgl1-mesa-dri) and set MUJOCO_GL=egl, "
    "or OSMesa (Debian: libosmesa6) and set MUJOCO_GL=osmesa"
)


class RendererError(RuntimeError):
    """No usable OpenGL renderer: reported as one line at start."""


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
