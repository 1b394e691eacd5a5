"""The command line: parse, plan, call the pipeline, map outcomes to exit codes. No numerics here."""

from __future__ import annotations

import json
import sys
from collections import Counter
from contextlib import nullcontext
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from kspacify.commands import stderr_console, usage_error

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
    inputs: Annotated[list[str], typer.Argument(help="DICOM/NIfTI files, directories or globs; '-' reads paths from stdin.", show_default=False)],
    out: Annotated[Path, typer.Argument(help="An output directory (one .h5 per volume), or a file ending in .h5 for exactly one volume.", show_default=False)],
    phase_method: Annotated[str, typer.Option("--phase", help="Phase method: auto, or one of `kspacify methods`.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed: the same seed, inputs and options give bit-identical files.")] = 0,
    size: Annotated[int, typer.Option(help="Output matrix (size x size).")] = 256,
    fit: Annotated[str, typer.Option(help="Non-square slices: 'pad' keeps the whole field of view, 'crop' fills the matrix.")] = "pad",
    percentile: Annotated[float, typer.Option(help="Magnitude normalization: this percentile of the volume becomes 1.")] = 99.5,
    batch_size: Annotated[int, typer.Option(help="Slices per phase-synthesis batch (part of what --seed reproduces).")] = 16,
    workers: Annotated[int, typer.Option(help="Worker processes converting volumes in parallel.")] = 1,
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
    from kspacify import phase, sources
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

    paths: list[str] = []
    for item in inputs:
        paths.extend(_read_stdin_paths(null) if item == "-" else [item])
    single_file = out.suffix.lower() in (".h5", ".hdf5")
    if not single_file and out.exists() and not out.is_dir():
        raise usage_error(console, f"{out} exists and is not a directory (name a .h5 file or a directory)")

    salt_bytes = pipeline.load_salt(salt)
    found = sources.discover(paths, include or (), exclude or ())
    with console.status("scanning inputs", spinner="dots") if console.is_terminal else nullcontext():
        planned = pipeline.plan(found, out, salt_bytes, single_file=single_file, keep_components=keep_components)

    failed_files = [s for s in planned.skipped if s.failed]
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
    if single_file and len(planned.volumes) > 1:
        raise usage_error(console, f"{len(planned.volumes)} volumes found but {out} names one file: give a directory instead")

    config = pipeline.ConvertConfig(
        preprocessing=preprocessing,
        phase=method,
        phase_options={"device": device, **options},  # learned methods also read sampler/steps
        seed=seed,
        batch_size=batch_size,
        salt=salt_bytes,
    )
    failures = len(failed_files)
    try:
        with _progress(console, len(planned.volumes)) as advance:
            outcomes = pipeline.run(
                planned.volumes, config, workers=workers, overwrite=overwrite, dry_run=dry_run, synthesizer=synthesizer
            )
            for outcome in outcomes:
                if outcome.status == "failed":
                    failures += 1
                    console.print(f"kspacify: failed: {outcome.reason}", markup=False)
                else:
                    print(json.dumps(outcome.json(method)), flush=True)
                advance()
    except KeyboardInterrupt:
        console.print("kspacify: interrupted; finished files are complete, nothing half-written is left", markup=False)
        raise typer.Exit(int(Exit.INTERRUPTED))
    raise typer.Exit(int(Exit.SOME_FAILED if failures else Exit.OK))


@app.command()
def methods() -> None:
    """List the phase methods, and which one `--phase auto` would pick here."""
    from kspacify import phase

    for name, spec in phase.registry().items():
        print(f"{name:10s} {spec.summary}")
    chosen, why = phase.resolve("auto", "auto")
    print(f"auto -> {chosen} ({why})")


class _progress:
    """A rich progress bar on a terminal; nothing when stderr is a pipe or a file."""

    def __init__(self, console: Console, total: int) -> None:
        self.console, self.total, self.bar = console, total, None

    def __enter__(self):  # type: ignore[no-untyped-def]
        if not self.console.is_terminal:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self.bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=self.console)
        self.bar.start()
        task = self.bar.add_task("converting", total=self.total)
        return lambda: self.bar.advance(task)

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
