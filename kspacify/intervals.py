"""The one bootstrap rule for uncertainty: resample the independent units (test volumes) with
replacement, recompute the statistic, take the 2.5th and 97.5th percentiles. Paired comparisons
resample the same units for both sides, so what the units share cancels."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

BOOTSTRAP_SEED, BOOTSTRAP_SAMPLES = 0, 4000


def bootstrap_interval(
    units: int, statistic: Callable[[np.ndarray], Any], samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """The 95% percentile interval of `statistic(index)` (a number or an array of them) over `samples`
    draws of `units` unit indices with replacement (index: (units,) int)."""
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, units, size=units)) for _ in range(samples)], dtype=np.float64)
    low, high = np.percentile(values, [2.5, 97.5], axis=0)
    return low, high


def mean_interval(values: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """`bootstrap_interval` of the mean of one value per unit."""
    values = np.asarray(values, dtype=np.float64)
    low, high = bootstrap_interval(len(values), lambda index: values[index].mean(), samples, seed)
    return float(low), float(high)
