"""Quality of an SBDM checkpoint against sampler and steps, on held-out real phase.

    python benchmarks/sbdm_quality.py [--checkpoint PATH] [--configs pc:1000 dpm2m:25 heun:25:churn=40 ...] [--json out.json]

Each sampler:steps[:option=value,...] configuration synthesizes phase for the held-out volumes of the shared spin-echo
set (every volume the checkpoint trained or validated on left out, by its card's fingerprints), told
their acquisition, and is scored with the one realism loop (`kspacify.realism.evaluate`: gradient
W1, spectrum RMS, feature FD, classifier AUROC; lower is closer), with `physics` as the anchor. Each
row also gives network evaluations per slice (NFE) and seconds per slice on this machine (one
thread). Costly configurations (over 200 NFE) run `--slow-seeds` seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from kspacify import phase  # noqa: E402
from kspacify.benchmark import SHARED_REAL_PHASE_TRAIN, SHARED_TRAIN_ACQUISITION  # noqa: E402
from kspacify.datasets import fingerprint, list_volumes, load_pairs  # noqa: E402
from kspacify.realism import default_feature_net  # noqa: E402
from kspacify.realism.evaluate import ALL_MEASURES, evaluate_method, real_statistics  # noqa: E402

DEFAULT_CONFIGS = ["pc:1000", "heun:10", "heun:25", "dpm2m:5", "dpm2m:10", "dpm2m:25", "dpm2m:50", "physics"]


def sbdm_options(config: str) -> dict[str, str]:
    """'heun:25:churn=99,churn_min=5' -> the sbdm method's sampler, steps and sampler options."""
    name, steps, *extra = config.split(":")
    return {"sampler": name, "steps": steps, **dict(kv.split("=", 1) for item in extra for kv in item.split(","))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled sbdm-small")
    parser.add_argument("--data", type=Path, default=SHARED_REAL_PHASE_TRAIN)
    parser.add_argument("--configs", nargs="*", default=DEFAULT_CONFIGS)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--slow-seeds", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipping: real-phase data not found at {args.data}")
        return
    torch.set_num_threads(1)
    checkpoint = {"checkpoint": str(args.checkpoint)} if args.checkpoint else {}
    reference = phase.create("sbdm", device="cpu", **checkpoint)
    seen = set(reference.card.get("data", {}).get("fingerprints", []) or [])
    pairs = load_pairs([r for r in list_volumes(args.data) if fingerprint(r) not in seen], 256, SHARED_TRAIN_ACQUISITION)
    net = default_feature_net()
    real = real_statistics(pairs, net)
    rows = []
    for config in args.configs:
        name = config.partition(":")[0]
        if name in ("pc", "heun", "dpm2m"):
            synthesizer = phase.create("sbdm", device="cpu", **sbdm_options(config), **checkpoint)
            nfe = synthesizer.sampler.nfe_for(synthesizer.steps)
        else:
            synthesizer, nfe = phase.create(name, device="cpu"), 0
        seeds = args.seeds[: args.slow_seeds] if nfe > 200 else args.seeds
        started = time.perf_counter()
        result = evaluate_method(synthesizer, pairs, seeds, net, real)
        seconds = (time.perf_counter() - started) / (len(seeds) * len(pairs))
        rows.append({"config": config, "nfe": nfe, "seeds": len(seeds), "seconds_per_slice_with_measures": seconds, **result["mean"]})
        print(json.dumps(rows[-1]), flush=True)
    print("| config | NFE | seeds | " + " | ".join(ALL_MEASURES) + " | s/slice (incl. measuring) |")
    print("| --- | ---: | ---: |" + " ---: |" * (len(ALL_MEASURES) + 1))
    for row in rows:
        print(f"| {row['config']} | {row['nfe']} | {row['seeds']} | " + " | ".join(f"{row.get(m, float('nan')):.3g}" for m in ALL_MEASURES)
              + f" | {row['seconds_per_slice_with_measures']:.2f} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"held_out_slices": len(pairs), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
