"""Manifests and shards: share the conversion of one archive out over many processes or machines.

`kspacify scan` writes a manifest, one JSON line per volume found (headers only, no pixels), and
`kspacify convert --manifest FILE --shard I/N` converts the I-th of N deterministic shares of it.
Every shard names the outputs from the whole manifest, in manifest order, so two shards never
write the same file; shard I takes volumes I, I + N, I + 2N, ... so the shares are balanced when
similar series are listed together.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Iterator, Mapping, TypeVar

from kspacify.errors import UsageError
from kspacify.sources import VolumeInfo

FORMAT = "kspacify-manifest/1"

T = TypeVar("T")


class ManifestError(UsageError):
    """A manifest line or a shard setting that cannot be used; the message names which and why."""


@dataclass(frozen=True)
class Entry:
    """One manifest line: a volume, and how many files in its folder(s) the scan skipped."""

    info: VolumeInfo
    skipped_nearby: int = 0

    def to_line(self) -> str:
        return json.dumps({"format": FORMAT, "skipped_nearby": self.skipped_nearby, "volume": self.info.to_json()})


def read_manifest(path: Path) -> Iterator[Entry]:
    """Entries of a manifest, one per non-empty line; a bad line is a ManifestError naming `path:line`."""
    name = str(path)
    try:
        stream = open(path, encoding="utf-8")
    except OSError as error:
        raise ManifestError(f"{path}: cannot read the manifest ({error.strerror or error})") from None
    with stream:
        yield from _entries(stream, name)


def _lines(stream: IO[str], name: str) -> Iterator[tuple[int, str]]:
    number = 0
    try:
        for number, line in enumerate(stream, 1):
            yield number, line
    except UnicodeDecodeError as error:
        raise ManifestError(f"{name}:{number + 1}: not UTF-8 text (byte {error.start} of the line is "
                            f"0x{error.object[error.start]:02x}): not a manifest written by `kspacify scan`") from None  # fmt: skip


def _entries(stream: IO[str], name: str) -> Iterator[Entry]:
    """Entries; nothing in a line is trusted (it may have been edited): `VolumeInfo.from_json`
    checks every field, and `name` must be a plain file name."""
    for number, line in _lines(stream, name):
        if not line.strip():
            continue
        try:
            data = json.loads(line, parse_constant=_no_constant)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ManifestError(f"{name}:{number}: not a {FORMAT} line (written by `kspacify scan`?)")
            skipped = data.get("skipped_nearby", 0)
            if isinstance(skipped, bool) or not isinstance(skipped, int) or skipped < 0:
                raise ValueError(f"skipped_nearby {skipped!r} is not a count")
            yield Entry(VolumeInfo.from_json(data["volume"]), skipped)
        except ManifestError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
            raise ManifestError(f"{name}:{number}: unreadable manifest line ({type(error).__name__}: {error})") from None


def _no_constant(text: str) -> None:
    raise ValueError(f"{text} is not a number a manifest holds")


@dataclass(frozen=True)
class Shard:
    """The `index`-th (0-based) of `count` shares of a list."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ManifestError(f"shard {self.index}/{self.count}: need 0 <= I < N")

    def select(self, items: Iterable[T]) -> list[T]:
        """Items index, index + count, ... of a list or a stream."""
        return [item for position, item in enumerate(items) if position % self.count == self.index]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def resolve(cls, text: str | None, env: Mapping[str, str] = os.environ) -> tuple[Shard, str]:
        """The shard to run and where it came from.

        `text` is "I/N", or "auto/N" (I from the environment), or None: a SLURM job array gives both
        I and N; a Kubernetes indexed Job gives I only (JOB_COMPLETION_INDEX), so it needs "auto/N";
        with neither, the whole manifest is one shard.
        """
        scheduler = _index_from_env(env)
        if text is None:
            if scheduler is None:
                return cls(), "whole manifest"
            index, count, origin = scheduler
            if count is None:
                raise ManifestError(f"{origin} gives the shard index only: add --shard auto/N (N = the Job's completions)")
            return cls(index, count), origin
        head, sep, tail = text.partition("/")
        if not sep or not tail.isdigit() or not (head == "auto" or head.isdigit()):
            raise ManifestError(f"--shard {text!r}: expected I/N or auto/N, e.g. 0/8")
        if head != "auto":
            return cls(int(head), int(tail)), "--shard"
        if scheduler is None:
            raise ManifestError(f"--shard {text}: neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set")
        return cls(scheduler[0], int(tail)), scheduler[2]


def _index_from_env(env: Mapping[str, str]) -> tuple[int, int | None, str] | None:
    """(index, count or None, origin) from a SLURM job array or a Kubernetes indexed Job."""
    try:
        if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
            step = int(env.get("SLURM_ARRAY_TASK_STEP", "1"))
            index = (int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))) // step
            return index, int(env["SLURM_ARRAY_TASK_COUNT"]), "SLURM job array"
        if "JOB_COMPLETION_INDEX" in env:
            return int(env["JOB_COMPLETION_INDEX"]), None, "Kubernetes indexed Job"
    except ValueError as error:
        raise ManifestError(f"unreadable shard variables in the environment: {error}") from None
    return None
