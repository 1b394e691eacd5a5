"""`kspacify data build`: complex training pairs (physics phase) from open magnitude volumes."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from kspacify.commands.common import Exit, Salt, say, stderr_console, usage_error, user_errors


@user_errors
def command(
    paths: Annotated[list[str], typer.Argument(metavar="[INPUT]... OUT", help="Magnitude DICOM/NIfTI files, directories, globs or wheels (optional), then the output directory.", show_default=False)],
    source: Annotated[Optional[list[str]], typer.Option("--source", help="A wheel or zip to read packaged volumes from without installing it (e.g. from `pip download --no-deps nilearn dipy`), or a copy of one catalogue file (repeatable).", show_default=False)] = None,
    packages: Annotated[Optional[bool], typer.Option("--packages/--no-packages", help="Also use the volumes of installed packages (nilearn, dipy, nibabel, pydicom). Default: on unless INPUT names files or directories.", show_default=False)] = None,
    draws: Annotated[int, typer.Option(help="Physics phase maps drawn per slice.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed: the same seed, inputs and options give the same dataset.")] = 0,
    size: Annotated[int, typer.Option(help="Slice matrix (size x size), as convert's --size.")] = 256,
    fit: Annotated[str, typer.Option(help="'pad' or 'crop', as convert's --fit.")] = "pad",
    percentile: Annotated[float, typer.Option(help="Normalization percentile, as convert's --percentile.")] = 99.5,
    min_tissue: Annotated[float, typer.Option(help="Drop slices with less than this fraction of pixels above 0.1 (normalized).")] = 0.05,
    min_size: Annotated[int, typer.Option(help="Skip planes whose in-plane matrix has a side below this (heavily upsampled).")] = 48,
    isotropy: Annotated[float, typer.Option(help="Also slice along rows and columns when the largest voxel side is at most this times the smallest.")] = 1.1,
    phase_opt: Annotated[Optional[list[str]], typer.Option("--phase-opt", help="KEY=VALUE physics setting, e.g. b0_tesla=3,3 (repeatable; `kspacify methods` lists them).", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a previous build in OUT (only the files its manifest lists).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the volumes that would be built; write nothing.")] = False,
    salt: Salt = None,
) -> None:
    """Build complex training pairs: open magnitude volumes + phase from the physics model.

    Writes OUT/<subject>/<volume>.nii.gz (complex64, H x W x slices x draws), a JSON sidecar beside each
    and OUT/manifest.json; `kspacify.datasets` and the trainers read OUT as it is. One JSON line per
    volume on stdout. Exit codes: 0 built, 1 some volumes failed, 2 usage error, 3 nothing found.
    """
    from kspacify import data_build, phase
    from kspacify.convert import load_salt
    from kspacify.options import as_dict, parse_pairs
    from kspacify.preprocess import Preprocessing

    console = stderr_console()
    *inputs, out_text = paths
    out = Path(out_text)
    given = parse_pairs(phase_opt or [])
    settings = as_dict(phase.parse("physics", given))  # typed and checked before any work
    try:
        config = data_build.BuildConfig(
            draws=draws, seed=seed, preprocessing=Preprocessing(size=size, fit=fit, percentile=percentile),  # type: ignore[arg-type]
            min_tissue=min_tissue, min_size=min_size, isotropy=isotropy, phase_options={key: settings[key] for key in given},
        )  # fmt: skip
    except ValueError as error:
        raise usage_error(console, str(error)) from None

    archives = [Path(s) for s in source or []]
    if packages is None:
        packages = all(Path(i).is_file() and i.endswith((".whl", ".zip")) for i in inputs)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kspacify-data-") as scratch:
        try:
            items, skipped = data_build.collect(inputs, archives, packages=packages, workdir=Path(scratch), salt=load_salt(salt))
        except data_build.BuildError as error:
            raise usage_error(console, str(error)) from None
        for skip in skipped:
            if skip.failed:
                say(console, f"failed: {skip.path}: {skip.reason}")
        quiet = sum(1 for s in skipped if not s.failed)
        if quiet:
            say(console, f"skipped {quiet} file(s) that are not MR magnitude volumes")
        if not items:
            say(console, "nothing to build from (install nilearn/dipy, give --source WHEEL or INPUT)")
            raise typer.Exit(int(Exit.NOTHING_FOUND))
        if dry_run:
            for item in items:
                print(json.dumps({"status": "dry-run", "key": item.key, "shape": list(item.info.shape), "source": item.origin}), flush=True)
            raise typer.Exit(int(Exit.OK))
        try:
            data_build.prepare_output(out, overwrite)
        except data_build.BuildError as error:
            raise usage_error(console, str(error)) from None
        failures = sum(1 for s in skipped if s.failed)
        try:
            for built in data_build.run(items, config, out):
                if built.record is None:
                    failures += built.failed
                    status = "failed" if built.failed else "skipped"
                    say(console, f"{status}: {built.item.key}: {built.reason}")
                    print(json.dumps({"status": status, "key": built.item.key, "reason": built.reason}), flush=True)
                else:
                    record = built.record
                    print(json.dumps({"status": "written", **{k: record[k] for k in ("key", "file", "slices", "draws", "planes")}}), flush=True)
        except KeyboardInterrupt:
            say(console, "interrupted; rerun with --overwrite to replace the partial build")
            raise typer.Exit(int(Exit.INTERRUPTED)) from None
    totals = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["totals"]
    say(console, f"{totals['subjects']} subject(s), {totals['volumes']} volume(s), {totals['slices']} slices x {draws} draws"
                 f" = {totals['pairs']} pairs in {out} ({time.perf_counter() - started:.0f} s)")  # fmt: skip
    raise typer.Exit(int(Exit.SOME_FAILED if failures else Exit.OK))
