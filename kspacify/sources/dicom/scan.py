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
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

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
    has been read, copies of one image (`resolve_copies`) and the volumes.

    With `workers` > 1 (and enough files) the files are read by that many processes; the result
    is the same, since everything that depends on other files is done here, in input order.
    """
    grouper = Grouper(keep_components)
    reads: list[FileRead] = []
    patients: dict[str, str] = {}
    with _reads(paths, keep_components, workers) as found:
        for read in found:
            if workers > 1:
                stop_if_signalled()  # (read here, the caller's own checks between paths do it)
            if read.skip is not None:
                yield read.skip
            else:
                reads.append(read)
    dropped = resolve_copies(reads)
    for index, read in enumerate(reads):
        if index in dropped:
            yield dropped[index]
            continue
        if read.late_skip is not None:
            yield read.late_skip
            continue
        pid = read.patient_id
        if pid not in patients:
            patients[pid] = pseudonymize(pid)
        for key, facts, slices, diffusion in read.images:
            grouper.add(key, facts, slices, patients[pid], diffusion)

    yield from grouper.volumes(pseudonymize)


DUPLICATE = "duplicate copy of an image already found in another file"


def resolve_copies(reads: list[FileRead]) -> dict[int, Skipped]:
    """Of files sharing a SOP Instance UID, the ones not to use, by index, with why.

    Copies that are the same bytes, or that decode to the same values of the same image records,
    are one image: the first is used, the others counted as duplicates. Copies that differ are
    decoded: one that does not decode is a damaged copy (a fault, named), and of those that do, the
    one whose series holds the most images like it is used (a valid series keeps its slice
    whatever order the walk met the copies in); the others are conflicting copies (a fault, named).
    Only files whose UID is shared are compared, so a scan without copies costs nothing here."""
    shared: dict[bytes, list[int]] = defaultdict(list)
    for index, read in enumerate(reads):
        if read.digest is not None:
            shared[read.digest].append(index)
    support = Counter(key for read in reads for key in {entry[0] for entry in read.images})
    out: dict[int, Skipped] = {}
    for indices in shared.values():
        if len(indices) < 2:
            continue
        distinct = _same_bytes(reads, indices)
        for members in distinct:
            out.update((i, Skipped(reads[i].path, DUPLICATE)) for i in members[1:])
        firsts = [members[0] for members in distinct]
        if len(firsts) == 1:
            continue
        values = {i: decoded(reads[i].path) for i in firsts}
        usable = [i for i in firsts if not isinstance(values[i], str)]
        keep = max(usable, key=lambda i: (sum(support[entry[0]] for entry in reads[i].images), -i)) if usable else firsts[0]
        used = reads[keep].path
        for i in firsts:
            if i == keep:
                continue
            path, value = reads[i].path, values[i]
            if isinstance(value, str):
                out[i] = Skipped(path, f"{value}; a damaged copy (the same SOP Instance UID) of {used}, which is used",
                                 failed=True)  # fmt: skip
            elif not isinstance(values[keep], str) and _same_image(reads[i], reads[keep], value, values[keep]):
                out[i] = Skipped(path, DUPLICATE)
            else:
                out[i] = Skipped(path, f"conflicting copy: the same SOP Instance UID as {used}, but another image: "
                                       "not used", failed=True)  # fmt: skip
    return out


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
