"""The convert pipeline: volumes -> preprocessing -> phase synthesis -> k-space -> fastMRI HDF5.

`plan` scans the inputs (headers only) and names every output, `plan_manifest` does the same from a
manifest shard; `convert_one` converts one planned volume (`kspacify.executors` decides where).
Each volume draws its random numbers from a stream derived from the seed and the volume's identity,
so the output of a volume does not depend on which other volumes are converted, in which order,
or by how many workers or machines.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from kspacify import __version__, fastmri_io, phase, sources
from kspacify.kspace import to_kspace
from kspacify.manifest import Entry, Shard, read_manifest
from kspacify.preprocess import Preprocessing, normalization_scale, resize, resized_spacing
from kspacify.sources import Found, Pseudonymizer, Skipped, SourceError, Volume, VolumeInfo


@dataclass(frozen=True)
class ConvertConfig:
    """What determines the content of an output file (besides the input)."""

    preprocessing: Preprocessing = Preprocessing()
    phase: str = "smooth"  # a resolved registry name, not "auto"
    phase_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    batch_size: int = 16


@dataclass(frozen=True)
class PlannedVolume:
    info: VolumeInfo
    output: Path
    skipped_nearby: int  # files skipped in the same folder(s) as this volume's files


@dataclass(frozen=True)
class Plan:
    volumes: list[PlannedVolume]
    skipped: list[Skipped]


@dataclass(frozen=True)
class Outcome:
    volume: PlannedVolume
    status: str  # "written" | "exists" | "dry-run" | "failed"
    reason: str = ""
    seconds: float = 0.0

    def json(self, phase_method: str) -> dict[str, Any]:
        info = self.volume.info
        files = info.files
        source = files[0] if len(files) == 1 else os.path.commonpath(files)
        return {
            "status": self.status,
            "source": source,
            "files": len(files),
            "output": str(self.volume.output),
            "slices": info.shape[0],
            "phase": phase_method,
            "skipped_files": self.volume.skipped_nearby,
            **({"reason": self.reason} if self.reason else {}),
        }


def load_salt(explicit: str | None = None) -> bytes:
    """The salt for patient pseudonyms: --salt, else $KSPACIFY_SALT, else a random per-user salt kept
    in $XDG_CONFIG_HOME/kspacify/salt (created on first use), so hashes of short, guessable patient
    IDs cannot be reversed by trying every ID, yet stay stable across runs."""
    text = explicit if explicit is not None else os.environ.get("KSPACIFY_SALT")
    if text:
        return text.encode("utf-8")
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    salt_file = config_home / "kspacify" / "salt"
    if not salt_file.exists():
        salt_file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(salt_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    return salt_file.read_text().strip().encode("utf-8")


def plan(
    found: Iterable[Found | Skipped],
    out: Path,
    salt: bytes,
    *,
    single_file: bool,
    keep_components: bool = False,
    nifti_beside_dicom: bool = False,
    workers: int = 1,
) -> Plan:
    """Scan the inputs and name each output (see `name_outputs`); `nifti_beside_dicom`: also
    convert NIfTI files found beside DICOM files; `workers`: processes that read DICOM headers
    (see `sources.scan`)."""
    infos: list[VolumeInfo] = []
    skipped: list[Skipped] = []
    for item in sources.scan(found, Pseudonymizer(salt), keep_components=keep_components,
                             nifti_beside_dicom=nifti_beside_dicom, workers=workers):
        (skipped if isinstance(item, Skipped) else infos).append(item)
    skipped_per_folder = Counter(str(Path(s.path).parent) for s in skipped)
    entries = (Entry(info, sum(skipped_per_folder[d] for d in {str(Path(f).parent) for f in info.files})) for info in infos)
    return Plan(list(name_outputs(entries, out, single_file=single_file)), skipped)


def name_outputs(entries: Iterable[Entry], out: Path, *, single_file: bool) -> Iterator[PlannedVolume]:
    """`out` itself in single-file mode, else `out/<name>.h5`, made unique in the order given: the
    same entries in the same order always get the same names (which is what lets shards agree)."""
    used: Counter[str] = Counter()
    for entry in entries:
        if single_file:
            output = out
        else:
            used[entry.info.name] += 1
            suffix = "" if used[entry.info.name] == 1 else f"_{used[entry.info.name]}"
            output = out / f"{entry.info.name}{suffix}.h5"
        yield PlannedVolume(entry.info, output, entry.skipped_nearby)


def plan_manifest(manifest: Path, out: Path, shard: Shard, *, single_file: bool) -> list[PlannedVolume]:
    """This shard's volumes of a manifest, named from the whole manifest; streamed, so only this
    shard's share is held in memory."""
    return shard.select(name_outputs(read_manifest(manifest), out, single_file=single_file))


def volume_rng(seed: int, info: VolumeInfo, batch_start: int) -> np.random.Generator:
    """The random stream of one batch of one volume: a function of the seed and the volume only."""
    return np.random.default_rng([seed, int(info.key[:15], 16), batch_start])


def write_volume(volume: Volume, synthesizer: phase.PhaseSynthesizer, config: ConvertConfig, output: Path) -> None:
    """Normalize one volume, then slab by slab: resize, synthesize phase, transform, write.

    The scale comes from the whole volume; everything else is per slice, so slabs of `batch_size`
    slices keep memory to one slab beyond the loaded volume. `reconstruction_esc` is the magnitude
    itself: |ifft2c(kspace)| equals it to float32 rounding, so no inverse FFT is needed.
    """
    info = volume.info
    prep = config.preprocessing
    spacing = (info.spacing[1], info.spacing[2])
    scale = normalization_scale(volume.data, prep.percentile)
    pixel_spacing = resized_spacing(volume.data.shape[1:], spacing, prep.size, prep.fit)
    field_strength = info.meta.get("magnetic_field_strength")
    header = fastmri_io.ismrmrd_header(
        (prep.size, prep.size),
        (pixel_spacing * prep.size, pixel_spacing * prep.size, float(info.spacing[0])),
        float(field_strength) if field_strength else None,
    )
    slices = volume.data.shape[0]
    with fastmri_io.VolumeWriter(output, (slices, prep.size, prep.size), header) as writer:
        for start in range(0, slices, config.batch_size):
            magnitude, _ = resize(volume.data[start : start + config.batch_size], spacing, prep.size, prep.fit)
            magnitude *= np.float32(1.0 / scale)
            phases = synthesizer.synthesize(magnitude, volume_rng(config.seed, info, start))
            writer.write(start, to_kspace(magnitude, phases), magnitude)
        settings = synthesizer.settings()
        writer.attrs.update(
            {
                "acquisition": f"{info.meta.get('plane', 'unknown')}_synthetic_phase",
                "patient_id": info.patient,
                "kspacify_version": __version__,
                "phase_method": synthesizer.name,
                "phase_settings": settings,
                "seed": config.seed,
                "batch_size": config.batch_size,
                "source_kind": info.source_kind,
                "original_shape": list(info.shape),
                "original_spacing_mm": list(info.spacing),
                "pixel_spacing_mm": pixel_spacing,
                "fit": prep.fit,
                "normalization_percentile": prep.percentile,
                "normalization_scale": scale,
                "acquisition_meta": info.meta,
            }
        )
        if settings.get("checkpoint_sha256"):
            writer.attrs["checkpoint_sha256"] = settings["checkpoint_sha256"]


def load_one(item: PlannedVolume) -> Volume | Outcome:
    """The volume's pixels, or a failed Outcome naming the source fault."""
    try:
        return sources.load(item.info)
    except SourceError as error:
        return Outcome(item, "failed", str(error))


def convert_one(
    item: PlannedVolume, synthesizer: phase.PhaseSynthesizer, config: ConvertConfig, volume: Volume | None = None
) -> Outcome:
    """Load (unless `volume` is given), synthesize and write one volume; a source or write fault
    becomes a failed Outcome, not an exception."""
    started = time.perf_counter()
    loaded = volume if volume is not None else load_one(item)
    if isinstance(loaded, Outcome):
        return loaded
    try:
        write_volume(loaded, synthesizer, config, item.output)
    except SourceError as error:
        return Outcome(item, "failed", str(error), time.perf_counter() - started)
    except OSError as error:
        return Outcome(item, "failed", f"cannot write {item.output}: {error.strerror or error}", time.perf_counter() - started)
    return Outcome(item, "written", seconds=time.perf_counter() - started)
