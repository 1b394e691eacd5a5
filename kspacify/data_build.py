"""`kspacify data build`: complex training pairs from open magnitude volumes, with physics phase.

No open complex MRI large enough to train a phase generator can be had without network access
beyond the package index, but real magnitude volumes ship inside packages that install from it
(`CATALOGUE`: nilearn's MNI152 template, a few dipy/nibabel/pydicom test volumes). This module finds
them (installed packages, or wheels given as files, read without installing), adds the user's own
magnitude NIfTI/DICOM (the same inputs as `convert`), and for every volume:

1. takes slices along the native slice axis and, where the volume is 3D and isotropic, along the two
   other array axes too (resliced planes are flipped so the old slice normal points up the image:
   for an axial source, superior at the top, as coronal and sagittal images are shown);
2. resizes and normalizes them exactly as `convert` does (`kspacify.preprocess`: one scale per
   volume, the native volume's `percentile`-th percentile);
3. drops near-empty slices (fewer than `min_tissue` of the pixels above 0.1);
4. rescales the kept stack by the dataset readers' rule (their fixed 99.5th percentile),
   so what is stored is what `iter_slices` yields: the readers renormalize every file by its own
   99.5th percentile, which without near-empty slices is a bit higher than convert's;
5. draws `draws` phase maps per slice with the physics model, each from a generator seeded by
   (seed, volume identity, draw), so a volume's output depends on nothing else in the run.

Each volume becomes ONE complex64 NIfTI, (H, W, slices, draws), at `OUT/<subject>/<volume>.nii.gz`
(the readers treat the 4th axis as volumes of the same key), with a sidecar JSON (ignored by the
readers) and a `manifest.json` at the top. One file per source volume and one folder per subject
keep every slice and draw of a volume under one key, and a subject's volumes under one folder, so
patient-level splits cannot put the same anatomy in train and validation.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import re
import shutil
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import nibabel
import numpy as np
from threadpoolctl import threadpool_limits

from kspacify import __version__, phase, sources
from kspacify.atomic import atomic_path, write_json
from kspacify.datasets import NORMALIZATION_PERCENTILE
from kspacify.preprocess import Prepared, Preprocessing, normalization_scale
from kspacify.seeding import stream
from kspacify.sources import Found, Pseudonymizer, Skipped, SourceError, VolumeInfo

FORMAT = "kspacify-data-build"
VERSION = 1
TISSUE_LEVEL = 0.1  # normalized magnitude above which a pixel counts as tissue

MNI_NOTICE = (
    "Copyright (C) 1993-2004 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological "
    "Institute, McGill University. Permission to use, copy, modify, and distribute this software and "
    "its documentation for any purpose and without fee is hereby granted, provided that the above "
    "copyright notice appear in all copies. The authors and McGill University make no representations "
    "about the suitability of this software for any purpose. It is provided \"as is\" without express "
    "or implied warranty."
)
DIPY_NOTICE = (
    "Shipped in the dipy wheel, whose LICENSE (BSD-3-Clause, Copyright (c) 2008-2026, dipy developers) "
    "covers the distribution; no separate license or acquisition record is given for these test files."
)
NIBABEL_NOTICE = (
    "Shipped in the nibabel wheel under its MIT license (Copyright (c) 2009-2019 Matthew Brett et al.); "
    "no separate license is given for this test file."
)
PYDICOM_NOTICE = (
    "Shipped in the pydicom wheel (MIT license, Copyright (c) 2008-2020 Darcy Mason and pydicom "
    "contributors); its test_files/README.txt: 'I believe there is no restriction on using any of "
    "these files in this manner.'"
)


class BuildError(Exception):
    """A --source or the output directory cannot be used as asked."""


@dataclass(frozen=True)
class Packaged:
    """A real MR magnitude volume shipped inside a package on the index.

    `member`: its path inside the wheel (= under site-packages when installed). `subject`: the split
    group (a template is one subject: the average of its population, not 152 of them).
    `volume`: only this 3D volume of a 4D file (frames of a time series are near-duplicates).
    """

    distribution: str
    member: str
    subject: str
    name: str
    description: str
    license: str
    volume: int | None = None


CATALOGUE: tuple[Packaged, ...] = (
    Packaged(
        "nilearn", "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
        "mni152-2009a", "t1",
        "ICBM 2009a nonlinear symmetric T1 template (MNI152NLin2009aSym), 1 mm isotropic, 197x233x189: "
        "the average of 152 registered T1 scans, smoother than any single scan",
        MNI_NOTICE,
    ),
    Packaged(
        "dipy", "dipy/data/files/S0_10slices.nii.gz", "dipy-s0", "s0_10slices",
        "b=0 diffusion image, 10 axial slices of 128x128 at 2 mm (dipy get_fnames('S0_10'))", DIPY_NOTICE,
    ),
    Packaged(
        "dipy", "dipy/data/files/aniso_vox.nii.gz", "dipy-aniso", "aniso_vox",
        "brain volume with anisotropic voxels, 58x58x24 at 4x4x5 mm (dipy get_fnames('aniso_vox'))", DIPY_NOTICE,
    ),
    Packaged(
        "dipy", "dipy/data/files/test_piesno.nii.gz", "dipy-piesno", "test_piesno",
        "noisy diffusion-weighted brain slab, 96x96x14 at 1 mm (dipy get_fnames('test_piesno'))", DIPY_NOTICE,
    ),
    Packaged(
        "nibabel", "nibabel/tests/data/example4d.nii.gz", "nibabel-example4d", "example4d",
        "EPI (fMRI) brain volume, 128x96x24 at 2x2x2.2 mm, first of its 2 frames", NIBABEL_NOTICE, volume=0,
    ),
    Packaged(
        "nibabel", "nibabel/tests/data/anatomical.nii", "nibabel-anatomical", "anatomical",
        "central crop of a spatially normalized T1 (SPM), 33x41x25 at 2 mm", NIBABEL_NOTICE,
    ),
    Packaged(
        "pydicom", "pydicom/data/test_files/MR_small.dcm", "pydicom-mr-small", "mr_small",
        "one MR slice, 64x64, downsized from NEMA WG04 MR1_UNC", PYDICOM_NOTICE,
    ),
    Packaged(
        "pydicom", "pydicom/data/test_files/examples_overlay.dcm", "pydicom-overlay", "abdomen_mpr",
        "one abdominal MR slice (Siemens MPR, 300x484, from GDCM's MR-SIEMENS-DICOM-WithOverlays.dcm)",
        PYDICOM_NOTICE,
    ),
)


@dataclass(frozen=True)
class BuildConfig:
    """What determines the built dataset (besides the inputs)."""

    draws: int = 4
    seed: int = 0
    preprocessing: Preprocessing = Preprocessing()
    min_tissue: float = 0.05  # keep slices with at least this fraction of pixels above TISSUE_LEVEL
    min_size: int = 48  # smallest in-plane side (pixels) of a plane: smaller ones are upsampled > 5x
    isotropy: float = 1.1  # largest/smallest voxel side up to which the other two axes are sliced too
    phase_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.draws < 1:
            raise ValueError(f"draws must be at least 1, got {self.draws}")
        if not 0 <= self.min_tissue < 1:
            raise ValueError(f"min_tissue must be in [0, 1), got {self.min_tissue}")
        if self.min_size < 1 or self.isotropy < 1:
            raise ValueError("min_size must be >= 1 and isotropy >= 1")


@dataclass(frozen=True)
class Item:
    """A volume to build: where it is read, the subject folder and file name it goes to, its origin."""

    info: VolumeInfo
    subject: str
    name: str
    origin: dict[str, Any]

    @property
    def key(self) -> str:
        """The dataset readers' volume key of the output file."""
        return f"{self.subject}/{self.name}"


@dataclass(frozen=True)
class Built:
    """One volume's outcome: written (with its manifest record) or skipped (with the reason)."""

    item: Item
    record: dict[str, Any] | None = None
    reason: str = ""
    failed: bool = False  # True: the source could not be read; False: written, or nothing to keep


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "volume"


def _wheel_version(path: Path) -> str | None:
    """Version from a wheel's file name (`name-version-...whl`)."""
    parts = path.name.split("-")
    return parts[1] if path.suffix == ".whl" and len(parts) >= 3 else None


def _installed_file(entry: Packaged) -> Path | None:
    """The catalogue member in the installed package, found without importing the package."""
    top = entry.member.split("/", 1)[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]).parent / entry.member
    return path if path.is_file() else None


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class Candidate:
    """A file to scan and what it is: a catalogue member (`entry`) or a plain input (`entry` None)."""

    path: Path
    entry: Packaged | None
    origin: dict[str, Any]


_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".dcm")
_ARCHIVE_SUFFIXES = (".whl", ".zip")


def _candidate(path: Path, entry: Packaged | None, **origin: Any) -> Candidate:
    """A file with its provenance: where it came from, its size and sha256, the package it ships in."""
    if entry is not None:
        origin = {"distribution": entry.distribution, **origin, "member": entry.member}
    return Candidate(path, entry, {**origin, "bytes": path.stat().st_size, "sha256": _sha256(path)})


def from_archive(archive: Path, workdir: Path) -> tuple[list[Candidate], list[Skipped]]:
    """Catalogue members in a wheel or zip, extracted to `workdir` (nothing is installed). A zip with
    no catalogue member is read like a directory: its NIfTI and .dcm members are plain inputs."""
    found: list[Candidate] = []
    kind = "wheel" if archive.suffix == ".whl" else "archive"
    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
        entries = [e for e in CATALOGUE if e.member in names]
        members = [e.member for e in entries] or sorted(n for n in names if n.lower().endswith(_IMAGE_SUFFIXES))
        if not members:
            return [], [Skipped(str(archive), "archive holds no known volume and no NIfTI/DICOM file")]
        for index, member in enumerate(members):
            target = workdir / f"{_safe(archive.name)}-{index}" / Path(member).name
            target.parent.mkdir(parents=True, exist_ok=True)
            with zipped.open(member) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)
            if entries:
                found.append(_candidate(target, entries[index], kind=kind, archive=archive.name, version=_wheel_version(archive)))
            else:
                found.append(_candidate(target, None, kind=kind, archive=archive.name, member=member))
    return found, []


def from_source(path: Path, workdir: Path) -> tuple[list[Candidate], list[Skipped]]:
    """A `--source`: a wheel or zip, or one catalogue file by its name (e.g. a copy of the template);
    raises BuildError for anything else, before any work is done."""
    if not path.is_file():
        raise BuildError(f"--source {path}: no such file")
    if zipfile.is_zipfile(path):
        return from_archive(path, workdir)
    entry = next((e for e in CATALOGUE if Path(e.member).name == path.name), None)
    if entry is None:
        raise BuildError(f"--source {path}: not a wheel, a zip or a file of the catalogue (give other files as INPUT)")
    return [_candidate(path, entry, kind="file", version=None)], []


def installed_packages(exclude: Iterable[str] = ()) -> list[Candidate]:
    """Catalogue members of installed packages (except those already found, by member path)."""
    skip = set(exclude)
    found = []
    for entry in CATALOGUE:
        path = None if entry.member in skip else _installed_file(entry)
        if path is not None:
            found.append(_candidate(path, entry, kind="installed", version=_distribution_version(entry.distribution)))
    return found


def collect(
    inputs: Sequence[str],
    source_paths: Sequence[Path],
    *,
    packages: bool,
    workdir: Path,
    salt: bytes,
) -> tuple[list[Item], list[Skipped]]:
    """Every volume to build, and what was skipped: catalogue members from `source_paths` (wheels, zips,
    catalogue files) and (with `packages`) installed packages, then the user's `inputs` (files,
    directories, globs; .whl/.zip files among them are opened like `source_paths`). Catalogue items go to
    their catalogue subject; the user's to the salted patient pseudonym `convert` writes."""
    skipped: list[Skipped] = []
    packaged: list[Candidate] = []
    plain: list[str] = []
    for path in source_paths:
        found, missed = from_source(path, workdir)
        packaged.extend(found)
        skipped.extend(missed)
    for text in inputs:
        path = Path(text)
        if path.suffix.lower() in _ARCHIVE_SUFFIXES and path.is_file() and zipfile.is_zipfile(path):
            unpacked, missed = from_archive(path, workdir)
            packaged.extend(unpacked)
            skipped.extend(missed)
        else:
            plain.append(text)
    if packages:
        packaged.extend(installed_packages(f.entry.member for f in packaged if f.entry is not None))

    pseudonymize = Pseudonymizer(salt)
    items: list[Item] = []
    seen: set[str] = set()
    for found in packaged:  # type: ignore[assignment]
        entry = found.entry  # type: ignore[attr-defined]
        if entry is not None and entry.member in seen:
            continue  # the same member in two wheels given (e.g. two versions): the first wins
        infos: list[VolumeInfo] = []
        for result in sources.scan([Found(found.path, explicit=True)], pseudonymize, keep_names=True):  # type: ignore[attr-defined]
            if isinstance(result, Skipped):
                skipped.append(Skipped(f"{found.origin.get('archive', found.path)}:{found.origin.get('member', '')}", result.reason, result.failed))  # type: ignore[attr-defined]
            else:
                infos.append(result)
        if entry is None:
            items.extend(_plain_item(info, found.origin) for info in infos)  # type: ignore[attr-defined]
            continue
        seen.add(entry.member)
        if entry.volume is not None:
            infos = [i for i in infos if i.meta.get("volume_index", 0) == entry.volume]
        for info in infos:
            name = entry.name if len(infos) == 1 else f"{entry.name}_t{info.meta.get('volume_index', 0):03d}"
            origin = {**found.origin, "description": entry.description, "license": entry.license}  # type: ignore[attr-defined]
            items.append(Item(info, entry.subject, name, origin))
    if plain:
        for result in sources.scan(sources.discover(plain), pseudonymize, keep_names=True):  # type: ignore[arg-type]
            if isinstance(result, Skipped):
                skipped.append(result)
            else:
                items.append(_plain_item(result, {"kind": "input"}))
    return _unique(items), skipped


def _plain_item(info: VolumeInfo, origin: dict[str, Any]) -> Item:
    return Item(info, info.patient, _safe(info.name), {**origin, "license": "as given by the owner of the input"})


def _unique(items: list[Item]) -> list[Item]:
    """Make output keys unique within the run (`_2`, `_3`, ... in collection order)."""
    used: Counter[str] = Counter()
    unique = []
    for item in items:
        used[item.key] += 1
        if used[item.key] > 1:
            item = Item(item.info, item.subject, f"{item.name}_{used[item.key]}", item.origin)
        unique.append(item)
    return unique


@dataclass(frozen=True)
class Plane:
    """Slices of a volume along one array axis of its canonical (slices, rows, cols) layout."""

    axis: str  # "slice" (native), "row" or "column"
    stack: np.ndarray  # (n, h, w)
    spacing: tuple[float, float]  # in-plane (row, column) mm


def planes(data: np.ndarray, spacing: tuple[float, float, float], isotropy: float) -> list[Plane]:
    """The native slices and, for a 3D isotropic volume, the slices along rows and along columns."""
    step, row, col = spacing
    result = [Plane("slice", data, (row, col))]
    if data.shape[0] > 1 and max(spacing) <= isotropy * min(spacing):
        # the former slice axis becomes the image's vertical axis, flipped so its normal points up
        result.append(Plane("row", np.transpose(data, (1, 0, 2))[:, ::-1, :], (step, col)))
        result.append(Plane("column", np.transpose(data, (2, 0, 1))[:, ::-1, :], (step, row)))
    return result


def tissue_fraction(magnitude: np.ndarray) -> np.ndarray:
    """Fraction of each slice's pixels above TISSUE_LEVEL (normalized magnitude): (n,)."""
    return np.mean(magnitude > TISSUE_LEVEL, axis=(1, 2))


def magnitudes(
    data: np.ndarray, spacing: tuple[float, float, float], config: BuildConfig
) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, Any]]:
    """Kept slices preprocessed as `convert` does (N, size, size), each slice's origin, and facts."""
    prep = config.preprocessing
    scale = normalization_scale(data, prep.percentile)  # convert's: the native volume, once
    kept: list[np.ndarray] = []
    origins: list[dict[str, Any]] = []
    per_plane: dict[str, dict[str, Any]] = {}
    for plane in planes(data, spacing, config.isotropy):
        _, height, width = plane.stack.shape
        if min(height, width) < config.min_size:
            per_plane[plane.axis] = {"slices": 0, "reason": f"in-plane {height}x{width} < --min-size {config.min_size}"}
            continue
        prepared = Prepared(np.ascontiguousarray(plane.stack), plane.spacing, prep, scale)
        resized, pixel = prepared.slab(), prepared.pixel_spacing
        keep = np.flatnonzero(tissue_fraction(resized) >= config.min_tissue)
        kept.append(resized[keep])
        origins.extend({"axis": plane.axis, "index": int(i)} for i in keep)
        per_plane[plane.axis] = {"slices": int(keep.size), "of": int(resized.shape[0]), "pixel_spacing_mm": pixel}
    stack = np.concatenate(kept) if kept else np.zeros((0, prep.size, prep.size), np.float32)
    return stack, origins, {"convert_scale": scale, "planes": per_plane}



def build_volume(item: Item, synthesizer: phase.PhaseSynthesizer, config: BuildConfig, out: Path) -> Built:
    """Load, slice, preprocess and give `config.draws` phase maps to one volume; write its files."""
    try:
        volume = sources.load(item.info)
    except SourceError as error:
        return Built(item, reason=str(error), failed=True)
    stack, origins, facts = magnitudes(volume.data, item.info.spacing, config)
    if not len(stack):
        reasons = "; ".join(f"{axis}: {p.get('reason', 'no slice with tissue')}" for axis, p in facts["planes"].items())
        return Built(item, reason=f"no slice kept ({reasons})")
    rescale = normalization_scale(stack, NORMALIZATION_PERCENTILE)
    stack = (stack / np.float32(rescale)).astype(np.float32)
    images = np.empty((*stack.shape[1:], len(stack), config.draws), dtype=np.complex64)
    for draw in range(config.draws):
        phases = synthesizer.synthesize(stack, stream(config.seed, item.info.key, draw))
        images[..., draw] = np.moveaxis(stack * np.exp(1j * phases.astype(np.complex64)), 0, -1)
    folder = out / item.subject
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{item.name}.nii.gz"
    pixel = next(p["pixel_spacing_mm"] for p in facts["planes"].values() if "pixel_spacing_mm" in p)
    _save_nifti(images, np.diag([pixel, pixel, 1.0, 1.0]), target)
    record = {
        "key": item.key,
        "file": target.relative_to(out).as_posix(),
        "sidecar": target.with_name(f"{item.name}.json").relative_to(out).as_posix(),
        "subject": item.subject,
        "slices": len(stack),
        "draws": config.draws,
        "pairs": len(stack) * config.draws,
        "planes": {axis: p["slices"] for axis, p in facts["planes"].items()},
        "source": item.origin,
    }
    sidecar = {
        "format": FORMAT,
        "volume": record,
        "layout": "complex64 (H, W, slice, draw); slice n of draw t is read as slice_index t * slices + n",
        "slice_origins": origins,
        "source_shape": list(item.info.shape),
        "source_spacing_mm": list(item.info.spacing),
        "source_meta": item.info.meta,
        "preprocessing": asdict(config.preprocessing),
        "convert_scale": facts["convert_scale"],
        "reader_rescale": rescale,
        "magnitude": "preprocess like convert (divide by convert_scale, resize), keep slices, divide by reader_rescale",
        "planes": facts["planes"],
        "phase_method": synthesizer.name,
        "phase_settings": synthesizer.settings(),
        "seed": config.seed,
        "rng": "kspacify.seeding.stream(seed, VolumeInfo.key, draw), one call per draw over all slices",
        "kspacify_version": __version__,
    }
    write_json(out / record["sidecar"], sidecar)  # type: ignore[operator]
    return Built(item, record)


def _save_nifti(array: np.ndarray, affine: np.ndarray, target: Path) -> None:
    with atomic_path(target, suffix=".nii.gz") as temporary:  # nibabel compresses by the name
        nibabel.save(nibabel.Nifti1Image(array, affine), str(temporary))


def prepare_output(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty OUT unless `overwrite`, which removes what the previous build listed (and
    nothing else), so no stale volume is read with the new ones."""
    if out.exists() and not out.is_dir():
        raise BuildError(f"{out} exists and is not a directory")
    if not out.exists() or not any(out.iterdir()):
        return
    manifest = out / "manifest.json"
    if not overwrite:
        raise BuildError(f"{out} is not empty: give an empty directory, or --overwrite to replace a previous build")
    if not manifest.is_file():
        raise BuildError(f"{out} is not empty and holds no manifest.json of a previous build: not touching it")
    previous = json.loads(manifest.read_text(encoding="utf-8"))
    if previous.get("format") != FORMAT:
        raise BuildError(f"{manifest} is not a kspacify data build manifest: not touching {out}")
    for record in previous.get("volumes", []):
        for name in (record["file"], record["sidecar"]):
            path = (out / name).resolve()
            if path.is_relative_to(out.resolve()) and path.is_file():
                path.unlink()
    manifest.unlink()


def run(
    items: Sequence[Item],
    config: BuildConfig,
    out: Path,
) -> Iterator[Built]:
    """Build `items` into `out` one by one, yielding each outcome. `manifest.json` is rewritten after
    every volume (`complete` false until the last), so an interrupted build can still be replaced
    with --overwrite."""
    synthesizer = phase.create("physics", **config.phase_options)
    done: list[Built] = []
    with threadpool_limits(1, user_api="blas"):  # small matrix products: BLAS threads only cost
        for index, item in enumerate(items):
            built = build_volume(item, synthesizer, config, out)
            done.append(built)
            write_manifest(out, done, config, synthesizer, complete=index == len(items) - 1)
            yield built


def write_manifest(
    out: Path, done: Sequence[Built], config: BuildConfig, synthesizer: phase.PhaseSynthesizer, *, complete: bool
) -> Path:
    """`manifest.json`: every written volume (key, subject, file, counts, origin), what was skipped,
    the totals, the settings and the license notices of the sources used."""
    volumes = [b.record for b in done if b.record is not None]
    licenses: dict[str, Any] = {}
    for record in volumes:
        source = record["source"]
        licenses.setdefault(source.get("distribution", "user input"), source["license"])
    document = {
        "format": FORMAT,
        "version": VERSION,
        "kspacify_version": __version__,
        "complete": complete,
        "totals": {
            "subjects": len({r["subject"] for r in volumes}),
            "volumes": len(volumes),
            "slices": sum(r["slices"] for r in volumes),
            "pairs": sum(r["pairs"] for r in volumes),
        },
        "split_groups": "split by `subject` (= the first folder of every key); never by key or slice",
        "settings": {
            "draws": config.draws,
            "seed": config.seed,
            "preprocessing": asdict(config.preprocessing),
            "min_tissue": config.min_tissue,
            "tissue_level": TISSUE_LEVEL,
            "min_size": config.min_size,
            "isotropy": config.isotropy,
            "phase_method": synthesizer.name,
            "phase_settings": synthesizer.settings(),
        },
        "phase_note": "phase is drawn from kspacify's physics model, not acquired; "
        "a model trained on these pairs learns that model",
        "volumes": volumes,
        "skipped": [{"key": b.item.key, "reason": b.reason, "failed": b.failed} for b in done if b.record is None],
        "licenses": licenses,
    }
    path = out / "manifest.json"
    write_json(path, document)
    return path
