"""`kspacify convert` and `kspacify scan`: inputs -> planned volumes -> fastMRI files (or a manifest)."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console

from kspacify.commands.common import (
    CoilOptions,
    Device,
    Exclude,
    Exit,
    Include,
    Inputs,
    NullSeparated,
    PhaseOptions,
    Salt,
    Verbose,
    say,
    stderr_console,
    stops,
    usage_error,
    user_errors,
)  # fmt: skip

if TYPE_CHECKING:
    from kspacify.convert import Outcome, Plan

KeepNames = Annotated[bool, typer.Option("--keep-names", help="Name NIfTI outputs after their input files instead of pseudonyms (input names may hold patient names).")]
NiftiBesideDicom = Annotated[bool, typer.Option("--nifti-beside-dicom", help="Also take NIfTI files found beside DICOM series (skipped by default: most are conversions of them, and both would enter the data as two patients).")]
LEFT = "finished files are complete, nothing half-written is left"


def _read_stdin_paths(null_separated: bool) -> list[str]:
    data = sys.stdin.read()
    parts = data.split("\0") if null_separated else data.splitlines()
    return [p for p in (p.strip("\r\n") if not null_separated else p for p in parts) if p]


@user_errors
def convert(
    # old-style defaults: INPUTS may be empty (with --manifest) while OUT after it stays required
    inputs: Optional[list[str]] = typer.Argument(None, help="DICOM/NIfTI files, directories or globs; '-' reads paths from stdin.", show_default=False),
    out: Path = typer.Argument(..., help="An output directory (one .h5 per volume), or a file ending in .h5 for exactly one volume.", show_default=False),
    phase_method: Annotated[str, typer.Option("--phase", help="Phase method: auto, or one of `kspacify methods`.")] = "auto",
    seed: Annotated[int, typer.Option(min=0, help="Seed (>= 0): the same seed, inputs and options give bit-identical files.")] = 0,
    size: Annotated[int, typer.Option(help="Output matrix (size x size).")] = 256,
    fit: Annotated[str, typer.Option(help="Non-square slices: 'pad' keeps the whole field of view, 'crop' fills the matrix.")] = "pad",
    percentile: Annotated[float, typer.Option(help="Magnitude normalization: this percentile of the volume becomes 1.")] = 99.5,
    batch_size: Annotated[int, typer.Option(min=1, help="Slices per phase-synthesis batch (part of what --seed reproduces).")] = 16,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes converting volumes in parallel, and reading DICOM headers before (with --dask local: the cluster's workers).")] = 1,
    manifest: Annotated[Optional[Path], typer.Option(help="Convert the volumes of this `kspacify scan` manifest instead of INPUTS.", show_default=False)] = None,
    shard: Annotated[Optional[str], typer.Option(help="With --manifest: convert share I of N (0-based), e.g. 3/8; auto/N takes I from SLURM or a Kubernetes indexed Job (default: from SLURM array variables when set).", show_default=False)] = None,
    dask: Annotated[Optional[str], typer.Option(help="Run on a dask.distributed cluster: a scheduler address (tcp://host:8786) or 'local' (needs kspacify[distributed]).", show_default=False)] = None,
    device: Device = "auto",
    sampler: Annotated[Optional[str], typer.Option(help="Diffusion sampler of the sbdm method (default: its fast one).", show_default=False)] = None,
    steps: Annotated[Optional[int], typer.Option(help="Sampler steps of the sbdm method.", show_default=False)] = None,
    phase_opt: PhaseOptions = None,
    coils: Annotated[int, typer.Option("--coils", help="Receive coils: 1 writes the single-coil file; N > 1 a synthesized N-coil array in fastMRI's multi-coil layout.")] = 1,
    coil_model: Annotated[Optional[str], typer.Option("--coil-model", help="Coil model for --coils N > 1 (default cylinder; `kspacify methods` lists them).", show_default=False)] = None,
    coil_opt: CoilOptions = None,
    include: Include = None,
    exclude: Exclude = None,
    null: NullSeparated = False,
    overwrite: Annotated[bool, typer.Option("--overwrite/--resume", help="Replace existing outputs, or keep them and skip (default).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be written; write nothing.")] = False,
    keep_components: Annotated[bool, typer.Option("--keep-components", help="Also convert phase/real/imaginary DICOM images.")] = False,
    keep_names: KeepNames = False,
    nifti_beside_dicom: NiftiBesideDicom = False,
    max_memory: Annotated[Optional[str], typer.Option(help="Memory one volume's conversion may use, e.g. 8G (default: what the system has available); a volume needing more fails alone.", show_default=False)] = None,
    salt: Salt = None,
    verbose: Verbose = False,
) -> None:
    """Convert DICOM/NIfTI magnitude volumes to fastMRI HDF5 (single-coil, or --coils N multi-coil) with synthesized phase.

    Writes one JSON line per volume on stdout; progress and messages go to stderr.
    Exit codes: 0 all converted, 1 some inputs failed, 2 usage error, 3 nothing convertible found,
    130 interrupted, 141 stdout closed, 143 terminated.
    """
    arguments = dict(locals())  # exactly the options above, by name
    console = stderr_console()
    with stops(console, LEFT):
        _convert(console, **arguments)


def _convert(console: Console, *, inputs: Optional[list[str]], out: Path, phase_method: str, seed: int, size: int,
             fit: str, percentile: float, batch_size: int, workers: int, manifest: Optional[Path], shard: Optional[str],
             dask: Optional[str], device: str, sampler: Optional[str], steps: Optional[int], phase_opt: Optional[list[str]],
             coils: int, coil_model: Optional[str], coil_opt: Optional[list[str]], include: Optional[list[str]],
             exclude: Optional[list[str]], null: bool, overwrite: bool, dry_run: bool, keep_components: bool,
             keep_names: bool, nifti_beside_dicom: bool, max_memory: Optional[str], salt: Optional[str],
             verbose: bool) -> None:  # fmt: skip
    from kspacify import convert as pipeline
    from kspacify import executors, phase, termination
    from kspacify.manifest import Shard, read_manifest
    from kspacify.memory import parse_size
    from kspacify.options import parse_pairs
    from kspacify.preprocess import Preprocessing

    try:
        preprocessing = Preprocessing(size=size, fit=fit, percentile=percentile)  # type: ignore[arg-type]
    except ValueError as error:
        raise usage_error(console, str(error)) from None
    memory_limit = parse_size(max_memory) if max_memory is not None else None
    options: dict[str, object] = dict(parse_pairs(phase_opt or []))
    options.update({k: v for k, v in (("sampler", sampler), ("steps", steps)) if v is not None})
    method, why = phase.resolve(phase_method, device) if phase_method != "auto" else ("auto", "")
    synthesizer = phase.create(method, device=device, **options)  # settings checked before any work
    if method == "auto":
        picks = phase.choices(device)
        default = picks["unknown"]
        special = [f"{family} -> {name} ({reason})" for family, (name, reason) in picks.items() if name != default[0]]
        why = f"per volume by its acquisition: {default[0]} ({default[1]})" + (f"; but {'; '.join(special)}" if special else "")
    say(console, f"phase method {method} ({why})")
    coil_options = _coil_settings(console, coils, coil_model, coil_opt)

    single_file = out.suffix.lower() in (".h5", ".hdf5")
    if not single_file and out.exists() and not out.is_dir():
        raise usage_error(console, f"{out} exists and is not a directory (name a .h5 file or a directory)")
    if manifest is not None:
        if inputs:
            raise usage_error(console, "give INPUTS or --manifest, not both")
        chosen, origin = Shard.resolve(shard)
        planned = pipeline.plan_manifest(manifest, out, chosen, single_file=single_file)
        volumes, failures = planned.volumes, len(planned.skipped)
        say(console, f"manifest {manifest}, shard {chosen} ({origin}): {len(volumes) + failures} volume(s)")
        for skipped in planned.skipped:
            say(console, f"failed: {skipped.path}: {skipped.reason}")
        if not volumes and not failures:
            if next(iter(read_manifest(manifest)), None) is None:
                say(console, "nothing convertible found: the manifest lists no volume")
                raise typer.Exit(int(Exit.NOTHING_FOUND))
            raise typer.Exit(int(Exit.OK))  # more shards than volumes: this one has nothing to do
    else:
        if shard is not None:
            raise usage_error(console, "--shard needs --manifest (made by `kspacify scan`)")
        if not inputs:
            raise usage_error(console, "no INPUTS given (nor --manifest)")
        planned = _scan_inputs(console, inputs, out, null, include, exclude, salt, keep_components, keep_names, verbose,
                               single_file, nifti_beside_dicom=nifti_beside_dicom, workers=workers)  # fmt: skip
        volumes, failures = planned.volumes, sum(s.failed for s in planned.skipped)
    if single_file and len(volumes) > 1:
        raise usage_error(console, f"{len(volumes)} volumes found but {out} names one file: give a directory instead")

    config = pipeline.ConvertConfig(
        preprocessing=preprocessing, phase=method, phase_options=options, device=device, seed=seed, batch_size=batch_size,
        coils=coils, coil_model=coil_model or pipeline.ConvertConfig.coil_model, coil_options=coil_options,
    )  # fmt: skip
    with _progress(console, sum(v.info.shape[0] for v in volumes)) as advance:
        outcomes = executors.run(
            volumes, config, workers=workers, dask=dask, overwrite=overwrite, dry_run=dry_run, synthesizer=synthesizer,
            max_memory=memory_limit,
        )  # fmt: skip
        try:
            for outcome in outcomes:
                _report_notes(console, outcome)
                if outcome.status == "failed":
                    failures += 1
                    say(console, f"failed: {outcome.reason}")
                else:
                    print(json.dumps(outcome.json(method)), flush=True)
                advance(outcome.volume.info.shape[0])
                termination.check()
        finally:
            outcomes.close()  # type: ignore[attr-defined]  # on a signal or a closed stdout: stop the workers, delete this run's temporaries now
    raise typer.Exit(int(Exit.SOME_FAILED if failures else Exit.OK))


def _report_notes(console: Console, outcome: Outcome) -> None:
    """One line per note: what was done about an odd input, and where that input is."""
    from kspacify.sources.checks import location

    for note in outcome.notes:
        say(console, f"note: {location(outcome.volume.info)}: {note}")


def _coil_settings(console: Console, count: int, model: Optional[str], pairs: Optional[list[str]]) -> dict[str, str]:
    """--coil-opt as a dict, the model and count checked before any work (a usage error otherwise)."""
    from kspacify import coils
    from kspacify.options import parse_pairs

    if count < 1:
        raise usage_error(console, f"--coils must be at least 1, got {count}")
    options = parse_pairs(pairs or [], "--coil-opt")
    if count == 1:
        if model is not None or options:
            raise usage_error(console, "--coil-model and --coil-opt need --coils 2 or more")
        return {}
    chosen = coils.create(model or coils.DEFAULT_MODEL, count, options)
    say(console, f"coils: {count}, {chosen.name} model")
    return options


def _scan_inputs(console: Console, inputs: list[str], out: Path, null: bool, include: Optional[list[str]],
                 exclude: Optional[list[str]], salt: Optional[str], keep_components: bool, keep_names: bool,
                 verbose: bool, single_file: bool, absolute: bool = False, nifti_beside_dicom: bool = False,
                 workers: int = 1) -> Plan:  # fmt: skip
    """Discover and scan the inputs (DICOM headers in `workers` processes), report what was skipped,
    and exit 3 when nothing is convertible."""
    from kspacify import convert as pipeline
    from kspacify import sources

    paths: list[str] = []
    for item in inputs:
        paths.extend(_read_stdin_paths(null) if item == "-" else [item])
    if absolute:
        paths = [os.path.abspath(path) for path in paths]
    found = sources.discover(paths, include or (), exclude or ())
    with console.status("scanning inputs", spinner="dots") if console.is_terminal else nullcontext():
        planned = pipeline.plan(found, out, pipeline.load_salt(salt), single_file=single_file, keep_components=keep_components,
                                keep_names=keep_names, nifti_beside_dicom=nifti_beside_dicom, workers=workers)  # fmt: skip
    for skipped in planned.skipped:
        if skipped.failed or verbose:
            say(console, f"{'skipped' if not skipped.failed else 'failed'}: {skipped.path}: {skipped.reason}")
    quiet = [s for s in planned.skipped if not s.failed]
    if quiet and not verbose:
        reasons = ", ".join(f"{n} {r}" for r, n in Counter(s.reason for s in quiet).most_common())
        say(console, f"skipped {len(quiet)} file(s): {reasons}")
    if not planned.volumes:
        say(console, "nothing convertible found")
        raise typer.Exit(int(Exit.NOTHING_FOUND))
    return planned


@user_errors
def scan(
    inputs: Inputs,
    include: Include = None,
    exclude: Exclude = None,
    null: NullSeparated = False,
    keep_components: Annotated[bool, typer.Option("--keep-components", help="Also list phase/real/imaginary DICOM images.")] = False,
    keep_names: KeepNames = False,
    nifti_beside_dicom: NiftiBesideDicom = False,
    workers: Annotated[int, typer.Option(min=1, help="Processes reading DICOM headers (the manifest is the same).")] = 1,
    salt: Salt = None,
    verbose: Verbose = False,
) -> None:
    """List the volumes in the inputs as a manifest (one JSON line each, headers only, no pixels) for
    `kspacify convert --manifest FILE --shard I/N` on a cluster.

    The manifest holds source paths and salted patient pseudonyms, never patient data in clear.
    Exit codes: 0 volumes listed, 1 some inputs failed, 2 usage error, 3 nothing convertible found,
    130 interrupted, 141 stdout closed, 143 terminated.
    """
    from kspacify.manifest import Entry
    from kspacify.sources.checks import location

    console = stderr_console()
    with stops(console, "the manifest on stdout is incomplete"):
        # absolute paths, so the manifest works from any directory of any machine that mounts the archive
        planned = _scan_inputs(console, inputs, Path("."), null, include, exclude, salt, keep_components, keep_names,
                               verbose, False, absolute=True, nifti_beside_dicom=nifti_beside_dicom,
                               workers=workers)  # fmt: skip
        for volume in planned.volumes:
            for note in volume.info.meta.get("notes", []):
                say(console, f"note: {location(volume.info)}: {note}")
            print(Entry(volume.info, volume.skipped_nearby).to_line(), flush=True)
    say(console, f"{len(planned.volumes)} volume(s), {sum(v.info.shape[0] for v in planned.volumes)} slices")
    raise typer.Exit(int(Exit.SOME_FAILED if any(s.failed for s in planned.skipped) else Exit.OK))


class _progress:
    """A rich progress bar in slices, with slices/s and ETA, on a terminal; nothing when stderr is a
    pipe or a file. Entering gives `advance(slices)`."""

    def __init__(self, console: Console, total: int) -> None:
        self.console, self.total, self.bar = console, total, None

    def __enter__(self):  # type: ignore[no-untyped-def]
        if not self.console.is_terminal:
            return lambda slices: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        rate = TextColumn("{task.fields[rate]}")  # task.speed is None until two updates have come
        self.bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), rate, TimeRemainingColumn(), console=self.console)
        self.bar.start()
        task = self.bar.add_task("slices", total=self.total, rate="")

        def advance(slices: int) -> None:
            self.bar.advance(task, slices)  # type: ignore[attr-defined]
            speed = self.bar.tasks[task].speed  # type: ignore[attr-defined]
            self.bar.update(task, rate=f"{speed:.1f} slices/s" if speed else "")  # type: ignore[attr-defined]

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
