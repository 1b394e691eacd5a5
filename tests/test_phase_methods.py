import numpy as np
import pytest

from kspacify import phase
from kspacify.phase.smooth import SmoothPhase


def magnitudes(batch=3, size=64):
    return np.random.default_rng(0).uniform(0, 1, (batch, size, size)).astype(np.float32)


def test_registry_finds_builtin_methods():
    names = phase.method_names()
    assert {"smooth", "zero"} <= set(names)


def test_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match="smooth"):
        phase.resolve("nonsense", "cpu")


def test_auto_picks_the_best_usable_method_and_says_why():
    name, why = phase.resolve("auto", "cpu")
    ranked = sorted((m for m in phase.registry().values() if m.auto_rank is not None and not m.needs_phase),
                    key=lambda m: m.auto_rank)  # fmt: skip
    first_usable = next(m.name for m in ranked if m.usable("cpu")[0])
    assert name == first_usable
    assert why.startswith("auto:")


def test_auto_writes_the_acquired_phase_of_a_volume_that_has_one():
    assert phase.resolve("auto", "cpu", has_phase=True)[0] == "acquired"
    assert phase.choices("cpu")[phase.ACQUIRED][0] == "acquired"
    assert "acquired" not in phase.resolve("auto", "cpu")[1]  # not offered (nor passed over) for the others
    auto = phase.create("auto", device="cpu")
    assert auto.for_acquisition(phase.base.UNKNOWN, has_phase=True)[0].name == "acquired"
    assert auto.for_acquisition(phase.base.UNKNOWN)[0].name != "acquired"


def test_acquired_passes_the_phase_through_and_refuses_to_invent_one():
    from kspacify.errors import VolumeError

    acquired = phase.create("acquired")
    given = np.random.default_rng(0).uniform(-np.pi, np.pi, (3, 64, 64)).astype(np.float32)
    out = acquired.synthesize(magnitudes(), np.random.default_rng(0), acquired=given)
    np.testing.assert_array_equal(out, phase.wrap(given))
    with pytest.raises(VolumeError, match="no acquired phase"):
        acquired.synthesize(magnitudes(), np.random.default_rng(0))


@pytest.mark.parametrize("name", ["smooth", "zero"])
def test_method_contract(name):
    synthesizer = phase.create(name)
    out = synthesizer.synthesize(magnitudes(), np.random.default_rng(3))
    assert out.shape == (3, 64, 64) and out.dtype == np.float32
    assert out.min() >= -np.pi and out.max() < np.pi
    assert isinstance(synthesizer.settings(), dict)


def test_smooth_is_seeded_and_varies_between_seeds():
    s = SmoothPhase()
    a = s.synthesize(magnitudes(), np.random.default_rng(1))
    b = s.synthesize(magnitudes(), np.random.default_rng(1))
    c = s.synthesize(magnitudes(), np.random.default_rng(2))
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def phasor_roughness(p):
    z = np.exp(1j * p)
    return float(np.mean(np.abs(np.diff(z, axis=-1))))


def test_smoothness_controls_spatial_scale_and_amplitude_the_spread():
    rng = lambda: np.random.default_rng(5)  # noqa: E731
    mag = magnitudes(4, 128)
    rough = SmoothPhase(smoothness=0.02, amplitude=1.5).synthesize(mag, rng())
    smooth = SmoothPhase(smoothness=0.3, amplitude=1.5).synthesize(mag, rng())
    assert phasor_roughness(smooth) < 0.5 * phasor_roughness(rough)
    flat = SmoothPhase(amplitude=0.0).synthesize(mag, rng())
    assert np.ptp(np.exp(1j * flat), axis=(1, 2)).max() < 1e-5  # only the global offset remains


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError):
        SmoothPhase(smoothness=0)
    with pytest.raises(ValueError):
        SmoothPhase(amplitude=-1)
