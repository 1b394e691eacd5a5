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
        table = list(csv.DictReader(handle))
    rows = [r for r in table if r["row"] == "method"]
    pairs = {(r["method"], r["versus"], float(r["acceleration"])) for r in table if r["row"] == "paired" and r["metric"] == "ssim"}
    assert pairs == {(a, b, r) for a, b in (("zero-filled", "smooth"), ("zero-filled", "gt"), ("smooth", "gt")) for r in (2.0, 4.0)}
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
    zero_filled = next(c for c in result.cells if c["id"] == "zero-filled_R4_acs4_seed0")
    for values in zero_filled["per_volume"].values():  # NRMSE is the root of each volume's NMSE
        assert values["nrmse"] == pytest.approx(np.sqrt(values["nmse"]))
    assert baseline["nrmse"] == pytest.approx(np.mean([np.sqrt(v["nmse"]) for v in per_volume]), rel=1e-5)


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
    monkeypatch.setattr(benchmark, "SHARED_REAL_PHASE_TRAIN", tmp_path / "no-shared-train")
    source = resolve_data(None, tmp_path / "out", size=32)
    assert source.kind == "examples" and not source.real_phase
    assert "PHYSICS" in source.note and "`gt` is unavailable" in source.note
    assert len(list_volumes(source.path)) == 2  # the shipped DICOM series and NIfTI volume
    assert "no real phase" in _method_status("gt", source.real_phase, "cpu")[0]
    monkeypatch.setattr(benchmark, "EXAMPLES", tmp_path / "no-examples")
    with pytest.raises(BenchmarkError, match="no data"):
        resolve_data(None, tmp_path / "out2")


def test_paired_differences_against_a_hand_computed_case():
    from kspacify.benchmark import findings, paired_differences
    from kspacify.intervals import mean_interval

    # two test volumes; a has two seeds (mean over seeds first), b one
    def cell(method, seed, v1, v2):
        values = lambda x: {"ssim": x, "psnr": 10 * x, "nrmse": 1 - x, "nmse": (1 - x) ** 2}  # noqa: E731
        return {"method": method, "acceleration": 4.0, "acs": 26, "seed": seed, "per_volume": {"v1": values(v1), "v2": values(v2)}}

    cells = [cell("a", 0, 0.9, 0.7), cell("a", 1, 0.7, 0.7), cell("b", 0, 0.8, 0.5)]
    rows = {(r["a"], r["b"], r["metric"]): r for r in paired_differences(cells, ["a", "b"])}
    ssim = rows[("a", "b", "ssim")]
    # per volume: a = (0.8, 0.7), b = (0.8, 0.5) -> differences (0.0, 0.2), mean 0.1
    assert ssim["difference"] == pytest.approx(0.1) and ssim["volumes"] == 2
    # resampling 2 volumes: the mean is 0 (1/4), 0.1 (1/2) or 0.2 (1/4): the 95% interval is [0, 0.2]
    assert (ssim["low"], ssim["high"]) == pytest.approx((0.0, 0.2))
    assert ssim["verdict"] == "within uncertainty"  # the interval touches 0
    nrmse = rows[("a", "b", "nrmse")]
    assert nrmse["difference"] == pytest.approx(-0.1) and nrmse["verdict"] == "within uncertainty"
    assert mean_interval(np.array([0.02, 0.03, 0.04]))[0] > 0
    cells = [cell("zero-filled", 0, 0.8, 0.8), cell("gt", 0, 0.85, 0.86), cell("smooth", 0, 0.7, 0.75)]
    rows = paired_differences(cells, ["zero-filled", "gt", "smooth"])
    verdicts = {(r["a"], r["b"]): r["verdict"] for r in rows if r["metric"] == "ssim"}
    assert verdicts[("zero-filled", "gt")] == "zero-filled < gt" and verdicts[("zero-filled", "smooth")] == "zero-filled > smooth"
    said = " ".join(findings([], rows))
    assert "the smooth VarNet is WORSE than zero-filling" in said and "gt VarNet" not in said


def test_an_untrained_varnet_is_zero_filling():
    from kspacify.kspace import fft2c, ifft2c
    from kspacify.recon.varnet import VarNet, VarNetConfig

    image = torch.from_numpy(phantom((32, 32), seed=3))[None]
    mask = torch.zeros(1, 1, 32, dtype=torch.bool)
    mask[..., ::3] = True
    mask[..., 14:18] = True
    masked = fft2c(image) * mask
    for config in (VarNetConfig(2, 4, 2), VarNetConfig.preset("small")):
        with torch.no_grad():
            out = VarNet(config)(masked, mask)
        torch.testing.assert_close(out, ifft2c(masked).abs(), rtol=0, atol=1e-6)


def test_test_data_zero_method_and_bad_input(tmp_path, data_dir):
    other = tmp_path / "other"
    other.mkdir()
    for v in range(2):
        write_singlecoil(other / f"test{v}.h5", np.stack([phantom((32, 32), seed=100 + 10 * v + s) for s in range(3)]))
    result = run_benchmark(_config(tmp_path / "td", data_dir, test_data=other, methods=("zero-filled", "zero", "gt"),
                                   accelerations=(4.0,), seeds=1))  # fmt: skip
    assert result.complete and {c["method"] for c in result.cells} == {"zero-filled", "zero", "gt"}
    splits = load_splits(tmp_path / "td" / "splits.json")
    assert set(splits) == {"recTrain", "recVal"} and len(splits["recTrain"]) + len(splits["recVal"]) == 5
    assert {key for c in result.cells for key in c["per_volume"]} == {"test0", "test1"}
    assert all(len(c["per_slice"]) == 6 for c in result.cells)  # every test slice kept

    runner = CliRunner()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    for bad, message in (
        (["--test-data", str(empty), "--acs", "4"], "no complex volumes"),
        (["--R", "8", "--acs", "6"], "exceed the 4 lines"),
    ):
        run = runner.invoke(_app(), ["benchmark", "--data", str(data_dir), "--out", str(tmp_path / f"bad{len(message)}"),
                                     "--quick", "--size", "32", "--methods", "zero-filled", *bad])  # fmt: skip
        assert run.exit_code == 2, run.output
        assert message in run.stderr and "Traceback" not in run.output
        assert len([line for line in run.stderr.splitlines() if "error" in line]) == 1
