"""The convert pipeline: volumes -> preprocessing -> phase synthesis -> k-space -> fastMRI HDF5.

`plan` scans the inputs (headers only) and names every output, `plan_manifest` does the same from a
manifest shard; `convert_one` converts one planned volume (`kspacify.executors` decides where).
Each volume draws its random numbers from a stream derived from the seed and the volume's identity,
so the output of a volume does not depend on which other volumes are converted, in which order,
or by how many workers or machines. A volume that cannot be converted (a source fault, values that
are no magnitudes, more memory than there is) is one failed Outcome, never the end of the run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from kspacify import __version__, coils, fastmri_io, memory, phase, sources, termination
from kspacify.atomic import new_run
from kspacify.coils import DEFAULT_MODEL as DEFAULT_COIL_MODEL
from kspacify.errors import VolumeError
from kspacify.kspace import fft2_signed, polar_signed
from kspacify.manifest import Entry, Shard, read_manifest
from kspacify.overlap import WriteBehind
from kspacify.preprocess import Prepared, Preprocessing, usable_magnitudes
from kspacify.seeding import stream
from kspacify.sources import Found, PhaseError, Pseudonymizer, Skipped, SourceError, Volume, VolumeInfo
from kspacify.sources.base import safe_name
from kspacify.sources.checks import location, note


@dataclass(frozen=True)
class ConvertConfig:
    """What determines the content of an output file (besides the input)."""

    preprocessing: Preprocessing = Preprocessing()
    phase: str = "smooth"  # a resolved registry name, not "auto"
    phase_options: dict[str, Any] = field(default_factory=dict)  # as given: `phase.create` types and checks them
    device: str = "auto"
    seed: int = 0
    batch_size: int = 16
    coils: int = 1  # 1: the single-coil file; more: a synthesized array (`kspacify.coils`)
    coil_model: str = DEFAULT_COIL_MODEL
    coil_options: dict[str, Any] = field(default_factory=dict)  # as given: `coils.create` types and checks them


@dataclass(frozen=True)
class RunContext:
    """What a run gives each conversion besides the volume and the config (which fix the bytes)."""

    run: str = field(default_factory=new_run)  # names this run's temporaries (`kspacify.atomic`)
    max_memory: int | None = None  # bytes one conversion may use; None: what the system has available


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
    notes: tuple[str, ...] = ()  # what was done about odd input (PHI-free), for the user and the file
    phase: str = ""  # the method that synthesized this volume (what `auto` chose for it)

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
            "phase": self.phase or phase_method,
            "skipped_files": self.volume.skipped_nearby,
            **({"reason": self.reason} if self.reason else {}),
            **({"notes": list(self.notes)} if self.notes else {}),
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
    keep_names: bool = False,
    nifti_beside_dicom: bool = False,
    workers: int = 1,
) -> Plan:
    """Scan the inputs and name each output (see `name_outputs`); `nifti_beside_dicom`: also
    convert NIfTI files found beside DICOM files; `workers`: processes that read DICOM headers
    (see `sources.scan`)."""
    infos: list[VolumeInfo] = []
    skipped: list[Skipped] = []
    for item in sources.scan(found, Pseudonymizer(salt), keep_components=keep_components, keep_names=keep_names,  # type: ignore[arg-type]
                             nifti_beside_dicom=nifti_beside_dicom, workers=workers):
        (skipped if isinstance(item, Skipped) else infos).append(item)  # type: ignore[arg-type]
    skipped_per_folder = Counter(str(Path(s.path).parent) for s in skipped)
    entries = (Entry(info, sum(skipped_per_folder[d] for d in {str(Path(f).parent) for f in info.files})) for info in infos)
    return Plan(list(name_outputs(entries, out, single_file=single_file)), skipped)


def name_outputs(entries: Iterable[Entry], out: Path, *, single_file: bool) -> Iterator[PlannedVolume]:
    """`out` itself in single-file mode, else `out/<name>.h5`, made unique in the order given: the
    same entries in the same order always get the same names (which is what lets shards agree).
    A name is a plain file name (`safe_name`), so no output lands outside `out`."""
    used: Counter[str] = Counter()
    for entry in entries:
        if single_file:
            output = out
        else:
            name = safe_name(entry.info.name)
            used[name] += 1
            suffix = "" if used[name] == 1 else f"_{used[name]}"
            output = out / f"{name}{suffix}.h5"
        yield PlannedVolume(entry.info, output, entry.skipped_nearby)


def plan_manifest(manifest: Path, out: Path, shard: Shard, *, single_file: bool) -> Plan:
    """This shard's volumes of a manifest, named from the whole manifest; streamed, so only this
    shard's share is held in memory. Each entry passes `sources.check` again (a manifest may have
    been edited, or its files changed since the scan); one that fails is in `skipped`."""
    volumes: list[PlannedVolume] = []
    skipped: list[Skipped] = []
    for item in shard.select(name_outputs(read_manifest(manifest), out, single_file=single_file)):
        checked = sources.check(item.info)
        if isinstance(checked, Skipped):
            skipped.append(checked)
        else:
            volumes.append(PlannedVolume(checked, item.output, item.skipped_nearby))
    return Plan(volumes, skipped)


def memory_needed(info: VolumeInfo, config: ConvertConfig) -> int:
    """Bytes converting `info` takes at its peak, estimated: the float32 volume about three times
    over (a reader's decoded copy, the volume, the magnitude check's copy; an acquired phase
    loaded with it as many times more), one slab of `batch_size` slices at the input size, and two at
    the output size (magnitude, phase, k-space, FFT work; with coils, each coil's image and k-space
    too): one being synthesized while the write-behind thread transforms and writes the other."""
    slices, rows, cols = info.shape
    batch = min(config.batch_size, slices)
    per_pixel = 8 + 6 * max(config.coils - 1, 0)  # 4-byte words per output pixel of a slab
    copies = 3
    if info.phase is not None and phase.reads_acquired_phase(config.phase):
        copies, per_pixel = 6, per_pixel + 3  # the phase, as read and converted; its slab's cos, sin and angle
    return 4 * (copies * slices * rows * cols + 3 * batch * rows * cols + 2 * per_pixel * batch * config.preprocessing.size**2)


def _over_budget(info: VolumeInfo, config: ConvertConfig, context: RunContext) -> str | None:
    needed = memory_needed(info, config)
    limit = context.max_memory if context.max_memory is not None else memory.available()
    if limit is None or needed <= limit:
        return None
    where = "--max-memory" if context.max_memory is not None else "available"
    return (f"{location(info)}: converting {info.shape[0]} x {info.shape[1]} x {info.shape[2]} "
            f"pixels needs about {memory.human(needed)}, more than the {memory.human(limit)} {where}")  # fmt: skip


@contextlib.contextmanager
def _no_stray_output() -> Iterator[None]:
    """Numeric and library warnings (an overflowing cast, an odd header) stay off stderr: what
    matters about a volume is said once, as a note or a failure reason."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def write_volume(volume: Volume, synthesizer: phase.PhaseSynthesizer, config: ConvertConfig, output: Path,
                 run: str | None = None) -> tuple[str, list[str]]:  # fmt: skip
    """Check the magnitudes, normalize the volume, then slab by slab: resize, synthesize phase,
    transform, write (under a temporary of `run`). Returns the phase method used (`auto` chooses one
    per volume, by its acquisition) and notes on what was changed in the input.

    The scale comes from the whole volume; everything else is per slice, so slabs of `batch_size`
    slices keep memory to one slab beyond the loaded volume. `reconstruction_esc` is the magnitude
    itself: |ifft2c(kspace)| equals it to float32 rounding, so no inverse FFT is needed. With
    `config.coils` > 1 the coil step (`kspacify.coils`) turns each slab into coil k-space and the
    RSS target instead.
    """
    info = volume.info
    if isinstance(synthesizer, phase.AutoPhase):
        synthesizer, _ = synthesizer.for_acquisition(info.acquisition, volume.phase is not None)
    acquired = bool(getattr(synthesizer, "reads_acquired_phase", False))
    if acquired and volume.phase is None:
        from kspacify.phase.acquired import NO_PHASE

        raise VolumeError(NO_PHASE)
    prep = config.preprocessing
    data, notes = usable_magnitudes(volume.data)
    volume = Volume(info, data, volume.phase)
    prepared = Prepared(data, (info.spacing[1], info.spacing[2]), prep, phase=volume.phase if acquired else None)
    scale, pixel_spacing = prepared.scale, prepared.pixel_spacing
    field_strength = info.meta.get("magnetic_field_strength")
    header = fastmri_io.ismrmrd_header(
        (prep.size, prep.size),
        (pixel_spacing * prep.size, pixel_spacing * prep.size, float(info.spacing[0])),
        float(field_strength) if field_strength else None,
        config.coils,
    )
    slices = volume.data.shape[0]
    array = _coil_step(volume, config, prepared) if config.coils > 1 else None
    shape = (slices, prep.size, prep.size) if array is None else (slices, config.coils, prep.size, prep.size)
    with fastmri_io.VolumeWriter(output, shape, header, run=run) as writer:
        with WriteBehind() as behind:
            for start in range(0, slices, config.batch_size):
                termination.check()  # SIGTERM, Ctrl-C: abandon the volume here, between two slabs
                magnitude = prepared.slab(start, start + config.batch_size)
                rng = stream(config.seed, info.key, start)
                if acquired:
                    phases = synthesizer.synthesize(magnitude, rng, info.acquisition,  # type: ignore[call-arg]
                                                    acquired=prepared.phase_slab(start, start + config.batch_size))
                else:
                    phases = synthesizer.synthesize(magnitude, rng, info.acquisition)
                if array is None:
                    image = polar_signed(magnitude, phases)
                    behind.submit(partial(_write_slab, writer, start, image, magnitude))
                else:
                    behind.submit(partial(array.encode, start, magnitude, phases,
                                          stream(config.seed, info.key, coils.GEOMETRY_STREAM + 1 + start), writer.write))
        if array is not None:
            writer.attrs.update(array.attrs())
        settings = synthesizer.settings()
        writer.attrs.update(
            {
                "acquisition": f"{info.meta.get('plane', 'unknown')}_{'acquired' if acquired else 'synthetic'}_phase",
                "phase_source": "acquired" if acquired else "synthesized",
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
                "acquisition_meta": {k: v for k, v in info.meta.items() if k != "notes"},
                "acquisition_record": info.acquisition.to_json(),
            }
        )
        if settings.get("checkpoint_sha256"):
            writer.attrs["checkpoint_sha256"] = settings["checkpoint_sha256"]
        if acquired and info.phase is not None:
            writer.attrs["acquired_phase"] = {"unit": info.phase.unit, "series_number": info.phase.series_number}
        all_notes = [*info.meta.get("notes", []), *notes]
        if all_notes:
            writer.attrs["notes"] = all_notes
    return synthesizer.name, notes


def _write_slab(writer: fastmri_io.VolumeWriter, start: int, image: np.ndarray, magnitude: np.ndarray) -> None:
    writer.write(start, fft2_signed(image), magnitude)


def _coil_step(volume: Volume, config: ConvertConfig, prepared: Prepared) -> coils.VolumeCoils:
    """The volume's synthesized array: loops placed around its object, drawn from the volume's coil
    stream, receiver noise scaled from the noise of a few of its middle slices (resized, normalized)."""
    info, prep = volume.info, config.preprocessing
    model = coils.create(config.coil_model, config.coils, config.coil_options)
    b0 = coils.b0_direction(info.acquisition, info.meta.get("plane"))
    body = coils.body_from_volume(volume.data, info.spacing, prepared.scale, b0)
    slices = volume.data.shape[0]
    middle = np.unique(np.linspace(0.25 * (slices - 1), 0.75 * (slices - 1), min(slices, 4)).round().astype(int))
    sigma = coils.noise_sigma(prepared.slab(index=middle)) * model.options.noise_scale
    array = model.draw(body, stream(config.seed, info.key, coils.GEOMETRY_STREAM))
    positions = coils.slice_positions(slices, float(info.spacing[0]))
    return coils.VolumeCoils(array, prep.size, prepared.pixel_spacing, positions, sigma, model.settings())


def load_one(item: PlannedVolume, config: ConvertConfig | None = None, context: RunContext | None = None) -> Volume | Outcome:
    """The volume's pixels, or a failed Outcome naming the source fault (or that there is not the
    memory for it: checked before anything is allocated)."""
    termination.check()
    refused = _over_budget(item.info, config or ConvertConfig(), context or RunContext())
    if refused:
        return Outcome(item, "failed", refused)
    method = (config or ConvertConfig()).phase
    try:
        with _no_stray_output():
            volume = sources.load(item.info)
            if item.info.phase is None or not phase.reads_acquired_phase(method):
                return volume
            try:
                return replace(volume, phase=sources.load_phase(item.info))
            except PhaseError as error:
                if method != "auto":
                    return Outcome(item, "failed", f"{location(item.info)}: {error}")
                # `auto` would have written it: say why it is not, and synthesize instead
                return Volume(note(item.info, f"acquired phase not used ({error.reason}): phase synthesized"), volume.data)
    except SourceError as error:
        return Outcome(item, "failed", str(error))
    except MemoryError:
        return Outcome(item, "failed", f"{location(item.info)}: out of memory reading it")


def convert_one(
    item: PlannedVolume, synthesizer: phase.PhaseSynthesizer, config: ConvertConfig, volume: Volume | None = None,
    context: RunContext | None = None,
) -> Outcome:  # fmt: skip
    """Load (unless `volume` is given), synthesize and write one volume; a source, value, memory or
    write fault becomes a failed Outcome, not an exception."""
    started = time.perf_counter()
    context = context or RunContext()
    loaded = volume if volume is not None else load_one(item, config, context)
    if isinstance(loaded, Outcome):
        return loaded
    try:
        with _no_stray_output():
            method, notes = write_volume(loaded, synthesizer, config, item.output, run=context.run)
    except (SourceError, VolumeError) as error:
        where = location(item.info)
        reason = str(error) if isinstance(error, SourceError) else f"{where}: {error}"
        return Outcome(item, "failed", reason, time.perf_counter() - started)
    except MemoryError:
        reason = f"{location(item.info)}: out of memory converting it"
        return Outcome(item, "failed", reason, time.perf_counter() - started)
    except OSError as error:
        return Outcome(item, "failed", f"cannot write {item.output}: {error.strerror or error}", time.perf_counter() - started)
    return Outcome(item, "written", seconds=time.perf_counter() - started, phase=method,
                   notes=(*loaded.info.meta.get("notes", []), *notes))  # fmt: skip
