"""`kspacify benchmark` on tiny synthetic fastMRI files: outputs, resume, and the zero-filled baseline
against an independent computation. CPU only."""

from __future__ import annotations

import csv
import hashlib
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from fastmri_factory import phantom, write_singlecoil
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from typer.testing import CliRunner

from kspacify import phase
from kspacify.benchmark import MASK_SEED, BenchmarkConfig, BenchmarkError, run_benchmark
from kspacify.commands import benchmark as benchmark_command
from kspacify.datasets import list_volumes, load_splits, read_volume
from kspacify.phase.base import MethodSpec
from kspacify.recon.masks import make_mask

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fastmri")
    for v in range(5):
        write_singlecoil(root / f"vol{v}.h5", np.stack([phantom((32, 32), seed=10 * v + s) for s in range(3)]))
    return root


@dataclasses.dataclass(frozen=True)
class _NoOptions:
    pass


def _broken(options, device):
    raise RuntimeError("no weights for this test method")


@pytest.fixture()
def broken_method(monkeypatch):
    """A registered phase method that cannot be created (as sbdm/gan without a checkpoint)."""
    monkeypatch.setitem(phase.registry(), "broken", MethodSpec("broken", "test only", options=_NoOptions, build=_broken))


def _config(out: Path, data: Path, **overrides) -> BenchmarkConfig:
    base = dict(out=out, data=data, accelerations=(2.0, 4.0), acs=(4,), seeds=2, methods=("zero-filled", "smooth", "gt", "broken"),
                quick=True, max_steps=3, size=32, device="cpu", console=False)  # fmt: skip
    return BenchmarkConfig(**{**base, **overrides})


def test_tiny_benchmark_outputs_resume_and_baseline(tmp_path, data_dir, broken_method, monkeypatch):
    out = tmp_path / "bench"
    result = run_benchmark(_config(out, data_dir))
    assert result.complete and not result.failed
    assert set(result.skipped) == {"broken"} and "no weights" in result.skipped["broken"]
    expected = {f"zero-filled_R{r}_acs4_seed0" for r in (2, 4)}
    expected |= {f"{m}_R{r}_acs4_seed{s}" for m in ("smooth", "gt") for r in (2, 4) for s in (0, 1)}
    assert {c["id"] for c in result.cells} == expected

    document = json.loads((out / "results.json").read_text())
    assert document["complete"] and {c["id"] for c in document["cells"]} == expected
    assert document["methods"]["broken"].startswith("skipped")
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["method"], float(r["acceleration"])) for r in rows} == {(m, r) for m in ("zero-filled", "smooth", "gt") for r in (2.0, 4.0)}
    assert all(int(r["seeds"]) == (1 if r["method"] == "zero-filled" else 2) for r in rows)
    for name in ("figure-metrics-acs4.png", "examples-acs4-0.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    trained = json.loads((out / "cells" / "gt_R4_acs4_seed1" / "result.json").read_text())
    assert trained["training"]["steps"] == 3 and (out / trained["training"]["weights"]).is_file()

    # resume: nothing is trained or recomputed again
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/result.json")}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr("kspacify.training.fit", no_training)
    again = run_benchmark(_config(out, data_dir))
    assert again.complete and {c["id"] for c in again.cells} == expected
    assert {p: p.stat().st_mtime_ns for p in out.glob("cells/*/result.json")} == stamps
    with pytest.raises(BenchmarkError, match="other settings"):
        run_benchmark(_config(out, data_dir, max_steps=4))

    # the zero-filled baseline, computed independently: numpy FFT, skimage metrics
    splits = load_splits(out / "splits.json")
    refs = {ref.key: ref for ref in list_volumes(data_dir)}
    per_volume = []
    for key in splits["recTest"]:
        image = np.stack([s.image for s in read_volume(refs[key], 32)])
        gt = np.abs(image).astype(np.float64)
        seed_key = int(hashlib.sha256(key.encode()).hexdigest()[:15], 16)
        recon = []
        for i, slice_image in enumerate(image):
            mask = make_mask("equispaced", 32, 4.0, 4, np.random.default_rng([MASK_SEED, seed_key, i]))
            kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(slice_image), norm="ortho")) * mask[None, :]
            recon.append(np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace), norm="ortho"))))
        recon = np.stack(recon)
        maxval = gt.max()
        per_volume.append({
            "ssim": np.mean([structural_similarity(g, r, data_range=maxval) for g, r in zip(gt, recon)]),
            "psnr": peak_signal_noise_ratio(gt, recon, data_range=maxval),
            "nmse": np.sum((gt - recon) ** 2) / np.sum(gt**2),
        })  # fmt: skip
    baseline = next(c for c in result.cells if c["id"] == "zero-filled_R4_acs4_seed0")["metrics"]
    for name in ("ssim", "psnr", "nmse"):
        assert baseline[name] == pytest.approx(np.mean([v[name] for v in per_volume]), rel=1e-5), name
    assert baseline["nrmse"] == pytest.approx(np.sqrt(baseline["nmse"]))


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False)
    app.command("benchmark")(benchmark_command.command)
    app.command("other")(lambda: None)  # two commands: `benchmark` stays a subcommand
    return app


def test_cli_end_to_end_and_usage_errors(tmp_path, data_dir):
    runner = CliRunner()
    args = ["benchmark", "--data", str(data_dir), "--out", str(tmp_path / "cli"), "--R", "4", "--acs", "4", "--seeds", "1",
            "--methods", "zero-filled,smooth", "--quick", "--max-steps", "2", "--size", "32", "--device", "cpu"]  # fmt: skip
    done = runner.invoke(_app(), args)
    assert done.exit_code == 0, done.output
    assert "zero-filled" in done.stdout and "smooth" in done.stdout and "±" in done.stdout
    assert (tmp_path / "cli" / "results.json").is_file()

    for bad, message in (
        (["--data", str(tmp_path / "missing")], "no such file"),
        (["--data", str(data_dir), "--methods", "nonsense"], "unknown method 'nonsense'"),
        (["--data", str(data_dir), "--R", "4", "--acs", "300"], "--acs 300"),
    ):
        run = runner.invoke(_app(), ["benchmark", "--out", str(tmp_path / "bad"), *bad])
        assert run.exit_code == 2, run.output
        assert message in run.stderr and "Traceback" not in run.output
        assert len(run.stderr.strip().splitlines()) == 1


def test_default_data_falls_back_to_examples_with_physics_phase(tmp_path, monkeypatch):
    import kspacify.benchmark as benchmark
    from kspacify.benchmark import _method_status, resolve_data

    monkeypatch.setattr(benchmark, "SHARED_REAL_PHASE", tmp_path / "no-shared")
    source = resolve_data(None, tmp_path / "out", size=32)
    assert source.kind == "examples" and not source.real_phase
    assert "PHYSICS" in source.note and "`gt` is unavailable" in source.note
    assert len(list_volumes(source.path)) == 2  # the shipped DICOM series and NIfTI volume
    assert "no real phase" in _method_status("gt", source.real_phase, "cpu")
    monkeypatch.setattr(benchmark, "EXAMPLES", tmp_path / "no-examples")
    with pytest.raises(BenchmarkError, match="no data"):
        resolve_data(None, tmp_path / "out2")
