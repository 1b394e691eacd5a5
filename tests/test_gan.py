"""The pix2pix phase GAN: networks, training through the loop, export/load, the `gan` phase method."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import kspacify.weights
from kspacify import phase
from kspacify.gan.network import (
    PRESETS, Discriminator, DiscriminatorConfig, GanConfig, Generator, GeneratorConfig, receptive_field, sample_noise,
)  # fmt: skip
from kspacify.acquisition import UNKNOWN
from kspacify.datasets import PairSet
from kspacify.gan.train import GanTask, canonical_phasor, evaluate
from kspacify.phase import gan as gan_phase
from kspacify.phase.base import registry
from kspacify.training import LoopConfig, fit, sha256_file

TINY = GanConfig(GeneratorConfig(ngf=4, depth=5, max_mult=4, noise_channels=2), DiscriminatorConfig(ndf=4, n_layers=2))
DETERMINISTIC = dataclasses.replace(TINY, generator=dataclasses.replace(TINY.generator, noise_channels=0))
SIZE = 32  # 2**depth


def _toy_pairs(n: int, seed: int) -> PairSet:
    """A learnable conditional distribution: a bright disc at a random place, 1.5 rad apart from the
    dim background (the phase is a function of the local magnitude)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32) / SIZE - 0.5
    mags, phases = [], []
    for _ in range(n):
        cy, cx = rng.uniform(-0.2, 0.2, 2)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < 0.08).astype(np.float32)
        mags.append(0.05 + disc)
        phases.append(1.5 * disc + rng.uniform(-np.pi, np.pi))
    return PairSet(np.stack(mags), np.stack(phases).astype(np.float32), np.zeros(n, np.int64), ["toy"], [UNKNOWN])


def _train(tmp_path, steps: int, name: str = "gan-small", config: GanConfig = TINY, **task_options):
    task = GanTask(_toy_pairs(16, 0), config, val=_toy_pairs(8, 1), data_description={"size": SIZE}, lr=2e-3, **task_options)
    config = LoopConfig(out_dir=tmp_path, name=name, max_steps=steps, batch_size=4, seed=0, device="cpu",
                        console=False, log_every=5)  # fmt: skip
    return fit(task, config)


def test_generator_and_discriminator_shapes_for_both_presets():
    small = PRESETS["small"]
    g = Generator(small.generator).eval()
    with torch.no_grad():
        out = g(torch.rand(1, 1, 256, 256), torch.randn(1, 8, 256, 256))
        logits = Discriminator(small.discriminator)(torch.cat([torch.rand(1, 1, 256, 256), out], 1))
    assert out.shape == (1, 2, 256, 256)
    norm = torch.hypot(out[:, 0], out[:, 1])
    assert ((norm - 1).abs() < 1e-4).float().mean() > 0.99 and norm.max() < 1 + 1e-4  # unit, but where ~0 (eps)
    assert logits.shape == (1, 1, 30, 30)  # pix2pix's 30x30 patch grid at 256
    with torch.device("meta"):  # the pix2pix sizes: shapes only, no memory or compute
        big = PRESETS["unet_256"]
        out = Generator(big.generator)(torch.empty(2, 1, 256, 256), torch.empty(2, 8, 256, 256))
        logits = Discriminator(big.discriminator)(torch.empty(2, 3, 256, 256))
    assert out.shape == (2, 2, 256, 256) and logits.shape == (2, 1, 30, 30)
    with pytest.raises(ValueError, match="multiples of 256"):
        g(torch.rand(1, 1, 128, 128), torch.randn(1, 8, 128, 128))


def test_generator_noise_is_required_and_changes_the_output():
    g = Generator(TINY.generator).eval()
    magnitude = torch.rand(2, 1, SIZE, SIZE)
    rng = lambda seed: np.random.default_rng(seed)  # noqa: E731
    with torch.no_grad():
        a, b = (g(magnitude, sample_noise(TINY.generator, magnitude, rng(s))) for s in (0, 1))
        again = g(magnitude, sample_noise(TINY.generator, magnitude, rng(0)))
    assert torch.equal(a, again) and not torch.equal(a, b)
    assert sample_noise(TINY.generator, torch.rand(2, 1, 2 * SIZE, SIZE), rng(0)).shape == (2, 2, 2 * SIZE, SIZE)
    with pytest.raises(ValueError, match="noise must be of shape"):
        g(magnitude)
    assert sample_noise(DETERMINISTIC.generator, magnitude, rng(0)) is None
    with pytest.raises(ValueError, match="noise must be None"):
        Generator(DETERMINISTIC.generator)(magnitude, torch.randn(2, 2, SIZE, SIZE))


def test_patchgan_receptive_field_is_70():
    for preset in PRESETS.values():
        assert receptive_field(Discriminator(preset.discriminator)) == 70


def test_canonical_phasor_removes_the_global_phase():
    mag = torch.rand(2, 8, 8)
    ph = torch.rand(2, 8, 8)
    a, b = canonical_phasor(mag, ph), canonical_phasor(mag, ph + 2.0)
    assert torch.allclose(a, b, atol=1e-5)


def test_training_lowers_l1_and_exports_a_loadable_generator(tmp_path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # fit builds its parts under this seed, so this is the untrained generator
        untrained = GanTask(_toy_pairs(1, 0), TINY).build(torch.device("cpu"))["generator"].model.eval()
    before = evaluate(untrained, _toy_pairs(8, 1))["l1"]
    result = _train(tmp_path, 12)
    assert result.finished and result.validation["l1"] < 0.8 * before
    card = json.loads(result.weights.with_suffix(".json").read_text())
    assert card["sha256"] == sha256_file(result.weights)
    assert card["config"]["loss"]["adversarial"] == "lsgan"
    assert card["config"]["generator"]["noise_channels"] == 2
    model, loaded_card = gan_phase.load_generator(result.weights)
    pairs = _toy_pairs(8, 1)
    assert evaluate(model, pairs)["l1"] == pytest.approx(result.validation["l1"], rel=1e-5)
    from safetensors import safe_open

    with safe_open(str(result.weights), framework="pt") as f:  # the generator only
        assert set(f.keys()) == set(model.state_dict())

    data = bytearray(result.weights.read_bytes())
    data[-1] ^= 0xFF
    result.weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="--phase physics or --phase smooth"):
        gan_phase.load_generator(result.weights)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("weights")
    _train(directory / "run", 3)
    out = directory / "w"
    out.mkdir()
    for suffix in (".safetensors", ".json"):
        (directory / "run" / "weights" / f"gan-small{suffix}").rename(out / f"gan-small{suffix}")
    return out


def test_best_of_k_training_and_a_card_without_noise_channels(tmp_path):
    """K draws per slice train; a deterministic checkpoint whose card predates `noise_channels` loads."""
    with pytest.raises(ValueError, match="l1_samples"):
        GanTask(_toy_pairs(1, 0), TINY, l1_samples=0)
    assert _train(tmp_path / "k", 2, l1_samples=3).finished
    result = _train(tmp_path / "old", 2, config=DETERMINISTIC)
    card_path = result.weights.with_suffix(".json")
    card = json.loads(card_path.read_text())
    del card["config"]["generator"]["noise_channels"]
    card_path.write_text(json.dumps(card))
    model, _ = gan_phase.load_generator(result.weights)
    assert model.config.noise_channels == 0
    synth = phase.create("gan", device="cpu", checkpoint=str(result.weights), offset="none", background="model")
    magnitude = _toy_pairs(2, 2).magnitude
    np.testing.assert_array_equal(synth.synthesize(magnitude, np.random.default_rng(0)),
                                  synth.synthesize(magnitude, np.random.default_rng(1)))  # fmt: skip


def test_phase_method_contract(weights_dir, monkeypatch):
    monkeypatch.setenv("KSPACIFY_WEIGHTS", str(weights_dir))
    synth = phase.create("gan", device="cpu")
    for shape in ((3, SIZE, SIZE), (2, 40, 24)):  # native size and a resampled one
        magnitude = _toy_pairs(3, 2).magnitude[: shape[0]]
        if shape[1:] != (SIZE, SIZE):
            magnitude = np.random.default_rng(0).random(shape, dtype=np.float32)
        out = synth.synthesize(magnitude, np.random.default_rng(5))
        assert out.shape == shape and out.dtype == np.float32
        assert out.min() >= -np.pi and out.max() < np.pi
        np.testing.assert_array_equal(out, synth.synthesize(magnitude, np.random.default_rng(5)))
    # the noise comes from the caller's generator: another seed, another phase map (no offset, no noise floor)
    synth_model = phase.create("gan", device="cpu", offset="none", background="model")
    magnitude = _toy_pairs(2, 2).magnitude
    a, b = (synth_model.synthesize(magnitude, np.random.default_rng(s)) for s in (0, 1))
    np.testing.assert_array_equal(a, synth_model.synthesize(magnitude, np.random.default_rng(0)))
    assert not np.array_equal(a, b)
    settings = synth.settings()
    assert settings["checkpoint_sha256"] == sha256_file(weights_dir / "gan-small.safetensors")
    json.dumps(settings)
    with pytest.raises(ValueError, match="unknown option"):
        phase.create("gan", steps=3)


def test_auto_picks_gan_when_sbdm_is_not_usable_and_its_card_beats_physics(weights_dir, monkeypatch, tmp_path):
    spec = registry()["sbdm"]
    monkeypatch.setitem(registry(), "sbdm", dataclasses.replace(spec, usable=lambda device, acquisition=None: (False, "no GPU")))
    measured = tmp_path / "measured"
    measured.mkdir()
    (measured / "gan-small.safetensors").write_bytes((weights_dir / "gan-small.safetensors").read_bytes())
    card = json.loads((weights_dir / "gan-small.json").read_text())
    monkeypatch.setattr(kspacify.weights, "weights_dirs", lambda: [measured])
    for model_fd, chosen in ((9.0, "physics"), (5.0, "gan")):
        physics = {"gradient_w1": 0.07, "spectrum_rms": 0.24, "feature_fd": 7.7}
        card["quality"] = {"realism": {"model": {"gradient_w1": 0.05, "spectrum_rms": 0.2, "feature_fd": model_fd}, "physics": physics}}
        (measured / "gan-small.json").write_text(json.dumps(card))
        name, why = phase.resolve("auto", "cpu")
        assert name == chosen and "sbdm" in why
    monkeypatch.setattr(kspacify.weights, "weights_dirs", lambda: [weights_dir])  # no realism in its card
    assert phase.resolve("auto", "cpu")[0] == "physics" and "records no realism" in registry()["gan"].usable("cpu")[1]
    monkeypatch.setattr(kspacify.weights, "weights_dirs", lambda: [tmp_path])  # no gan checkpoint anywhere
    assert phase.resolve("auto", "cpu")[0] == "physics"
    with pytest.raises(ValueError, match="--phase physics"):
        phase.create("gan", device="cpu")


def test_train_command_end_to_end(tmp_path):
    import typer
    from typer.testing import CliRunner

    from kspacify.commands.train_gan import command

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        volume = rng.random((2, 256, 256)) * np.exp(1j * rng.uniform(-np.pi, np.pi, (2, 256, 256)))
        np.save(data / f"{name}.npy", volume.astype(np.complex64))
    app = typer.Typer()
    app.command()(command)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["--data", str(data), "--out", str(out), "--max-steps", "2", "--batch-size", "1",
                                      "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["status"] == "finished" and line["step"] == 2
    assert (out / "weights" / "gan-small.safetensors").is_file() and (out / "splits.json").is_file()
    bad = CliRunner().invoke(app, ["--data", str(tmp_path / "missing"), "--out", str(out)])
    assert bad.exit_code == 2


def test_auto_check_does_not_import_torch():
    code = "import sys; from kspacify.phase import gan; gan.usable('auto'); assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
