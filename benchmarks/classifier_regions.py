"""Where does the classifier two-sample test see the difference: in tissue, or in the background?

    python benchmarks/classifier_regions.py                 # physics and sbdm, seed 0
    python benchmarks/classifier_regions.py --backgrounds   # real tissue phase under candidate backgrounds

On the held-out real spin-echo slices (as `phase_realism.py`: without every volume the bundled
learned models saw), each method synthesizes phase once and the classifier AUROC
(`kspacify.realism.classifier`) is scored three times: on the whole image, with the background
replaced by the same uniform random phase in both sets (tissue only), and with the tissue replaced
by phase 0 in both sets (background only). Tissue is the `physics` model's mask, eroded by 2 pixels.
It also prints the lag-1 correlation of neighbouring unit phasors in the background, real against
synthetic. A diagnostic for docs/phase-methods.md, not a realism measure of its own.

`--backgrounds` asks what a background model would have to get right: the fake set is the real
phase wherever the soft tissue weight is 1/2 or more, and a candidate outside it (seeds 0 and 1,
mean AUROC): uniform noise; correlated noise (the receiver options' 3-tap kernel, lag-1 0.15, the
value measured on the training blocks); the real phase under the amplitude the magnitude implies
(`signal_amplitude=rician`) plus that noise; complex Gaussian noise with the power spectrum of the
slice's background (weight < 0.05), measured on the magnitude (what a synthesizer could know) or on
the real complex image (an oracle of the noise colour: the real phase's colour, none of its
placement); the slice's own real background mirrored left-right
(every statistic real, its placement not); and the real background of the neighbouring slice of
the same volume (real, and placed by almost the same anatomy).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from phase_realism import seen_by  # noqa: E402  (this directory: the same held-out rule)
from scipy import ndimage  # noqa: E402

from kspacify import phase  # noqa: E402
from kspacify.benchmark import SHARED_REAL_PHASE_TRAIN, SHARED_TRAIN_ACQUISITION  # noqa: E402
from kspacify.datasets import fingerprint, list_volumes, load_pairs  # noqa: E402
from kspacify.phase.physics import PhysicsSettings, noise_and_mask, receiver_noise, tissue_noise  # noqa: E402
from kspacify.realism.classifier import classifier_auroc  # noqa: E402
from kspacify.realism.evaluate import synthesize_set  # noqa: E402


def phasor_lag1(phase: np.ndarray, region: np.ndarray) -> float:
    """|mean z(x) conj z(x+1)| over horizontal and vertical neighbours both inside `region`."""
    z = np.exp(1j * phase.astype(np.float64))
    products = []
    for axis in (1, 2):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[axis], b[axis] = slice(1, None), slice(None, -1)
        both = region[tuple(a)] & region[tuple(b)]
        products.append((z[tuple(a)] * np.conj(z[tuple(b)]))[both])
    return float(np.abs(np.concatenate(products).mean()))


def coloured_noise(field: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Complex Gaussian noise (B, H, W) with, per slice, the power spectrum of `field` inside
    `region` (zero outside; smoothed over 2 frequency bins): the noise colour of that region."""
    out = np.empty(field.shape, np.complex128)
    for i in range(len(field)):
        power = ndimage.gaussian_filter(np.abs(np.fft.fft2(np.where(region[i], field[i], 0))) ** 2, 2, mode="wrap")
        white = rng.standard_normal(field.shape[1:]) + 1j * rng.standard_normal(field.shape[1:])
        out[i] = np.fft.ifft2(np.sqrt(power / power.mean()) * np.fft.fft2(white))
    return out


def backgrounds(pairs, seeds: tuple[int, ...] = (0, 1)) -> None:  # type: ignore[no-untyped-def]
    """The `--backgrounds` table (module doc)."""
    magnitude, real = pairs.magnitude, pairs.phase
    groups = [pairs.keys[int(v)] for v in pairs.volume]
    sigma, _, weight = noise_and_mask(magnitude, PhysicsSettings())
    noise_sigma = tissue_noise(magnitude, weight, sigma)[:, None, None]
    rng = np.random.default_rng(0)
    noise = noise_sigma * (receiver_noise(real.shape, rng, 0.15) + 1j * receiver_noise(real.shape, rng, 0.15))
    implied = np.sqrt(np.maximum(magnitude**2 - 2 * sigma[:, None, None] ** 2, 0))
    outside = weight < 0.05
    centred = magnitude - (magnitude * outside).sum((1, 2), keepdims=True) / np.maximum(outside.sum((1, 2), keepdims=True), 1)
    neighbour = np.array([i + 1 if i + 1 < len(real) and pairs.volume[i + 1] == pairs.volume[i] else i - 1 for i in range(len(real))])
    candidates = {
        "uniform noise": rng.uniform(-np.pi, np.pi, real.shape),
        "correlated noise (lag-1 0.15)": np.angle(noise),
        "real phase, implied amplitude, + correlated noise": np.angle(implied * np.exp(1j * real) + noise),
        "noise coloured like the slice's magnitude background": np.angle(coloured_noise(centred, outside, rng)),
        "noise coloured like the slice's real complex background": np.angle(coloured_noise(magnitude * np.exp(1j * real), outside, rng)),
        "the slice's real background, mirrored left-right": real[:, :, ::-1],
        "the neighbouring slice's real background": real[neighbour],
    }
    print(f"{len(magnitude)} held-out slices; real phase where the tissue weight >= 1/2; seeds {', '.join(map(str, seeds))}")
    print("| background | classifier AUROC |")
    print("| --- | ---: |")
    for name, outside in candidates.items():
        fake = np.where(weight >= 0.5, real, outside).astype(np.float32)
        values = [classifier_auroc(magnitude, real, fake, groups, seed=seed) for seed in seeds]
        print(f"| {name} | {np.mean(values):.3f} ({', '.join(f'{v:.3f}' for v in values)}) |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED_REAL_PHASE_TRAIN)
    parser.add_argument("--methods", nargs="*", default=["physics", "sbdm"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backgrounds", action="store_true", help="real tissue phase under candidate backgrounds (module doc)")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipping: real-phase data not found at {args.data}")
        return
    synthesizers = {name: phase.create(name, device="cpu") for name in args.methods}
    seen = set().union(*(seen_by(s) for s in synthesizers.values()))
    refs = [r for r in list_volumes(args.data) if fingerprint(r) not in seen]
    pairs = load_pairs(refs, 256, SHARED_TRAIN_ACQUISITION)
    if args.backgrounds:
        backgrounds(pairs)
        return
    magnitude, real = pairs.magnitude, pairs.phase
    groups = [pairs.keys[int(v)] for v in pairs.volume]
    _, mask, _ = noise_and_mask(magnitude, PhysicsSettings())
    tissue = ndimage.binary_erosion(mask, structure=np.ones((1, 3, 3)), iterations=2)
    background = ~ndimage.binary_dilation(mask, structure=np.ones((1, 3, 3)), iterations=2)
    uniform = np.random.default_rng(args.seed).uniform(-np.pi, np.pi, magnitude.shape).astype(np.float32)
    print(f"{len(refs)} held-out volumes, {len(magnitude)} slices; seed {args.seed}")
    print(f"real: background phasor lag-1 correlation {phasor_lag1(real, background):.3f}")
    print("| method | AUROC whole image | tissue only | background only | background phasor lag-1 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, synthesizer in synthesizers.items():
        fake = synthesize_set(synthesizer, pairs, args.seed)
        whole = classifier_auroc(magnitude, real, fake, groups, seed=args.seed)
        tissue_only = classifier_auroc(magnitude, np.where(tissue, real, uniform), np.where(tissue, fake, uniform), groups, seed=args.seed)
        background_only = classifier_auroc(magnitude, np.where(tissue, 0, real), np.where(tissue, 0, fake), groups, seed=args.seed)
        print(f"| {name} | {whole:.4f} | {tissue_only:.4f} | {background_only:.4f} | {phasor_lag1(fake, background):.3f} |", flush=True)


if __name__ == "__main__":
    main()
