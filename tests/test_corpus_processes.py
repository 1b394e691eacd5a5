"""The fault corpus, in processes of their own: what could hang or kill the test process (FIFOs,
signals, memory and file-size limits), or needs another user (permissions as root). Each run has a
timeout, so a regression fails instead of hanging the suite."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import dicom_factory as F
import numpy as np
import pydicom
import pytest
from corpus import ARGS, SALT, VOLUME, Expect, Reference, Run, make_reference, nifti, setup, subprocess_cli, unprivileged, verify
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Reference:
    return make_reference(tmp_path_factory.mktemp("reference"))


def test_fifos_are_reported_never_opened(tmp_path, reference):
    """A FIFO in the tree (and one named like a NIfTI sidecar) hung convert and scan forever."""
    inputs = setup(tmp_path, reference)
    os.mkfifo(inputs / "pipe.dcm")
    nifti(inputs / "v.nii")
    os.mkfifo(inputs / "v.json")  # the sidecar beside v.nii
    explicit = tmp_path / "explicit.fifo"
    os.mkfifo(explicit)
    run = subprocess_cli("convert", inputs, explicit, tmp_path / "out", *ARGS, timeout=60)
    verify(run, tmp_path, Expect(1, named=[(explicit, r"not a regular file \(a FIFO\)")],
                                 counted=[r"2 not a regular file \(a FIFO\)"], extra=1), reference)  # fmt: skip
    scanned = subprocess_cli("scan", inputs, "--salt", SALT, timeout=60)
    assert scanned.exit == 0 and len(scanned.stdout.splitlines()) == 2, scanned.stderr
    assert "not a regular file (a FIFO)" in scanned.stderr


def test_unreadable_folder_and_file_are_named(tmp_path, reference):
    """A folder or file the user cannot read was skipped without a word."""
    prefix = unprivileged()
    if prefix is None:
        pytest.skip("root without setpriv: no way to be a user whom permissions stop")
    root = Path(tempfile.mkdtemp(prefix="kspacify-perm-"))  # other users can reach it, unlike tmp_path
    try:
        os.chmod(root, 0o755)
        inputs = setup(root, reference)
        locked = inputs / "locked"
        locked.mkdir()
        (locked / "inside.dcm").write_bytes(b"x")
        secret = inputs / "secret.dcm"
        secret.write_bytes((inputs / "valid" / sorted(os.listdir(inputs / "valid"))[0]).read_bytes())
        (root / "out").mkdir()
        for path in [root, *root.rglob("*")]:
            os.chmod(path, 0o777 if path.is_dir() else 0o644)
        os.chmod(locked, 0)
        os.chmod(secret, 0)
        run = subprocess_cli("convert", inputs, root / "out", *ARGS, prefix=prefix, timeout=60,
                             env={**os.environ, "HOME": str(root), "XDG_CONFIG_HOME": str(root / "config")})  # fmt: skip
        verify(run, root, Expect(1, named=[(locked, "unreadable directory: Permission denied"),
                                           (secret, "unreadable: Permission denied")]), reference)  # fmt: skip
    finally:
        for path in [root, *root.rglob("*")]:
            os.chmod(path, 0o700)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def _file_size_limit(limit: int):
    def limit_writes() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so a write past it fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_writes


def test_a_full_disk_fails_each_volume_and_leaves_nothing(tmp_path, reference):
    """RLIMIT_FSIZE stands in for a full disk (test_corpus mounts a tiny tmpfs where root allows):
    writes fail midway; each volume fails by name, no temporary is left, nothing crashes."""
    inputs = setup(tmp_path, reference)
    nifti(inputs / "v.nii")
    run = subprocess_cli("convert", inputs, tmp_path / "out", *ARGS, timeout=60, preexec_fn=_file_size_limit(40_000))
    verify(run, tmp_path, Expect(1, named=[(tmp_path / "out", "cannot write .*File too large")], valid=False), reference)
    assert run.stderr.count("failed: cannot write") == 2


def _many_inputs(root: Path, count: int = 40) -> Path:
    """Enough volumes that a signal sent when the first is written lands in the middle of the run."""
    rng = np.random.default_rng(0)
    for index in range(count):
        nifti(root / f"v{index:02d}.nii", rng.uniform(10, 300, (48, 48, 24)).astype(np.float32))
    return root


@pytest.mark.parametrize("how", ["sigterm", "sigterm_workers", "sigint_workers"])
def test_a_signal_abandons_the_volume_in_hand_and_exits_by_its_code(how, tmp_path):
    """A scheduler's SIGTERM (to the process, or to its whole group as SLURM does) or Ctrl-C: the
    run stops with 143 or 130 and a message, finished files complete, no temporary left."""
    inputs = _many_inputs(tmp_path / "in")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "kspacify", "convert", inputs, out, "--phase", "smooth", "--salt", SALT]
    if how.endswith("workers"):
        args += ["--workers", "2"]
    process = subprocess.Popen(list(map(str, args)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    try:
        first = process.stdout.readline()  # one volume written: the run is converting
        assert json.loads(first)["status"] == "written"
        number = signal.SIGINT if how.startswith("sigint") else signal.SIGTERM
        if how == "sigterm":
            process.send_signal(number)
        else:
            os.killpg(process.pid, number)
        rest, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    expected = 130 if number == signal.SIGINT else 143
    run = Run(process.returncode, first + rest, stderr)
    verify(run, tmp_path, Expect(expected, named=[("", "interrupted|terminated")], extra=None), None)
    assert len(list(out.iterdir())) < 40, "the run ended before the signal: make it longer"


def test_a_closed_stdout_stops_with_141(tmp_path, reference):
    """`kspacify convert ... | head -0`: the reader is gone; a BrokenPipeError traceback, before."""
    inputs = setup(tmp_path, reference)
    process = subprocess.Popen([sys.executable, "-m", "kspacify", "convert", str(inputs), str(tmp_path / "out"), *ARGS],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    process.stdout.close()
    stderr = process.stderr.read()
    process.wait(timeout=60)
    verify(Run(process.returncode, "", stderr), tmp_path, Expect(141, named=[("", "stdout closed by its reader")]), reference)


def test_two_runs_into_one_folder_both_succeed(tmp_path, reference):
    """Each removed the other's temporaries at its end (one failed with 'No such file'); now a run
    removes only its own dead writers' and stale ones."""
    inputs = setup(tmp_path, reference)
    for index in range(6):
        nifti(inputs / f"v{index}.nii", np.full((32, 32, 16), 10.0 + index, np.float32))
    command = [sys.executable, "-m", "kspacify", "convert", str(inputs), str(tmp_path / "out"), *ARGS, "--overwrite"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    # both end before the folder is checked: while one still runs, its in-flight temporaries are legitimate
    finished = [(process, *process.communicate(timeout=120)) for process in runs]
    for process, stdout, stderr in finished:
        verify(Run(process.returncode, stdout, stderr), tmp_path, Expect(0, extra=6), reference)


# ------------------------------------------------------------------ DICOM: what a header claims


def test_enhanced_mr_claiming_2_31_frames_is_refused_quickly(tmp_path, reference):
    inputs = setup(tmp_path, reference)
    path = F.write_enhanced_mr(inputs / "enhanced.dcm", VOLUME[:2], positions=[(0, 0, 0), (0, 0, 2)])
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 2**31 - 1
    del ds.PerFrameFunctionalGroupsSequence
    ds.save_as(path)
    try:
        run = subprocess_cli("convert", inputs, tmp_path / "out", *ARGS, timeout=8)
    except subprocess.TimeoutExpired:
        pytest.fail("the header scan did not end within 8 s")
    verify(run, tmp_path, Expect(1, named=[(path, "frames|header claims")]), reference)


def _deflate_bomb(path: Path, inflated: int) -> Path:
    """A Deflated Explicit VR Little Endian file: a 16 x 16 image, then a private element of
    `inflated` zero bytes that deflate to a few hundred KiB (built in pieces, never all in memory)."""
    ds = F.mr_dataset(VOLUME[0], series_number=3)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    head = DicomBytesIO()
    head.is_little_endian, head.is_implicit_VR = True, False
    write_dataset(head, ds)
    creator = b"\xe1\x7f\x10\x00LO\x02\x00XX"  # (7FE1,0010) private creator
    element = b"\xe1\x7f\x00\x10OB\x00\x00" + inflated.to_bytes(4, "little")  # (7FE1,1000) OB
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    meta = DicomBytesIO()
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    with open(path, "wb") as handle:
        handle.write(b"\0" * 128 + b"DICM" + meta.getvalue())
        handle.write(deflate.compress(head.getvalue() + creator + element))
        chunk = bytes(1 << 20)
        for _ in range(inflated // len(chunk)):
            handle.write(deflate.compress(chunk))
        handle.write(deflate.flush())
    return path


def _address_space(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_a_deflate_bomb_is_refused_without_inflating_it(tmp_path, reference):
    inputs = setup(tmp_path, reference)
    bomb = _deflate_bomb(inputs / "bomb.dcm", 512 << 20)
    assert bomb.stat().st_size < 2 << 20
    run = subprocess_cli("convert", inputs, tmp_path / "out", *ARGS, timeout=60, preexec_fn=_address_space(1 << 30))
    verify(run, tmp_path, Expect(1, named=[(bomb, "inflat|larger than")]), reference)
