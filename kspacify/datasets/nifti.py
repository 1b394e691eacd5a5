"""Complex NIfTI volumes, and magnitude + phase (or real + imaginary) NIfTI pairs.

Array layout: NIfTI arrays are read as stored, (H, W) = array axes (0, 1), slices along axis 2; a 2D
image is one slice; a 4D file (H, W, S, T) holds T 3D volumes (echoes, repetitions). No
reorientation is done (the affine is ignored). Each 3D volume is normalized on its own; a 4D file is
still ONE volume key (its frames share a subject, so they must share a split), and its slices are
numbered t * S + z (`source` gives volume_index t and slice_in_volume z). Trailing singleton axes
beyond the third are dropped; more than 4 non-singleton axes is an error.

Pairing (files in the same directory, case-insensitive): a tag after a `_` or `-` and followed by
`_` or the end of the name marks the part, and the name without the tag is what pairs:

    magnitude: _mag, _magnitude, _part-mag       phase: _phase, _pha, _ph, _part-phase
    real:      _real, _part-real                 imaginary: _imag, _imaginary, _part-imag

e.g. `X_mag.nii.gz` + `X_phase.nii.gz`, BIDS `sub-01_part-mag_T2starw.nii.gz` +
`sub-01_part-phase_T2starw.nii.gz` (key `sub-01_T2starw`). A phase file whose tagged magnitude is
missing pairs with the untagged real-valued file of the same name (dcm2niix writes `X.nii` +
`X_ph.nii`). Unpaired real-valued files are skipped (magnitude only: no phase).

A JSON sidecar beside a volume (`<untagged name>.json` or `<file stem>.json`) says what the files
cannot: the subject (a `subject` field; `kspacify data build`'s `volume.subject`; a text starting
with "unknown" marks the subject as unknown, `meta["subject_unknown"]`) and the acquisition
(dcm2niix/BIDS keys: MagneticFieldStrength, EchoTime in s, ScanningSequence, ...).

Phase units are inferred from the range [lo, hi] of the finite phase values (a wrapped phase map
spans most of its cycle, so its range identifies the unit):

    lo >= -pi and hi <= pi (0.1% slack)        radians, used as is
    lo >= 0 and hi <= 2 pi (0.1% slack)        radians in [0, 2pi), wrapped
    lo >= -4096 and hi <= 4096, lo < 0         Siemens signed 12-bit: phase * pi / 4096
    lo >= 0 and hi <= 4096                     unsigned 12-bit (0..4095): phase * pi / 2048 - pi
    anything else                              not recognized: the volume is skipped (DataError)

Values are read through the NIfTI scaling (scl_slope/scl_inter), as nibabel applies it. The phase
is wrapped to [-pi, pi) afterwards; image = magnitude * exp(1j * phase).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import nibabel
import numpy as np

from kspacify.acquisition import from_header_fields
from kspacify.datasets.base import ComplexSlice, VolumeRef, make_slices
from kspacify.datasets.resize import to_square_size
from kspacify.errors import DataError
from kspacify.phase.base import wrap

READER_COMPLEX = "nifti-complex"
READER_PAIR = "nifti-pair"
SUFFIXES = (".nii", ".nii.gz")

_ROLE_OF_TAG = {
    "part-mag": "mag",
    "magnitude": "mag",
    "mag": "mag",
    "part-phase": "phase",
    "phase": "phase",
    "pha": "phase",
    "ph": "phase",
    "part-real": "real",
    "real": "real",
    "part-imag": "imag",
    "imaginary": "imag",
    "imag": "imag",
}
_TAG_PATTERN = re.compile(
    r"^(?P<pre>.+?)[_-](?P<tag>" + "|".join(sorted(_ROLE_OF_TAG, key=len, reverse=True)) + r")(?P<post>_.*)?$",
    re.IGNORECASE,
)
_PARTNER = {"mag": "phase", "real": "imag"}


def stem(path: Path) -> str:
    """File name without .nii / .nii.gz."""
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def split_tag(name: str) -> tuple[str, str] | None:
    """(role, name without the tag) for a tagged file stem, else None."""
    match = _TAG_PATTERN.match(name)
    if match is None:
        return None
    return _ROLE_OF_TAG[match["tag"].lower()], match["pre"] + (match["post"] or "")


def phase_to_radians(phase: np.ndarray) -> tuple[np.ndarray, str]:
    """Phase in radians wrapped to [-pi, pi) (float32) and the rule used (see module doc)."""
    phase = np.asarray(phase, dtype=np.float64)
    finite = phase[np.isfinite(phase)]
    if finite.size == 0:
        return np.zeros(phase.shape, np.float32), "empty"
    lo, hi = float(finite.min()), float(finite.max())
    slack = 1e-3
    if lo >= -np.pi * (1 + slack) and hi <= np.pi * (1 + slack):
        radians, rule = phase, "radians"
    elif lo >= -slack and hi <= 2 * np.pi * (1 + slack):
        radians, rule = phase, "radians [0, 2pi)"
    elif lo >= -4096.5 and hi <= 4096.5 and lo < 0:
        radians, rule = phase * (np.pi / 4096.0), "siemens signed 12-bit (x * pi / 4096)"
    elif lo >= 0 and hi <= 4096.5:
        radians, rule = phase * (np.pi / 2048.0) - np.pi, "unsigned 12-bit (x * pi / 2048 - pi)"
    else:
        raise DataError(f"phase range [{lo:g}, {hi:g}] is neither radians nor 12-bit scanner units")
    radians = np.where(np.isfinite(radians), radians, 0.0)
    return wrap(radians), rule


@dataclass(frozen=True)
class _Entry:
    path: Path
    shape: tuple[int, ...]
    complex: bool


def _probe(path: Path) -> _Entry:
    image = nibabel.load(str(path))
    dtype = image.get_data_dtype()  # type: ignore[attr-defined]
    return _Entry(path, tuple(int(n) for n in image.shape), bool(np.issubdtype(dtype, np.complexfloating)))  # type: ignore[attr-defined]


def scan_directory(
    paths: list[Path], key_of: Callable[[Path, str], str]
) -> tuple[list[VolumeRef], list[tuple[Path, str, bool]]]:
    """Refs for the NIfTI files of one directory, and (path, reason, failed) for those skipped.

    `key_of(path, name)` turns a file and its untagged name into a volume key.
    """
    refs: list[VolumeRef] = []
    skipped: list[tuple[Path, str, bool]] = []
    entries: dict[Path, _Entry] = {}
    for path in sorted(paths):
        try:
            entries[path] = _probe(path)
        except Exception as error:  # nibabel raises many kinds on corrupt files
            skipped.append((path, f"unreadable NIfTI ({type(error).__name__}: {error})", True))

    # role -> {untagged name -> path}
    tagged: dict[str, dict[str, Path]] = {role: {} for role in ("mag", "phase", "real", "imag")}
    plain: dict[str, Path] = {}
    for path, entry in entries.items():
        name = stem(path)
        if entry.complex:
            refs.append(
                VolumeRef(key=key_of(path, name), file=str(path), reader=READER_COMPLEX, shape=entry.shape)
            )
            continue
        tag = split_tag(name)
        if tag is None:
            plain[name] = path
            continue
        role, base = tag
        if base in tagged[role]:
            skipped.append((path, f"duplicate {role} file for '{base}' (using {tagged[role][base].name})", False))
            continue
        tagged[role][base] = path

    used: set[Path] = set()
    for first, second in _PARTNER.items():
        for base, path in sorted(tagged[first].items()):
            partner = tagged[second].get(base)
            if partner is None:
                continue
            refs.append(_pair_ref(path, partner, first, entries, key_of(path, base)))
            used.update((path, partner))
    # dcm2niix: X.nii (magnitude) + X_ph.nii (phase)
    for base, path in sorted(tagged["phase"].items()):
        if path in used or base not in plain:
            continue
        magnitude = plain.pop(base)
        refs.append(_pair_ref(magnitude, path, "mag", entries, key_of(magnitude, base)))
        used.update((magnitude, path))

    for role, files in tagged.items():
        for base, path in files.items():
            if path not in used:
                wanted = {"mag": "phase", "phase": "magnitude", "real": "imaginary", "imag": "real"}[role]
                skipped.append((path, f"{role} NIfTI without a {wanted} partner for '{base}'", False))
    for path in plain.values():
        skipped.append((path, "real-valued NIfTI without a phase partner (magnitude only)", False))
    return sorted((_with_sidecar(ref) for ref in refs), key=lambda ref: ref.file), sorted(skipped)


def _sidecar(ref: VolumeRef) -> dict[str, Any]:
    """The JSON object beside the volume (see module doc), or {} when there is none or it is unusable."""
    first = Path(ref.file)
    names = [stem(first) + ".json"]
    tag = split_tag(stem(first))
    if tag is not None:
        names.insert(0, tag[1] + ".json")
    for name in names:
        path = first.with_name(name)
        try:
            if path.is_file() and path.stat().st_size < 1 << 20:
                data = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(data, dict):
                    return data
        except (OSError, ValueError, RecursionError):
            continue
    return {}


def _with_sidecar(ref: VolumeRef) -> VolumeRef:
    data = _sidecar(ref)
    if not data:
        return ref
    volume: dict[str, Any] = data["volume"] if isinstance(data.get("volume"), dict) else {}
    subject = data.get("subject", volume.get("subject"))
    meta = dict(ref.meta)
    patient = ref.patient
    if isinstance(subject, str) and subject.strip():
        if subject.strip().lower().startswith("unknown"):
            meta["subject_unknown"] = True
        else:
            patient = subject.strip()
    return replace(ref, patient=patient, meta=meta, acquisition=from_header_fields(data, seconds=True))


def _pair_ref(
    first: Path,
    second: Path,
    kind: str,
    entries: dict[Path, _Entry],
    key: str,
) -> VolumeRef:
    shape = entries[first].shape
    meta: dict[str, Any] = {"pair": "magnitude+phase" if kind == "mag" else "real+imaginary"}
    if entries[second].shape != shape:
        meta["shape_mismatch"] = [list(shape), list(entries[second].shape)]
    return VolumeRef(key=key, file=str(first), reader=READER_PAIR, shape=shape, partner=str(second), meta=meta)


def _volumes(array: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, S) or (H, W, S, T[, 1...]) -> (T, H, W, S)."""
    while array.ndim > 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4:
        raise DataError(f"unsupported NIfTI shape {array.shape}")
    return np.moveaxis(array, 3, 0)


def _load(path: str, dtype: type) -> np.ndarray:
    return np.asarray(nibabel.load(path).get_fdata(dtype=dtype))  # type: ignore[attr-defined]


def read(ref: VolumeRef, size: int = 256) -> Iterator[ComplexSlice]:
    """The slices of one complex NIfTI or magnitude/phase (real/imaginary) pair."""
    source: dict[str, Any] = {"file": ref.file, "reader": ref.reader, "original_shape": list(ref.shape)}
    try:
        if ref.reader == READER_COMPLEX:
            volume = _load(ref.file, np.complex128)
        else:
            assert ref.partner is not None
            first = _load(ref.file, np.float64)
            second = _load(ref.partner, np.float64)
            if first.shape != second.shape:
                raise DataError(f"{ref.file} and {ref.partner} differ in shape: {first.shape} vs {second.shape}")
            source["partner"] = ref.partner
            if ref.meta.get("pair") == "real+imaginary":
                volume = first + 1j * second
            else:
                radians, rule = phase_to_radians(second)
                source["phase_units"] = rule
                volume = np.abs(first) * np.exp(1j * radians.astype(np.float64))
    except DataError:
        raise
    except Exception as error:
        raise DataError(f"{ref.file}: could not read ({type(error).__name__}: {error})") from error

    frames = _volumes(volume)
    n_slices = frames.shape[-1]
    source["resize"] = "centre-crop-square+fourier"
    for t, frame in enumerate(frames):
        images = np.stack([to_square_size(frame[:, :, z], size) for z in range(n_slices)])
        indices = [t * n_slices + z for z in range(n_slices)]
        per_slice = [{"volume_index": t, "slice_in_volume": z} for z in range(n_slices)]
        yield from make_slices(images, ref.key, source, slice_indices=indices, per_slice=per_slice)
