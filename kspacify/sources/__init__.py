"""Sources: turn the user's inputs (files, directories, globs, stdin) into volumes.

`discover` expands inputs into file paths (one at a time; directories are walked in sorted order),
`scan` reads headers and yields a `VolumeInfo` per volume or a `Skipped` per file it cannot use, and
`load` reads one volume's pixels. Only these three are called from the pipeline.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from kspacify.sources.base import Pseudonymizer, Skipped, SourceError, Volume, VolumeInfo
from kspacify.sources.nifti import is_nifti, load_nifti, scan_nifti

__all__ = [
    "Found",
    "Pseudonymizer",
    "Skipped",
    "SourceError",
    "Volume",
    "VolumeInfo",
    "discover",
    "load",
    "scan",
]

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Found:
    """A file to consider; `explicit` when the user named it (rather than it turning up in a walk)."""

    path: Path
    explicit: bool


def _matches(path: Path, patterns: Sequence[str]) -> bool:
    text = str(path)
    return any(fnmatch.fnmatch(path.name, p) or fnmatch.fnmatch(text, p) for p in patterns)


def discover(
    inputs: Iterable[str],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Iterator[Found | Skipped]:
    """Expand inputs to files. Missing inputs become Skipped(failed=True); hidden files are ignored
    in walks (as `.DS_Store` and friends should be); include/exclude globs match the name or path."""

    def wanted(path: Path) -> bool:
        if include and not _matches(path, include):
            return False
        return not (exclude and _matches(path, exclude))

    for text in inputs:
        path = Path(text)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith("."):
                        continue
                    child = Path(root) / name
                    if wanted(child):
                        yield Found(child, explicit=False)
        elif path.is_file():
            if wanted(path):
                yield Found(path, explicit=True)
        elif _GLOB_CHARS & set(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                yield Skipped(text, "no file matches this pattern", failed=True)
            for match in matches:
                yield from discover([match], include, exclude)
        else:
            yield Skipped(text, "no such file or directory", failed=True)


def scan(found: Iterable[Found], pseudonymize: Pseudonymizer, *, keep_components: bool = False) -> Iterator[VolumeInfo | Skipped]:
    """Volumes in the inputs. NIfTI files are yielded as they come; DICOM files are grouped into
    series, so DICOM volumes follow once every path has been read (headers only)."""
    from kspacify.sources.dicom import looks_like_dicom, scan_dicom

    dicom_paths: list[Path] = []
    quiet_if_not_dicom: set[str] = set()
    for item in found:
        if isinstance(item, Skipped):
            yield item
        elif is_nifti(item.path):
            yield from scan_nifti([item.path], pseudonymize)
        else:
            dicom_paths.append(item.path)
            if not item.explicit and not looks_like_dicom(item.path):
                quiet_if_not_dicom.add(str(item.path))
    for result in scan_dicom(dicom_paths, pseudonymize, keep_components=keep_components):
        if isinstance(result, Skipped) and result.path in quiet_if_not_dicom:
            # a file met in a directory walk that neither looks nor parses like DICOM: not a fault
            what = "a gzip file that holds no DICOM" if result.path.lower().endswith(".gz") else "not a DICOM or NIfTI file"
            yield Skipped(result.path, what, failed=False)
        else:
            yield result


def load(info: VolumeInfo) -> Volume:
    """Read one volume's pixels (float32, slices x rows x cols); raises SourceError."""
    if info.source_kind == "nifti":
        return Volume(info, load_nifti(info))
    if info.source_kind == "dicom":
        from kspacify.sources.dicom import load_dicom

        return Volume(info, load_dicom(info))
    raise SourceError(f"unknown source kind {info.source_kind!r}")
