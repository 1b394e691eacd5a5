"""Phase vortices in tissue: real phase against each method, on the held-out real spin-echo slices.

    python benchmarks/phase_vortices.py                       # real, physics, gan, sbdm (default sampler)
    python benchmarks/phase_vortices.py --sbdm dpm2m:25 heun:25:churn=99   # sbdm sampler configurations

A vortex (`kspacify.realism.measures.phase_vortices`) is a 2x2 pixel loop around which the phase
winds by 2 pi. Counted at 256 x 256 in the slice's tissue (the `physics` object mask) and in its
bright half (magnitude above the slice's tissue median, where noise cannot make one). Real
coil-combined spin-echo phase has almost none in bright tissue; a diffusion model of the unit
phasor can leave them (topological defects that no local denoising removes), and they show up as
mid-frequency power in the spectrum measure. Each row: mean vortices per slice, the share of slices
with any, and the 90th percentile, for seeds `--seeds` (the same seeded streams as
`phase_realism.py`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from phase_realism import seen_by  # noqa: E402  (this directory: the same held-out rule)
from sbdm_quality import sbdm_options  # noqa: E402  (this directory: the same config syntax)

from kspacify import phase  # noqa: E402
from kspacify.benchmark import SHARED_REAL_PHASE_TRAIN, SHARED_TRAIN_ACQUISITION  # noqa: E402
from kspacify.datasets import fingerprint, list_volumes, load_pairs  # noqa: E402
from kspacify.realism.evaluate import synthesize_set  # noqa: E402
from kspacify.realism.measures import object_mask, phase_vortices  # noqa: E402


def row(label: str, counts: list[tuple[np.ndarray, np.ndarray]]) -> str:
    cells = []
    for index in (0, 1):
        values = np.concatenate([c[index] for c in counts])
        cells += [f"{values.mean():.2f}", f"{(values > 0).mean():.0%}", f"{np.quantile(values, 0.9):.0f}"]
    return f"| {label} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED_REAL_PHASE_TRAIN)
    parser.add_argument("--methods", nargs="*", default=["physics", "gan", "sbdm"])
    parser.add_argument("--sbdm", nargs="*", default=[], help="sbdm sampler configurations (default: the method's defaults)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipping: real-phase data not found at {args.data}")
        return
    torch.set_num_threads(1)
    synthesizers = {}
    for name in args.methods:
        for config in (args.sbdm or [""]) if name == "sbdm" else [""]:
            synthesizers[f"sbdm {config}".strip() if name == "sbdm" else name] = phase.create(
                name, device="cpu", **(sbdm_options(config) if config else {})
            )
    seen = set().union(*(seen_by(s) for s in synthesizers.values()))
    pairs = load_pairs([r for r in list_volumes(args.data) if fingerprint(r) not in seen], 256, SHARED_TRAIN_ACQUISITION)
    mask, _ = object_mask(pairs.magnitude)
    tissue_median = np.array([np.median(m[t]) if t.any() else np.inf for m, t in zip(pairs.magnitude, mask)])
    bright = mask & (pairs.magnitude > tissue_median[:, None, None])

    def count(phase_maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return phase_vortices(phase_maps, mask), phase_vortices(phase_maps, bright)

    print(f"{len(pairs)} held-out slices; seeds {' '.join(map(str, args.seeds))}")
    print("| phase | tissue: vortices / slice | slices with any | p90 | bright tissue: vortices / slice | slices with any | p90 |")
    print("| --- |" + " ---: |" * 6)
    print(row("real (acquired)", [count(pairs.phase)]), flush=True)
    for label, synthesizer in synthesizers.items():
        print(row(label, [count(synthesize_set(synthesizer, pairs, seed)) for seed in args.seeds]), flush=True)


if __name__ == "__main__":
    main()
