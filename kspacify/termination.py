"""SIGTERM as an exception: a batch scheduler's time limit or a pre-emption ends a conversion the
way Ctrl-C does, so the volume being written is abandoned (its temporary deleted) instead of the
process dying by the signal with a half-written temporary left behind. (Training handles SIGTERM
differently: it finishes the step and checkpoints, `kspacify.training.loop`.)"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, like KeyboardInterrupt, so no `except Exception` swallows it."""


def _raise(signum: int, frame: Any) -> None:
    raise Terminated()


def raise_on_sigterm() -> None:
    """From now on SIGTERM raises `Terminated` in this process's main thread (a worker's initializer)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block SIGTERM raises `Terminated`; the previous handler comes back after it. Only
    the main thread may set handlers: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
