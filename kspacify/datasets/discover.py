"""Walk a file or directory, dispatch each file to the reader that understands it, skip the rest.

The walk is recursive, sorted and deterministic (directories and files in name order; symlinked
directories are not followed; hidden directories, names starting with '.', are not entered). Each
file that is not used gets exactly one log line naming the reason (INFO for files that are simply
not image data, e.g. a sidecar .json; WARNING for faults such as a corrupt file).

Dispatch by name: .h5/.hdf5 -> fastMRI k-space; .nii/.nii.gz -> complex NIfTI or magnitude/phase
pairs (paired within a directory); .npy -> complex arrays; everything else is skipped.

Volume keys: the path of the file relative to the scanned directory, in POSIX form, without the
extension and without a magnitude/phase tag (e.g. `knee/file1000001`, `sub-01/anat/sub-01_T2starw`);
for a single file given directly, its name without extension. Keys that would collide (the same
name in two formats) fall back to the relative file name with its extension.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Literal

from kspacify.datasets import fastmri, nifti, npy
from kspacify.datasets.base import ComplexSlice, Skipped, VolumeRef, log
from kspacify.errors import DataError

_READERS = {
    fastmri.READER: fastmri.read,
    nifti.READER_COMPLEX: nifti.read,
    nifti.READER_PAIR: nifti.read,
    npy.READER: npy.read,
}


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(nifti.SUFFIXES):
        return "nifti"
    if name.endswith(fastmri.SUFFIXES):
        return "fastmri"
    if name.endswith(npy.SUFFIXES):
        return "npy"
    if name.endswith(".json"):
        return "sidecar"
    return "other"


def _strip_extension(name: str) -> str:
    lower = name.lower()
    for suffix in (*nifti.SUFFIXES, *fastmri.SUFFIXES, *npy.SUFFIXES):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _walk(root: Path) -> Iterator[tuple[Path, list[Path]]]:
    """(directory, its files sorted) for every directory under root, in sorted order."""
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        hidden = sorted(d for d in dirnames if d.startswith("."))
        for name in hidden:
            log.info("skipped %s: hidden directory", Path(directory) / name)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield Path(directory), [Path(directory) / name for name in sorted(filenames)]


def scan(path: str | os.PathLike[str]) -> tuple[list[VolumeRef], list[Skipped]]:
    """All volumes under `path` (a file or a directory) and the files skipped, without loading pixels."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no such file or directory: {root}")
    if root.is_file():
        groups = [(root.parent, [root])]
        base = root.parent
        single = True
    else:
        groups = list(_walk(root))
        base = root
        single = False

    def key_of(file: Path, name: str) -> str:
        if single:
            return name
        parent = file.parent.relative_to(base).as_posix()
        return name if parent == "." else f"{parent}/{name}"

    refs: list[VolumeRef] = []
    skipped: list[Skipped] = []
    for _directory, files in groups:
        niftis: list[Path] = []
        for file in files:
            kind = _kind(file)
            if kind == "nifti":
                niftis.append(file)
            elif kind in ("fastmri", "npy"):
                module = fastmri if kind == "fastmri" else npy
                found = module.scan(file, key_of(file, _strip_extension(file.name)))
                if isinstance(found, VolumeRef):
                    refs.append(found)
                else:
                    skipped.append(Skipped(str(file), found, failed=found.startswith("unreadable")))
            elif kind == "sidecar":
                skipped.append(Skipped(str(file), "sidecar JSON (metadata, not image data)"))
            else:
                skipped.append(Skipped(str(file), "not a supported image file (.h5, .nii, .nii.gz, .npy)"))
        if niftis:
            found_refs, found_skips = nifti.scan_directory(niftis, key_of)
            refs.extend(found_refs)
            skipped.extend(Skipped(str(p), reason, failed) for p, reason, failed in found_skips)

    counts = Counter(ref.key for ref in refs)
    refs = [
        replace(ref, key=key_of(Path(ref.file), Path(ref.file).name))
        if counts[ref.key] > 1
        else ref
        for ref in refs
    ]
    refs.sort(key=lambda ref: (ref.key, ref.file))
    skipped.sort(key=lambda item: item.path)
    return refs, skipped


def log_skipped(skipped: list[Skipped]) -> None:
    """One log line per skipped file (INFO when not for us, WARNING when it failed)."""
    for item in skipped:
        log.log(30 if item.failed else 20, "skipped %s: %s", item.path, item.reason)


def list_volumes(path: str | os.PathLike[str]) -> list[VolumeRef]:
    """Volumes under `path` (key, file(s), reader; no pixels), sorted by key; skipped files are logged."""
    refs, skipped = scan(path)
    log_skipped(skipped)
    return refs


def read_volume(ref: VolumeRef, size: int = 256) -> Iterator[ComplexSlice]:
    """The normalized size x size slices of one listed volume (raises DataError on a bad file)."""
    try:
        reader = _READERS[ref.reader]
    except KeyError:
        raise DataError(f"unknown reader {ref.reader!r} for {ref.file}") from None
    yield from reader(ref, size)


def iter_slices(
    path: str | os.PathLike[str],
    size: int = 256,
    on_error: Literal["skip", "raise"] = "skip",
) -> Iterator[ComplexSlice]:
    """Every complex slice under `path` (file or directory), volume by volume in key order.

    A volume that fails to read is logged (WARNING) and skipped with on_error="skip", or raises.
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    for ref in list_volumes(path):
        try:
            slices = list(read_volume(ref, size))
        except DataError as error:
            if on_error == "raise":
                raise
            log.warning("skipped %s: %s", ref.file, error)
            continue
        yield from slices
