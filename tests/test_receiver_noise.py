"""physics' receiver noise options: the level and the neighbour correlation it is asked for."""

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


@pytest.mark.parametrize("option", [{"noise_gain": "0"}, {"noise_gain": "11"}, {"noise_correlation": "0.8"}, {"noise_correlation": "-0.1"}])
def test_out_of_range_noise_options_are_errors(option):
    with pytest.raises((UsageError, ValueError)):
        phase.create("physics", **option)
