"""SIGTERM as an exception: a batch scheduler's time limit or a pre-emption ends a conversion the
way Ctrl-C does, so the volume being written is abandoned (its temporary deleted) instead of the
process dying by the signal with a half-written temporary left behind. (Training handles SIGTERM
differently: it finishes the step and checkpoints, `kspacify.training.loop`.)"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Iterator


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, like KeyboardInterrupt, so no `except Exception` swallows it."""


def _raise(signum: int, frame: Any) -> None:
    raise Terminated()


_busy = [False]  # a worker process is converting a volume


def _in_worker(signum: int, frame: Any) -> None:
    if not _busy[0]:
        os._exit(128 + signum)  # idle: nothing to abandon, and no traceback from the pool's loop
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def worker_signals() -> None:
    """A worker process's initializer: SIGTERM and SIGINT (a scheduler or Ctrl-C signal the whole
    process group) abandon the volume being converted (see `busy`), or end an idle worker quietly."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _in_worker)
        signal.signal(signal.SIGINT, _in_worker)


@contextlib.contextmanager
def busy() -> Iterator[None]:
    """A worker's task: a signal inside it raises (so the task's files are cleaned up)."""
    _busy[0] = True
    try:
        yield
    finally:
        _busy[0] = False


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
