"""`kspacify convert` end to end: inputs, outputs, exit codes, reproducibility, faults."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from kspacify import fastmri_io
from kspacify.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data"


def run(*args, input=None):
    result = CliRunner().invoke(app, ["convert", *map(str, args), "--salt", "test"], input=input)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result, lines


def small_nifti(path: Path, value_seed=0, shape=(48, 40, 4)):
    data = np.random.default_rng(value_seed).uniform(0, 300, shape).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


def contents(path):
    with h5py.File(path) as f:
        return f["kspace"][()], {k: f.attrs[k] for k in f.attrs}


def test_shipped_examples_convert(tmp_path):
    result, lines = run(EXAMPLES, tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert sorted(line["slices"] for line in lines) == [12, 24]
    for line in lines:
        assert line["status"] == "written" and Path(line["output"]).exists()
        assert line["phase"] in result.stderr  # the chosen method is announced on stderr


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    source = small_nifti(tmp_path / "in" / "a.nii.gz")
    run(source, tmp_path / "one.h5", "--seed", "5")
    run(source, tmp_path / "two.h5", "--seed", "5")
    run(source, tmp_path / "three.h5", "--seed", "6")
    assert (tmp_path / "one.h5").read_bytes() == (tmp_path / "two.h5").read_bytes()
    assert not np.array_equal(contents(tmp_path / "one.h5")[0], contents(tmp_path / "three.h5")[0])


def test_workers_give_the_same_output_as_one_process(tmp_path):
    for i in range(3):
        small_nifti(tmp_path / "in" / f"v{i}.nii", value_seed=i)
    _, serial = run(tmp_path / "in", tmp_path / "serial", "--phase", "smooth")
    result, parallel = run(tmp_path / "in", tmp_path / "parallel", "--phase", "smooth", "--workers", "2")
    assert result.exit_code == 0, result.stderr
    assert len(serial) == len(parallel) == 3
    names = sorted(p.name for p in (tmp_path / "serial").iterdir())
    assert len(names) == 3 and names == sorted(p.name for p in (tmp_path / "parallel").iterdir())
    for name in names:
        assert (tmp_path / "serial" / name).read_bytes() == (tmp_path / "parallel" / name).read_bytes()


def test_resume_skips_existing_and_overwrite_replaces(tmp_path):
    source = small_nifti(tmp_path / "a.nii")
    out = tmp_path / "out"
    _, (line,) = run(source, out, "--phase", "smooth")
    output = Path(line["output"])
    first = output.stat().st_mtime_ns
    _, lines = run(source, out, "--phase", "smooth")
    assert lines[0]["status"] == "exists" and output.stat().st_mtime_ns == first
    _, lines = run(source, out, "--phase", "smooth", "--overwrite")
    assert lines[0]["status"] == "written" and output.stat().st_mtime_ns != first


def test_dry_run_writes_nothing(tmp_path):
    source = small_nifti(tmp_path / "a.nii")
    result, lines = run(source, tmp_path / "out", "--dry-run")
    assert result.exit_code == 0
    assert lines[0]["status"] == "dry-run" and re.fullmatch(r"nii_[0-9a-f]{8}\.h5", Path(lines[0]["output"]).name)
    assert not (tmp_path / "out").exists()


def test_nothing_convertible_exits_3(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    result, lines = run(tmp_path, tmp_path / "out")
    assert result.exit_code == 3 and lines == []
    assert "nothing convertible" in result.stderr


def test_bad_inputs_are_reported_one_line_each_and_the_rest_converts(tmp_path):
    good = small_nifti(tmp_path / "in" / "good.nii")
    broken = tmp_path / "in" / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b garbage")
    fake_dicom = tmp_path / "in" / "scan.dcm"
    fake_dicom.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00truncated")
    result, lines = run(tmp_path / "in", tmp_path / "missing-dir", tmp_path / "out")
    assert result.exit_code == 1
    assert [Path(line["source"]) for line in lines] == [good]
    assert [Path(line["output"]).parent for line in lines] == [tmp_path / "out"]
    errors = result.stderr.splitlines()
    for path in (broken, fake_dicom, tmp_path / "missing-dir"):
        assert sum(str(path) in line for line in errors) == 1
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    assert good.exists()


def test_one_h5_for_many_volumes_is_a_usage_error_and_writes_nothing(tmp_path):
    small_nifti(tmp_path / "in" / "a.nii")
    small_nifti(tmp_path / "in" / "b.nii")
    result, _ = run(tmp_path / "in", tmp_path / "out.h5")
    assert result.exit_code == 2
    assert "2 volumes" in result.stderr
    assert not (tmp_path / "out.h5").exists()


def test_paths_from_stdin_nul_separated_and_include_exclude(tmp_path):
    a = small_nifti(tmp_path / "in" / "a.nii")
    b = small_nifti(tmp_path / "in" / "b.nii", value_seed=1)
    result, lines = run("-", tmp_path / "out", "-0", input=f"{a}\0{b}\0")
    assert result.exit_code == 0 and len(lines) == 2
    _, lines = run(tmp_path / "in", tmp_path / "out2", "--exclude", "b.*", "--keep-names")
    assert [Path(line["output"]).name for line in lines] == ["a.h5"]
    _, lines = run(tmp_path / "in", tmp_path / "out3", "--include", "*b.nii", "--keep-names")
    assert [Path(line["output"]).name for line in lines] == ["b.h5"]


def test_usage_errors_exit_2_without_traceback(tmp_path):
    source = small_nifti(tmp_path / "a.nii")
    for extra in (["--phase", "nope"], ["--fit", "stretch"], ["--phase-opt", "novalue"], ["--workers", "0"]):
        result, _ = run(source, tmp_path / "out", *extra)
        assert result.exit_code == 2, extra
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_phase_options_reach_the_method_and_are_recorded(tmp_path):
    source = small_nifti(tmp_path / "a.nii")
    run(source, tmp_path / "a.h5", "--phase", "smooth", "--phase-opt", "smoothness=0.3", "--phase-opt", "amplitude=0.5")
    _, attrs = contents(tmp_path / "a.h5")
    assert json.loads(attrs["phase_settings"]) == {"smoothness": 0.3, "amplitude": 0.5}
    assert attrs["phase_method"] == "smooth"


def test_an_interrupted_write_leaves_no_file(tmp_path):
    class Interrupted(Exception):
        pass

    with pytest.raises(Interrupted):
        with fastmri_io.VolumeWriter(tmp_path / "v.h5", (2, 8, 8), "<x/>") as writer:
            writer.write(0, np.ones((1, 8, 8), np.complex64), np.ones((1, 8, 8), np.float32))
            assert len(list(tmp_path.iterdir())) == 1  # the hidden temporary
            raise Interrupted()
    assert list(tmp_path.iterdir()) == []


def test_a_failing_source_leaves_no_file_and_the_run_goes_on(tmp_path, monkeypatch):
    from kspacify import sources

    small_nifti(tmp_path / "in" / "a.nii")
    small_nifti(tmp_path / "in" / "b.nii", value_seed=1)
    real_load = sources.load

    def flaky(info):
        if info.files[0].endswith("a.nii"):
            raise sources.SourceError("a.nii: disk vanished")
        return real_load(info)

    monkeypatch.setattr(sources, "load", flaky)
    result, lines = run(tmp_path / "in", tmp_path / "out", "--phase", "smooth")
    assert result.exit_code == 1
    assert "a.nii: disk vanished" in result.stderr
    assert [Path(line["source"]).name for line in lines] == ["b.nii"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == [Path(lines[0]["output"]).name]


def test_console_script_runs_and_stdout_is_only_json(tmp_path):
    exe = shutil.which("kspacify")
    if exe is None:
        pytest.skip("the kspacify console script is not installed (pip install -e .)")
    source = small_nifti(tmp_path / "a.nii")
    done = subprocess.run([exe, "convert", str(source), str(tmp_path / "out"), "--phase", "zero", "--salt", "x", "--keep-names"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"].endswith("a.h5")
    assert "phase method zero" in done.stderr


def test_a_non_finite_slab_fails_its_volume_on_the_write_behind_thread(tmp_path, monkeypatch):
    """A slab's FFT and write run behind the next slab's synthesis: a phase that is NaN in a later
    slab fails that volume with one line and no file (not even a temporary), and the next volume
    is converted."""
    from kspacify.phase.smooth import SmoothPhase

    small_nifti(tmp_path / "in" / "a.nii", shape=(48, 40, 40))
    small_nifti(tmp_path / "in" / "b.nii", value_seed=1, shape=(48, 40, 4))
    real = SmoothPhase.synthesize
    calls = []

    def broken_in_slab_two(self, magnitude, rng, acquisition):
        calls.append(len(magnitude))
        phase = real(self, magnitude, rng, acquisition)
        return phase * np.nan if len(calls) == 2 else phase

    monkeypatch.setattr(SmoothPhase, "synthesize", broken_in_slab_two)
    result, lines = run(tmp_path / "in", tmp_path / "out", "--phase", "smooth", "--batch-size", "8")
    assert result.exit_code == 1
    assert re.search(r"a\.nii.*not finite", result.stderr) and "Traceback" not in result.stderr
    assert [Path(line["source"]).name for line in lines if line["status"] == "written"] == ["b.nii"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == [Path(lines[-1]["output"]).name]
