"""Stopping a run cleanly: SIGINT/SIGTERM only set a flag, so the loop ends its step (or
cuts an evaluation short), saves a checkpoint and says how to resume."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """Raised inside an evaluation once a stop signal arrived, to cut it short."""


@contextmanager
def catch_signals(received: Callable[[int], None]) -> Iterator[None]:
    """Inside, a stop signal calls `received(signum)` instead of ending the process.

    The first signal puts the previous handlers back, so a second one stops at once.
    Off the main thread, where Python cannot install handlers, nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) or signal.SIG_DFL for s in STOP_SIGNALS}

    def handle(signum: int, frame: object) -> None:
        received(signum)
        for s, handler in previous.items():
            signal.signal(s, handler)

    for s in STOP_SIGNALS:
        signal.signal(s, handle)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
