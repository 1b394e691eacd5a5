"""Where planned volumes are converted: in this process, in local worker processes, or on a Dask
cluster.

A volume's file is a function of the configuration and the volume alone (`seeding.stream`), so
every executor writes the same bytes as the serial run; they differ only in where the work happens.
Work in flight is bounded (a few volumes per worker), so memory stays flat however long the list.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from itertools import islice
from typing import Any, Callable, Iterable, Iterator

from threadpoolctl import threadpool_limits

from kspacify import phase
from kspacify.atomic import remove_temporaries
from kspacify.errors import UsageError
from kspacify.convert import ConvertConfig, Outcome, PlannedVolume, convert_one, load_one
from kspacify.sources import Volume

__all__ = ["ExecutorError", "run"]

DASK_CONNECT_TIMEOUT = "30s"  # how long to wait for a scheduler that does not answer


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
) -> Iterator[Outcome]:
    """Convert `volumes`, yielding outcomes as they finish (in order with one local worker).

    Existing outputs are kept unless `overwrite`; with `dry_run` nothing is read or written.
    `workers`: local processes, or the size of `dask="local"`'s cluster. `dask`: a scheduler
    address, or "local". `synthesizer`: one already built from `config` (a checkpoint is loaded once).
    `synthesize_here`: with local workers, let them only read and decode while this process
    synthesizes phase and writes: the default when the synthesizer runs on a GPU, which one process
    should feed in batches rather than N processes share.
    """
    todo: list[PlannedVolume] = []
    for item in volumes:
        if dry_run:
            yield Outcome(item, "dry-run")
        elif item.output.exists() and not overwrite:
            yield Outcome(item, "exists")
        else:
            todo.append(item)
    if not todo:
        return
    if dask:
        yield from _on_dask(todo, config, dask, workers)
    elif workers > 1:
        if synthesize_here is None:
            synthesize_here = _on_accelerator(synthesizer)
        yield from _in_processes(todo, config, workers, synthesizer if synthesize_here else None)
    else:
        synthesizer = synthesizer or _synthesizer_for(config)
        # our matrix products are small: BLAS threads only cost, badly so on a busy machine
        with threadpool_limits(1, user_api="blas"):
            for item in todo:
                yield convert_one(item, synthesizer, config)
    # every writer of these outputs has finished: a temporary left now is a dead attempt's (a killed worker)
    remove_temporaries(item.output for item in todo)


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


def _convert_in_worker(item: PlannedVolume, config: ConvertConfig) -> Outcome:
    with threadpool_limits(1, user_api="blas"):
        return convert_one(item, _synthesizer_for(config), config)


def _bounded(submit: Callable[[PlannedVolume], Future], todo: list[PlannedVolume], in_flight: int) -> Iterator[Any]:
    """Results of `submit(item)` for every item in completion order, at most `in_flight` pending."""
    pending: set[Future] = set()
    for item in todo:
        pending.add(submit(item))
        if len(pending) >= in_flight:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (future.result() for future in done)
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        yield from (future.result() for future in done)


def _in_processes(
    todo: list[PlannedVolume], config: ConvertConfig, workers: int, synthesizer: phase.PhaseSynthesizer | None
) -> Iterator[Outcome]:
    """Whole conversions in N processes; or, given this process's `synthesizer`, reading and
    decoding in N processes overlapped with synthesis and writing here."""
    with ProcessPoolExecutor(max_workers=workers, initializer=_worker_init) as pool:
        if synthesizer is None:
            yield from _bounded(lambda item: pool.submit(_convert_in_worker, item, config), todo, 2 * workers)
            return
        loads = _bounded(lambda item: pool.submit(_load_in_worker, item), todo, 2 * workers)
        with threadpool_limits(1, user_api="blas"):
            for item, loaded in loads:
                yield loaded if isinstance(loaded, Outcome) else convert_one(item, synthesizer, config, loaded)


def _load_in_worker(item: PlannedVolume) -> tuple[PlannedVolume, Volume | Outcome]:
    return item, load_one(item)


def _on_dask(todo: list[PlannedVolume], config: ConvertConfig, address: str, workers: int) -> Iterator[Outcome]:
    """Each volume is one task on a dask.distributed cluster ("local": a LocalCluster of `workers`
    single-threaded processes). A task whose worker dies is rerun elsewhere by Dask; its half file
    was a temporary, which `run` removes at the end."""
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
        yield from _dask_tasks(client, todo, config, workers)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _dask_tasks(
    client: Any, todo: list[PlannedVolume], config: ConvertConfig, workers: int
) -> Iterator[Outcome]:
    """Submit a few tasks per worker thread and one more as each finishes."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    slots = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
    items: dict[Any, PlannedVolume] = {}

    def submit(item: PlannedVolume) -> Any:
        future = client.submit(_convert_in_worker, item, config, key=f"kspacify-convert-{uuid.uuid4().hex}")
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
