"""The scan: each path's header is read once, classified (MR image or what else it is), its frames
keyed and grouped; the volumes follow once every path has been read.

Every file ends as part of a volume or as a `Skipped` with its reason: a damaged or hostile file
never raises out of here (whatever pydicom raises is caught and named by type only).
"""

from __future__ import annotations

import gzip
import hashlib
import multiprocessing
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ...termination import check as stop_if_signalled
from ..base import Pseudonymizer, Skipped, VolumeInfo
from .grouping import Grouper, keyed_images
from .header import GZIP_MAGIC, PIXEL_MODULE, FileSkip, get, quiet, read_header
from .pixels import decoded
from .records import DICOMDIR_SOP, KEEP_SOP, is_uid, read_frames, sop_skip_reason

__all__ = ["DUPLICATE", "FileRead", "looks_like_dicom", "read_file", "resolve_copies", "scan_dicom"]


_SUFFIXES = (".dcm", ".ima", ".dicom")


def looks_like_dicom(path: Path) -> bool:
    """Cheap test: 'DICM' at byte 128, or a .dcm/.ima/.dicom extension (no parse); the same for a
    gzipped file (`.dcm.gz`, or gzip whose first inflated bytes hold 'DICM')."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(_SUFFIXES) or name.endswith(tuple(s + ".gz" for s in _SUFFIXES)):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
            if head[:2] == GZIP_MAGIC:
                fh.seek(0)
                with gzip.GzipFile(fileobj=fh) as gz:
                    head = gz.read(132)
    except (OSError, EOFError, zlib.error):
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


_POOL_MIN_FILES = 64  # fewer files than this are read in this process whatever `workers` says


@dataclass(frozen=True, slots=True)
class FileRead:
    """One file's share of the scan, as far as it goes without the other files: skipped early
    (`skip`), or its SOP instance digest (of copies of one image one is used: `resolve_copies`),
    the reason it is skipped if it is the copy used (`late_skip`), and its images."""

    path: str
    skip: Skipped | None = None
    digest: bytes | None = None
    late_skip: Skipped | None = None
    patient_id: str = ""
    images: tuple = ()


def read_file(path: str, keep_components: bool = False) -> FileRead:
    """Read and key one file (any process may do it); never raises for a bad file."""
    if os.path.basename(path).upper() == "DICOMDIR":
        return FileRead(path, Skipped(path, "DICOMDIR (media directory, not an image)"))
    try:
        with quiet():
            ds, has_pixels, native = read_header(path)
            meta_sop = str(get(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID") or "")
            sop = str(get(ds, "SOPClassUID") or "") or meta_sop
            if meta_sop == DICOMDIR_SOP:
                sop = meta_sop
            if not sop:
                raise FileSkip("damaged or incomplete DICOM header (no SOP Class UID)", failed=True)
            if sop not in KEEP_SOP:
                if not is_uid(sop):  # not a UID at all: the header is damaged, not of another kind
                    raise FileSkip("damaged header: its SOP class UID is not a UID (characters other than digits "
                                   "and dots)", failed=True)
                raise FileSkip(sop_skip_reason(sop))
            if not has_pixels:
                missing = [k for k in PIXEL_MODULE if get(ds, k) is None]
                if missing:  # an image header cut short before its pixel module ended
                    raise FileSkip("incomplete image header and no pixel data (truncated file?)", failed=True)
                raise FileSkip("no pixel data: an MR image without its pixels (an image lost from the export?)",
                               failed=True)
            sop_uid = str(get(ds, "SOPInstanceUID") or "")
            digest = hashlib.blake2b(sop_uid.encode(), digest_size=12).digest() if sop_uid else None
    except Exception as exc:
        return FileRead(path, _skipped(path, exc))
    try:
        with quiet():
            images, reason = keyed_images(path, ds, read_frames(ds, sop), keep_components, native)
            if reason:
                raise FileSkip(reason)
            pid = str(get(ds, "PatientID") or "")
    except Exception as exc:
        return FileRead(path, None, digest, _skipped(path, exc))
    return FileRead(path, None, digest, None, pid, tuple(images))


def _skipped(path: str, exc: Exception) -> Skipped:
    if isinstance(exc, FileSkip):
        return Skipped(path, exc.reason, failed=exc.failed)
    return Skipped(path, f"unreadable DICOM header ({type(exc).__name__})", failed=True)  # never raise for a bad file


def scan_dicom(
    paths: Iterable[Path], pseudonymize: Pseudonymizer, *, keep_components: bool = False, workers: int = 1
) -> Iterator[VolumeInfo | Skipped]:
    """Read headers of `paths`; yield Skipped for files not used (as found), then, once every file
    has been read, what copies of one image left over (`resolve_copies`), then the volumes.

    Files are grouped as they are read (memory stays one record per image); a file whose SOP
    Instance UID an earlier one has is held back, and resolved with the earlier one (read again)
    at the end. With `workers` > 1 (and enough files) the files are read by that many processes;
    the result is the same, since everything that depends on other files is done here, in input order.
    """
    grouper = Grouper(keep_components)
    patients: dict[str, str] = {}
    first_seen: dict[bytes, tuple[str, FileRead | None]] = {}  # UID digest -> first path (its read if not grouped)
    held: dict[bytes, list[FileRead]] = {}  # later files with that UID

    def group(read: FileRead) -> None:
        pid = read.patient_id
        if pid not in patients:
            patients[pid] = pseudonymize(pid)
        for key, facts, slices, diffusion in read.images:
            grouper.add(key, facts, slices, patients[pid], diffusion)

    with _reads(paths, keep_components, workers) as found:
        for read in found:
            if workers > 1:
                stop_if_signalled()  # (read here, the caller's own checks between paths do it)
            if read.skip is not None:
                yield read.skip
                continue
            if read.digest is not None:
                if read.digest in first_seen:
                    held.setdefault(read.digest, []).append(read)
                    continue
                first_seen[read.digest] = (read.path, read if read.late_skip is not None else None)
            if read.late_skip is not None:
                yield read.late_skip
            else:
                group(read)
    winners: list[FileRead] = []  # copies used instead of the first: grouped once every loser is out
    for digest, later in held.items():
        path, kept_aside = first_seen[digest]
        first = kept_aside or read_file(path, keep_components)
        grouped = kept_aside is None
        if first.skip is not None:  # changed since it was read: it goes, the copies decide alone
            grouper.remove(path)
            yield first.skip
            copies, grouped = later, False
        else:
            copies = [first, *later]
        keep, dropped = resolve_copies(copies, grouper.images_like)
        for index, skip in dropped.items():
            if not (index == 0 and copies[0] is first and not grouped):  # (a late skip was said already)
                yield skip
        if copies[keep] is not first:
            if grouped:
                grouper.remove(path)
            winner = copies[keep]
            if winner.late_skip is not None:
                yield winner.late_skip
            else:
                winners.append(winner)
    for winner in winners:
        group(winner)

    yield from grouper.volumes(pseudonymize)


DUPLICATE = "duplicate copy of an image already found in another file"


def resolve_copies(copies: list[FileRead], support: Callable[[Any], int]) -> tuple[int, dict[int, Skipped]]:
    """Of files sharing a SOP Instance UID (in input order), the one to use and, by index, the
    others with why (`support(key)`: how many images the group of a key holds).

    Copies that are the same bytes, or that decode to the same values of the same image records,
    are one image: the first is used, the others counted as duplicates. Copies that differ are
    decoded: one that does not decode is a damaged copy (a fault, named), and of those that do, the
    one whose series holds the most images like it is used (a valid series keeps its slice
    whatever order the walk met the copies in); the others are conflicting copies (a fault, named).
    Only files whose UID is shared come here, so a scan without copies costs nothing."""
    out: dict[int, Skipped] = {}
    distinct = _same_bytes(copies, list(range(len(copies))))
    for members in distinct:
        out.update((i, Skipped(copies[i].path, DUPLICATE)) for i in members[1:])
    firsts = [members[0] for members in distinct]
    if len(firsts) == 1:
        return firsts[0], out
    values = {i: decoded(copies[i].path) for i in firsts}
    usable = [i for i in firsts if not isinstance(values[i], str)]
    keep = max(usable, key=lambda i: (sum(support(entry[0]) for entry in copies[i].images), -i)) if usable else firsts[0]
    used = copies[keep].path
    for i in firsts:
        if i == keep:
            continue
        path, value = copies[i].path, values[i]
        if isinstance(value, str):
            out[i] = Skipped(path, f"{value}; a damaged copy (the same SOP Instance UID) of {used}, which is used",
                             failed=True)  # fmt: skip
        elif not isinstance(values[keep], str) and _same_image(copies[i], copies[keep], value, values[keep]):
            out[i] = Skipped(path, DUPLICATE)
        else:
            out[i] = Skipped(path, f"conflicting copy: the same SOP Instance UID as {used}, but another image: "
                                   "not used", failed=True)  # fmt: skip
    return keep, out


def _same_bytes(reads: list[FileRead], indices: list[int]) -> list[list[int]]:
    """`indices` in groups of files with the same bytes, each group and the groups in input order
    (files are hashed only where another has their size)."""
    sizes: dict[int, int | None] = {}
    for i in indices:
        try:
            sizes[i] = os.path.getsize(reads[i].path)
        except OSError:
            sizes[i] = None
    counts = Counter(sizes.values())
    groups: dict[tuple, list[int]] = {}
    for i in indices:
        size = sizes[i]
        key: tuple = ("unreadable", i) if size is None else (size,)
        if size is not None and counts[size] > 1:
            try:
                key = (size, _file_digest(reads[i].path))
            except OSError:
                key = ("unreadable", i)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _file_digest(path: str) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


def _same_image(a: FileRead, b: FileRead, values_a, values_b) -> bool:
    """Two reads of one image encoded otherwise: the same keys, slice records and decoded values."""
    def records(read: FileRead) -> list:
        return [(key, [(im.frame, im.position, im.instance) for im in images]) for key, _, images, _ in read.images]

    return records(a) == records(b) and values_a.shape == values_b.shape and bool(np.array_equal(values_a, values_b))


@contextmanager
def _reads(paths: Iterable[Path], keep_components: bool, workers: int) -> Iterator[Iterable[FileRead]]:
    """FileReads of `paths` in their order: read here, one path at a time as the caller asks (so a
    caller that stops between files is obeyed), or by a pool of processes."""
    if workers <= 1:
        yield (read_file(str(path), keep_components) for path in paths)
        return
    names = [str(path) for path in paths]
    if len(names) < _POOL_MIN_FILES:
        yield (read_file(path, keep_components) for path in names)
        return
    # forkserver where there is one: forking a process that already runs threads (torch's, a
    # progress bar's) can deadlock the child
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else None)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    try:
        chunk = max(8, min(256, len(names) // (workers * 8)))
        yield pool.map(partial(read_file, keep_components=keep_components), names, chunksize=chunk)
    except BaseException:  # a signal or an error: do not wait for the files still queued
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
