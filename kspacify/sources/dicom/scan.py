"""The scan: each path's header is read once, classified (MR image or what else it is), its frames
keyed and grouped; the volumes follow once every path has been read.

Every file ends as part of a volume or as a `Skipped` with its reason: a damaged or hostile file
never raises out of here (whatever pydicom raises is caught and named by type only).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..base import Pseudonymizer, Skipped, VolumeInfo
from .grouping import Grouper, keyed_images
from .header import GZIP_MAGIC, PIXEL_MODULE, FileSkip, get, quiet, read_header
from .records import DICOMDIR_SOP, KEEP_SOP, read_frames, sop_skip_reason

__all__ = ["looks_like_dicom", "scan_dicom"]


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


def scan_dicom(
    paths: Iterable[Path], pseudonymize: Pseudonymizer, *, keep_components: bool = False
) -> Iterator[VolumeInfo | Skipped]:
    """Read headers of `paths`; yield Skipped for files not used (as found), then the volumes."""
    grouper = Grouper()
    seen_instances: set[bytes] = set()
    patients: dict[str, str] = {}

    for p in paths:
        path = str(p)
        if os.path.basename(path).upper() == "DICOMDIR":
            yield Skipped(path, "DICOMDIR (media directory, not an image)")
            continue
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
                if sop_uid:
                    digest = hashlib.blake2b(sop_uid.encode(), digest_size=12).digest()
                    if digest in seen_instances:
                        raise FileSkip("duplicate copy of an image already found in another file")
                images, reason = keyed_images(path, ds, read_frames(ds, sop), keep_components, native)
                if reason:
                    raise FileSkip(reason)
                if sop_uid:
                    seen_instances.add(digest)
                pid = str(get(ds, "PatientID") or "")
        except FileSkip as skip:
            yield Skipped(path, skip.reason, failed=skip.failed)
            continue
        except Exception as exc:  # never raise for a user's bad file
            yield Skipped(path, f"unreadable DICOM header ({type(exc).__name__})", failed=True)
            continue
        if pid not in patients:
            patients[pid] = pseudonymize(pid)
        for key, facts, slices, diffusion in images:
            grouper.add(key, facts, slices, patients[pid], diffusion)

    yield from grouper.volumes(pseudonymize)
