"""Synthesized coil sensitivities against real multi-coil data (the table in docs/coils.md).

Real: ../shared/data/real-multicoil (an 8-coil axial T1 brain, fully sampled k-space; a 32-channel
gradient-echo acquisition, magnitude and phase per channel). For each, maps are estimated from the
coil images (`kspacify.coils.realism`), and the same estimator runs on the coil images the coil
model synthesizes for the same slice (its RSS as the magnitude, the same pixel size and coil
count, several seeds). Noise correlations: real from the image background, synthesized from the
drawn covariance.

    python benchmarks/coil_realism.py [--seeds 8] [--model cylinder]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from kspacify.coils import realism

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-multicoil"
ESPIRIT_PIXEL_MM = 1.0  # the sidecar gives no voxel size; an axial brain 230 x 180 matrix at ~1 mm


def real_sets(root: Path = SHARED) -> dict[str, tuple[np.ndarray, float, np.ndarray]]:
    """name -> (coil images (C, H, W), pixel mm, background noise samples (C, N))."""
    import nibabel as nib

    from kspacify.kspace import ifft2c

    sets = {}
    kspace = np.load(root / "brain_espirit_8coil_kspace.npy")
    images = ifft2c(kspace.astype(np.complex64))
    sets["brain 8 coils (T1, k-space)"] = (images, ESPIRIT_PIXEL_MM, images[:, :20, :20].reshape(images.shape[0], -1))
    magnitude = np.asarray(nib.load(root / "brain_aspire_32ch_mag.nii").dataobj, dtype=np.float64)
    phase = np.asarray(nib.load(root / "brain_aspire_32ch_phase.nii").dataobj, dtype=np.float64) * (np.pi / 4096)
    pixel = float(nib.load(root / "brain_aspire_32ch_mag.nii").header.get_zooms()[0])
    complex_images = (magnitude * np.exp(1j * phase))[:, :, 0, 0, :].transpose(2, 1, 0)  # slice 1, echo 1
    corner = complex_images[:, :12, :12].reshape(complex_images.shape[0], -1)
    sets["GRE 32 channels (magnitude + phase)"] = (complex_images, pixel, corner)
    return sets


def compare(seeds: int = 8, model: str = "cylinder", root: Path = SHARED) -> dict[str, dict]:
    out = {}
    for name, (images, pixel, background) in real_sets(root).items():
        rss = np.sqrt(np.sum(np.abs(images) ** 2, axis=0))
        mask = realism.object_mask(rss, pixel)
        real = realism.measure(realism.estimate_maps(images, pixel), mask, pixel).to_json()
        real["noise_correlation_mean"], real["noise_correlation_max"] = realism.noise_correlation(background)
        runs = []
        for seed in range(seeds):
            synthetic, psi = realism.synthesize_like(rss, pixel, images.shape[0], seed, model)
            row = realism.measure(realism.estimate_maps(synthetic, pixel), mask, pixel).to_json()
            std = np.sqrt(np.real(np.diag(psi)))
            row["noise_correlation_mean"], row["noise_correlation_max"] = realism.correlation_summary(psi / np.outer(std, std))
            runs.append(row)
        synthesized = {key: [statistics.median(r[key] for r in runs), min(r[key] for r in runs), max(r[key] for r in runs)] for key in runs[0]}
        out[name] = {"coils": images.shape[0], "pixel_mm": pixel, "object_pixels": int(mask.sum()), "real": real,
                     "synthesized_median_min_max": synthesized}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--model", default="cylinder")
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"no real multi-coil data at {SHARED}")
    print(json.dumps(compare(args.seeds, args.model), indent=1, default=float))


if __name__ == "__main__":
    main()
