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
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ...termination import check as stop_if_signalled
from ..base import Pseudonymizer, Skipped, VolumeInfo
from .grouping import Grouper, keyed_images
from .header import GZIP_MAGIC, PIXEL_MODULE, FileSkip, get, quiet, read_header
from .records import DICOMDIR_SOP, KEEP_SOP, read_frames, sop_skip_reason

__all__ = ["FileRead", "looks_like_dicom", "read_file", "scan_dicom"]


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
    (`skip`), or its SOP instance digest (copies of one image are kept once, the first in input
    order), the reason it is skipped if it is no such copy (`late_skip`), and its images."""

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
                raise FileSkip(sop_skip_reason(sop))
            if not has_pixels:
                missing = [k for k in PIXEL_MODULE if get(ds, k) is None]
                if missing:  # an image header cut short before its pixel module ended
                    raise FileSkip("incomplete image header and no pixel data (truncated file?)", failed=True)
                raise FileSkip("no pixel data")
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
    """Read headers of `paths`; yield Skipped for files not used (as found), then the volumes.

    With `workers` > 1 (and enough files) the files are read by that many processes; the result
    is the same, since everything that depends on other files is done here, in input order.
    """
    grouper = Grouper(keep_components)
    seen_instances: set[bytes] = set()
    patients: dict[str, str] = {}
    with _reads(paths, keep_components, workers) as reads:
        for read in reads:
            if workers > 1:
                stop_if_signalled()  # (read here, the caller's own checks between paths do it)
            if read.skip is not None:
                yield read.skip
                continue
            if read.digest is not None and read.digest in seen_instances:
                yield Skipped(read.path, "duplicate copy of an image already found in another file")
                continue
            if read.late_skip is not None:
                yield read.late_skip
                continue
            if read.digest is not None:
                seen_instances.add(read.digest)
            pid = read.patient_id
            if pid not in patients:
                patients[pid] = pseudonymize(pid)
            for key, facts, slices, diffusion in read.images:
                grouper.add(key, facts, slices, patients[pid], diffusion)

    yield from grouper.volumes(pseudonymize)


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
