"""The command line: parse, plan, call the pipeline, map outcomes to exit codes. No numerics here."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from contextlib import nullcontext
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console

from kspacify.commands import stderr_console, usage_error

if TYPE_CHECKING:
    from kspacify.convert import Plan

app = typer.Typer(
    name="kspacify",
    help="Turn magnitude-only MRI (DICOM, NIfTI) into complex fastMRI k-space by synthesizing phase.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Exit(IntEnum):
    """Exit codes (also in the README). Typer/Click use 2 for usage errors."""

    OK = 0
    SOME_FAILED = 1
    USAGE = 2
    NOTHING_FOUND = 3
    INTERRUPTED = 130


def _parse_options(pairs: list[str], console: Console) -> dict[str, object]:
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise usage_error(console, f"--phase-opt expects KEY=VALUE, got {pair!r}")
        value: object = text
        for cast in (int, float):
            try:
                value = cast(text)
                break
            except ValueError:
                pass
        options[key.replace("-", "_")] = value
    return options


def _read_stdin_paths(null_separated: bool) -> list[str]:
    data = sys.stdin.read()
    parts = data.split("\0") if null_separated else data.splitlines()
    return [p for p in (p.strip("\r\n") if not null_separated else p for p in parts) if p]


@app.command()
def convert(
    # old-style defaults: INPUTS may be empty (with --manifest) while OUT after it stays required
    inputs: Optional[list[str]] = typer.Argument(None, help="DICOM/NIfTI files, directories or globs; '-' reads paths from stdin.", show_default=False),
    out: Path = typer.Argument(..., help="An output directory (one .h5 per volume), or a file ending in .h5 for exactly one volume.", show_default=False),
    phase_method: Annotated[str, typer.Option("--phase", help="Phase method: auto, or one of `kspacify methods`.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed: the same seed, inputs and options give bit-identical files.")] = 0,
    size: Annotated[int, typer.Option(help="Output matrix (size x size).")] = 256,
    fit: Annotated[str, typer.Option(help="Non-square slices: 'pad' keeps the whole field of view, 'crop' fills the matrix.")] = "pad",
    percentile: Annotated[float, typer.Option(help="Magnitude normalization: this percentile of the volume becomes 1.")] = 99.5,
    batch_size: Annotated[int, typer.Option(help="Slices per phase-synthesis batch (part of what --seed reproduces).")] = 16,
    workers: Annotated[int, typer.Option(help="Worker processes converting volumes in parallel (with --dask local: the cluster's workers).")] = 1,
    manifest: Annotated[Optional[Path], typer.Option(help="Convert the volumes of this `kspacify scan` manifest instead of INPUTS.", show_default=False)] = None,
    shard: Annotated[Optional[str], typer.Option(help="With --manifest: convert share I of N (0-based), e.g. 3/8; auto/N takes I from SLURM or a Kubernetes indexed Job (default: from SLURM array variables when set).", show_default=False)] = None,
    dask: Annotated[Optional[str], typer.Option(help="Run on a dask.distributed cluster: a scheduler address (tcp://host:8786) or 'local' (needs kspacify[distributed]).", show_default=False)] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps (learned phase methods).")] = "auto",
    sampler: Annotated[Optional[str], typer.Option(help="Diffusion sampler of the sbdm method (default: its fast one).", show_default=False)] = None,
    steps: Annotated[Optional[int], typer.Option(help="Sampler steps of the sbdm method.", show_default=False)] = None,
    phase_opt: Annotated[Optional[list[str]], typer.Option("--phase-opt", help="KEY=VALUE setting of the phase method, e.g. smoothness=0.2 (repeatable).")] = None,
    include: Annotated[Optional[list[str]], typer.Option(help="Only files whose name or path matches this glob (repeatable).")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option(help="Skip files whose name or path matches this glob (repeatable).")] = None,
    null: Annotated[bool, typer.Option("-0", "--null", help="Paths on stdin are NUL-separated (find -print0).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite/--resume", help="Replace existing outputs, or keep them and skip (default).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be written; write nothing.")] = False,
    keep_components: Annotated[bool, typer.Option("--keep-components", help="Also convert phase/real/imaginary DICOM images.")] = False,
    salt: Annotated[Optional[str], typer.Option(help="Salt for patient pseudonyms (default: $KSPACIFY_SALT or a per-user salt file).", show_default=False)] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also list each file skipped as not MR image data.")] = False,
) -> None:
    """Convert DICOM/NIfTI magnitude volumes to fastMRI single-coil HDF5 with synthesized phase.

    Writes one JSON line per volume on stdout; progress and messages go to stderr.
    Exit codes: 0 all converted, 1 some inputs failed, 2 usage error, 3 nothing convertible found.
    """
    from kspacify import convert as pipeline
    from kspacify import executors, phase
    from kspacify.manifest import ManifestError, Shard
    from kspacify.preprocess import Preprocessing

    console = stderr_console()
    try:
        preprocessing = Preprocessing(size=size, fit=fit, percentile=percentile)  # type: ignore[arg-type]
    except ValueError as error:
        raise usage_error(console, str(error))
    if batch_size < 1 or workers < 1:
        raise usage_error(console, "--batch-size and --workers must be at least 1")
    options = _parse_options(phase_opt or [], console)
    options.update({k: v for k, v in (("sampler", sampler), ("steps", steps)) if v is not None})
    try:
        method, why = phase.resolve(phase_method, device)
        synthesizer = phase.create(method, device=device, **options)  # settings checked before any work
    except (ValueError, TypeError) as error:
        raise usage_error(console, str(error))
    console.print(f"kspacify: phase method {method} ({why})", markup=False)

    single_file = out.suffix.lower() in (".h5", ".hdf5")
    if not single_file and out.exists() and not out.is_dir():
        raise usage_error(console, f"{out} exists and is not a directory (name a .h5 file or a directory)")
    if manifest is not None:
        if inputs:
            raise usage_error(console, "give INPUTS or --manifest, not both")
        try:
            chosen, origin = Shard.resolve(shard)
            volumes = pipeline.plan_manifest(manifest, out, chosen, single_file=single_file)
        except ManifestError as error:
            raise usage_error(console, str(error))
        console.print(f"kspacify: manifest {manifest}, shard {chosen} ({origin}): {len(volumes)} volume(s)", markup=False)
        if not volumes:
            raise typer.Exit(int(Exit.OK))  # more shards than volumes: this one has nothing to do
        failures = 0
    else:
        if shard is not None:
            raise usage_error(console, "--shard needs --manifest (made by `kspacify scan`)")
        if not inputs:
            raise usage_error(console, "no INPUTS given (nor --manifest)")
        planned = _scan_inputs(console, inputs, out, null, include, exclude, salt, keep_components, verbose, single_file)
        volumes, failures = planned.volumes, sum(s.failed for s in planned.skipped)
    if single_file and len(volumes) > 1:
        raise usage_error(console, f"{len(volumes)} volumes found but {out} names one file: give a directory instead")

    config = pipeline.ConvertConfig(
        preprocessing=preprocessing,
        phase=method,
        phase_options={"device": device, **options},  # learned methods also read sampler/steps
        seed=seed,
        batch_size=batch_size,
    )
    try:
        with _progress(console, sum(v.info.shape[0] for v in volumes)) as advance:
            outcomes = executors.run(
                volumes, config, workers=workers, dask=dask, overwrite=overwrite, dry_run=dry_run, synthesizer=synthesizer
            )
            for outcome in outcomes:
                if outcome.status == "failed":
                    failures += 1
                    console.print(f"kspacify: failed: {outcome.reason}", markup=False)
                else:
                    print(json.dumps(outcome.json(method)), flush=True)
                advance(outcome.volume.info.shape[0])
    except executors.ExecutorError as error:
        raise usage_error(console, str(error))
    except KeyboardInterrupt:
        console.print("kspacify: interrupted; finished files are complete, nothing half-written is left", markup=False)
        raise typer.Exit(int(Exit.INTERRUPTED))
    raise typer.Exit(int(Exit.SOME_FAILED if failures else Exit.OK))


def _scan_inputs(console: Console, inputs: list[str], out: Path, null: bool, include: Optional[list[str]],
                 exclude: Optional[list[str]], salt: Optional[str], keep_components: bool, verbose: bool,
                 single_file: bool, absolute: bool = False) -> Plan:  # fmt: skip
    """Discover and scan the inputs, report what was skipped, and exit 3 when nothing is convertible."""
    from kspacify import convert as pipeline
    from kspacify import sources

    paths: list[str] = []
    for item in inputs:
        paths.extend(_read_stdin_paths(null) if item == "-" else [item])
    if absolute:
        paths = [os.path.abspath(path) for path in paths]
    found = sources.discover(paths, include or (), exclude or ())
    with console.status("scanning inputs", spinner="dots") if console.is_terminal else nullcontext():
        planned = pipeline.plan(found, out, pipeline.load_salt(salt), single_file=single_file, keep_components=keep_components)
    for skipped in planned.skipped:
        if skipped.failed or verbose:
            console.print(f"kspacify: {'skipped' if not skipped.failed else 'failed'}: {skipped.path}: {skipped.reason}", markup=False)
    quiet = [s for s in planned.skipped if not s.failed]
    if quiet and not verbose:
        reasons = ", ".join(f"{n} {r}" for r, n in Counter(s.reason for s in quiet).most_common())
        console.print(f"kspacify: skipped {len(quiet)} file(s): {reasons}", markup=False)
    if not planned.volumes:
        console.print("kspacify: nothing convertible found", markup=False)
        raise typer.Exit(int(Exit.NOTHING_FOUND))
    return planned


@app.command()
def scan(
    inputs: Annotated[list[str], typer.Argument(help="DICOM/NIfTI files, directories or globs; '-' reads paths from stdin.", show_default=False)],
    include: Annotated[Optional[list[str]], typer.Option(help="Only files whose name or path matches this glob (repeatable).")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option(help="Skip files whose name or path matches this glob (repeatable).")] = None,
    null: Annotated[bool, typer.Option("-0", "--null", help="Paths on stdin are NUL-separated (find -print0).")] = False,
    keep_components: Annotated[bool, typer.Option("--keep-components", help="Also list phase/real/imaginary DICOM images.")] = False,
    salt: Annotated[Optional[str], typer.Option(help="Salt for patient pseudonyms (default: $KSPACIFY_SALT or a per-user salt file).", show_default=False)] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also list each file skipped as not MR image data.")] = False,
) -> None:
    """List the volumes in the inputs as a manifest (one JSON line each, headers only, no pixels) for
    `kspacify convert --manifest FILE --shard I/N` on a cluster.

    The manifest holds source paths and salted patient pseudonyms, never patient data in clear.
    Exit codes: 0 volumes listed, 1 some inputs failed, 2 usage error, 3 nothing convertible found.
    """
    from kspacify.manifest import Entry

    console = stderr_console()
    # absolute paths, so the manifest works from any directory of any machine that mounts the archive
    planned = _scan_inputs(console, inputs, Path("."), null, include, exclude, salt, keep_components, verbose, False, absolute=True)
    for volume in planned.volumes:
        print(Entry(volume.info, volume.skipped_nearby).to_line(), flush=True)
    console.print(f"kspacify: {len(planned.volumes)} volume(s), {sum(v.info.shape[0] for v in planned.volumes)} slices", markup=False)
    raise typer.Exit(int(Exit.SOME_FAILED if any(s.failed for s in planned.skipped) else Exit.OK))


@app.command()
def methods() -> None:
    """List the phase methods, and which one `--phase auto` would pick here."""
    from kspacify import phase

    for name, spec in phase.registry().items():
        print(f"{name:10s} {spec.summary}")
    chosen, why = phase.resolve("auto", "auto")
    print(f"auto -> {chosen} ({why})")


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
            self.bar.advance(task, slices)
            speed = self.bar.tasks[task].speed
            self.bar.update(task, rate=f"{speed:.1f} slices/s" if speed else "")

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


train_app = typer.Typer(help="Train the phase generators (SBDM, GAN) and the reconstruction network (VarNet).", no_args_is_help=True)
app.add_typer(train_app, name="train")
data_app = typer.Typer(help="Build complex training data from magnitude volumes.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _register() -> None:
    """Subcommands live in kspacify/commands/, one module each; torch is imported only when they run."""
    from kspacify.commands import benchmark, data, train_gan, train_sbdm, train_varnet

    train_app.command("sbdm")(train_sbdm.command)
    train_app.command("gan")(train_gan.command)
    train_app.command("varnet")(train_varnet.command)
    data_app.command("build")(data.command)
    app.command("benchmark")(benchmark.command)


_register()


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
