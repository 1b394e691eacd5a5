"""Train the realism feature network and write kspacify/weights/phase-features.safetensors + its model card.

    python benchmarks/train_phase_features.py

No options: the data, split, sizes and seed are fixed here so the shipped weights can be rebuilt
exactly (up to float round-off between machines). Magnitudes come only from what installs here:
kspacify's example MNI152 slices (examples/data) and nibabel's shipped test volumes; no real-phase
slice is used (those are for measurement). Phase is synthesized by the `physics` model, see
`kspacify.realism.features` for the objective. Training volumes and held-out volumes are disjoint;
the held-out ones give the sanity numbers in the card: the R^2 of each target, and Frechet
distances between feature sets of known relation at several sample sizes.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import nibabel
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kspacify import phase  # noqa: E402
from kspacify.preprocess import Preprocessing, preprocess  # noqa: E402
from kspacify.realism.features import (  # noqa: E402
    DEFAULT_WEIGHTS,
    NOISE_DECADES,
    SMOOTHING_MAX_PX,
    augment_magnitudes,
    embed,
    make_training_set,
    save_feature_net,
    train_feature_net,
)
from kspacify.realism.measures import frechet_distance, object_mask  # noqa: E402
from kspacify.sources import Pseudonymizer, discover, load, scan  # noqa: E402

NIBABEL_DATA = Path(nibabel.__file__).parent / "tests" / "data"
TRAIN_VOLUMES = {
    "examples/data/dicom/mni152_t1": ROOT / "examples/data/dicom/mni152_t1",  # 24 axial, 1 mm template
    "nibabel/example4d.nii.gz": NIBABEL_DATA / "example4d.nii.gz",  # 24 axial EPI, first volume
    "nibabel/anatomical.nii": NIBABEL_DATA / "anatomical.nii",  # 25 slices, brain crop, no background
    "nibabel/phantom_EPI_asc_CLEAR_2_1.PAR": NIBABEL_DATA / "phantom_EPI_asc_CLEAR_2_1.PAR",  # 9 phantom slices
}
HELD_OUT_VOLUMES = {
    "examples/data/nifti/mni152_t1_sagittal.nii.gz": ROOT / "examples/data/nifti/mni152_t1_sagittal.nii.gz",
    "nibabel/small.mnc": NIBABEL_DATA / "small.mnc",  # 29 slices, head with background
}
TRAIN_PAIRS = 3072
HELD_OUT_PAIRS = 512
STEPS = 2000
SEED = 20240611
SAMPLE_SIZES = (8, 16, 32, 64, 128)
REPEATS = 3


def load_magnitudes(path: Path) -> np.ndarray:
    """Normalized 256x256 magnitude slices (S, 256, 256) of one volume, through kspacify's own preprocessing.

    DICOM and NIfTI go through `kspacify.sources` (first volume of a 4D file); PAR/REC and MINC,
    which it does not read, through nibabel with slices along the third axis."""
    if path.is_dir() or path.name.endswith((".nii", ".nii.gz")):
        info = next(i for i in scan(discover([str(path)]), Pseudonymizer(b"phase-features")) if hasattr(i, "spacing"))
        data, spacing = load(info).data, (info.spacing[1], info.spacing[2])
    else:
        image = nibabel.load(str(path))
        array = np.asanyarray(image.dataobj).astype(np.float32)
        array = array[..., 0] if array.ndim == 4 else array
        data = np.ascontiguousarray(np.moveaxis(array, 2, 0))
        zooms = image.header.get_zooms()
        spacing = (float(zooms[0]), float(zooms[1]))
    magnitude, _, _ = preprocess(np.nan_to_num(np.abs(data)), spacing, Preprocessing())
    mask, _ = object_mask(magnitude)
    return magnitude[mask.mean(axis=(1, 2)) > 0.02]  # slices with some object


def gather(volumes: dict[str, Path]) -> tuple[np.ndarray, dict[str, int]]:
    parts = {name: load_magnitudes(path) for name, path in volumes.items()}
    return np.concatenate(list(parts.values())), {name: len(m) for name, m in parts.items()}


def frechet_sanity(net, base: np.ndarray, rng: np.random.Generator) -> dict:
    """Mean (over REPEATS) Frechet distance of physics-phase features to references of known relation."""
    physics = phase.create("physics")
    smooth = phase.create("smooth")
    zero = phase.create("zero")
    rows: dict[str, dict[str, float]] = {}
    for n in SAMPLE_SIZES:
        names = ("physics_vs_physics", "physics_vs_smooth", "physics_vs_zero", "physics_vs_noisier")
        values: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(REPEATS):
            magnitude = augment_magnitudes(base, 2 * n, rng)
            a, b = magnitude[:n], magnitude[n:]
            reference = embed(net, a, physics.synthesize(a, rng))
            values["physics_vs_physics"].append(frechet_distance(reference, embed(net, b, physics.synthesize(b, rng))))
            values["physics_vs_smooth"].append(frechet_distance(reference, embed(net, b, smooth.synthesize(b, rng))))
            values["physics_vs_zero"].append(frechet_distance(reference, embed(net, b, zero.synthesize(b, rng))))
            noise = rng.standard_normal(b.shape) + 1j * rng.standard_normal(b.shape)
            noisy = np.angle(b * np.exp(1j * physics.synthesize(b, rng)) + 0.05 * noise)
            values["physics_vs_noisier"].append(frechet_distance(reference, embed(net, b, noisy)))
        rows[str(n)] = {k: round(float(np.mean(v)), 2) for k, v in values.items()}
    return rows


def main() -> None:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    rng = np.random.default_rng(SEED)
    train_base, train_counts = gather(TRAIN_VOLUMES)
    held_base, held_counts = gather(HELD_OUT_VOLUMES)
    print(f"base slices: train {train_counts}, held out {held_counts}", flush=True)
    started = time.perf_counter()
    train = make_training_set(train_base, TRAIN_PAIRS, rng)
    validation = make_training_set(held_base, HELD_OUT_PAIRS, rng)
    data_seconds = time.perf_counter() - started
    print(f"{TRAIN_PAIRS} + {HELD_OUT_PAIRS} pairs in {data_seconds:.0f} s", flush=True)
    net, report = train_feature_net(train, validation, steps=STEPS, seed=SEED, log=lambda line: print(line, flush=True))
    print(json.dumps(report), flush=True)
    sanity = frechet_sanity(net, held_base, np.random.default_rng(SEED + 1))
    print(json.dumps(sanity, indent=1), flush=True)
    card = save_feature_net(
        DEFAULT_WEIGHTS,
        net,
        {
            "data": {
                "description": "magnitudes from kspacify examples (MNI152 2009a template slices) and nibabel's test volumes, "
                "resized to 256x256 and normalized by kspacify.preprocess; augmented (rot90/flip, zoom 55-100 %, gamma "
                "0.7-1.4, Rician noise 0.001-0.05); phase from the physics model with random parameters, then with "
                f"probability 2/3 each a phasor blur (0-{SMOOTHING_MAX_PX} px) and extra complex noise (sigma "
                f"{10 ** NOISE_DECADES[0]:.2g}-{10 ** NOISE_DECADES[1]:.2g}). No real-phase data.",
                "train_volumes": train_counts,
                "held_out_volumes": held_counts,
                "train_pairs": TRAIN_PAIRS,
                "held_out_pairs": HELD_OUT_PAIRS,
                "data_seconds": round(data_seconds, 1),
            },
            "training": {**report, "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared)"},
            "quality": {
                "held_out_r2": report.get("validation_r2"),
                "frechet_by_sample_size": sanity,
                "frechet_notes": f"mean over {REPEATS} repeats, n slices per set, held-out magnitudes augmented; "
                "physics_vs_physics is the same-distribution floor (pure small-sample bias); noisier = complex noise 0.05 added",
            },
        },
    )
    print(f"wrote {DEFAULT_WEIGHTS} (sha256 {card['sha256'][:12]}...)")


if __name__ == "__main__":
    main()
