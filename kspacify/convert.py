"""The convert pipeline: volumes -> preprocessing -> phase synthesis -> k-space -> fastMRI HDF5.

`plan` scans the inputs (headers only) and names every output; `run` converts the planned volumes,
one at a time or in worker processes, and yields one `Outcome` per volume. Each volume draws its
random numbers from a stream derived from the seed and the volume's identity, so the output of a
volume does not depend on which other volumes are converted, in which order, or by how many workers.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from threadpoolctl import threadpool_limits

from kspacify import __version__, fastmri_io, phase, sources
from kspacify.kspace import to_kspace
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
    salt: bytes = b""


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
) -> Plan:
    """Scan the inputs and name each output: `out` itself in single-file mode, else `out/<name>.h5`
    (names made unique within the run in scan order)."""
    infos: list[VolumeInfo] = []
    skipped: list[Skipped] = []
    for item in sources.scan(found, Pseudonymizer(salt), keep_components=keep_components):
        (skipped if isinstance(item, Skipped) else infos).append(item)
    skipped_per_folder = Counter(str(Path(s.path).parent) for s in skipped)
    used: Counter[str] = Counter()
    volumes = []
    for info in infos:
        if single_file:
            output = out
        else:
            used[info.name] += 1
            suffix = "" if used[info.name] == 1 else f"_{used[info.name]}"
            output = out / f"{info.name}{suffix}.h5"
        folders = {str(Path(f).parent) for f in info.files}
        volumes.append(PlannedVolume(info, output, sum(skipped_per_folder[d] for d in folders)))
    return Plan(volumes, skipped)


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


def convert_one(item: PlannedVolume, synthesizer: phase.PhaseSynthesizer, config: ConvertConfig) -> Outcome:
    """Load, synthesize and write one volume; a source fault becomes a failed Outcome, not an exception."""
    started = time.perf_counter()
    try:
        volume = sources.load(item.info)
        write_volume(volume, synthesizer, config, item.output)
    except SourceError as error:
        return Outcome(item, "failed", str(error), time.perf_counter() - started)
    except OSError as error:
        return Outcome(item, "failed", f"cannot write {item.output}: {error.strerror or error}", time.perf_counter() - started)
    return Outcome(item, "written", seconds=time.perf_counter() - started)


_worker_state: dict[str, Any] = {}


def _worker_init(config: ConvertConfig) -> None:
    threadpool_limits(1)  # N workers x N BLAS threads would oversubscribe the cores
    _worker_state["config"] = config
    _worker_state["synthesizer"] = phase.create(config.phase, **config.phase_options)


def _worker_convert(item: PlannedVolume) -> Outcome:
    return convert_one(item, _worker_state["synthesizer"], _worker_state["config"])


def run(
    volumes: list[PlannedVolume],
    config: ConvertConfig,
    *,
    workers: int = 1,
    overwrite: bool = False,
    dry_run: bool = False,
    synthesizer: phase.PhaseSynthesizer | None = None,
) -> Iterator[Outcome]:
    """Convert `volumes`, yielding outcomes as they finish (in order with one worker).
    Existing outputs are kept unless `overwrite`; with `dry_run` nothing is read or written.
    `synthesizer`: one already built from `config` (a checkpoint is then loaded once, not twice);
    worker processes build their own."""
    todo: list[PlannedVolume] = []
    for item in volumes:
        if dry_run:
            yield Outcome(item, "dry-run")
        elif item.output.exists() and not overwrite:
            yield Outcome(item, "exists")
        else:
            todo.append(item)
    if not todo:
        return
    if workers <= 1:
        synthesizer = synthesizer or phase.create(config.phase, **config.phase_options)
        # our matrix products are small: BLAS threads only cost, badly so on a busy machine
        with threadpool_limits(1, user_api="blas"):
            for item in todo:
                yield convert_one(item, synthesizer, config)
        return
    # bounded in-flight work keeps memory flat however many volumes there are
    with ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(config,)) as pool:
        pending: set[Future[Outcome]] = set()
        queue = iter(todo)
        for item in queue:
            pending.add(pool.submit(_worker_convert, item))
            if len(pending) >= 2 * workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield from (future.result() for future in done)
