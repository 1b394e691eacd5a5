"""The one way kspacify writes a file: under a hidden temporary name beside it, then renamed into
place, so a file that exists is complete (what `--resume` and every "reuse if present" rely on), and
an interrupted or failed write leaves nothing behind.

Temporaries are named `.<name>.<run>-<writer>.tmp[<suffix>]` (`<run>`, `<writer>`: 8 hex digits each;
a writer outside any run has `.<name>.<writer>.tmp`): unique per writer, and recognizable, so
`remove_temporaries` can clear the ones a killed writer left: those of its own run (a run knows its
writers are done), and those of any run left untouched for `STALE_AFTER` seconds (a writer touches
its file at every slab). So two runs writing into one folder never delete each other's live files.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Iterator

_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?:(?P<run>[0-9a-f]{8})-)?[0-9a-f]{8}\.tmp(\.[A-Za-z0-9.]+)?")
STALE_AFTER = 3600.0  # seconds untouched after which any run's temporary is a dead writer's


def new_run() -> str:
    """A token naming one run's temporaries (8 hex digits)."""
    return uuid.uuid4().hex[:8]


def temporary_for(path: Path, suffix: str = "", run: str | None = None) -> Path:
    """A fresh temporary name beside `path`, of `run` if given; `suffix` for writers that pick a
    format by extension."""
    writer = uuid.uuid4().hex[:8]
    return path.with_name(f".{path.name}.{f'{run}-' if run else ''}{writer}.tmp{suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; on a normal exit it replaces `path`, on an exception (or
    Ctrl-C) it is deleted. The parent folder is created."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_for(target, suffix)
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], document: Any, indent: int | None = 2, sort_keys: bool = False,
               allow_nan: bool = False) -> Path:  # fmt: skip
    """JSON plus a final newline; strict by default (no NaN or infinity, which other readers reject)."""
    return write_text(path, json.dumps(document, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan) + "\n")


def remove_temporaries(outputs: Iterable[Path], run: str | None = None, stale_after: float = STALE_AFTER) -> int:
    """Delete temporaries of `outputs` that dead writers left behind (one listing per folder): those
    of `run` (call it when none of that run's writers is still writing, e.g. after a run in which a
    worker was killed) and those of any run untouched for `stale_after` seconds. Another run's
    live temporaries are left alone. Returns how many it removed."""
    names: dict[Path, set[str]] = defaultdict(set)
    for output in outputs:
        names[output.parent].add(output.name)
    removed = 0
    now = time.time()
    for folder, wanted in names.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = _TEMPORARY.fullmatch(entry.name)
            if not match or match["name"] not in wanted:
                continue
            if run is None or match["run"] != run:
                try:
                    if now - entry.stat(follow_symlinks=False).st_mtime < stale_after:
                        continue  # perhaps another run's live writer
                except OSError:
                    continue
            with contextlib.suppress(FileNotFoundError):
                Path(entry.path).unlink()
                removed += 1
    return removed
