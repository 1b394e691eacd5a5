"""Sources: turn the user's inputs (files, directories, globs, stdin) into volumes.

`discover` expands inputs into file paths (one at a time; directories are walked in sorted order),
`scan` reads headers and yields a `VolumeInfo` per volume or a `Skipped` per file it cannot use, and
`load` reads one volume's pixels. Only these three are called from the pipeline. Every file met is
either yielded or reported: unreadable folders, links to folders, FIFOs and devices (which would
block a reader forever) are Skipped with their reason, never opened.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

if TYPE_CHECKING:
    import numpy as np

from kspacify.sources.base import PhaseError, PhaseSlices, Pseudonymizer, Skipped, SourceError, Volume, VolumeInfo
from kspacify.sources.checks import check
from kspacify.sources.nifti import is_nifti, load_nifti, scan_nifti, sidecar_of
from kspacify.termination import check as stop_if_signalled

__all__ = [
    "Found",
    "NIFTI_BESIDE_DICOM",
    "PhaseError",
    "PhaseSlices",
    "Pseudonymizer",
    "Skipped",
    "SourceError",
    "Volume",
    "VolumeInfo",
    "check",
    "discover",
    "load",
    "load_phase",
    "scan",
]

_GLOB_CHARS = set("*?[")
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"))  # fmt: skip


@dataclass(frozen=True)
class Found:
    """A file to consider; `explicit` when the user named it (rather than it turning up in a walk)."""

    path: Path
    explicit: bool


def _matches(path: Path, patterns: Sequence[str]) -> bool:
    text = str(path)
    return any(fnmatch.fnmatch(path.name, p) or fnmatch.fnmatch(text, p) for p in patterns)


def _not_regular(path: str) -> str:
    """Why `path` (not a regular file) is no input: what it is, or why it cannot be looked at."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "broken symbolic link" if os.path.islink(path) else "no such file or directory"
    except OSError as error:
        return f"unreadable: {error.strerror or error}"
    kind = next((what for test, what in _KINDS if test(mode)), "not a file")
    return f"not a regular file ({kind})"


def discover(
    inputs: Iterable[str],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Iterator[Found | Skipped]:
    """Expand inputs to files. Missing inputs become Skipped(failed=True); hidden files are ignored
    in walks (as `.DS_Store` and friends should be); include/exclude globs match the name or path.
    Only regular files are yielded (a FIFO would block its reader); a file reached twice (given
    twice, or through a link) is yielded once."""

    def wanted(path: Path) -> bool:
        if include and not _matches(path, include):
            return False
        return not (exclude and _matches(path, exclude))

    seen: set[str] = set()
    for text in inputs:
        yield from _expand(text, wanted, seen, include, exclude)


def _expand(text: str, wanted: Callable[[Path], bool], seen: set[str], include: Sequence[str],
            exclude: Sequence[str]) -> Iterator[Found | Skipped]:  # fmt: skip
    path = Path(text)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        yield from _walk(path, wanted, seen)
    elif mode is not None and stat.S_ISREG(mode):
        if wanted(path):
            yield from _once(path, os.path.realpath(path), True, seen)
    elif mode is None and _GLOB_CHARS & set(text) and not os.path.lexists(path):
        matches = sorted(glob.glob(text, recursive=True))
        if not matches:
            yield Skipped(text, "no file matches this pattern", failed=True)
        for match in matches:
            yield from _expand(match, wanted, seen, include, exclude)
    else:
        yield Skipped(text, _not_regular(text), failed=True)  # named by the user: a fault either way


def _once(path: Path, real: str, explicit: bool, seen: set[str]) -> Iterator[Found | Skipped]:
    if real in seen:
        yield Skipped(str(path), "the same file as another input (given twice, or through a link)")
    else:
        seen.add(real)
        yield Found(path, explicit=explicit)


def _walk(root: Path, wanted: Callable[[Path], bool], seen: set[str]) -> Iterator[Found | Skipped]:
    """Files under `root`, depth first in sorted order (as `os.walk` top-down), without recursion
    (so any depth works); links to folders are not followed (a link cycle would never end)."""
    stack = [(root, os.path.realpath(root))]
    while stack:
        folder, real_folder = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as error:
            yield Skipped(str(folder), f"unreadable directory: {error.strerror or error}", failed=True)
            continue
        folders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append((path, os.path.join(real_folder, entry.name)))
                    continue
                regular = entry.is_file()
                link = entry.is_symlink()
            except OSError:
                regular, link = False, False
            if not wanted(path):
                continue
            if regular:
                real = os.path.realpath(path) if link else os.path.join(real_folder, entry.name)
                yield from _once(path, real, False, seen)
            elif link and os.path.isdir(path):
                yield Skipped(str(path), "link to a directory (not followed)")
            else:
                reason = _not_regular(str(path))
                # a FIFO, socket or device is not an archive's file; a broken link or an unreadable
                # entry is a file lost
                yield Skipped(str(path), reason, failed=not reason.startswith("not a regular file"))
        stack.extend(reversed(folders))


NIFTI_BESIDE_DICOM = (
    "NIfTI file in a folder that also holds DICOM files, most likely converted from them: not converted, "
    "so one scan does not enter the data twice under two patient pseudonyms (name the file, or give --nifti-beside-dicom, to convert it)"
)


def scan(found: Iterable[Found], pseudonymize: Pseudonymizer, *, keep_components: bool = False,
         keep_names: bool = False, nifti_beside_dicom: bool = False,
         workers: int = 1) -> Iterator[VolumeInfo | Skipped]:  # fmt: skip
    """Volumes in the inputs: NIfTI volumes first, then DICOM ones, once every path has been read
    (DICOM files are grouped into series; headers only). Every volume passes `checks.check`
    (claimed sizes against the files' real sizes, slice gaps, spacing).

    A NIfTI file met in a directory walk is skipped with `NIFTI_BESIDE_DICOM` as its reason,
    unless `nifti_beside_dicom`, when its folder also holds DICOM images that make a volume, or
    when its JSON sidecar says dcm2niix made it and DICOM images of a volume lie below its folder
    (`dcm2niix study/` writes into study/, beside the series folders): such a file is a
    conversion of them, and both would enter the data as two patients. A NIfTI merely somewhere
    above DICOM folders, without such a sidecar, is converted; one named explicitly always is.
    `workers` > 1 reads DICOM headers in that many processes (same result).
    """
    from kspacify.sources.dicom import looks_like_dicom, scan_dicom

    dicom_paths: list[Path] = []
    quiet_if_not_dicom: set[str] = set()
    walked_nifti: list[Path] = []
    for item in found:
        stop_if_signalled()
        if isinstance(item, Skipped):
            yield item
        elif is_nifti(item.path):
            if item.explicit or nifti_beside_dicom:
                yield from map(_checked, scan_nifti([item.path], pseudonymize, keep_names=keep_names))
            else:
                walked_nifti.append(item.path)
        else:
            dicom_paths.append(item.path)
            if not item.explicit and not looks_like_dicom(item.path):
                quiet_if_not_dicom.add(str(item.path))
    dicom = list(scan_dicom(_checked_paths(dicom_paths), pseudonymize, keep_components=keep_components,
                            workers=workers))
    holding: set[Path] = set()  # folders with a file of a DICOM volume in them
    above: set[Path] = set()  # and every folder above those
    for result in dicom if walked_nifti else ():
        for path in result.files if isinstance(result, VolumeInfo) else ():
            holding.add(Path(path).parent)
            for folder in Path(path).parents:
                if folder in above:
                    break
                above.add(folder)
    for path in walked_nifti:  # type: ignore[assignment]
        stop_if_signalled()
        if path.parent in holding or (path.parent in above and _made_by_dcm2niix(path)):  # type: ignore[arg-type, attr-defined]
            yield Skipped(str(path), NIFTI_BESIDE_DICOM, failed=False)
        else:
            yield from map(_checked, scan_nifti([path], pseudonymize, keep_names=keep_names))  # type: ignore[list-item]
    for result in dicom:
        if isinstance(result, Skipped) and result.path in quiet_if_not_dicom:
            # a file met in a directory walk that neither looks nor parses like DICOM: not a fault
            what = "a gzip file that holds no DICOM" if result.path.lower().endswith(".gz") else "not a DICOM or NIfTI file"
            yield Skipped(result.path, what, failed=False)
        else:
            yield _checked(result)


def _made_by_dcm2niix(path: Path) -> bool:
    """The NIfTI file's JSON sidecar names dcm2niix as its ConversionSoftware."""
    sidecar = sidecar_of(path)
    try:
        if not sidecar.is_file() or sidecar.stat().st_size > 1 << 20:
            return False
        software = json.loads(sidecar.read_text(encoding="utf-8")).get("ConversionSoftware", "")
        return "dcm2niix" in str(software).lower()
    except (OSError, ValueError, AttributeError):
        return False


def _checked_paths(paths: list[Path]) -> Iterator[Path]:
    """The paths, stopping between two files on SIGTERM or Ctrl-C (a header scan can take minutes)."""
    for path in paths:
        stop_if_signalled()
        yield path


def _checked(result: VolumeInfo | Skipped) -> VolumeInfo | Skipped:
    return check(result) if isinstance(result, VolumeInfo) else result


def load(info: VolumeInfo, with_phase: bool = False) -> Volume:
    """Read one volume's pixels (float32, slices x rows x cols) and, `with_phase`, the acquired phase
    paired with it where it has one (radians, the same shape); raises SourceError (PhaseError when
    it is the phase that cannot be read or interpreted)."""
    if info.source_kind == "nifti":
        return Volume(info, load_nifti(info))
    if info.source_kind == "dicom":
        from kspacify.sources.dicom import load_dicom, load_phase

        data = load_dicom(info)
        return Volume(info, data, load_phase(info) if with_phase and info.phase is not None else None)
    raise SourceError(f"unknown source kind {info.source_kind!r}")


def load_phase(info: VolumeInfo) -> np.ndarray:
    """The acquired phase paired with a volume (`info.phase`): radians [-pi, pi), float32, the shape
    and orientation of its magnitudes; raises PhaseError."""
    from kspacify.sources.dicom import load_phase as load_dicom_phase

    return load_dicom_phase(info)
