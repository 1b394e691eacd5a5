"""Offline measures of phase realism: how close a set of synthesized phase maps is to real ones.

The paper reports FID, which needs Inception weights (not available offline, and trained on natural
images). Three measures replace it; each compares two sets of (magnitude, phase) slices and is 0 for
identical sets:

* `gradient_w1` -- Wasserstein-1 distance (decades of rad/pixel) between the magnitude-weighted
  histograms of log10 |grad exp(i phase)| inside the object: is the phase as rough as real phase at
  the pixel scale (noise, wraps) and as smooth where real phase is smooth?
* `spectrum_rms` -- RMS difference (decades) of the log radial power spectra of exp(i phase) inside
  the object: does the phase vary at the same spatial scales?
* `feature_fd` -- Frechet distance between Gaussians fitted to 32 features of a small CNN trained
  here (`features`, weights in `kspacify/weights/phase-features.safetensors`): a learned, whole-image
  (background included) summary, the offline stand-in for FID.

    from kspacify import realism
    real = realism.describe_directory("../shared/data/real-phase")       # or realism.describe(mag, phase)
    fake = realism.describe(real_magnitudes, synthesized_phase)
    realism.compare(fake, real)   # {"gradient_w1": ..., "spectrum_rms": ..., "feature_fd": ...}

The object mask is the `physics` phase model's tissue mask (noise-floor threshold,
`kspacify.phase.physics.noise_and_mask`). torch is imported only when features are computed.
"""

from kspacify.realism.measures import (
    frechet_distance,
    gaussian_frechet_distance,
    gradient_histograms,
    histogram_distance,
    object_mask,
    radial_spectra,
    spectrum_distance,
    wasserstein_1d,
)
from kspacify.realism.summary import (
    MEASURES,
    PhaseStatistics,
    compare,
    default_feature_net,
    describe,
    describe_directory,
    describe_slices,
    paired_difference,
    realism_distances,
)

__all__ = [
    "MEASURES",
    "PhaseStatistics",
    "compare",
    "default_feature_net",
    "describe",
    "describe_directory",
    "describe_slices",
    "frechet_distance",
    "gaussian_frechet_distance",
    "gradient_histograms",
    "histogram_distance",
    "object_mask",
    "paired_difference",
    "radial_spectra",
    "realism_distances",
    "spectrum_distance",
    "wasserstein_1d",
]
