"""How the receiver noise options move the realism distances, on the learned models' validation
blocks (to choose by) or on the held-out ones (to check a choice).

    python benchmarks/noise_gain_scan.py --set val --gains 0.8 0.9 1.0 1.1 --correlations 0 0.15
    python benchmarks/noise_gain_scan.py --set held-out --level floor --gains 1.0 1.2 1.4 1.6 1.8

`val` is the bundled SBDM card's genVal blocks, `held-out` every block no bundled model trained or
validated on (as `phase_realism.py`). Each method synthesizes once (one seed) per setting, told the
set's acquisition; the three distances of `realism.compare` are printed (no classifier: it is slow
and saturated here). docs/phase-methods.md, "The noise level: measured in the tissue", reads it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from phase_realism import seen_by  # noqa: E402  (this directory: the same held-out rule)

from kspacify import phase  # noqa: E402
from kspacify.benchmark import SHARED_REAL_PHASE_TRAIN, SHARED_TRAIN_ACQUISITION  # noqa: E402
from kspacify.datasets import fingerprint, list_volumes, load_pairs  # noqa: E402
from kspacify.realism import MEASURES, default_feature_net  # noqa: E402
from kspacify.realism.evaluate import evaluate_method, real_statistics  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED_REAL_PHASE_TRAIN)
    parser.add_argument("--set", choices=("val", "held-out"), default="val")
    parser.add_argument("--methods", nargs="*", default=["physics", "gan", "sbdm"])
    parser.add_argument("--level", choices=("tissue", "floor"), default="tissue")
    parser.add_argument("--gains", nargs="*", type=float, default=[0.8, 0.9, 1.0, 1.1])
    parser.add_argument("--correlations", nargs="*", type=float, default=[0.0, 0.15])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipping: real-phase data not found at {args.data}")
        return
    sbdm = phase.create("sbdm", device="cpu")
    refs = list_volumes(args.data)
    if args.set == "val":
        names = set(sbdm.card["data"]["splits"]["genVal"])
        chosen = [r for r in refs if r.key in names]
    else:
        seen = seen_by(sbdm) | seen_by(phase.create("gan", device="cpu"))
        chosen = [r for r in refs if fingerprint(r) not in seen]
    pairs = load_pairs(chosen, 256, SHARED_TRAIN_ACQUISITION)
    net = default_feature_net()
    real = real_statistics(pairs, net)
    print(f"{args.set}: {len(chosen)} volumes, {len(pairs)} slices; noise_level {args.level}; seed {args.seed}")
    print("| method | noise_gain | noise_correlation | " + " | ".join(MEASURES) + " |")
    print("| --- | ---: | ---: |" + " ---: |" * len(MEASURES))
    started = time.perf_counter()
    for name in args.methods:
        for gain in args.gains:
            for correlation in args.correlations:
                options = {"noise_level": args.level, "noise_gain": str(gain), "noise_correlation": str(correlation)}
                result = evaluate_method(phase.create(name, device="cpu", **options), pairs, [args.seed], net, real, classifier=False)
                print(f"| {name} | {gain} | {correlation} | " + " | ".join(f"{result['mean'][m]:.4g}" for m in MEASURES) + " |", flush=True)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
