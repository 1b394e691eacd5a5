"""Write-behind: one slab's k-space transform and HDF5 write run on a background thread while the
caller prepares the next slab and synthesizes its phase.

numpy's element-wise work, scipy's FFT and HDF5's writes release the GIL, so on two cores the two
halves of a slab's work overlap (`docs/performance.md`, "Convert throughput"). The tasks run one at
a time, in the order given, so a volume's bytes are those of the serial loop (the writer's running
max and norm are accumulated in the same order). At most `depth` tasks wait, so memory holds a few
slabs, not the volume's k-space. The caller's thread stays the only one that synthesizes phase (a
model's state is never shared) and the only one signals reach.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

__all__ = ["WriteBehind"]


class WriteBehind:
    """`submit(task)` runs task() behind the caller; an exception a task raised is raised by the next
    `submit` or on leaving the block. Leaving the block, normally or not, waits for the task that is
    running, so no write is in flight when the caller closes or deletes the file."""

    def __init__(self, depth: int = 1) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._depth = depth
        self._pending: deque[Future[None]] = deque()
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> WriteBehind:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kspacify-write-behind")
        return self

    def submit(self, task: Callable[[], None]) -> None:
        assert self._pool is not None, "submit() outside the with block"
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(task))

    def __exit__(self, error_type: type[BaseException] | None, *rest: object) -> None:
        assert self._pool is not None
        try:
            while error_type is None and self._pending:
                self._pending.popleft().result()
        finally:
            for future in self._pending:
                future.cancel()
            self._pending.clear()
            self._pool.shutdown(wait=True)
