"""Where planned volumes are converted: in this process, in local worker processes, or on a Dask
cluster.

A volume's file is a function of the configuration and the volume alone (`seeding.stream`), so
every executor writes the same bytes as the serial run; they differ only in where the work happens.
Work in flight is bounded (a few volumes per worker), so memory stays flat however long the list.
A worker that dies (the kernel's out-of-memory killer) costs the volume that killed it, not the run.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from itertools import islice
from typing import Any, Callable, Generator, Iterable, Iterator

from threadpoolctl import threadpool_limits

from kspacify import fastmri_io, phase, termination
from kspacify.atomic import remove_temporaries
from kspacify.convert import ConvertConfig, Outcome, PlannedVolume, RunContext, convert_one, load_one
from kspacify.errors import UsageError
from kspacify.sources import Volume
from kspacify.termination import busy, worker_signals

__all__ = ["ExecutorError", "run"]

DASK_CONNECT_TIMEOUT = "30s"  # how long to wait for a scheduler that does not answer
WORKER_DIED = "its worker process died converting it (killed, e.g. by the out-of-memory killer)"


class ExecutorError(UsageError):
    """The executor itself cannot run (e.g. no Dask installed, scheduler unreachable)."""


def run(
    volumes: Iterable[PlannedVolume],
    config: ConvertConfig,
    *,
    workers: int = 1,
    dask: str | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    synthesizer: phase.PhaseSynthesizer | None = None,
    synthesize_here: bool | None = None,
    max_memory: int | None = None,
) -> Iterator[Outcome]:
    """Convert `volumes`, yielding outcomes as they finish (in order with one local worker).

    Existing outputs are kept unless `overwrite`, if they are complete kspacify files (an empty or
    cut or foreign file is converted again, with a note); with `dry_run` nothing is read or
    written. `workers`: local processes, or the size of `dask="local"`'s cluster. `dask`: a
    scheduler address, or "local". `synthesizer`: one already built from `config` (a checkpoint is
    loaded once). `synthesize_here`: with local workers, let them only read and decode while this
    process synthesizes phase and writes: the default when the synthesizer runs on a GPU, which one
    process should feed in batches rather than N processes share. `max_memory`: bytes one
    conversion may use (default: what the system has available).
    """
    todo: list[PlannedVolume] = []
    redo: dict[Any, str] = {}
    for item in volumes:
        notes = tuple(item.info.meta.get("notes", ()))
        if dry_run:
            yield Outcome(item, "dry-run", notes=notes)
            continue
        if not overwrite and (item.output.exists() or item.output.is_symlink()):
            why = fastmri_io.incomplete(item.output, item.info.shape[0])
            if why is None:
                yield Outcome(item, "exists")
                continue
            redo[item.output] = f"the existing {item.output.name} {why}: converted again"
        todo.append(item)
    if not todo:
        return
    context = RunContext(max_memory=max_memory)
    finished = False
    try:
        for outcome in _outcomes(todo, config, workers, dask, synthesizer, synthesize_here, context):
            note = redo.get(outcome.volume.output)
            yield replace(outcome, notes=(note, *outcome.notes)) if note else outcome
        finished = True
    finally:
        # every writer of this run has finished (a Dask task may outlive an aborted run: then only
        # stale temporaries go): what is left of this run is a dead attempt's (a killed worker)
        if finished or not dask:
            remove_temporaries((item.output for item in todo), run=context.run)


def _outcomes(todo: list[PlannedVolume], config: ConvertConfig, workers: int, dask: str | None,
              synthesizer: phase.PhaseSynthesizer | None, synthesize_here: bool | None,
              context: RunContext) -> Iterator[Outcome]:  # fmt: skip
    if dask:
        yield from _on_dask(todo, config, dask, workers, context)
    elif workers > 1:
        if synthesize_here is None:
            synthesize_here = _on_accelerator(synthesizer)
        yield from _in_processes(todo, config, workers, synthesizer if synthesize_here else None, context)
    else:
        synthesizer = synthesizer or _synthesizer_for(config)
        # our matrix products are small: BLAS threads only cost, badly so on a busy machine
        with threadpool_limits(1, user_api="blas"):
            for item in todo:
                yield convert_one(item, synthesizer, config, context=context)


def _on_accelerator(synthesizer: phase.PhaseSynthesizer | None) -> bool:
    device = getattr(synthesizer, "device", None)
    return device is not None and getattr(device, "type", "cpu") != "cpu"


_worker_state: dict[str, Any] = {}


def _synthesizer_for(config: ConvertConfig) -> phase.PhaseSynthesizer:
    """This process's synthesizer for `config`, built once (a worker converts many volumes)."""
    if _worker_state.get("config") != config:
        _worker_state.update(config=config, synthesizer=phase.create(config.phase, device=config.device, **config.phase_options))
    return _worker_state["synthesizer"]


def _worker_init() -> None:
    threadpool_limits(1)  # N workers x N BLAS threads would oversubscribe the cores
    worker_signals()  # a scheduler signals every process: abandon the volume, delete its temporary


def _convert_in_worker(item: PlannedVolume, config: ConvertConfig, context: RunContext) -> Outcome:
    with busy(), threadpool_limits(1, user_api="blas"):
        return convert_one(item, _synthesizer_for(config), config, context=context)


def _load_in_worker(item: PlannedVolume, config: ConvertConfig, context: RunContext) -> tuple[PlannedVolume, Volume | Outcome]:
    with busy():
        return item, load_one(item, config, context)


def _in_processes(
    todo: list[PlannedVolume], config: ConvertConfig, workers: int, synthesizer: phase.PhaseSynthesizer | None,
    context: RunContext,
) -> Iterator[Outcome]:  # fmt: skip
    """Whole conversions in N processes; or, given this process's `synthesizer`, reading and
    decoding in N processes overlapped with synthesis and writing here.

    When a worker dies the pool breaks: the volumes then in flight are retried one at a time, each
    in a pool of its own, so the one that kills its worker again fails alone; the rest go on in a
    new pool."""
    if synthesizer is None:
        def submit(pool: ProcessPoolExecutor, item: PlannedVolume) -> Future:
            return pool.submit(_convert_in_worker, item, config, context)

        def finish(result: Outcome) -> Outcome:
            return result
    else:
        def submit(pool: ProcessPoolExecutor, item: PlannedVolume) -> Future:
            return pool.submit(_load_in_worker, item, config, context)

        def finish(result: tuple[PlannedVolume, Volume | Outcome]) -> Outcome:  # type: ignore[misc]
            item, loaded = result
            with threadpool_limits(1, user_api="blas"):
                return loaded if isinstance(loaded, Outcome) else convert_one(item, synthesizer, config, loaded, context)

    queue = deque(todo)
    while queue:
        suspects = yield from _pool(queue, workers, submit, finish)
        for item in suspects:
            lost = yield from _pool(deque([item]), 1, submit, finish)
            yield from (Outcome(dead, "failed", WORKER_DIED) for dead in lost)


def _pool(queue: deque[PlannedVolume], workers: int, submit: Callable[[ProcessPoolExecutor, PlannedVolume], Future],
          finish: Callable[[Any], Outcome]) -> Generator[Outcome, None, list[PlannedVolume]]:  # fmt: skip
    """Outcomes of items taken from `queue` in one pool of `workers` processes, at most 2 per worker
    in flight; returns the items that were in flight when a worker died (the pool is then broken).

    SIGTERM and Ctrl-C wait for the loop's safe points (raised in the middle of the pool's
    bookkeeping they could leave one of its locks held, and the shutdown hung): then nothing new
    starts, the workers abandon or finish what they hold, and the signal is raised."""
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init)
    in_flight: dict[Future, PlannedVolume] = {}
    broken: list[PlannedVolume] = []
    clean = False
    with termination.shielded():
        try:
            while (queue or in_flight) and not termination.stopping() and not broken:
                while queue and len(in_flight) < 2 * workers:
                    item = queue.popleft()
                    in_flight[submit(pool, item)] = item
                done, _ = wait(in_flight, timeout=0.25, return_when=FIRST_COMPLETED)
                for future in done:
                    item = in_flight.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        broken.append(item)
                        continue
                    yield finish(result)
            if broken:
                rest = list(in_flight.items())
                wait([future for future, _ in rest])
                for future, item in rest:
                    if future.exception() is None:
                        yield finish(future.result())
                    else:
                        broken.append(item)
            clean = not termination.stopping()
        finally:
            pool.shutdown(wait=True, cancel_futures=not clean)
    termination.check()
    return broken


def _on_dask(todo: list[PlannedVolume], config: ConvertConfig, address: str, workers: int,
             context: RunContext) -> Iterator[Outcome]:  # fmt: skip
    """Each volume is one task on a dask.distributed cluster ("local": a LocalCluster of `workers`
    single-threaded processes). A task whose worker dies is rerun elsewhere by Dask; its half file
    was a temporary of this run, which `run` removes at the end."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as error:
        raise ExecutorError(f"--dask needs dask.distributed ({error}): pip install 'kspacify[distributed]'") from None
    cluster = None
    try:
        if address == "local":
            cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
            )  # fmt: skip
        client = Client(cluster if cluster is not None else address, timeout=DASK_CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as error:
        if cluster is not None:
            cluster.close()
        raise ExecutorError(f"cannot reach the Dask scheduler at {address}: {error}") from None
    try:
        yield from _dask_tasks(client, todo, config, workers, context)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _dask_tasks(
    client: Any, todo: list[PlannedVolume], config: ConvertConfig, workers: int, context: RunContext
) -> Iterator[Outcome]:
    """Submit a few tasks per worker thread and one more as each finishes."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    slots = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
    items: dict[Any, PlannedVolume] = {}

    def submit(item: PlannedVolume) -> Any:
        future = client.submit(_convert_in_worker, item, config, context, key=f"kspacify-convert-{uuid.uuid4().hex}")
        items[future] = item
        return future

    queue = iter(todo)
    completed = as_completed([submit(item) for item in islice(queue, 2 * max(slots, workers, 1))])
    for future in completed:
        item = items.pop(future)
        try:
            yield future.result()
        except KilledWorker as error:
            yield Outcome(item, "failed", f"Dask workers died converting it ({error})")
        following = next(queue, None)
        if following is not None:
            completed.add(submit(following))
