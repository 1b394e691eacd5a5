"""Tests for the `physics` phase method (kspacify/phase/physics.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kspacify.errors import OptionError
from kspacify.phase import base
from kspacify.phase.physics import (
    GAMMA_BAR_HZ_PER_T,
    PhysicsPhase,
    PhysicsSettings,
    dipole_field,
    draw_parameters,
    noise_and_mask,
    offresonance_phase,
)

REAL_PHASE = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-phase"
PI32 = np.float32(np.pi)


def phantom(n: int = 96, seed: int = 0, noise: float = 0.02, batch: int = 1) -> np.ndarray:
    """Head-like ellipse with an inner structure and a dark hole, Rician background noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:n, :n] / (n / 2) - 1
    m = ((x / 0.7) ** 2 + (y / 0.85) ** 2 < 1) * 0.8
    m = m + ((x / 0.5) ** 2 + ((y - 0.1) / 0.6) ** 2 < 1) * 0.2
    m = m * ~(((x - 0.2) / 0.1) ** 2 + ((y + 0.2) / 0.12) ** 2 < 1)
    z = m + noise * (rng.standard_normal((batch, n, n)) + 1j * rng.standard_normal((batch, n, n)))
    return np.abs(z).astype(np.float32)


def gradient(phase: np.ndarray) -> np.ndarray:
    """|grad exp(i phase)| by forward differences, (H-1, W-1)."""
    e = np.exp(1j * phase.astype(np.float64))
    return np.hypot(np.abs(e[1:, :-1] - e[:-1, :-1]), np.abs(e[:-1, 1:] - e[:-1, :-1]))


# --- protocol, registry, settings ----------------------------------------------------------------


def test_registered_and_preferred_by_auto():
    spec = base.registry()["physics"]
    assert spec.auto_rank == 50
    assert spec.usable("cpu")[0]
    assert base.resolve("auto", "cpu")[0] in {"physics"} | {
        m.name for m in base.registry().values() if m.auto_rank is not None and m.auto_rank < 50
    }
    assert base.create("physics", device="cpu").name == "physics"
    with pytest.raises(OptionError, match="unknown option.*b0_teslaa.*known: b0_tesla"):
        base.create("physics", b0_teslaa=3)  # a typo is an error, never a silent default
    with pytest.raises(OptionError, match="unknown option.*steps"):
        base.create("physics", device="cpu", steps=10)  # an option of another method too


def test_settings_are_json_and_validated():
    synth = PhysicsPhase()
    settings = synth.settings()
    assert json.loads(json.dumps(settings)) == settings
    assert settings["b0_tesla"] == [1.5, 7.0] and settings["echo_time_ms"] == [2.0, 30.0]
    assert base.create("physics", echo_time_ms=[5.0, 5.0]).config.echo_time_ms == (5.0, 5.0)
    assert base.create("physics", echo_time_ms="5,5", shared_across_batch="true").config.shared_across_batch is True
    with pytest.raises(ValueError):
        PhysicsSettings(echo_time_ms=(30.0, 2.0))
    with pytest.raises(ValueError):
        PhysicsSettings(pad_factor=0.5)


def test_deterministic_per_seed_and_different_across_seeds():
    mag = phantom(batch=2)
    synth = PhysicsPhase()
    a = synth.synthesize(mag, np.random.default_rng(7))
    b = synth.synthesize(mag, np.random.default_rng(7))
    c = synth.synthesize(mag, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert np.mean(np.abs(np.angle(np.exp(1j * (a - c)))) > 0.3) > 0.5
    assert not np.array_equal(a[0], a[1])  # slices of one batch get their own draws


@pytest.mark.parametrize("shape", [(3, 64, 48), (1, 33, 70)])
def test_range_dtype_shape(shape):
    rng = np.random.default_rng(0)
    mag = np.abs(rng.standard_normal(shape)).astype(np.float32) * 0.05
    mag[:, shape[1] // 4 : shape[1] * 3 // 4, shape[2] // 4 : shape[2] * 3 // 4] += 1.0
    mag[-1] = 0.0  # an empty slice
    phase = PhysicsPhase().synthesize(mag, np.random.default_rng(1))
    assert phase.shape == shape and phase.dtype == np.float32
    assert np.all(np.isfinite(phase))
    assert phase.min() >= -PI32 and phase.max() < PI32


def test_no_background_slice_and_shared_draw():
    mag = np.full((2, 40, 40), 0.7, dtype=np.float32)
    mag += 0.01 * np.random.default_rng(0).standard_normal(mag.shape).astype(np.float32)
    synth = PhysicsPhase(PhysicsSettings(shared_across_batch=True))
    parts = synth.components(mag, np.random.default_rng(3))
    assert parts.weight.min() > 0.99  # everything is tissue
    np.testing.assert_allclose(parts.coil_phase[0], parts.coil_phase[1])
    assert parts.offset[0] == parts.offset[1]
    assert np.median(gradient(parts.phase[0])) < 0.3


# --- noise in the background, smooth inside ------------------------------------------------------


def test_background_uniform_and_object_smooth():
    mag = phantom(n=128, batch=4, seed=1)
    synth = PhysicsPhase()
    phase = synth.synthesize(mag, np.random.default_rng(11))
    _, _, weight = noise_and_mask(mag, synth.config)
    for i in range(mag.shape[0]):
        background = weight[i] < 0.01
        inside = weight[i] > 0.99
        assert background.sum() > 1000 and inside.sum() > 1000
        resultant = np.abs(np.mean(np.exp(1j * phase[i][background])))
        assert 1.0 - resultant > 0.95  # circular variance near 1: uniform phase
        grad = gradient(phase[i])
        assert np.median(grad[inside[:-1, :-1]]) < 0.2 * np.median(grad[background[:-1, :-1]])


def test_noise_estimate_and_mask():
    mag = phantom(n=128, noise=0.02, seed=2)
    sigma, mask, weight = noise_and_mask(mag, PhysicsSettings())
    assert 0.012 < sigma[0] < 0.03
    y, x = np.mgrid[:128, :128] / 64 - 1
    assert mask[0][(x / 0.6) ** 2 + (y / 0.75) ** 2 < 1].mean() > 0.9
    assert mask[0][(x / 0.8) ** 2 + (y / 0.95) ** 2 > 1].mean() < 0.01
    assert weight.dtype == np.float32 and 0 <= weight.min() and weight.max() <= 1


# --- B0 term -------------------------------------------------------------------------------------


def test_offresonance_phase_value_and_linearity():
    # 1 ppm at 3 T is 127.7 Hz; after 10 ms: 2 pi * 1.277 rad
    value = offresonance_phase(np.ones((1, 2, 2)), np.array([3.0]), np.array([0.010]))
    np.testing.assert_allclose(value, 2 * np.pi * GAMMA_BAR_HZ_PER_T * 3.0 * 1e-6 * 0.010, rtol=1e-5)
    field = np.random.default_rng(0).standard_normal((2, 8, 8))
    one = offresonance_phase(field, np.array([1.5, 7.0]), np.array([0.005, 0.005]))
    two = offresonance_phase(field, np.array([1.5, 7.0]), np.array([0.010, 0.010]))
    np.testing.assert_allclose(two, 2 * one, rtol=1e-5)


def test_b0_term_scales_with_echo_time():
    mag = phantom(batch=2)
    synth = PhysicsPhase()
    draw = draw_parameters(synth.config, np.random.default_rng(5), 2)
    short = synth.components(mag, np.random.default_rng(0), draw=draw)
    draw.echo_time_s = draw.echo_time_s * 3.0
    long = synth.components(mag, np.random.default_rng(0), draw=draw)
    np.testing.assert_allclose(long.field_ppm, short.field_ppm)  # the field does not depend on TE
    np.testing.assert_allclose(long.b0_phase, 3.0 * short.b0_phase, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(long.coil_phase, short.coil_phase)
    assert np.abs(short.b0_phase).max() > 0


# --- dipole field --------------------------------------------------------------------------------


def _disc(n: int = 128, radius: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[:n, :n] - n / 2 + 0.5
    r = np.hypot(x, y)
    return (r < radius).astype(np.float32), r


def test_infinite_cylinder_perpendicular_to_b0_matches_analytic():
    # chi = 1 in a disc, infinite along the slice normal, B0 along x: inside 1/3 - 1/2,
    # outside (a/r)^2 cos(2 phi) / 2: positive along B0, negative across it.
    a = 12.0
    disc, _ = _disc(radius=a)
    field = dipole_field(disc, np.array([1.0, 0.0, 0.0]), np.inf, pad_mode="constant")
    c = 64
    np.testing.assert_allclose(field[c - 3 : c + 3, c - 3 : c + 3], -1 / 6, atol=0.01)
    for d in (18, 24, 36):
        expected = 0.5 * (a / (d + 0.5)) ** 2  # pixel centres sit at half-integers from the centre
        assert field[c, c + d] == pytest.approx(expected, rel=0.05)
        assert field[c + d, c] == pytest.approx(-expected, rel=0.05)


def test_uniform_slab_gives_no_field_far_away():
    disc, r = _disc(radius=10.0)
    rng = np.random.default_rng(0)
    for _ in range(4):
        direction = rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        for h in (0.5, 5.0, 40.0, np.inf):
            # chi = 1: the near field is O(0.1-1); at r = 5a even an infinite cylinder is down to
            # (a/r)^2 / 2 = 0.02, a finite slab decays faster
            far = np.abs(dipole_field(disc, direction, h, pad_mode="constant")[r > 50])
            assert far.max() < 0.025 and far.mean() < 0.01
    # B0 along the normal: an infinite cylinder has no outside field, a thin sheet -2/3 inside
    along = np.array([0.0, 0.0, 1.0])
    cylinder = dipole_field(disc, along, np.inf, pad_mode="constant")
    np.testing.assert_allclose(cylinder[r < 8], 1 / 3, atol=1e-3)
    assert np.abs(cylinder[r > 14]).max() < 1e-3
    sheet = dipole_field(disc, along, 0.25, pad_mode="constant")
    assert sheet[r < 3].mean() == pytest.approx(-2 / 3, rel=0.1)


def test_sphere_like_disc_sign_pattern_along_b0():
    # a disc of radius a in a slab of half-thickness a (sphere-like): positive field along B0,
    # negative across it, small inside (a sphere gives 0 inside, 2/3 (a/r)^3 along, -1/3 (a/r)^3 across)
    a = 12.0
    disc, _ = _disc(radius=a)
    for direction, step in ((np.array([1.0, 0.0, 0.0]), (0, 1)), (np.array([0.0, 1.0, 0.0]), (1, 0))):
        field = dipole_field(disc, direction, a, pad_mode="constant")
        c, d = 64, 24
        along = field[c + step[0] * d, c + step[1] * d]
        across = field[c + step[1] * d, c + step[0] * d]
        assert along > 0.05 and across < -0.02
        assert abs(field[c, c]) < 0.5 * along
    # a diamagnetic body (chi < 0) flips the pattern
    field = dipole_field(-disc, np.array([1.0, 0.0, 0.0]), a, pad_mode="constant")
    assert field[64, 64 + 24] < 0 < field[64 + 24, 64]


def test_padding_prevents_wraparound():
    disc, _ = _disc(n=64, radius=14.0)
    direction = np.array([0.6, 0.0, 0.8])
    padded = dipole_field(disc, direction, 20.0, pad_factor=2.0, pad_mode="constant")
    reference = dipole_field(disc, direction, 20.0, pad_factor=6.0, pad_mode="constant")
    unpadded = dipole_field(disc, direction, 20.0, pad_factor=1.0, pad_mode="constant")
    error = np.abs(padded - reference).max()
    assert error < 0.02 and error < 0.5 * np.abs(unpadded - reference).max()


# --- realism on real acquired phase (loose, not tuned) -------------------------------------------

# knee_fastmri_001 is left out: its README says the emulated single-coil phase is nearly flat,
# which is not an acquired gradient-echo phase.
REAL_FILES = ["brain_espirit_full", "brain_romeo_crop", "liver_12echo"]


@pytest.mark.skipif(not REAL_PHASE.is_dir(), reason=f"real-phase data not available ({REAL_PHASE} absent)")
@pytest.mark.parametrize("name", REAL_FILES)
def test_gradient_statistics_within_an_order_of_magnitude_of_real(name):
    nibabel = pytest.importorskip("nibabel")
    path = REAL_PHASE / f"{name}.nii.gz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    volume = np.asarray(nibabel.load(str(path)).dataobj)[..., :3]
    magnitude = np.abs(volume).transpose(2, 0, 1).astype(np.float32)
    synth = PhysicsPhase()
    _, _, weight = noise_and_mask(magnitude, synth.config)
    real, synthetic = [], []
    for i in range(magnitude.shape[0]):
        inside = weight[i][:-1, :-1] > 0.99
        real.append(np.median(gradient(np.angle(volume[..., i]))[inside]))
    for seed in range(3):
        phase = synth.synthesize(magnitude, np.random.default_rng(seed))
        for i in range(magnitude.shape[0]):
            inside = weight[i][:-1, :-1] > 0.99
            synthetic.append(np.median(gradient(phase[i])[inside]))
    ratio = np.median(synthetic) / np.median(real)
    assert 0.1 < ratio < 10, f"{name}: synthetic/real median phase gradient {ratio:.2f}"


def test_synthesize_in_chunks_matches_components():
    from kspacify.phase import physics

    mag = phantom(n=32, batch=5)
    synth = PhysicsPhase()
    whole = synth.components(mag, np.random.default_rng(4)).phase
    np.testing.assert_array_equal(synth.synthesize(mag, np.random.default_rng(4)), whole)
    chunk = physics.CHUNK
    try:
        physics.CHUNK = 2
        chunked = synth.synthesize(mag, np.random.default_rng(4))
    finally:
        physics.CHUNK = chunk
    # same acquisition draws, only the noise realisation differs: the object phase agrees
    inside = noise_and_mask(mag, synth.config)[2] > 0.99
    diff = np.angle(np.exp(1j * (chunked - whole)))[inside]
    assert np.median(np.abs(diff)) < 0.1


# --- acquisition-aware synthesis ----------------------------------------------------------------


def _head(size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    head = ((xx / 0.8) ** 2 + (yy / 0.9) ** 2 < 1).astype(np.float32)
    hole = ((xx - 0.2) ** 2 + (yy + 0.1) ** 2 < 0.04).astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 0.01, (2, 2, size, size)).astype(np.float32)
    return np.abs(np.stack([head * (1 - hole)] * 2) + noise[0] + 1j * noise[1]).astype(np.float32)


def test_unknown_acquisition_changes_nothing():
    from kspacify.acquisition import UNKNOWN

    mag = _head()
    synth = PhysicsPhase()
    np.testing.assert_array_equal(synth.synthesize(mag, np.random.default_rng(3)), synth.synthesize(mag, np.random.default_rng(3), UNKNOWN))


def test_spin_echo_refocuses_the_field_and_gradient_echo_scales_with_te_and_b0():
    from kspacify.acquisition import Acquisition, Family

    mag = _head()
    synth = PhysicsPhase()
    def b0_spread(acquisition, seed=5):
        parts = synth.components(mag, np.random.default_rng(seed), acquisition=acquisition)
        inside = parts.weight > 0.5
        return float(np.std(parts.b0_phase[inside])), parts
    gre10, _ = b0_spread(Acquisition(field_strength_t=3.0, echo_time_ms=10.0, family=Family.GRADIENT_ECHO, refocused=False))
    gre20, _ = b0_spread(Acquisition(field_strength_t=3.0, echo_time_ms=20.0, family=Family.GRADIENT_ECHO, refocused=False))
    gre20_7t, _ = b0_spread(Acquisition(field_strength_t=7.0, echo_time_ms=20.0, family=Family.GRADIENT_ECHO, refocused=False))
    spin, parts = b0_spread(Acquisition(field_strength_t=3.0, echo_time_ms=100.0, family=Family.SPIN_ECHO, refocused=True))
    assert gre20 == pytest.approx(2 * gre10, rel=1e-4)  # the same field, twice the time
    assert gre20_7t == pytest.approx(gre20 * 7 / 3, rel=1e-4)  # phase grows with B0
    assert spin < 0.1 * gre10  # at most 1 ms of residual against 10 ms of echo time
    assert np.std(parts.coil_phase) > 0.05  # a spin echo keeps its coil phase


def test_b0_direction_follows_the_slice_orientation():
    from kspacify.acquisition import Acquisition

    draw = draw_parameters(PhysicsSettings(), np.random.default_rng(1), 3, Acquisition(b0_direction=(0.0, -1.0, 0.0)))
    np.testing.assert_allclose(draw.b0_direction, [[0.0, -1.0, 0.0]] * 3)
    free = draw_parameters(PhysicsSettings(), np.random.default_rng(1), 3)
    assert not np.allclose(free.b0_direction, draw.b0_direction)
