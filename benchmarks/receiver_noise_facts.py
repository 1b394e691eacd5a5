"""The receiver noise of real complex images, measured: what `physics`' noise_gain and
noise_correlation options should be for data like the shared spin echoes.

    python benchmarks/receiver_noise_facts.py      # the blocks the bundled models trained on

On complex slices (magnitude x exp(i phase)) the noise can be measured where a magnitude-only
pipeline cannot see it:
* level: Immerkaer's noise operator (`physics._immerkaer_sigma`, blind to linear trends) on the
  real and imaginary parts inside the eroded tissue mask, against the two sigmas a magnitude-only
  pipeline can estimate (`noise_level` floor: `physics.noise_and_mask`, the background's Rayleigh
  peak or the same operator on the magnitude; `noise_level` tissue: `physics.tissue_noise`, the
  operator on the magnitude in the eroded tissue). The median ratio is what noise_gain corrects, its
  spread over slices what no constant gain can. Tissue texture can only raise the complex estimate,
  so the ratios are upper bounds.
* correlation: the normalized lag-1 autocorrelation of the complex values in the background (4
  pixels away from any tissue) along rows and columns; lags 2 to 32 show how much of it is a
  coherent, slowly varying part (ghosts, ringing) rather than correlated noise.
* what the classifier two-sample test sees (`kspacify.realism.classifier` pools the unit phasor to
  4 x 4 blocks): the mean length of the 4 x 4 mean phasor by distance from the tissue mask, against
  what white noise gives; and whether that coherent part turns with the tissue's own smooth phase
  (the mean cosine between the background's local mean phasor and the tissue's complex signal blurred
  by a Gaussian of 16 px: 0 if unrelated, 1 if the same).
Only the genTrain blocks (those the bundled models' cards list) are used, so the held-out slices
that `phase_realism.py` scores stay unseen by the choice.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from phase_realism import seen_by  # noqa: E402
from scipy import ndimage  # noqa: E402

from kspacify import phase  # noqa: E402
from kspacify.benchmark import SHARED_REAL_PHASE_TRAIN, SHARED_TRAIN_ACQUISITION  # noqa: E402
from kspacify.datasets import fingerprint, list_volumes, load_pairs  # noqa: E402
from kspacify.phase.physics import PhysicsSettings, _immerkaer_sigma, noise_and_mask, tissue_noise  # noqa: E402


def lag_correlation(z: np.ndarray, region: np.ndarray, axis: int, lag: int) -> complex:
    """mean z(x) conj z(x + lag) / mean |z|^2 over pairs of `region` pixels `lag` apart along `axis`."""
    a, b = [slice(None)] * 3, [slice(None)] * 3
    a[axis], b[axis] = slice(lag, None), slice(None, -lag)
    both = region[tuple(a)] & region[tuple(b)]
    za, zb = z[tuple(a)][both], z[tuple(b)][both]
    return complex(np.mean(za * np.conj(zb)) / np.sqrt(np.mean(np.abs(za) ** 2) * np.mean(np.abs(zb) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED_REAL_PHASE_TRAIN)
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipping: real-phase data not found at {args.data}")
        return
    trained_on = seen_by(phase.create("sbdm", device="cpu"))
    refs = [r for r in list_volumes(args.data) if fingerprint(r) in trained_on]
    pairs = load_pairs(refs, 256, SHARED_TRAIN_ACQUISITION)
    magnitude = pairs.magnitude
    z = magnitude * np.exp(1j * pairs.phase.astype(np.float64))
    sigma, mask, weight = noise_and_mask(magnitude, PhysicsSettings())
    in_tissue = tissue_noise(magnitude, weight, np.full(len(magnitude), np.nan))
    tissue = ndimage.binary_erosion(mask, structure=np.ones((1, 3, 3)), iterations=3)
    background = ~ndimage.binary_dilation(mask, structure=np.ones((1, 3, 3)), iterations=4)
    responses = [_immerkaer_sigma(part.astype(np.float32)) for part in (z.real, z.imag)]
    ratios: dict[str, list[float]] = {"floor": [], "tissue": []}
    for i in range(len(magnitude)):
        if tissue[i].sum() >= 1000 and sigma[i] > 0 and np.isfinite(in_tissue[i]):
            complex_sigma = np.median(np.concatenate([r[i][tissue[i]] for r in responses]))
            ratios["floor"].append(complex_sigma / sigma[i])
            ratios["tissue"].append(complex_sigma / in_tissue[i])
    print(f"{len(refs)} training volumes, {len(magnitude)} slices ({len(ratios['floor'])} with enough tissue)")
    for level, values in ratios.items():
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        print(f"noise level: complex-domain sigma in tissue / magnitude estimate ({level}) = {median:.3f} "
              f"(IQR {q1:.3f} to {q3:.3f}; coefficient of variation over slices {np.std(values) / np.mean(values):.3f})")  # fmt: skip
    print("background complex correlation (real part), rows | columns:")
    for lag in (1, 2, 3, 4, 8, 16, 32):
        rows, cols = (lag_correlation(z, background, axis, lag).real for axis in (1, 2))
        print(f"  lag {lag}: {rows:.3f} | {cols:.3f}")
    print_pooled_coherence(pairs.phase, mask)
    print_field_agreement(z, mask, background)


def blocks(x: np.ndarray, size: int = 4) -> np.ndarray:
    """(B, H / size, W / size, size * size): the size x size blocks of each slice."""
    b, h, w = x.shape
    return x[:, : h // size * size, : w // size * size].reshape(b, h // size, size, w // size, size).swapaxes(2, 3).reshape(b, h // size, w // size, -1)


def print_pooled_coherence(phase_: np.ndarray, mask: np.ndarray) -> None:
    """|4 x 4 mean unit phasor| of background blocks by their distance (px) from the tissue mask."""
    pooled = np.abs(blocks(np.exp(1j * phase_.astype(np.float64))).mean(axis=-1))
    distance = blocks(ndimage.distance_transform_edt(~mask, sampling=(1e9, 1, 1))).min(axis=-1)
    white = np.abs(blocks(np.exp(1j * np.random.default_rng(0).uniform(-np.pi, np.pi, phase_.shape))).mean(axis=-1)).mean()
    print(f"4 x 4 pooled phasor length in the background (white noise: {white:.3f}), by distance from tissue:")
    for lo, hi in ((2, 6), (6, 12), (12, 24), (24, 48), (48, 1000)):
        near = (distance >= lo) & (distance < hi)
        print(f"  {lo}-{hi} px: {pooled[near].mean():.3f} ({near.sum()} blocks)")


def print_field_agreement(z: np.ndarray, mask: np.ndarray, background: np.ndarray) -> None:
    def blur(x: np.ndarray, s: float) -> np.ndarray:
        return ndimage.gaussian_filter(x.real, (0, s, s)) + 1j * ndimage.gaussian_filter(x.imag, (0, s, s))

    field = blur(np.where(mask, z, 0), 16)
    cover = ndimage.gaussian_filter(background.astype(np.float64), (0, 4, 4))
    local = blur(np.where(background, z, 0), 4) / np.maximum(cover, 1e-6)
    inside = background & (cover > 0.9)
    agreement = np.mean(np.cos(np.angle(local[inside]) - np.angle(field[inside])))
    print(f"background local mean phasor against the blurred tissue signal: mean cosine {agreement:.3f}")


if __name__ == "__main__":
    main()
