"""Machinery of the fault corpus (`test_corpus.py`, `test_corpus_processes.py`, docs/reliability.md).

Each kind of bad input or fault is tried as a new user would meet it: beside a valid 8-slice DICOM
series (a copy of one template, so its output name and bytes are known), through the command line.
`verify` then asserts what every kind must give: no traceback, the expected exit code, every stderr
line one escaped `kspacify: ` line, each bad file named with its reason, the valid neighbour
byte-identical to converting it alone, no stray or half-written file, no NaN, infinite or negative
value in any output, and no PHI (nor any factory UID) in any output byte, output name, stdout line
(source paths aside: they are the user's own, and documented) or stderr line.

Everything is generated on the fly, tiny (16 x 16 pixels, 32 x 32 outputs), with `--phase zero`.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import h5py
import nibabel as nib
import numpy as np
from typer.testing import CliRunner

import dicom_factory as F
from kspacify import fastmri_io
from kspacify.cli import app
from kspacify.commands.common import escape

SALT = "corpus"
ARGS = ("--phase", "zero", "--size", "32", "--salt", SALT)
VOLUME = (np.arange(8 * 16 * 16).reshape(8, 16, 16) % 251 + 20).astype(np.uint16)
NIFTI_VOLUME = np.random.default_rng(0).uniform(10, 300, (16, 16, 8)).astype(np.float32)


@dataclass(frozen=True)
class Reference:
    """The valid series, and what converting it alone gives."""

    template: Path
    name: str
    data: bytes


def make_reference(root: Path) -> Reference:
    template = root / "valid"
    F.write_series(template, VOLUME, series_number=1)
    result = CliRunner().invoke(app, ["convert", str(template), str(root / "alone"), *ARGS])
    assert result.exit_code == 0, result.output
    (output,) = (root / "alone").iterdir()
    return Reference(template, output.name, output.read_bytes())


@dataclass
class Expect:
    """What a kind must give. `named`: (path, reason pattern) pairs, each on one stderr line;
    `counted`: reasons in the one-line summary of quiet skips; `notes`: patterns of `note:` lines;
    `extra`: outputs written beside the valid one; `valid`: the valid neighbour is written."""

    exit: int
    named: Sequence[tuple[Any, str]] = ()
    counted: Sequence[str] = ()
    notes: Sequence[str] = ()
    extra: int | None = 0  # None: not counted (a run stopped by a signal)
    valid: bool = True
    args: Sequence[str] = ()
    inputs: Sequence[Any] | None = None  # default: the kind's `in` folder
    phi: Sequence[str] = ()  # more strings that must not leak (e.g. from a file name)


@dataclass
class Run:
    exit: int
    stdout: str
    stderr: str
    exception: BaseException | None = None


def cli(*args: Any, input: str | None = None) -> Run:
    result = CliRunner().invoke(app, [str(a) for a in args], input=input)
    exception = None if isinstance(result.exception, SystemExit) else result.exception
    return Run(result.exit_code, result.stdout, result.stderr, exception)


def subprocess_cli(*args: Any, timeout: float = 60, prefix: Sequence[str] = (), **popen: Any) -> Run:
    """The command line in a process of its own (signals, FIFOs, rlimits, other users)."""
    done = subprocess.run([*prefix, sys.executable, "-m", "kspacify", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, errors="replace", **popen)  # fmt: skip
    return Run(done.returncode, done.stdout, done.stderr)


def setup(root: Path, reference: Reference) -> Path:
    """`root/in` with a copy of the valid series in it."""
    inputs = root / "in"
    copy = inputs / "valid"
    copy.mkdir(parents=True)
    for path in reference.template.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    return inputs


def convert_args(root: Path, expect: Expect) -> list[Any]:
    inputs = expect.inputs if expect.inputs is not None else [root / "in"]
    return ["convert", *inputs, root / "out", *ARGS, *expect.args]


# ------------------------------------------------------------------------------------- verify

SECRETS = tuple(F.PHI_VALUES) + (F.UID_ROOT,)


def _no_secret(text: str, where: str, extra: Sequence[str]) -> None:
    for secret in (*SECRETS, *extra):
        assert secret not in text, f"{secret!r} leaked into {where}"


def _check_output(path: Path, extra: Sequence[str]) -> None:
    assert fastmri_io.incomplete(path, _slices(path)) is None
    with h5py.File(path) as handle:
        kspace = handle["kspace"][()]
        reconstruction = handle["reconstruction_esc"][()]
        assert np.all(np.isfinite(kspace)) and np.all(np.isfinite(reconstruction)), path
        assert reconstruction.min() >= 0, path
        assert np.isfinite(handle.attrs["max"]) and np.isfinite(handle.attrs["norm"])
        text = "\n".join(f"{k}={handle.attrs[k]}" for k in handle.attrs) + handle["ismrmrd_header"][()].decode()
    _no_secret(text, f"the metadata of {path.name}", extra)
    _no_secret(path.name, "an output name", extra)
    blob = path.read_bytes()
    for secret in (*SECRETS, *extra):
        if len(secret) >= 8:  # short strings turn up in random k-space bytes by chance
            assert secret.encode() not in blob, f"{secret!r} leaked into {path.name}"


def _slices(path: Path) -> int:
    with h5py.File(path) as handle:
        return handle["kspace"].shape[0]


def verify(run: Run, root: Path, expect: Expect, reference: Reference | None, out: Path | None = None) -> list[dict]:
    """The assertions every kind shares; returns the stdout lines."""
    out = out or root / "out"
    assert run.exception is None, f"a traceback: {run.exception!r}"
    assert "Traceback" not in run.stdout + run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    if run.exit == 2 and lines and lines[0].startswith("Usage: "):  # Typer's own message for a bad option
        assert all(line.isprintable() for line in lines), run.stderr
    else:
        assert all(line.startswith("kspacify: ") for line in lines), run.stderr
    assert run.exit == expect.exit, f"exit {run.exit}, expected {expect.exit}:\n{run.stderr}"
    for path, reason in expect.named:
        named = escape(str(path))
        assert any(named in line and re.search(reason, line) for line in lines), (
            f"{named} with /{reason}/ not on one line of:\n{run.stderr}")
    summary = [line for line in lines if re.match(r"kspacify: skipped \d+ file", line)]
    for reason in expect.counted:
        assert any(re.search(reason, line) for line in summary) or any(
            line.startswith("kspacify: skipped: ") and re.search(reason, line) for line in lines), (reason, run.stderr)
    for pattern in expect.notes:
        assert any(line.startswith("kspacify: note: ") and re.search(pattern, line) for line in lines), (pattern, run.stderr)
    records = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    for record in records:
        _no_secret(json.dumps({k: v for k, v in record.items() if k != "source"}), "stdout", expect.phi)
    _no_secret(run.stderr, "stderr", expect.phi)
    outputs = sorted(out.iterdir()) if out.is_dir() else []
    strays = [p.name for p in outputs if p.name.startswith(".") or p.suffix != ".h5" or not p.is_file()]
    assert not strays, f"stray or half-written files: {strays}"
    for path in outputs:
        _check_output(path, expect.phi)
    if reference is not None and expect.valid:
        assert (out / reference.name).read_bytes() == reference.data, "the valid neighbour changed"
    if expect.extra is not None:
        assert len(outputs) == (1 if reference is not None and expect.valid else 0) + expect.extra, [p.name for p in outputs]
    return records


# ----------------------------------------------------------------------------------- builders


def series(folder: Path, volume: np.ndarray = VOLUME, **kwargs: Any) -> list[Path]:
    """A second series (series number 2) in `folder`."""
    return F.write_series(folder, volume, **{"series_number": 2, **kwargs})


def image(path: Path, **kwargs: Any) -> Path:
    """One MR slice file (series number 3)."""
    return F.write_mr(path, VOLUME[0], **{"series_number": 3, **kwargs})


def edit(path: Path, **values: Any) -> Path:
    """Rewrite a DICOM file with header elements changed (None deletes one)."""
    import warnings

    import pydicom

    ds = pydicom.dcmread(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns of the invalid values some kinds write on purpose
        for keyword, value in values.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        ds.save_as(path)
    return path


def nifti(path: Path, data: np.ndarray | None = None, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(NIFTI_VOLUME if data is None else data, np.eye(4) if affine is None else affine), path)
    return path


def patch(path: Path, offset: int, fmt: str, *values: Any) -> Path:
    """Overwrite bytes of a file (a NIfTI header field) in place, through gzip for .gz files."""
    import gzip

    raw = path.read_bytes()
    gz = path.name.endswith(".gz")
    data = bytearray(gzip.decompress(raw) if gz else raw)
    struct.pack_into(fmt, data, offset, *values)
    path.write_bytes(gzip.compress(bytes(data)) if gz else bytes(data))
    return path


# NIfTI-1 header offsets
DIM, PIXDIM, SCL_SLOPE, SFORM_CODE, SROW_X = 40, 76, 112, 254, 280


def manifest_of(root: Path, *inputs: Path) -> list[dict]:
    run = cli("scan", *inputs, "--salt", SALT)
    assert run.exit == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


def write_lines(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def unprivileged() -> list[str] | None:
    """A command prefix running as another user when this is root (for whom no permission bit
    counts), [] when it is not root, None when that cannot be done here."""
    if os.geteuid() != 0:
        return []
    setpriv = "/usr/bin/setpriv"
    if not os.path.exists(setpriv):
        return None
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
