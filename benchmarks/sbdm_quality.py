"""Quality of an SBDM checkpoint against sampler and steps: the fast samplers against the paper's
1000-step predictor-corrector reference, with `physics` and `smooth` as anchors.

Two sets, both measured with the three `kspacify.realism` measures (gradient W1, spectrum RMS,
feature FD; lower is closer), paired on the same magnitudes, mean over seeds 0, 1, 2:

* held-out: the genVal volumes of the training run's splits, against their own phase (what the
  model was trained to imitate, on magnitudes it never saw);
* real: the real-phase set (../shared/data/real-phase; measurement only), against acquired phase.

Each row also gives network evaluations per slice (NFE) and seconds per slice on this machine (one
thread). The 1000-step reference costs 80x the default sampler, so it runs `--slow-seeds` seeds (1).

    python benchmarks/sbdm_quality.py --checkpoint runs/sbdm-small/weights/sbdm-small.safetensors \
        --run runs/sbdm-small --data data/train [--configs pc:1000 dpm2m:10 dpm2m:25 ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import phase_realism as pr  # noqa: E402

DEFAULT_CONFIGS = ["pc:1000", "pc:100", "heun:10", "heun:25", "dpm2m:5", "dpm2m:10", "dpm2m:25", "dpm2m:50", "physics", "smooth"]


def measure(name: str, options: dict, magnitudes: dict[str, np.ndarray], order: dict[str, list[int]],
            mags: np.ndarray, keys: list[str], reference, net, seeds: tuple[int, ...]) -> tuple[dict[str, float], float]:  # fmt: skip
    """Mean over `seeds` of the paired measures, and seconds per slice."""
    from kspacify.realism import compare, describe

    synthesizer = pr.phase.create(name, device="cpu", **options)
    values: dict[str, list[float]] = {}
    started = time.perf_counter()
    for seed in seeds:
        out = np.empty(mags.shape, np.float32)
        for index, (key, m) in enumerate(sorted(magnitudes.items())):
            out[order[key]] = synthesizer.synthesize(m, np.random.default_rng([seed, index]))
        for measure_name, value in compare(describe(mags, out, features=net, keys=keys), reference).items():
            values.setdefault(measure_name, []).append(value)
    seconds = (time.perf_counter() - started) / (len(seeds) * len(mags))
    return {k: float(np.mean(v)) for k, v in values.items()}, seconds


def slice_set(slices: list) -> tuple[dict[str, np.ndarray], dict[str, list[int]], np.ndarray, list[str]]:
    keys = [s.volume_key for s in slices]
    magnitudes = {k: np.stack([s.magnitude for s in slices if s.volume_key == k]) for k in sorted(set(keys))}
    order = {k: [i for i, key in enumerate(keys) if key == k] for k in magnitudes}
    return magnitudes, order, np.stack([s.magnitude for s in slices]), keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--run", type=Path, required=True, help="training output dir (its splits.json)")
    parser.add_argument("--data", type=Path, required=True, help="the training data (for genVal)")
    parser.add_argument("--configs", nargs="*", default=DEFAULT_CONFIGS, help="SAMPLER:STEPS for sbdm, or a method name")
    parser.add_argument("--draw", type=int, default=0, help="which phase draw of each genVal slice to compare with (a `data build` set)")
    parser.add_argument("--slow-seeds", type=int, default=1, help="seeds for configs of more than 200 NFE (the 1000-step reference)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--card", action="store_true",
                        help="write the real-set measures of the default sampler, physics and smooth into the checkpoint's card")
    args = parser.parse_args()

    import torch

    from kspacify.datasets import iter_slices, list_volumes, load_splits
    from kspacify.realism import describe_slices
    from kspacify.sbdm import load_checkpoint
    from kspacify.sbdm.samplers import make_sampler

    torch.set_num_threads(1)
    _, card = load_checkpoint(args.checkpoint)
    splits = load_splits(args.run / "splits.json")
    refs = {r.key: r for r in list_volumes(args.data)}
    held_out = []
    for key in splits["genVal"]:
        volume = list(iter_slices(refs[key].file, size=256))
        sidecar = Path(refs[key].file.removesuffix(".gz").removesuffix(".nii") + ".json")
        n = json.loads(sidecar.read_text())["volume"]["slices"] if sidecar.is_file() else len(volume)
        held_out += volume[args.draw * n : (args.draw + 1) * n]  # `data build` stores draw t's slices at t * n ...
    sets = {"held-out": held_out}
    if pr.REAL_PHASE.is_dir():
        sets["real"] = list(iter_slices(pr.REAL_PHASE, size=256))
    net = pr.default_feature_net()
    report: dict[str, object] = {"checkpoint": str(args.checkpoint), "sha256": card["sha256"],
                                 "training_steps": card.get("training", {}).get("steps"), "rows": []}  # fmt: skip
    for set_name, slices in sets.items():
        magnitudes, order, mags, keys = slice_set(slices)
        reference = describe_slices(slices, features=net)
        for config in args.configs:
            if ":" in config:
                sampler, steps = config.split(":")
                name, options, nfe = "sbdm", {"checkpoint": str(args.checkpoint), "sampler": sampler, "steps": int(steps)}, make_sampler(sampler).nfe_for(int(steps))
            else:
                name, options, nfe = config, {}, 0
            seeds = pr.SEEDS[: args.slow_seeds] if nfe > 200 else pr.SEEDS
            values, seconds = measure(name, options, magnitudes, order, mags, keys, reference, net, seeds)
            row = {"set": set_name, "slices": len(slices), "config": config, "nfe": nfe, "seeds": len(seeds), "s_per_slice": round(seconds, 3),
                   **{k: round(v, 4) for k, v in values.items()}}  # fmt: skip
            report["rows"].append(row)  # type: ignore[union-attr]
            print(json.dumps(row), flush=True)
    lines = ["| set | sampler:steps | NFE | seeds | s/slice | gradient W1 | spectrum RMS | feature FD |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for row in report["rows"]:  # type: ignore[union-attr]
        lines.append(f"| {row['set']} ({row['slices']}) | {row['config']} | {row['nfe'] or ''} | {row['seeds']} | {row['s_per_slice']} | "
                     f"{row['gradient_w1']:.3f} | {row['spectrum_rms']:.3f} | {row['feature_fd']:.2f} |")  # fmt: skip
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.card:
        from kspacify.phase.sbdm import DEFAULT_SAMPLER, DEFAULT_STEPS

        default = f"{DEFAULT_SAMPLER}:{DEFAULT_STEPS[DEFAULT_SAMPLER]}"
        real = {row["config"]: {m: row[m] for m in pr.MEASURES} for row in report["rows"] if row["set"] == "real"}  # type: ignore[union-attr]
        slices = next(row["slices"] for row in report["rows"] if row["set"] == "real")  # type: ignore[union-attr]
        pr.record_realism(args.checkpoint.with_suffix(".json"), real[default], {"physics": real["physics"], "smooth": real["smooth"]},
                          slices=slices, sampling=default, measured_by="python benchmarks/sbdm_quality.py --card")  # fmt: skip


if __name__ == "__main__":
    main()
