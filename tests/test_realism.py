"""Tests for the phase-realism measures (kspacify/realism) and the realism benchmark's docs writer."""

from __future__ import annotations

import importlib.util
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
from scipy import ndimage

from kspacify import realism
from kspacify.realism.measures import GRADIENT_EDGES, SPECTRUM_BINS

ROOT = Path(__file__).resolve().parents[1]
REAL_PHASE = ROOT.parent / "shared" / "data" / "real-phase"
N = 64


def phantom(batch: int = 4, seed: int = 0, n: int = N) -> np.ndarray:
    """Ellipses with different sizes per slice on a Rician noise background, 99.5th percentile ~1."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:n, :n] / (n / 2) - 1
    out = []
    for i in range(batch):
        a, b = 0.6 + 0.05 * i, 0.8 - 0.04 * i
        m = ((x / a) ** 2 + (y / b) ** 2 < 1) * (0.7 + 0.3 * np.cos(3 * x + i))
        out.append(np.abs(m + 0.01 * (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n)))))
    return np.asarray(out, dtype=np.float32)


def smooth_phase(batch: int = 4, seed: int = 1, n: int = N) -> np.ndarray:
    """A smooth phase with some structure: random quadratic + a bump, per slice."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:n, :n] / (n / 2) - 1
    out = []
    for _ in range(batch):
        c = rng.uniform(-2, 2, 5)
        out.append(c[0] * x + c[1] * y + c[2] * x * x + c[3] * x * y + 3 * np.exp(-((x - 0.2) ** 2 + y**2) / 0.05) + c[4])
    return np.asarray(out, dtype=np.float32)


def add_noise(magnitude: np.ndarray, phase: np.ndarray, sigma: float, seed: int = 2) -> np.ndarray:
    """Phase of the complex image plus complex Gaussian noise of std `sigma` per component."""
    rng = np.random.default_rng(seed)
    z = magnitude * np.exp(1j * phase) + sigma * (rng.standard_normal(phase.shape) + 1j * rng.standard_normal(phase.shape))
    return np.angle(z).astype(np.float32)


def blur(phase: np.ndarray, width: float) -> np.ndarray:
    """Phase of the Gaussian-blurred unit phasor (blur within each slice)."""
    z = np.exp(1j * phase)
    s = (0, width, width)
    return np.angle(ndimage.gaussian_filter(z.real, s) + 1j * ndimage.gaussian_filter(z.imag, s)).astype(np.float32)


def grainy_phase(batch: int = 4, seed: int = 3, n: int = N) -> np.ndarray:
    """A rough phase (white noise blurred 1 px, 1.5 rad) that smoothing visibly changes."""
    rng = np.random.default_rng(seed)
    return (1.5 * ndimage.gaussian_filter(rng.standard_normal((batch, n, n)), (0, 1, 1)) / 0.28).astype(np.float32)


def distances(mag, ref, other, measure):
    if measure == "gradient":
        return realism.histogram_distance(realism.gradient_histograms(mag, ref), realism.gradient_histograms(mag, other))
    return realism.spectrum_distance(realism.radial_spectra(mag, ref), realism.radial_spectra(mag, other))


# --- Frechet distance ---------------------------------------------------------------------------


def test_frechet_matches_closed_forms():
    # 1D: (mu1 - mu2)^2 + (s1 - s2)^2
    assert realism.gaussian_frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)
    # commuting (diagonal) covariances: |dmu|^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = 1.0 + 4.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert realism.gaussian_frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)
    # general SPD matrices: the usual sqrtm formula, and symmetry
    rng = np.random.default_rng(0)
    m1, m2 = rng.standard_normal((6, 6)), rng.standard_normal((6, 6))
    c1, c2 = m1 @ m1.T + 0.1 * np.eye(6), m2 @ m2.T + 0.1 * np.eye(6)
    v1, v2 = rng.standard_normal(6), rng.standard_normal(6)
    reference = np.sum((v1 - v2) ** 2) + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    assert realism.gaussian_frechet_distance(v1, c1, v2, c2) == pytest.approx(reference, rel=1e-8)
    assert realism.gaussian_frechet_distance(v2, c2, v1, c1) == pytest.approx(reference, rel=1e-8)
    assert realism.gaussian_frechet_distance(v1, c1, v1, c1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_of_samples_converges_to_the_gaussian_value():
    rng = np.random.default_rng(1)
    cov = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 0.5]])
    a = rng.multivariate_normal([0, 0, 0], cov, size=40000)
    b = rng.multivariate_normal([1, 0, 0], 4 * cov, size=40000)
    expected = 1.0 + np.trace(cov)  # |dmu|^2 + tr(C + 4C - 2 * 2C)
    assert realism.frechet_distance(a, b) == pytest.approx(expected, rel=0.03)
    assert realism.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(realism.frechet_distance(a[:1], b))
    with pytest.raises(ValueError):
        realism.frechet_distance(a, b[:, :2])


# --- gradient and spectrum measures ---------------------------------------------------------------


@pytest.mark.parametrize("measure", ["gradient", "spectrum"])
def test_zero_for_identical_sets_symmetric_and_grows_with_noise(measure):
    mag, ph = phantom(), smooth_phase()
    assert distances(mag, ph, ph, measure) == pytest.approx(0.0, abs=1e-12)
    values = [distances(mag, ph, add_noise(mag, ph, s), measure) for s in (0.02, 0.08, 0.3)]
    assert values[0] > 1e-3 and values[0] < values[1] < values[2], values
    noisy = add_noise(mag, ph, 0.08)
    assert distances(mag, noisy, ph, measure) == pytest.approx(values[1], rel=1e-9)


@pytest.mark.parametrize("measure", ["gradient", "spectrum"])
def test_grows_with_smoothing(measure):
    mag, ph = phantom(), grainy_phase()
    values = [distances(mag, ph, blur(ph, w), measure) for w in (0.5, 1.0, 2.0)]
    assert 0 < values[0] < values[1] < values[2], values


@pytest.mark.parametrize("measure", ["gradient", "spectrum"])
def test_invariant_to_a_global_phase_offset(measure):
    mag, ph = phantom(), smooth_phase()
    shifted = np.angle(np.exp(1j * (ph + np.array([0.3, 1.0, 2.0, -2.5])[:, None, None]))).astype(np.float32)
    assert distances(mag, ph, shifted, measure) < 1e-3


def test_gradient_distance_is_in_decades():
    """A ramp ten times steeper moves the gradient histogram by one decade: W1 ~ 1."""
    mag = phantom(2)
    x = np.broadcast_to(np.arange(N, dtype=np.float32), (2, N, N))
    w1 = distances(mag, 0.01 * x, 0.1 * x, "gradient")
    assert w1 == pytest.approx(1.0, abs=0.08)


def test_spectrum_is_normalized_and_ignores_the_outline():
    """White phase noise has density 1 at every frequency, whatever the object's shape."""
    rng = np.random.default_rng(4)
    y, x = np.mgrid[:N, :N] / (N / 2) - 1
    disc = ((x**2 + y**2) < 0.8).astype(np.float32)
    square = ((np.abs(x) < 0.5) & (np.abs(y) < 0.9)).astype(np.float32)
    mag = np.stack([disc, square] * 4)
    spectra = realism.radial_spectra(mag, rng.uniform(-np.pi, np.pi, mag.shape).astype(np.float32))
    assert spectra.shape == (8, SPECTRUM_BINS)
    assert np.all(np.abs(np.log10(spectra.mean(0))) < 0.1)
    assert realism.spectrum_distance(spectra[0::2], spectra[1::2]) < 0.1


def test_phase_vortices_count_windings_inside_the_mask():
    """A smooth field, however strong, has no vortex; a vortex and an antivortex count one each
    (the sign of the winding is ignored); a vortex outside the mask is not counted."""
    from kspacify.realism.measures import phase_vortices

    y, x = np.mgrid[:N, :N] - (N / 2 - 0.5)
    inside = np.ones((N, N), bool)
    fields = np.stack([6.0 * (x**2 + y**2) / N**2, np.arctan2(y, x), np.arctan2(y - 5.3, x - 7.1) - np.arctan2(y + 8.2, x + 3.4)])
    assert phase_vortices(fields, np.broadcast_to(inside, fields.shape)).tolist() == [0, 1, 2]
    left = x < -4
    assert phase_vortices(np.arctan2(y, x)[None], left[None]).tolist() == [0]


def test_empty_masks_give_nan_not_errors():
    mag, ph = phantom(), smooth_phase()
    empty = np.zeros((2, N, N), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = realism.gradient_histograms(empty, ph[:2])
        s = realism.radial_spectra(empty, ph[:2])
        assert g.shape == (2, GRADIENT_EDGES.size - 1) and np.isnan(g).all() and np.isnan(s).all()
        assert np.isnan(realism.histogram_distance(g, realism.gradient_histograms(mag, ph)))
        assert np.isnan(realism.spectrum_distance(s, realism.radial_spectra(mag, ph)))
        # an empty slice inside a set is skipped: the set's value is that of its non-empty slices
        mixed = realism.describe(np.concatenate([empty[:1], mag]), np.concatenate([ph[:1], ph]), features=False)
        clean = realism.describe(mag, ph, features=False)
        noisy = realism.describe(mag, add_noise(mag, ph, 0.1), features=False)
        result, expected = realism.compare(mixed, noisy), realism.compare(clean, noisy)
        assert result["gradient_w1"] == pytest.approx(expected["gradient_w1"])
        assert result["spectrum_rms"] == pytest.approx(expected["spectrum_rms"])
        assert np.isnan(result["feature_fd"])  # no features computed


def test_statistics_subsets_and_directories(tmp_path):
    mag, ph = phantom(), smooth_phase()
    np.save(tmp_path / "vol.npy", (mag * np.exp(1j * ph)).astype(np.complex64))
    stats = realism.describe_directory(tmp_path, size=N, features=False)
    assert len(stats) == 4 and set(stats.keys) == {"vol"}
    assert all(v == pytest.approx(0.0, abs=1e-9) for k, v in realism.compare(stats, stats).items() if k != "feature_fd")
    halves = stats.take(np.arange(4) % 2 == 0), stats.take([1, 3])
    assert len(realism.PhaseStatistics.concat(halves)) == 4
    with pytest.raises(ValueError):
        realism.describe(mag, ph[:2])
    batch = realism.realism_distances(mag, ph, mag, add_noise(mag, ph, 0.1), features=False)
    assert batch["gradient_w1"] > 0.1 and batch["spectrum_rms"] > 0.1 and np.isnan(batch["feature_fd"])


def test_paired_difference_tells_a_closer_set_from_a_farther_one_and_ties_from_neither():
    """Over 6 volumes of 4 slices: a set slightly noisier than the real phase is closer than a much
    noisier one (negative difference, interval below 0); a set against itself gives exactly 0; two
    models that differ only in their draws give intervals that span 0."""
    n = 128  # at 64 x 64 the draws' own scatter of the distances is as large as the volumes'
    mag = np.concatenate([phantom(seed=v, n=n) for v in range(6)])
    real_phase = np.concatenate([smooth_phase(seed=10 + v, n=n) for v in range(6)])
    keys = [f"vol{v}" for v in range(6) for _ in range(4)]

    def stats(sigma, seeds):
        return [realism.describe(mag, add_noise(mag, real_phase, sigma, seed=s), features=False, keys=keys) for s in seeds]

    real = stats(0.02, [1])[0]
    near, far, other_near = stats(0.03, [20, 21]), stats(0.12, [4, 5]), stats(0.03, [22, 23])
    closer = realism.paired_difference(near, far, real, samples=200)
    for measure in ("gradient_w1", "spectrum_rms"):
        difference, low, high = closer[measure]
        assert low <= difference <= high < 0
        assert realism.paired_difference(near, near[::-1], real, samples=50)[measure][0] == pytest.approx(0.0, abs=1e-12)
        _, low, high = realism.paired_difference(near, other_near, real, samples=200)[measure]
        assert low < 0 < high
    assert all(np.isnan(v) for v in closer["feature_fd"])  # no features computed: no number, no error


# --- the feature network --------------------------------------------------------------------------


def test_shipped_feature_net_loads_with_sha256_check(tmp_path):
    from kspacify.realism.features import DEFAULT_WEIGHTS, FeatureNetError, load_feature_net

    net, card = load_feature_net()
    assert card["model"] == "kspacify-phase-features" and card["training"]["steps"] > 0
    assert card["quality"]["held_out_r2"] and card["data"]["train_volumes"]
    assert net.config.feature_dim == len(net.feature_mean) <= 64

    copy = tmp_path / DEFAULT_WEIGHTS.name
    shutil.copy(DEFAULT_WEIGHTS, copy)
    shutil.copy(DEFAULT_WEIGHTS.with_suffix(".json"), copy.with_suffix(".json"))
    load_feature_net(copy)
    data = bytearray(copy.read_bytes())
    data[-5] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(FeatureNetError, match="sha256"):
        load_feature_net(copy)
    copy.with_suffix(".json").unlink()
    with pytest.raises(FeatureNetError, match="not found"):
        load_feature_net(copy)


def test_feature_frechet_zero_for_identical_and_grows_with_noise_and_smoothing():
    mag = phantom(16, seed=5, n=128)
    ph = smooth_phase(16, seed=6, n=128)
    reference = realism.describe(mag, ph)
    assert reference.features.shape == (16, 32)
    assert realism.compare(reference, reference)["feature_fd"] == pytest.approx(0.0, abs=1e-9)
    values = [realism.compare(reference, realism.describe(mag, add_noise(mag, ph, s)))["feature_fd"] for s in (0.05, 0.2, 0.5)]
    assert values[0] < values[1] < values[2], values
    rough = grainy_phase(16, n=128)
    reference = realism.describe(mag, rough)
    values = [realism.compare(reference, realism.describe(mag, blur(rough, w)))["feature_fd"] for w in (0.5, 1.0, 2.0)]
    assert values[0] < values[1] < values[2], values


def test_feature_net_save_load_roundtrip_and_training_smoke(tmp_path):
    import torch

    from kspacify.realism.features import (
        FeatureNetConfig,
        load_feature_net,
        make_training_set,
        save_feature_net,
        train_feature_net,
    )

    rng = np.random.default_rng(0)
    data = make_training_set(phantom(2), 4, rng)
    assert data[0].shape == (4, 3, N // 2, N // 2) and data[1].shape == (4, 5)
    assert np.all(np.abs(data[1]) <= 1.0 + 1e-6)
    net, report = train_feature_net(data, data, steps=2, batch_size=2, config=FeatureNetConfig(width=8, feature_dim=16))
    assert report["steps"] == 2 and set(report["validation_r2"]) == set(net.config.targets)
    save_feature_net(tmp_path / "f.safetensors", net, {"training": report})
    loaded, card = load_feature_net(tmp_path / "f.safetensors")
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 3, N, N)).astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
    assert json.loads((tmp_path / "f.json").read_text())["sha256"] == card["sha256"]


# --- the benchmark's docs writer and the shared real-phase set --------------------------------------


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("phase_realism", ROOT / "benchmarks" / "phase_realism.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_replaces_only_its_block(tmp_path, monkeypatch):
    bench = _benchmark_module()
    docs = tmp_path / "phase-methods.md"
    docs.write_text("# Phase methods\n\n## `zero`\n\nkeep me\n\n## Realism measures\n\nprose\n\n## Later\n\nkeep too\n")
    monkeypatch.setattr(bench, "DOCS", docs)
    bench.write_docs("table one")
    bench.write_docs("table two")
    text = docs.read_text()
    assert "table two" in text and "table one" not in text and text.count(bench.BEGIN) == 1
    assert "keep me" in text and "prose" in text and text.endswith("## Later\n\nkeep too\n")
    assert text.index("prose") < text.index("table two") < text.index("## Later")


def test_real_phase_set_if_present():
    if not REAL_PHASE.is_dir():
        print(f"skipping: shared real-phase data not found at {REAL_PHASE}")
        pytest.skip(f"shared real-phase data not found at {REAL_PHASE}")
    stats = realism.describe_directory(REAL_PHASE, features=False)
    assert len(stats) >= 2
    assert np.isfinite(stats.gradients).all() and np.isfinite(stats.spectra).all()
    half = np.arange(len(stats)) % 2 == 0
    split = realism.compare(stats.take(half), stats.take(~half))
    assert 0 < split["gradient_w1"] < 1 and 0 < split["spectrum_rms"] < 1


def test_classifier_two_sample_test_on_known_cases():
    from kspacify.realism.classifier import auroc, classifier_auroc

    assert auroc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auroc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.5
    rng = np.random.default_rng(0)
    n, size = 24, 32
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    disc = (xx**2 + yy**2 < 0.7).astype(np.float32)
    magnitude = np.stack([disc * rng.uniform(0.5, 1.0) for _ in range(n)])
    smooth = np.stack([0.5 * np.sin(2 * xx + rng.uniform(0, 3)) * disc for _ in range(n)]).astype(np.float32)
    groups = [f"v{i // 4}" for i in range(n)]
    same = classifier_auroc(magnitude, smooth, smooth.copy(), groups, size=32, steps=40)
    assert same == 0.5  # identical inputs, identical scores: every pair ties
    shifted = np.angle(np.exp(1j * (smooth + 2.0))).astype(np.float32)  # only a global phase apart
    assert classifier_auroc(magnitude, smooth, shifted, groups, size=32, steps=40) == pytest.approx(0.5, abs=0.02)
    noise = rng.uniform(-np.pi, np.pi, smooth.shape).astype(np.float32)
    assert classifier_auroc(magnitude, smooth, noise, groups, size=32, steps=60) > 0.9
