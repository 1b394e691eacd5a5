"""`--phase sbdm`: checkpoint discovery, sampling, the exact noise background, auto, errors, CLI.

A tiny random-init checkpoint (16x16 diffusion, ~0.2M parameters) stands in for a trained one: these
tests check the plumbing, not the quality of the phase.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import kspacify.weights
from kspacify import phase
from kspacify.cli import app
from kspacify.device import resolve_device
from kspacify.kspace import ifft2c
from kspacify.phase import sbdm
from kspacify.sbdm import grid
from kspacify.sbdm import VESDE, ScoreNet, ScoreNetConfig, phasor_sigma_max, save_checkpoint
from kspacify.sbdm.checkpoint import sha256_file

TINY = ScoreNetConfig(
    nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), image_size=16, dropout=0.0, input_scaling=True
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "sbdm-small.safetensors"
    save_checkpoint(path, ScoreNet(TINY, seed=0), sde=VESDE(sigma_max=phasor_sigma_max(16, 16)))
    return path


def phantom(batch: int = 3, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A bright disc on a Rayleigh noise background (normalized like preprocess does); and its mask."""
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    disc = (xx**2 + yy**2 < 0.6**2).astype(np.float32)
    noise = np.random.default_rng(seed).normal(0, 0.02, (2, batch, size, size)).astype(np.float32)
    magnitude = np.abs(disc + noise[0] + 1j * noise[1]).astype(np.float32)
    return magnitude, np.broadcast_to(disc > 0, magnitude.shape)


def synth(checkpoint: Path, **options) -> sbdm.SbdmPhase:
    return phase.create("sbdm", device="cpu", checkpoint=str(checkpoint), **options)


def test_output_shape_dtype_range_and_settings(checkpoint):
    method = synth(checkpoint)
    magnitude, _ = phantom()
    out = method.synthesize(magnitude, np.random.default_rng(0))
    assert out.shape == magnitude.shape and out.dtype == np.float32
    assert np.all(out >= -np.pi) and np.all(out < np.pi)
    settings = method.settings()
    assert settings["checkpoint"] == checkpoint.name
    assert settings["checkpoint_sha256"] == sha256_file(checkpoint)
    assert settings["sampler"] == "dpm2m" and settings["nfe"] <= 50 and settings["diffusion_size"] == 16
    json.dumps(settings)  # provenance goes into the HDF5 attributes as JSON


def test_deterministic_for_a_seed_and_different_across_seeds(checkpoint):
    method = synth(checkpoint, steps=4)
    magnitude, _ = phantom()
    a = method.synthesize(magnitude, np.random.default_rng(7))
    b = method.synthesize(magnitude, np.random.default_rng(7))
    c = method.synthesize(magnitude, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_low_resolution_diffusion_is_upsampled(checkpoint):
    method = synth(checkpoint, steps=4, background="model")
    shapes = []
    network = method.model

    def recording(x, sigma, magnitude):
        shapes.append(tuple(x.shape))
        return network(x, sigma, magnitude)

    method.model = recording
    magnitude, _ = phantom(batch=2, size=32)
    out = method.synthesize(magnitude, np.random.default_rng(0))
    assert set(shapes) == {(2, 2, 16, 16)} and len(shapes) == 4  # the whole batch, on the 16x16 grid
    # bilinear upsampling of the phasor: neighbouring pixels differ little (away from wraps)
    step = np.angle(np.exp(1j * np.diff(out, axis=-1)))
    assert np.median(np.abs(step)) < 0.5


def test_background_gets_uniform_phase_and_tissue_keeps_the_sampled_phase(checkpoint):
    magnitude, disc = phantom(batch=4, size=32)
    noisy = synth(checkpoint, steps=4, background="noise").synthesize(magnitude, np.random.default_rng(3))
    plain = synth(checkpoint, steps=4, background="model").synthesize(magnitude, np.random.default_rng(3))
    yy, xx = np.mgrid[-1:1:32j, -1:1:32j]
    outside = np.broadcast_to(xx**2 + yy**2 > 0.8**2, magnitude.shape)  # well clear of the soft edge
    inside = np.broadcast_to(xx**2 + yy**2 < 0.4**2, magnitude.shape)
    background = noisy[outside]
    assert abs(np.mean(np.exp(1j * background))) < 0.1  # no preferred direction
    counts, _ = np.histogram(background, bins=8, range=(-np.pi, np.pi))
    assert counts.min() > 0.7 * counts.mean() and counts.max() < 1.3 * counts.mean()
    # in tissue (SNR 50) the added noise moves the phase by ~1/50 rad only
    assert np.median(np.abs(np.angle(np.exp(1j * (noisy[inside] - plain[inside]))))) < 0.05


def test_noise_adds_only_the_share_the_grid_does_not_carry(checkpoint):
    """A grid cell averages pixels / cells pixels, so sampled phase keeps 1/(that) of the noise
    variance; the receiver noise added after upsampling is the rest (sigma x sqrt(1 - cells/pixels))."""
    from kspacify.phase.physics import ReceiverNoise, with_measurement_noise

    assert grid.residual_noise_gain((16, 16), 32, 32) == pytest.approx(np.sqrt(0.75))
    assert grid.residual_noise_gain((32, 32), 256, 256) == pytest.approx(np.sqrt(1 - 1 / 64))
    assert grid.residual_noise_gain((32, 32), 32, 32) == grid.residual_noise_gain((32, 32), 16, 16) == 1.0  # noise forced: whole
    small, _ = phantom(batch=1, size=8)  # smaller than the 16 x 16 grid: sampling still runs (gain 1, above)
    assert np.isfinite(synth(checkpoint, steps=2, background="noise").synthesize(small, np.random.default_rng(0))).all()
    magnitude, _ = phantom(batch=2, size=32)
    noisy = synth(checkpoint, steps=4, background="noise", noise_gain=2.0).synthesize(magnitude, np.random.default_rng(5))
    plain = synth(checkpoint, steps=4, background="model").synthesize(magnitude, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    rng.integers(0, 2**63 - 1)  # the sampler's torch seed comes first from the stream
    expected = with_measurement_noise(magnitude, plain, rng, ReceiverNoise(noise_gain=2.0 * np.sqrt(0.75)))
    np.testing.assert_allclose(np.angle(np.exp(1j * (noisy - expected))), 0, atol=1e-4)


def test_training_pairs_on_the_diffusion_grid():
    magnitude = torch.rand(2, 1, 32, 32) + 0.1
    phase_map = torch.full((2, 32, 32), 2.5)
    coarse, target = grid.to_diffusion_grid(magnitude, (16, 16), phase_map)
    assert coarse.shape == (2, 1, 16, 16) and target.shape == (2, 2, 16, 16)
    torch.testing.assert_close(coarse.mean(), magnitude.mean())
    torch.testing.assert_close(torch.atan2(target[:, 1], target[:, 0]), torch.full((2, 16, 16), 2.5))
    torch.testing.assert_close(target.norm(dim=1), torch.ones(2, 16, 16))
    assert grid.diffusion_grid(256, 256, 64, 8) == (64, 64)
    assert grid.diffusion_grid(320, 256, 64, 8) == (64, 48)


def test_finds_checkpoint_in_weights_dir_and_env(checkpoint, monkeypatch, tmp_path):
    monkeypatch.setenv(kspacify.weights.WEIGHTS_ENV, str(checkpoint.parent))
    assert sbdm.find_checkpoint() == checkpoint
    monkeypatch.setattr(kspacify.weights, "weights_dirs", lambda: [tmp_path])
    assert sbdm.find_checkpoint() is None
    with pytest.raises(ValueError, match="--phase physics"):
        phase.create("sbdm", device="cpu")


def test_auto_skips_sbdm_without_checkpoint_or_gpu(checkpoint, monkeypatch, tmp_path):
    monkeypatch.setattr(kspacify.weights, "weights_dirs", lambda: [tmp_path])
    ok, reason = sbdm.usable("auto")
    assert not ok and reason.startswith("no checkpoint in kspacify/weights/")
    name, why = phase.resolve("auto", "auto")
    assert name != "sbdm" and "sbdm: no checkpoint" in why
    monkeypatch.setattr(kspacify.weights, "weights_dirs", lambda: [checkpoint.parent])
    ok, reason = sbdm.usable("cpu")
    assert not ok and reason.startswith("no GPU") and "--phase sbdm" in reason
    assert phase.resolve("auto", "cpu")[0] != "sbdm"


def test_auto_without_checkpoint_does_not_import_torch():
    code = (
        "import sys; import kspacify.weights as w; w.weights_dirs = lambda: []; from kspacify.phase import sbdm; "
        "assert not sbdm.usable('auto')[0]; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_corrupt_checkpoint_names_the_fallback(checkpoint, tmp_path):
    broken = tmp_path / checkpoint.name
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF
    broken.write_bytes(bytes(data))
    (tmp_path / checkpoint.with_suffix(".json").name).write_bytes(checkpoint.with_suffix(".json").read_bytes())
    with pytest.raises(ValueError, match="sha256 mismatch.*--phase physics"):
        synth(broken)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"stepz": 3}, "unknown option"),
        ({"sampler": "euler"}, "unknown sampler"),
        ({"snr": 0.2}, "pc sampler"),
        ({"churn": 40}, "heun sampler"),
        ({"sampler": "heun", "churn": -1}, "churn must be >= 0"),
        ({"precision": "bf16"}, "CUDA only"),
        ({"steps": 1}, "at least 2"),
    ],
)
def test_bad_options_are_errors(checkpoint, options, message):
    with pytest.raises(ValueError, match=message):
        synth(checkpoint, **options)


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count() if torch.cuda.is_available() else 0}")


def test_cli_convert_with_sbdm(checkpoint, tmp_path):
    data = np.random.default_rng(0).uniform(0, 300, (40, 36, 3)).astype(np.float32)
    source = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), source)
    out = tmp_path / "out.h5"
    args = ["convert", str(source), str(out), "--salt", "t", "--size", "32", "--phase", "sbdm", "--device", "cpu",
            "--steps", "3", "--phase-opt", f"checkpoint={checkpoint}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "phase method sbdm" in result.stderr
    with h5py.File(out) as f:
        kspace, magnitude = f["kspace"][()], f["reconstruction_esc"][()]
        settings = json.loads(f.attrs["phase_settings"])
        assert f.attrs["checkpoint_sha256"] == sha256_file(checkpoint)
    assert settings["steps"] == 3 and settings["diffusion_size"] == 16
    np.testing.assert_allclose(np.abs(ifft2c(kspace)), magnitude, atol=1e-5 * magnitude.max())

    broken = tmp_path / "broken" / checkpoint.name
    broken.parent.mkdir()
    broken.write_bytes(b"not a checkpoint")
    args[-1] = f"checkpoint={broken}"
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "--phase physics" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_auto_takes_a_checkpoint_only_when_its_card_beats_physics(checkpoint, monkeypatch, tmp_path):
    import json

    import kspacify.device

    monkeypatch.setattr(kspacify.device, "is_accelerator", lambda device: True)  # as if on a GPU
    directory = tmp_path / "w"
    directory.mkdir()
    target = directory / checkpoint.name
    target.write_bytes(checkpoint.read_bytes())
    card = json.loads(checkpoint.with_suffix(".json").read_text())
    monkeypatch.setattr(kspacify.weights, "weights_dirs", lambda: [directory])

    def with_realism(realism):
        card["quality"] = {**card.get("quality", {}), **({"realism": realism} if realism else {})}
        target.with_suffix(".json").write_text(json.dumps(card))
        return sbdm.usable("cpu")

    physics = {"gradient_w1": 0.07, "spectrum_rms": 0.24, "feature_fd": 7.7}
    ok, reason = with_realism(None)
    assert not ok and "records no realism" in reason and "--phase sbdm" in reason
    ok, reason = with_realism({"model": {**physics, "feature_fd": 9.0}, "physics": physics})
    assert not ok and "less realistic than physics" in reason and "; feature_fd 9 vs 7.7)" in reason
    ok, reason = with_realism({"model": {k: v / 2 for k, v in physics.items()}, "physics": physics})
    assert ok and "more realistic than physics" in reason and "on every measure" in reason

    def interval(low, high):
        return {"difference": (low + high) / 2, "interval_95": [low, high]}

    # paired intervals decide where the card has them: a higher mean inside the interval is a tie
    model = {**physics, "gradient_w1": 0.075, "spectrum_rms": 0.2}
    paired = {"gradient_w1": interval(-0.001, 0.01), "spectrum_rms": interval(-0.05, -0.03), "feature_fd": interval(-1, 1)}
    ok, reason = with_realism({"model": model, "physics": physics, "model_minus_physics": paired})
    assert ok and "no measured difference in gradient_w1, feature_fd" in reason
    ok, reason = with_realism({"model": model, "physics": physics, "model_minus_physics": {**paired, "gradient_w1": interval(0.001, 0.01)}})
    assert not ok and "gradient_w1 0.075 vs 0.07" in reason
    ties = {m: interval(-1, 1) for m in physics}
    ok, reason = with_realism({"model": model, "physics": physics, "model_minus_physics": ties})
    assert not ok and "closer on no measure" in reason
    # a measure without an interval (the classifier's AUROC) can veto by its mean, not carry the model
    with_auroc = {**physics, "classifier_auroc": 1.0}
    ok, reason = with_realism({"model": {**model, "classifier_auroc": 0.999}, "physics": with_auroc, "model_minus_physics": ties})
    assert not ok and "closer on no measure" in reason
    ok, reason = with_realism({"model": {**model, "classifier_auroc": 1.0}, "physics": {**with_auroc, "classifier_auroc": 0.99},
                               "model_minus_physics": paired})  # fmt: skip
    assert not ok and "classifier_auroc 1 vs 0.99" in reason


def test_a_conditioned_checkpoint_reads_the_acquisition(tmp_path):
    """A network with acquisition channels samples; the same seed with another acquisition differs."""
    from dataclasses import replace

    from kspacify.acquisition import UNKNOWN, Acquisition, Family
    from kspacify.sbdm.conditioning import FEATURES

    path = tmp_path / "sbdm-small.safetensors"
    model = ScoreNet(replace(TINY, cond_channels=1 + FEATURES), seed=0)
    torch.nn.init.normal_(model.conv_in.weight, std=0.5)  # an untrained net's zero blocks would ignore the condition
    save_checkpoint(path, model, sde=VESDE(sigma_max=phasor_sigma_max(16, 16)))
    method = synth(path, steps=4, background="model")
    magnitude, _ = phantom(2, 16)
    spin = Acquisition(field_strength_t=3.0, family=Family.SPIN_ECHO, refocused=True)
    a = method.synthesize(magnitude, np.random.default_rng(0), spin)
    assert a.shape == magnitude.shape and np.isfinite(a).all()
    np.testing.assert_array_equal(a, method.synthesize(magnitude, np.random.default_rng(0), spin))
    assert not np.array_equal(a, method.synthesize(magnitude, np.random.default_rng(0), UNKNOWN))
