"""Sets of (magnitude, phase) slices -> `PhaseStatistics` -> the three realism distances.

Statistics are per slice, so a set is summarized once (e.g. the real phases) and compared with
many others, and subsets (split halves, one volume) are row selections.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from kspacify.realism.measures import (
    GRADIENT_EDGES,
    SPECTRUM_BINS,
    frechet_distance,
    gradient_histograms,
    histogram_distance,
    object_mask,
    radial_spectra,
    spectrum_distance,
)

if TYPE_CHECKING:
    from kspacify.datasets import ComplexSlice
    from kspacify.realism.features import PhaseFeatureNet

MEASURES = ("gradient_w1", "spectrum_rms", "feature_fd")


@dataclass(frozen=True)
class PhaseStatistics:
    """Per-slice statistics of a set; row i of every array belongs to slice i.

    `gradients` (n, 64) gradient histograms, `spectra` (n, 20) radial spectra (NaN rows: no object),
    `features` (n, 32) feature-network features or None when not computed, `keys` the volume key of
    each slice ("" when unknown)."""

    gradients: np.ndarray
    spectra: np.ndarray
    features: np.ndarray | None
    keys: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.gradients)

    def take(self, index: Sequence[int] | np.ndarray) -> PhaseStatistics:
        """The statistics of the slices `index` (integer positions or a boolean mask)."""
        index = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index, dtype=np.int64)
        return PhaseStatistics(
            self.gradients[index],
            self.spectra[index],
            None if self.features is None else self.features[index],
            tuple(self.keys[i] for i in index),
        )

    @staticmethod
    def concat(parts: Sequence[PhaseStatistics]) -> PhaseStatistics:
        if not parts:
            raise ValueError("PhaseStatistics.concat: nothing to concatenate")
        features = None if any(p.features is None for p in parts) else np.concatenate([p.features for p in parts])
        return PhaseStatistics(
            np.concatenate([p.gradients for p in parts]),
            np.concatenate([p.spectra for p in parts]),
            features,
            tuple(k for p in parts for k in p.keys),
        )


@lru_cache(maxsize=1)
def default_feature_net() -> PhaseFeatureNet:
    """The shipped feature network (kspacify/weights/phase-features.safetensors), loaded and verified once."""
    from kspacify.realism.features import load_feature_net

    return load_feature_net()[0]


def describe(
    magnitude: np.ndarray,
    phase: np.ndarray,
    *,
    features: bool | PhaseFeatureNet = True,
    keys: Sequence[str] | None = None,
    batch_size: int = 16,
) -> PhaseStatistics:
    """Statistics of a batch (B, H, W) of magnitudes and phases (radians).

    `features`: True uses the shipped feature network, False skips the feature measure (no torch
    import), or pass a network. The object mask comes from each slice's magnitude alone."""
    magnitude = np.asarray(magnitude, dtype=np.float32)
    phase = np.asarray(phase, dtype=np.float32)
    if magnitude.ndim == 2:
        magnitude, phase = magnitude[None], phase[None]
    if magnitude.shape != phase.shape or magnitude.ndim != 3:
        raise ValueError(f"describe: magnitude and phase must be (B, H, W) of one shape; got {magnitude.shape}, {phase.shape}")
    net = default_feature_net() if features is True else None if features is False else features
    gradients, spectra, embedded = [], [], []
    for start in range(0, len(magnitude), batch_size):
        m, p = magnitude[start : start + batch_size], phase[start : start + batch_size]
        mask, weight = object_mask(m)
        gradients.append(gradient_histograms(m, p, mask))
        spectra.append(radial_spectra(m, p, weight))
        if net is not None:
            from kspacify.realism.features import embed

            embedded.append(embed(net, m, p))
    n = len(magnitude)
    keys = tuple(keys) if keys is not None else ("",) * n
    if len(keys) != n:
        raise ValueError(f"describe: {len(keys)} keys for {n} slices")
    if n == 0:
        features_empty = None if net is None else np.zeros((0, net.config.feature_dim))
        return PhaseStatistics(np.zeros((0, GRADIENT_EDGES.size - 1)), np.zeros((0, SPECTRUM_BINS)), features_empty, ())
    return PhaseStatistics(
        np.concatenate(gradients), np.concatenate(spectra), np.concatenate(embedded) if net is not None else None, keys
    )


def describe_slices(
    slices: Iterable[ComplexSlice], *, features: bool | PhaseFeatureNet = True, batch_size: int = 16
) -> PhaseStatistics:
    """Statistics of `ComplexSlice`s (their acquired phase), read in batches of slices of one shape."""
    parts: list[PhaseStatistics] = []
    pending: list[ComplexSlice] = []

    def flush() -> None:
        if pending:
            parts.append(
                describe(
                    np.stack([s.magnitude for s in pending]),
                    np.stack([s.phase for s in pending]),
                    features=features,
                    keys=[s.volume_key for s in pending],
                    batch_size=batch_size,
                )
            )
            pending.clear()

    for s in slices:
        if pending and (len(pending) == batch_size or s.shape != pending[0].shape):
            flush()
        pending.append(s)
    flush()
    return PhaseStatistics.concat(parts) if parts else describe(np.zeros((0, 1, 1)), np.zeros((0, 1, 1)), features=False)


def describe_directory(path: str | Path, *, size: int = 256, features: bool | PhaseFeatureNet = True) -> PhaseStatistics:
    """Statistics of every complex slice the dataset readers find under `path` (see `kspacify.datasets`)."""
    from kspacify.datasets import iter_slices

    return describe_slices(iter_slices(path, size=size), features=features)


def compare(a: PhaseStatistics, b: PhaseStatistics) -> dict[str, float]:
    """The three distances between two sets (NaN where a set has no object, or no features)."""
    feature = frechet_distance(a.features, b.features) if a.features is not None and b.features is not None else float("nan")
    return {
        "gradient_w1": histogram_distance(a.gradients, b.gradients),
        "spectrum_rms": spectrum_distance(a.spectra, b.spectra),
        "feature_fd": feature,
    }


def paired_difference(
    a: Sequence[PhaseStatistics], b: Sequence[PhaseStatistics], real: PhaseStatistics, samples: int = 1000
) -> dict[str, tuple[float, float, float]]:
    """Per measure: the mean over seeds of compare(a, real) - compare(b, real), and its bootstrap 95%
    interval (`kspacify.intervals`). Each draw resamples the volumes (one draw for a, b and real
    alike, so the set's own sampling, which the real-vs-real floor shows, is in the interval) and
    each side's seeds (so is the variation between draws; with one seed per side it is not). `a` and
    `b` hold one `PhaseStatistics` per seed, each of the slices of `real` in its order. Negative: a
    is closer."""
    from kspacify.intervals import BOOTSTRAP_SEED, bootstrap_interval

    keys = np.asarray(real.keys)
    volumes = [np.flatnonzero(keys == key) for key in dict.fromkeys(real.keys)]
    seeds = np.random.default_rng(BOOTSTRAP_SEED + 1)

    def distances(sets: Sequence[PhaseStatistics], rows: np.ndarray, target: PhaseStatistics) -> np.ndarray:
        return np.mean([[compare(s.take(rows), target)[m] for m in MEASURES] for s in sets], axis=0)

    def difference(index: np.ndarray) -> np.ndarray:
        rows = np.concatenate([volumes[i] for i in index])
        target = real.take(rows)
        a_drawn, b_drawn = ([sets[i] for i in seeds.integers(0, len(sets), len(sets))] for sets in (a, b))
        return distances(a_drawn, rows, target) - distances(b_drawn, rows, target)

    low, high = bootstrap_interval(len(volumes), difference, samples)
    everything = np.arange(len(real))
    point = distances(a, everything, real) - distances(b, everything, real)
    return {m: (float(d), float(lo), float(hi)) for m, d, lo, hi in zip(MEASURES, point, low, high)}


def realism_distances(
    magnitude_a: np.ndarray, phase_a: np.ndarray, magnitude_b: np.ndarray, phase_b: np.ndarray, **options: Any
) -> dict[str, float]:
    """`compare(describe(a), describe(b))` for two batches; options go to `describe`."""
    return compare(describe(magnitude_a, phase_a, **options), describe(magnitude_b, phase_b, **options))
