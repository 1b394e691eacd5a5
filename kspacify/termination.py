"""SIGTERM and Ctrl-C during a conversion: a batch scheduler's time limit, a pre-emption or a user
ends the run between two steps, the volume being written is abandoned (its temporary deleted), and
the command exits with 143 or 130 instead of dying by the signal with a half-written temporary.

A signal is recorded, then raised as `Terminated` (SIGTERM) or KeyboardInterrupt (SIGINT):

- at once, where nothing would be left inconsistent by it, or
- at the next `check()` (between two slabs, two volumes, two scanned files) when it arrives in a
  `shielded()` region: inside HDF5's callbacks or a process pool's bookkeeping an exception could
  leave a library lock held or a file half-closed.

A worker process raises only while it converts (`busy`); idle, it leaves stopping to the main
process, which shuts the pool down. An exception a signal raises inside an object's destructor
is dropped silently (it is raised again at the next check). Training handles SIGTERM differently:
it finishes the step and checkpoints (`kspacify.training.loop`).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Any, Iterator

_STOPS = (signal.SIGTERM, signal.SIGINT)
_pending: list[int] = []  # signals received and not yet raised
_shield = [0]  # depth of shielded() regions
_worker = [False]  # this is a worker process
_busy = [False]  # ... converting a volume


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, like KeyboardInterrupt, so no `except Exception` swallows it."""


def _raise(signum: int) -> None:
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _handler(signum: int, frame: Any) -> None:
    _pending.append(signum)
    if _shield[0] == 0 and (_busy[0] or not _worker[0]):
        _raise(signum)


def check() -> None:
    """A safe point: raise the signal received since the last one, if any."""
    if _pending:
        _raise(_pending[0])


def stopping() -> bool:
    return bool(_pending)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """A region a signal must not interrupt: it is recorded, and raised at the next `check()`."""
    _shield[0] += 1
    try:
        yield
    finally:
        _shield[0] -= 1


def _unraisable(hook: Any) -> Any:
    def quiet(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, (Terminated, KeyboardInterrupt)):
            hook(unraisable)

    return quiet


def _install() -> dict[int, Any]:
    previous = {number: signal.signal(number, _handler) for number in _STOPS}
    sys.unraisablehook = _unraisable(sys.__unraisablehook__)
    return previous  # type: ignore[return-value]


@contextlib.contextmanager
def signals_stop() -> Iterator[None]:
    """Within the block SIGTERM and SIGINT stop the run as described above (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _pending.clear()
    previous = _install()
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        sys.unraisablehook = sys.__unraisablehook__


def worker_signals() -> None:
    """A worker process's initializer: a signal abandons the volume being converted (see `busy`)."""
    _worker[0] = True
    if threading.current_thread() is threading.main_thread():
        _install()


@contextlib.contextmanager
def busy() -> Iterator[None]:
    """A worker's task: a signal inside it, or received while idle, stops the task."""
    _busy[0] = True
    try:
        check()
        yield
    finally:
        _busy[0] = False
