"""How realistic could an SBDM on a G x G diffusion grid be at best? The ceiling of each grid size.

    python benchmarks/sbdm_grid_ceiling.py                 # grids 32, 64, 128; seeds 0 1
    python benchmarks/sbdm_grid_ceiling.py --noise-gain 1.2 --noise-correlation 0.15   # another noise model
    python benchmarks/sbdm_grid_ceiling.py --signal-amplitude rician                   # faint signal kept coherent

The bundled SBDM samples a unit phasor on a coarse grid and `kspacify.phase.sbdm` brings it to
256 x 256 by bilinear interpolation, then adds the receiver noise of `physics.with_measurement_noise`
(the share the grid does not already carry, `sbdm.grid.residual_noise_gain`, times --noise-gain).
A perfect model would sample exactly the grid phasor of real phase. This script builds that
"oracle" on the held-out real spin-echo slices (the ones `phase_realism.py` scores: no volume a
bundled learned model saw): the real phase area-averaged to the grid (`sbdm.grid.to_diffusion_grid`,
the training target), upsampled and noised exactly as sampling does, and scores it with the measures
of `kspacify.realism.evaluate` (gradient W1, spectrum RMS, feature FD, classifier AUROC). What the
oracle of a grid cannot reach, no model trained on that grid can: the ceiling tells which grid size
can beat `physics` at all. The last column scores the oracle with the real background put back
(pixels more than 2 px from the `physics` tissue mask; seed 0): what the classifier still sees once
the background noise model is out of the way. Also prints, per radial frequency bin, log10 of the
oracle's phasor spectrum over the real one.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from phase_realism import seen_by  # noqa: E402  (this directory: the same held-out rule)
from scipy import ndimage  # noqa: E402

from kspacify import phase  # noqa: E402
from kspacify.benchmark import SHARED_REAL_PHASE_TRAIN, SHARED_TRAIN_ACQUISITION  # noqa: E402
from kspacify.datasets import fingerprint, list_volumes, load_pairs  # noqa: E402
from kspacify.phase.physics import PhysicsSettings, noise_and_mask, with_measurement_noise  # noqa: E402
from kspacify.realism import compare, default_feature_net  # noqa: E402
from kspacify.realism.classifier import classifier_auroc  # noqa: E402
from kspacify.realism.evaluate import real_statistics  # noqa: E402
from kspacify.realism.measures import radial_spectra, spectrum_frequencies  # noqa: E402
from kspacify.realism.summary import describe  # noqa: E402
from kspacify.seeding import stream  # noqa: E402


def oracle(pairs, grid: int, seed: int, noise: PhysicsSettings, batch_size: int = 16) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The real phase as a perfect grid-`grid` SBDM would give it (with the receiver noise of
    `noise`), per volume and batch as `realism.evaluate.synthesize_set` draws (the same streams)."""
    import torch
    import torch.nn.functional as F

    from kspacify.sbdm import phasor_to_phase
    from kspacify.sbdm.grid import residual_noise_gain, to_diffusion_grid

    out = np.empty_like(pairs.magnitude)
    height, width = pairs.magnitude.shape[-2:]
    for number, key in enumerate(pairs.keys):
        where = np.flatnonzero(pairs.volume == number)
        for start in range(0, where.size, batch_size):
            part = where[start : start + batch_size]
            magnitude = pairs.magnitude[part]
            _, target = to_diffusion_grid(torch.from_numpy(magnitude)[:, None], (grid, grid), torch.from_numpy(pairs.phase[part]))
            if (grid, grid) != (height, width):
                target = F.interpolate(target, size=(height, width), mode="bilinear", align_corners=False)
            residual = replace(noise, noise_gain=noise.noise_gain * residual_noise_gain((grid, grid), height, width))
            out[part] = with_measurement_noise(magnitude, phasor_to_phase(target).numpy(), stream(seed, key, start), residual)
    return out


def mean_spectrum(magnitude: np.ndarray, phase_: np.ndarray) -> np.ndarray:
    rows = radial_spectra(magnitude, phase_)
    return rows[~np.isnan(rows).any(axis=1)].mean(axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED_REAL_PHASE_TRAIN)
    parser.add_argument("--grids", nargs="*", type=int, default=[32, 64, 128])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    parser.add_argument("--noise-gain", type=float, default=1.0, help="physics noise_gain of the receiver noise")
    parser.add_argument("--noise-correlation", type=float, default=0.0, help="physics noise_correlation of the receiver noise")
    parser.add_argument("--signal-amplitude", choices=["mask", "rician", "rician_outside"], default="mask", help="physics signal_amplitude of the receiver noise")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipping: real-phase data not found at {args.data}")
        return
    started = time.perf_counter()
    seen = set().union(*(seen_by(phase.create(name, device="cpu")) for name in ("sbdm", "gan")))
    refs = [r for r in list_volumes(args.data) if fingerprint(r) not in seen]
    pairs = load_pairs(refs, 256, SHARED_TRAIN_ACQUISITION)
    groups = [pairs.keys[int(v)] for v in pairs.volume]
    net = default_feature_net()
    real = real_statistics(pairs, net)
    real_spectrum = mean_spectrum(pairs.magnitude, pairs.phase)
    noise = PhysicsSettings(noise_gain=args.noise_gain, noise_correlation=args.noise_correlation, signal_amplitude=args.signal_amplitude)
    print(f"{len(refs)} held-out volumes, {len(pairs)} slices; seeds {args.seeds}; "
          f"noise_gain {noise.noise_gain}, noise_correlation {noise.noise_correlation}, signal_amplitude {noise.signal_amplitude}")
    _, mask, _ = noise_and_mask(pairs.magnitude, PhysicsSettings())
    background = ~ndimage.binary_dilation(mask, structure=np.ones((1, 3, 3)), iterations=2)
    print("| oracle grid | gradient W1 | spectrum RMS | feature FD | classifier AUROC | AUROC, real background |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    spectra = {}
    for grid in args.grids:
        values: dict[str, list[float]] = {}
        for seed in args.seeds:
            fake = oracle(pairs, grid, seed, noise)
            for name, value in compare(describe(pairs.magnitude, fake, features=net, keys=groups), real).items():
                values.setdefault(name, []).append(float(value))
            values.setdefault("classifier_auroc", []).append(classifier_auroc(pairs.magnitude, pairs.phase, fake, groups, seed=seed))
            if seed == args.seeds[0]:
                kept = np.where(background, pairs.phase, fake)
                values["real_background_auroc"] = [classifier_auroc(pairs.magnitude, pairs.phase, kept, groups, seed=seed)]
        spectra[grid] = np.log10(mean_spectrum(pairs.magnitude, fake)) - np.log10(real_spectrum)
        cells = " | ".join(f"{np.mean(values[m]):.3f}" for m in ("gradient_w1", "spectrum_rms", "feature_fd", "classifier_auroc", "real_background_auroc"))
        print(f"| {grid} x {grid} | {cells} |", flush=True)
    edges = spectrum_frequencies(pairs.magnitude.shape[-1])[1:]
    print("\nlog10(oracle / real) phasor spectrum, last seed, by upper bin edge (cycles/pixel):")
    print("| grid | " + " | ".join(f"{e:.3f}" for e in edges) + " |")
    for grid, row in spectra.items():
        print(f"| {grid} | " + " | ".join(f"{v:+.2f}" for v in row) + " |")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
