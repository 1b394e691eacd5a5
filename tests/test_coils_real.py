"""Synthesized coil maps against maps estimated from real multi-coil data (../shared): the same
estimator on both, the measures of `kspacify.coils.realism` within the bounds docs/coils.md
states (a factor of 2 for falloff, smoothness and coil-to-coil phase, one coil of effective count;
noise correlation within a factor of 2 where the data allow measuring it)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import coil_realism  # noqa: E402

FACTOR_2 = ("falloff", "length_mm", "phase_gradient_rad_per_cm", "phase_span_rad", "noise_correlation_mean")


@pytest.fixture(scope="module")
def comparison():
    if not coil_realism.SHARED.is_dir():
        message = f"no real multi-coil data at {coil_realism.SHARED} (shared/ is beside the checkout in CI)"
        print(message)
        pytest.skip(message)
    return coil_realism.compare(seeds=3)


@pytest.mark.parametrize("name", ["brain 8 coils (T1, k-space)", "GRE 32 channels (magnitude + phase)"])
def test_synthesized_maps_are_like_real_ones(comparison, name):
    entry = comparison[name]
    real, synthesized = entry["real"], entry["synthesized_median_min_max"]
    for key in FACTOR_2:
        if real[key] is None:  # the file's background is masked: no noise to measure
            continue
        ratio = synthesized[key][0] / real[key]
        assert 0.5 <= ratio <= 2.0, (name, key, real[key], synthesized[key])
    assert abs(synthesized["effective_coils"][0] - real["effective_coils"]) <= 1.5
