"""The coil model's numerics: the loop field, the sensitivities, the array placement, the noise and
the encoding into coil k-space and the RSS target. Tiny sizes, seeded."""

import numpy as np
import pytest

from kspacify import coils
from kspacify.acquisition import UNKNOWN
from kspacify.coils.field import Loops, loop_field, receive_sensitivity
from kspacify.coils.noise import fill_standard_normal
from kspacify.errors import OptionError, UsageError
from kspacify.kspace import ifft2c


def polygon_field(points, centre, normal, radius, segments=4000):
    """Biot-Savart by numerical line integration over a fine polygon (midpoint rule), mu0 I = 1."""
    normal = normal / np.linalg.norm(normal)
    u = np.cross(normal, [1.0, 0.0, 0.0] if abs(normal[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    angles = np.linspace(0, 2 * np.pi, segments + 1)
    wire = centre + radius * (np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * v)
    dl = np.diff(wire, axis=0)
    middle = 0.5 * (wire[1:] + wire[:-1])
    r = points[:, None, :] - middle[None]
    distance = np.linalg.norm(r, axis=2, keepdims=True)
    return np.sum(np.cross(dl[None], r) / distance**3, axis=1) / (4 * np.pi)


def test_closed_form_field_matches_a_numerically_integrated_loop():
    rng = np.random.default_rng(0)
    centre, normal, radius = np.array([10.0, -5.0, 3.0]), np.array([0.3, 0.8, -0.5]), 40.0
    points = centre + rng.normal(0, 60, (50, 3))
    loops = Loops(centre[None], (normal / np.linalg.norm(normal))[None], np.array([radius]))
    closed = loop_field(points, loops)[0]
    numeric = polygon_field(points, centre, normal, radius)
    np.testing.assert_allclose(closed, numeric, rtol=1e-4, atol=1e-7 * np.abs(numeric).max())
    # on the axis: mu0 I a^2 / (2 (a^2 + z^2)^(3/2)) along the normal
    z = np.array([0.0, 15.0, 80.0])
    axis_points = centre + z[:, None] * loops.normals[0]
    expected = radius**2 / (2 * (radius**2 + z**2) ** 1.5)
    np.testing.assert_allclose(loop_field(axis_points, loops)[0] @ loops.normals[0], expected, rtol=1e-10)


def test_sensitivity_falls_off_with_distance_and_its_phase_winds_around_the_loop():
    loops = Loops(np.zeros((1, 3)), np.array([[0.0, 0.0, 1.0]]), np.array([30.0]))
    e1, e2 = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])  # B0 along z, the loop's normal
    depth = np.linspace(10, 150, 8)
    off_axis = np.stack([np.full_like(depth, 20.0), np.zeros_like(depth), depth], axis=1)
    magnitude = np.abs(receive_sensitivity(loop_field(off_axis, loops)[0], e1, e2))
    assert np.all(np.diff(magnitude) < 0)
    # a loop facing along B0 makes a radial transverse field: the phase turns once, -2 pi, per turn
    turn = np.linspace(0, 2 * np.pi, 73)
    ring = np.stack([15 * np.cos(turn), 15 * np.sin(turn), np.full_like(turn, 20.0)], axis=1)
    phase = np.unwrap(np.angle(receive_sensitivity(loop_field(ring, loops)[0], e1, e2)))
    assert phase[-1] - phase[0] == pytest.approx(-2 * np.pi, abs=1e-6)


def head(size=32, slices=4):
    y, x = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    inside = (x / 0.75) ** 2 + (y / 0.85) ** 2 < 1
    volume = np.stack([inside * (0.8 + 0.2 * np.cos(3 * x + s)) for s in range(slices)]).astype(np.float32)
    return volume, inside


def encoder(model="cylinder", count=4, sigma=0.0, seed=0, size=32, pixel=7.0, slice_mm=5.0, options=None):
    volume, inside = head(size)
    body = coils.body_from_volume(volume, (slice_mm, pixel, pixel), 1.0, np.array([0.0, 0.0, 1.0]))
    array = coils.create(model, count, options).draw(body, np.random.default_rng(seed))
    positions = coils.slice_positions(len(volume), slice_mm)
    return coils.VolumeCoils(array, size, pixel, positions, sigma), volume, inside


def encoded(vc, volume, phase=None, seed=1):
    phase = np.zeros_like(volume) if phase is None else phase
    out = {}
    vc.encode(0, volume, phase, np.random.default_rng(seed), lambda i, k, r: out.__setitem__(i, (k[0].copy(), r[0].copy())))
    return out


@pytest.mark.parametrize("model, size", [("cylinder", 32), ("surface", 32), ("cylinder", 33)])
def test_rss_of_the_coil_images_is_the_target_and_equals_the_magnitude(model, size):
    vc, volume, inside = encoder(model, size=size)
    phase = np.random.default_rng(5).uniform(-np.pi, np.pi, volume.shape).astype(np.float32)
    out = encoded(vc, volume, phase)
    for index, (kspace, rss) in out.items():
        images = ifft2c(kspace)
        np.testing.assert_allclose(np.sqrt(np.sum(np.abs(images) ** 2, axis=0)), rss, atol=1e-5)
        np.testing.assert_allclose(rss, volume[index], atol=1e-5)  # no receiver noise: exactly m
        maps = vc.maps(vc.positions[index : index + 1])[0]
        np.testing.assert_allclose(images, maps * volume[index] * np.exp(1j * phase[index]), atol=1e-5)


def test_receiver_noise_keeps_the_rss_noise_level_in_tissue():
    sigma = 0.02
    vc, volume, inside = encoder(count=8, sigma=sigma)
    out = encoded(vc, volume)
    rss = np.stack([out[i][1] for i in range(len(volume))])
    residual = (rss - volume)[:, inside]
    # in tissue only a second-order bias (|v_perp|^2 / 2m) and a spread well below sigma
    assert residual.std() < 0.25 * sigma
    assert 0 < residual.mean() < (8 - 1) * sigma**2 / volume[:, inside].min()
    # outside, the RSS is noise of 2 (C - 1) real components: the level of a real RSS background
    outside = rss[:, ~inside]
    assert outside.mean() == pytest.approx(sigma * np.sqrt(2 * (8 - 1) - 0.5), rel=0.1)


def test_kspace_noise_is_white_with_the_drawn_coil_covariance():
    sigma = 0.05
    vc, volume, _ = encoder(count=4, sigma=sigma, seed=3)
    out = encoded(vc, np.zeros_like(volume), seed=7)  # a blank object: pure receiver noise
    kspace = np.stack([out[i][0] for i in range(len(volume))])  # (S, C, H, W)
    samples = np.moveaxis(kspace, 1, 0).reshape(4, -1)
    measured = samples @ samples.conj().T / samples.shape[1] / 2  # per real component
    # expected: the pixel average of (I - S S^H) Psi (I - S S^H), times sigma^2
    psi = vc.array.noise_covariance
    expected = np.zeros_like(psi)
    for index in range(len(volume)):
        maps = vc.maps(vc.positions[index : index + 1])[0].reshape(4, -1)
        for s in maps.T[::7]:
            projector = np.eye(4) - np.outer(s, s.conj())
            expected += projector @ psi @ projector
    expected *= sigma**2 / (len(volume) * len(maps.T[::7]))
    np.testing.assert_allclose(measured, expected, atol=0.1 * sigma**2)
    # white: the same power at the centre and the edge of k-space
    power = np.mean(np.abs(kspace) ** 2, axis=(0, 1))
    centre, edge = power[12:20, 12:20].mean(), power[:8, :8].mean()
    assert centre == pytest.approx(edge, rel=0.15)


def test_maps_are_normalized_smooth_and_consistent_between_neighbouring_slices():
    vc, volume, inside = encoder(count=8, size=64, pixel=3.5, slice_mm=3.0)
    maps = vc.maps(vc.positions)
    np.testing.assert_allclose(np.sum(np.abs(maps) ** 2, axis=1), 1.0, atol=1e-5)
    # smooth: nearly all of each map's energy (over the object) in the lowest spatial frequencies
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(maps * inside), axes=(-2, -1))) ** 2
    low = spectrum[..., 24:40, 24:40].sum(axis=(-2, -1)) / spectrum.sum(axis=(-2, -1))
    assert low.min() > 0.95
    # one array per volume: a neighbouring slice's maps differ less than a far slice's
    near = np.abs(maps[1] - maps[0])[:, inside].mean()
    far = np.abs(maps[3] - maps[0])[:, inside].mean()
    assert near < far


def test_the_array_is_drawn_from_the_seed_and_varies_between_volumes():
    first, _, _ = encoder(seed=0)
    again, _, _ = encoder(seed=0)
    other, _, _ = encoder(seed=1)
    np.testing.assert_array_equal(first.array.loops.centres, again.array.loops.centres)
    assert not np.allclose(first.array.loops.centres, other.array.loops.centres)


@pytest.mark.parametrize("model", ["cylinder", "surface"])
@pytest.mark.parametrize("count", [2, 3, 8, 13, 32, 64])
def test_models_place_every_coil_outside_the_object(model, count):
    volume, inside = head(32)
    body = coils.body_from_volume(volume, (5.0, 7.0, 7.0), 1.0, np.array([0.0, 0.0, 1.0]))
    array = coils.create(model, count).draw(body, np.random.default_rng(count))
    loops = array.loops
    assert len(loops) == count and np.all(np.isfinite(loops.centres))
    # every loop sits outside the object, beyond its outline in its own direction
    direction = loops.centres[:, :2] / np.linalg.norm(loops.centres[:, :2], axis=1, keepdims=True)
    reach = (body.points[:, :2] @ direction.T).max(axis=0)
    assert np.all(np.sum(loops.centres[:, :2] * direction, axis=1) > reach)
    psi = array.noise_covariance
    np.testing.assert_allclose(psi, psi.conj().T, atol=1e-12)
    assert np.linalg.eigvalsh(psi).min() > 0
    assert np.mean(np.real(np.diag(psi))) == pytest.approx(1.0)


def test_coronal_slices_wrap_the_array_around_the_rows():
    """B0 along the rows (coronal): the cylinder's axis is y, its loops around x and n."""
    volume, _ = head(32)
    b0 = coils.b0_direction(UNKNOWN, "coronal")
    np.testing.assert_array_equal(b0, [0.0, 1.0, 0.0])
    body = coils.body_from_volume(volume, (5.0, 7.0, 7.0), 1.0, b0)
    loops = coils.create("cylinder", 8).draw(body, np.random.default_rng(0)).loops
    assert np.all(np.abs(loops.normals[:, 1]) < 0.5)  # facing across the axis, not along it


def test_bad_counts_and_options_are_usage_errors():
    with pytest.raises(UsageError, match="at most 64 coils"):
        coils.create("cylinder", 65)
    with pytest.raises(UsageError, match="at most 16 coils"):
        coils.create("surface", 17, {"pads": "1", "max_rows": "2"})
    assert coils.create("cylinder", 96, {"max_rings": "6"}).coils == 96
    with pytest.raises(UsageError, match="at least 2"):
        coils.create("cylinder", 1)
    with pytest.raises(UsageError, match="unknown coil model"):
        coils.create("birdcage", 8)
    with pytest.raises(OptionError, match="known: gap_mm, .*noise_scale"):
        coils.create("cylinder", 8, {"gapmm": "3"})
    with pytest.raises(OptionError, match="gap_mm"):
        coils.create("cylinder", 8, {"gap_mm": "30,10"})


def test_fast_normal_deviates_are_standard_normal():
    out = np.empty(400_000, np.float32)
    fill_standard_normal(np.random.default_rng(0), out)
    assert abs(out.mean()) < 0.01 and out.std() == pytest.approx(1.0, abs=0.01)
    assert np.mean(np.abs(out) > 1.96) == pytest.approx(0.05, abs=0.003)
    assert np.mean(out**4) == pytest.approx(3.0, abs=0.1)
    again = np.empty(7, np.float32)  # sizes that are not a multiple of four words
    fill_standard_normal(np.random.default_rng(0), again)
    np.testing.assert_array_equal(again, out[:7])
