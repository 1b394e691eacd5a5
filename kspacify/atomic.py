"""The one way kspacify writes a file: under a hidden temporary name beside it, then renamed into
place, so a file that exists is complete (what `--resume` and every "reuse if present" rely on), and
an interrupted or failed write leaves nothing behind.

Temporaries are named `.<name>.<8 hex>.tmp[<suffix>]`: unique per writer, so two runs writing into
one folder never touch each other's, and recognizable, so `remove_temporaries` can clear the ones a
killed writer left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Iterator

_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}\.tmp(\.[A-Za-z0-9.]+)?")


def temporary_for(path: Path, suffix: str = "") -> Path:
    """A fresh temporary name beside `path`; `suffix` for writers that pick a format by extension."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp{suffix}")


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


def remove_temporaries(outputs: Iterable[Path]) -> int:
    """Delete temporaries of `outputs` that their writers left behind (one listing per folder). Call
    it when none of those writers is still writing (after a run in which a worker was killed).
    Returns how many it removed."""
    names: dict[Path, set[str]] = defaultdict(set)
    for output in outputs:
        names[output.parent].add(output.name)
    removed = 0
    for folder, wanted in names.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = _TEMPORARY.fullmatch(entry.name)
            if match and match["name"] in wanted:
                with contextlib.suppress(FileNotFoundError):
                    Path(entry.path).unlink()
                removed += 1
    return removed
