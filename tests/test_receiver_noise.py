"""The receiver noise options (`physics.ReceiverNoise`, shared by physics, sbdm and gan): the level,
the neighbour correlation and the signal amplitude they are asked for."""

import numpy as np
import pytest

from kspacify import phase
from kspacify.errors import UsageError
from kspacify.phase.physics import MAX_NOISE_CORRELATION, receiver_noise


def lag1(x: np.ndarray, axis: int) -> float:
    a = np.moveaxis(x, axis, -1)
    return float(np.mean(a[..., 1:] * a[..., :-1]) / np.mean(a * a))


@pytest.mark.parametrize("correlation", [0.0, 0.15, 0.4, MAX_NOISE_CORRELATION])
def test_receiver_noise_has_unit_variance_and_the_asked_correlation(correlation):
    noise = receiver_noise((8, 128, 128), np.random.default_rng(0), correlation)
    assert noise.dtype == np.float32
    assert np.var(noise) == pytest.approx(1.0, abs=0.02)
    for axis in (-2, -1):
        assert lag1(noise, axis) == pytest.approx(correlation, abs=0.01)
    assert abs(float(np.mean(noise[..., :, 3:] * noise[..., :, :-3]))) < 0.02  # a 3-tap kernel: nothing from lag 3 on


def test_white_noise_is_the_generators_own_draws():
    """noise_correlation 0 (the default) draws exactly what the model drew before the option."""
    expected = np.random.default_rng(3).standard_normal((2, 16, 16), dtype=np.float32)
    assert np.array_equal(receiver_noise((2, 16, 16), np.random.default_rng(3)), expected)


def test_the_options_change_the_background_phase_as_asked():
    yy, xx = np.mgrid[-1:1:96j, -1:1:96j]
    magnitude = np.repeat(((xx**2 + yy**2) < 0.4).astype(np.float32)[None], 4, axis=0) + 0.01
    default = phase.create("physics").synthesize(magnitude, np.random.default_rng(1))
    correlated = phase.create("physics", noise_correlation="0.5").synthesize(magnitude, np.random.default_rng(1))
    background = (xx**2 + yy**2) > 0.8

    def phasor_lag1(p):
        z = np.exp(1j * p)
        both = background[:, 1:] & background[:, :-1]
        return abs(np.mean((z[:, :, 1:] * np.conj(z[:, :, :-1]))[:, both]))

    assert phasor_lag1(default) < 0.05 < 0.2 < phasor_lag1(correlated)


def test_noise_gain_scales_the_phase_scatter_in_tissue():
    from kspacify.phase.physics import PhysicsSettings, with_measurement_noise

    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[-1:1:128j, -1:1:128j]
    inside = (xx**2 + yy**2) < 0.4
    magnitude = np.abs(inside * 1.0 + 0.02 * (rng.standard_normal((4, 128, 128)) + 1j * rng.standard_normal((4, 128, 128))))
    magnitude = magnitude.astype(np.float32)
    flat = np.zeros_like(magnitude)
    core = (xx**2 + yy**2) < 0.3
    plain = with_measurement_noise(magnitude, flat, np.random.default_rng(5))
    loud = with_measurement_noise(magnitude, flat, np.random.default_rng(5), PhysicsSettings(noise_gain=3.0))
    assert float(np.std(loud[:, core]) / np.std(plain[:, core])) == pytest.approx(3.0, rel=0.05)


def test_noise_level_tissue_follows_the_noise_in_the_tissue_not_the_floor():
    """Coil combination makes noise vary in space: here the tissue's noise is 3x the background's.
    `noise_level=tissue` (the default) measures it where the phase is measured and gives the tissue
    the phase scatter of that noise; `floor` takes the background's Rayleigh peak, 3x too quiet."""
    from kspacify.phase.physics import PhysicsSettings, noise_and_mask, tissue_noise, with_measurement_noise

    rng = np.random.default_rng(6)
    yy, xx = np.mgrid[-1:1:128j, -1:1:128j]
    inside = (xx**2 + yy**2) < 0.4
    ramp = 0.8 + 0.2 * xx  # a linear trend, which Immerkaer's operator ignores
    sigma = np.where(inside, 0.03, 0.01)
    noise = sigma * (rng.standard_normal((4, 128, 128)) + 1j * rng.standard_normal((4, 128, 128)))
    magnitude = np.abs(inside * ramp + noise).astype(np.float32)
    floor, _, weight = noise_and_mask(magnitude, PhysicsSettings())
    assert floor == pytest.approx(0.01, rel=0.15)
    assert tissue_noise(magnitude, weight, floor) == pytest.approx(0.03, rel=0.1)
    flat = np.zeros_like(magnitude)
    core = (xx**2 + yy**2) < 0.3
    scatter = {level: float(np.std(with_measurement_noise(magnitude, flat, np.random.default_rng(7), PhysicsSettings(noise_level=level))[:, core]))
               for level in ("tissue", "floor")}  # fmt: skip
    expected = float(np.mean(0.03 / ramp[core]))  # sigma / amplitude rad
    assert scatter["tissue"] == pytest.approx(expected, rel=0.1)
    assert scatter["floor"] == pytest.approx(expected / 3, rel=0.15)


def test_tissue_noise_falls_back_to_the_floor_without_tissue():
    from kspacify.phase.physics import tissue_noise

    magnitude = np.random.default_rng(0).random((2, 32, 32)).astype(np.float32)
    weight = np.zeros_like(magnitude)
    weight[1, 10:14, 10:14] = 1.0  # 16 pixels: too few to measure in
    assert tissue_noise(magnitude, weight, np.array([0.2, 0.3])).tolist() == pytest.approx([0.2, 0.3])


@pytest.mark.parametrize("option", [{"noise_gain": "0"}, {"noise_gain": "11"}, {"noise_correlation": "0.8"}, {"noise_correlation": "-0.1"}, {"noise_level": "coil"}])
def test_out_of_range_noise_options_are_errors(option):
    with pytest.raises((UsageError, ValueError)):
        phase.create("physics", **option)


@pytest.mark.parametrize("amplitude", ["rician", "rician_outside"])
def test_rician_amplitude_keeps_faint_signal_coherent_and_noise_random(amplitude):
    """A faint region at about 2.5 sigma lies below the tissue threshold (4 sigma): with the mask
    amplitude its phase is noise; with signal_amplitude=rician it keeps the synthesized phase, while
    the noise-only background stays mostly random."""
    from kspacify.phase.physics import PhysicsSettings, noise_and_mask, with_measurement_noise

    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[-1:1:128j, -1:1:128j]
    r2 = xx**2 + yy**2
    signal = np.where(r2 < 0.2, 1.0, np.where(r2 < 0.45, 0.05, 0.0))  # bright core, faint ring, background
    sigma = 0.02
    noise = sigma * (rng.standard_normal((4, 128, 128)) + 1j * rng.standard_normal((4, 128, 128)))
    magnitude = np.abs(signal + noise).astype(np.float32)
    flat = np.full_like(magnitude, 0.7)
    ring = (r2 > 0.25) & (r2 < 0.4)
    background = r2 > 0.7

    def coherence(p, region):
        return float(abs(np.mean(np.exp(1j * p[:, region]))))

    mask = with_measurement_noise(magnitude, flat, np.random.default_rng(5))
    rician = with_measurement_noise(magnitude, flat, np.random.default_rng(5), phase.physics.ReceiverNoise(signal_amplitude=amplitude))
    assert coherence(mask, ring) < 0.2 < 0.6 < coherence(rician, ring)
    # pure noise implies a mean amplitude of e^-1 Gamma(3/2) sqrt(2) sigma = 0.46 sigma: a weak pull
    # towards the synthesized phase (real backgrounds have one too, docs/phase-methods.md), no more
    assert coherence(mask, background) < 0.05 and 0.1 < coherence(rician, background) < 0.3
    assert np.median(np.abs(rician[:, r2 < 0.15] - 0.7)) < 0.05  # tissue keeps its phase
    if amplitude == "rician_outside":  # the tissue and its soft edge exactly as with the mask
        _, _, weight = noise_and_mask(magnitude, PhysicsSettings())
        assert np.array_equal(rician[weight >= 0.5], mask[weight >= 0.5])


@pytest.mark.parametrize("method", ["sbdm", "gan"])
def test_learned_methods_take_the_receiver_options(method, tmp_path):
    """The learned methods' background noise obeys the same options, named in their errors and
    recorded in their settings."""
    import json

    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    if method == "sbdm":
        from test_phase_sbdm import TINY

        from kspacify.sbdm import VESDE, ScoreNet, phasor_sigma_max, save_checkpoint

        path = tmp_path / "sbdm-small.safetensors"
        save_checkpoint(path, ScoreNet(TINY, seed=0), sde=VESDE(sigma_max=phasor_sigma_max(16, 16)))
        extra = {"steps": 2}
    else:
        from test_gan import _train

        path = _train(tmp_path, 1).weights
        extra = {}
    yy, xx = np.mgrid[-1:1:32j, -1:1:32j]
    magnitude = np.repeat(((xx**2 + yy**2) < 0.3).astype(np.float32)[None], 4, axis=0) + 0.01
    background = (xx**2 + yy**2) > 0.7

    def phasor_lag1(p):
        z = np.exp(1j * p)
        both = background[:, 1:] & background[:, :-1]
        return abs(np.mean((z[:, :, 1:] * np.conj(z[:, :, :-1]))[:, both]))

    plain, correlated = (
        phase.create(method, device="cpu", checkpoint=str(path), noise_correlation=c, **extra) for c in ("0", "0.5")
    )
    assert phasor_lag1(plain.synthesize(magnitude, np.random.default_rng(1))) < 0.1
    assert phasor_lag1(correlated.synthesize(magnitude, np.random.default_rng(1))) > 0.2
    settings = correlated.settings()
    assert settings["receiver_noise"] == {"noise_gain": 1.0, "noise_correlation": 0.5, "noise_level": "tissue", "signal_amplitude": "mask"}
    json.dumps(settings)
    with pytest.raises((UsageError, ValueError), match=f"{method} phase: noise_gain"):
        phase.create(method, device="cpu", checkpoint=str(path), noise_gain="0")
