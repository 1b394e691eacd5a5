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
    "NIFTI_BESIDE_DICOM",
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


NIFTI_BESIDE_DICOM = (
    "NIfTI file in a folder that also holds DICOM files, most likely converted from them: not converted, "
    "so one scan does not enter the data twice under two patient pseudonyms (name the file to convert it)"
)


def scan(found: Iterable[Found], pseudonymize: Pseudonymizer, *, keep_components: bool = False,
         nifti_beside_dicom: bool = False, workers: int = 1) -> Iterator[VolumeInfo | Skipped]:
    """Volumes in the inputs: NIfTI volumes first, then DICOM ones, once every path has been read
    (DICOM files are grouped into series; headers only).

    A NIfTI file met in a directory walk whose folder (or a folder below it) also holds DICOM
    images that make a volume is skipped with `NIFTI_BESIDE_DICOM` as its reason, unless
    `nifti_beside_dicom`: such a file is usually a conversion of them (dcm2niix writes beside its
    input), and both would enter the data as two patients. NIfTI files named explicitly are
    always read. `workers` > 1 reads DICOM headers in that many processes (same result).
    """
    from kspacify.sources.dicom import looks_like_dicom, scan_dicom

    dicom_paths: list[Path] = []
    quiet_if_not_dicom: set[str] = set()
    walked_nifti: list[Path] = []
    for item in found:
        if isinstance(item, Skipped):
            yield item
        elif is_nifti(item.path):
            if item.explicit or nifti_beside_dicom:
                yield from scan_nifti([item.path], pseudonymize)
            else:
                walked_nifti.append(item.path)
        else:
            dicom_paths.append(item.path)
            if not item.explicit and not looks_like_dicom(item.path):
                quiet_if_not_dicom.add(str(item.path))
    dicom = list(scan_dicom(dicom_paths, pseudonymize, keep_components=keep_components, workers=workers))
    dicom_folders: set[Path] = set()  # folders above a file of a DICOM volume
    for result in dicom if walked_nifti else ():
        for path in result.files if isinstance(result, VolumeInfo) else ():
            for folder in Path(path).parents:
                if folder in dicom_folders:
                    break
                dicom_folders.add(folder)
    for path in walked_nifti:
        if path.parent in dicom_folders:
            yield Skipped(str(path), NIFTI_BESIDE_DICOM, failed=False)
        else:
            yield from scan_nifti([path], pseudonymize)
    for result in dicom:
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
