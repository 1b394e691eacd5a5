"""Quality of a GAN checkpoint: held-out L1, realism against real phase, and a picture.

Why: the model card and docs must carry measured numbers, not claims. Three parts:

* validation: `kspacify.gan.train.evaluate` on the genVal volumes of the training run's splits
  (L1 between unit phasors after removing the global phase; magnitude-weighted phase error, degrees);
* realism: `kspacify.realism` measures of gan, physics and smooth against the real-phase set
  (../shared/data/real-phase, measurement only, never trained on), paired and cross-half as
  benchmarks/phase_realism.py computes them, seeds 0, 1, 2 (feature FD only if its weights exist);
* a PNG: magnitude, training-data phase and GAN phase for a few genVal slices, and GAN phase for
  real-phase magnitudes beside their real phase.

    python benchmarks/gan_quality.py --checkpoint weights/gan-small.safetensors --run runs/gan-small \
        --data runs/gan-data --png runs/gan-small/samples.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--run", type=Path, required=True, help="training output dir (its splits.json)")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--png", type=Path, default=None)
    parser.add_argument("--methods", nargs="*", default=["gan", "physics", "smooth"])
    parser.add_argument("--card", action="store_true",
                        help="write gan's, physics' and smooth's paired real-set measures into the checkpoint's card")
    args = parser.parse_args()

    from kspacify.datasets import iter_slices, list_volumes, load_splits
    from kspacify.gan.train import evaluate, load_pairs
    from kspacify.phase.gan import load_generator

    report: dict[str, object] = {"checkpoint": str(args.checkpoint)}
    model, card = load_generator(args.checkpoint)
    report["sha256"] = card["sha256"]
    splits = load_splits(args.run / "splits.json")
    refs = {r.key: r for r in list_volumes(args.data)}
    val = load_pairs([refs[k] for k in splits.get("genVal", [])])
    report["validation"] = evaluate(model, val) if len(val.magnitude) else None
    report["validation_volumes"] = splits.get("genVal", [])

    import phase_realism as pr

    real_dir = pr.REAL_PHASE
    if real_dir.is_dir():
        from kspacify.realism import MEASURES, compare, describe, describe_slices

        try:
            net = pr.default_feature_net()
        except Exception as error:  # noqa: BLE001 - the feature weights may not be built yet
            print(f"feature FD skipped: {error}", file=sys.stderr)
            net = False
        slices = list(iter_slices(real_dir, size=256))
        keys = [s.volume_key for s in slices]
        mags = np.stack([s.magnitude for s in slices])
        magnitudes = {k: np.stack([s.magnitude for s in slices if s.volume_key == k]) for k in sorted(set(keys))}
        order = {k: [i for i, key in enumerate(keys) if key == k] for k in magnitudes}
        real = describe_slices(slices, features=net)
        half = np.arange(len(slices)) % 2 == 0
        rows, examples = [], {}
        for name in args.methods:
            paired = {m: [] for m in MEASURES}
            crossed = {m: [] for m in MEASURES}
            for seed in pr.SEEDS:
                options = {"checkpoint": str(args.checkpoint)} if name == "gan" else {}
                synth = pr.phase.create(name, device="cpu", **options)
                phases = {k: synth.synthesize(m, np.random.default_rng([seed, i])) for i, (k, m) in enumerate(sorted(magnitudes.items()))}
                out = np.empty(mags.shape, np.float32)
                for k, rows_of_k in order.items():
                    out[rows_of_k] = phases[k]
                examples.setdefault(name, out)
                stats = describe(mags, out, features=net, keys=keys)
                for m, value in compare(stats, real).items():
                    paired[m].append(value)
                for m, value in pr.cross_half(stats, real, half).items():
                    crossed[m].append(value)
            rows.append((name, paired, crossed))
        floor = compare(real.take(half), real.take(~half))
        rows.append(("real (split-half floor)", {}, {m: [floor[m]] for m in MEASURES}))
        report["realism_table"] = pr.table(rows)
        report["realism"] = {name: {m: float(np.mean(v)) for m, v in paired.items() if v} for name, paired, _ in rows[:-1]}
        if args.card:
            measured = {name: {m: round(v, 4) for m, v in values.items()} for name, values in report["realism"].items()}
            pr.record_realism(args.checkpoint.with_suffix(".json"), measured["gan"],
                              {k: v for k, v in measured.items() if k != "gan"}, slices=len(slices),
                              measured_by="python benchmarks/gan_quality.py --card")  # fmt: skip
    print(json.dumps({k: v for k, v in report.items() if k != "realism_table"}, indent=2))
    if "realism_table" in report:
        print(report["realism_table"])

    if args.png is not None and len(val.magnitude):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        synth = pr.phase.create("gan", device="cpu", checkpoint=str(args.checkpoint))
        picks = np.linspace(0, len(val.magnitude) - 1, 4).astype(int)
        fake = synth.synthesize(val.magnitude[picks], np.random.default_rng(0))
        cols = [("magnitude (genVal)", val.magnitude[picks], "gray"), ("physics phase (target)", val.phase[picks], "twilight"),
                ("GAN phase", fake, "twilight")]  # fmt: skip
        if real_dir.is_dir():
            rp = [s for s in slices if s.shape == (256, 256)][:4]
            rfake = synth.synthesize(np.stack([s.magnitude for s in rp]), np.random.default_rng(0))
            cols += [("real-phase magnitude", np.stack([s.magnitude for s in rp]), "gray"),
                     ("real phase", np.stack([s.phase for s in rp]), "twilight"), ("GAN phase", rfake, "twilight")]  # fmt: skip
        fig, axes = plt.subplots(4, len(cols), figsize=(2.2 * len(cols), 9))
        for c, (title, images, cmap) in enumerate(cols):
            for r in range(4):
                ax = axes[r, c]
                if r < len(images):
                    ax.imshow(images[r], cmap=cmap, vmin=None if cmap == "gray" else -np.pi, vmax=None if cmap == "gray" else np.pi)
                ax.axis("off")
            axes[0, c].set_title(title, fontsize=8)
        fig.tight_layout()
        args.png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.png, dpi=80)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
