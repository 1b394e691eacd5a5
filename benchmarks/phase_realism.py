"""Realism of every phase method against held-out real phase, per sequence family.

    python benchmarks/phase_realism.py                   # the shared spin-echo set; writes the docs table
    python benchmarks/phase_realism.py --card sbdm --card gan   # also record the numbers in those model cards

The set is ../shared/data/real-phase-train (T2 fast spin echo, 3 T) without every volume that an
evaluated learned method trained or validated on (its model card lists their fingerprints), so no
model is scored on data it saw. Each method synthesizes phase for the set's magnitudes, told the
volumes' acquisition (`physics` then takes its spin-echo branch, the SBDM its spin-echo condition),
with seeds 0, 1, 2; the `... (acquisition unknown)` rows withhold it. Measures
(`kspacify.realism.evaluate`, lower is closer): gradient W1, spectrum RMS, feature FD (a network
trained on physics-family phase: it favours physics) and the classifier two-sample AUROC (a small
CNN trained on half the volumes to tell real from synthetic, scored on the other half; 0.5 =
indistinguishable). The markdown table goes into docs/phase-methods.md between the markers; with
`--card NAME` the numbers go into that checkpoint's card as `quality.realism.by_family.spin_echo`,
which `--phase auto` reads (`kspacify.weights.realism_gate`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from kspacify import phase  # noqa: E402
from kspacify.acquisition import UNKNOWN  # noqa: E402
from kspacify.atomic import write_json  # noqa: E402
from kspacify.benchmark import SHARED_REAL_PHASE_TRAIN, SHARED_TRAIN_ACQUISITION  # noqa: E402
from kspacify.datasets import fingerprint, list_volumes, load_pairs  # noqa: E402
from kspacify.realism import MEASURES, compare, default_feature_net, paired_difference  # noqa: E402
from kspacify.realism.evaluate import ALL_MEASURES, evaluate_method, real_statistics  # noqa: E402

DOCS = ROOT / "docs" / "phase-methods.md"
SECTION = "## Realism measures"
BEGIN = "<!-- phase_realism.py: begin table -->"
END = "<!-- phase_realism.py: end table -->"
LABELS = {"gradient_w1": "gradient W1", "spectrum_rms": "spectrum RMS", "feature_fd": "feature FD", "classifier_auroc": "classifier AUROC"}
FAMILY = SHARED_TRAIN_ACQUISITION.family.value


def seen_by(synthesizer: object) -> set[str]:
    card = getattr(synthesizer, "card", None) or {}
    return set(card.get("data", {}).get("fingerprints", []) or [])


def table(rows: list[tuple[str, dict]]) -> str:
    head = "| method | " + " | ".join(LABELS[m] for m in ALL_MEASURES) + " |"
    lines = [head, "| --- |" + " ---: |" * len(ALL_MEASURES)]
    for name, result in rows:
        cells = []
        for m in ALL_MEASURES:
            values = result["per_seed"].get(m, [])
            digits = ".4f" if m == "classifier_auroc" else ".3g"  # an AUROC of 0.9997 is not 1
            cells.append("" if not values else f"{np.mean(values):{digits}}" if len(values) == 1 else f"{np.mean(values):{digits}} ± {np.std(values, ddof=1):.2g}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(subject: str, results: dict[str, dict], real) -> tuple[str, dict[str, dict]]:  # type: ignore[no-untyped-def]
    """Markdown rows of `subject` minus every other method told the acquisition, per measure, with the
    bootstrap 95% interval over volumes and seeds (`realism.paired_difference`), and the numbers themselves."""
    lines = [f"| {subject} − method | " + " | ".join(LABELS[m] for m in MEASURES) + " |", "| --- |" + " ---: |" * len(MEASURES)]
    numbers = {}
    for label, result in results.items():
        if label == subject or "(" in label:
            continue
        numbers[label] = paired_difference(results[subject]["statistics"], result["statistics"], real)
        cells = [f"{d:+.3g} [{lo:+.3g}, {hi:+.3g}]" for d, lo, hi in numbers[label].values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines), numbers


def cpu_speed(synthesizer: object, pairs, slices: int = 32) -> float:  # type: ignore[no-untyped-def]
    """Seconds per slice of `synthesizer` on one CPU thread (after a warm-up), batches of 16."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        batch = pairs.magnitude[:16]
        synthesizer.synthesize(batch[:2], np.random.default_rng(0), pairs.acquisitions[0])  # type: ignore[attr-defined]
        started = time.perf_counter()
        for start in range(0, slices, 16):
            synthesizer.synthesize(pairs.magnitude[start : start + 16], np.random.default_rng(start), pairs.acquisitions[0])  # type: ignore[attr-defined]
        return (time.perf_counter() - started) / slices
    finally:
        torch.set_num_threads(threads)


def record(card_path: Path, model: dict[str, float], physics: dict[str, float], facts: dict, speed: float,
           versus_physics: dict | None = None) -> None:  # fmt: skip
    """Write the family's numbers (and, when measured, the paired model - physics differences with
    their 95% intervals) and the CPU speed into a model card (the weights, and their sha256, are
    untouched)."""
    card = json.loads(card_path.read_text(encoding="utf-8"))
    quality = card.setdefault("quality", {})
    entry = {**facts, "model": model, "physics": physics}
    if versus_physics is not None:
        entry["model_minus_physics"] = {m: {"difference": d, "interval_95": [lo, hi]} for m, (d, lo, hi) in versus_physics.items()}
    quality.setdefault("realism", {}).setdefault("by_family", {})[FAMILY] = entry
    quality["speed"] = {"cpu_seconds_per_slice": round(speed, 4), "measured": facts["measured"], "threads": 1,
                        "how": "benchmarks/phase_realism.py --card: 32 slices of 256 x 256 in batches of 16, one thread",
                        "load_average": os.getloadavg()[0]}  # fmt: skip
    write_json(card_path, card)


def write_docs(block: str) -> None:
    """Replace the text between the markers in the `## Realism measures` section (markers appended if absent)."""
    text = DOCS.read_text()
    start = text.index(SECTION)
    following = text.find("\n## ", start + len(SECTION))
    end = len(text) if following < 0 else following + 1
    section = text[start:end]
    generated = f"{BEGIN}\n{block}\n{END}"
    if BEGIN in section and END in section:
        section = section[: section.index(BEGIN)] + generated + section[section.index(END) + len(END) :]
    else:
        section = section.rstrip("\n") + "\n\n" + generated + "\n"
    if not section.endswith("\n\n") and end < len(text):
        section = section.rstrip("\n") + "\n\n"
    DOCS.write_text(text[:start] + section + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED_REAL_PHASE_TRAIN)
    parser.add_argument("--methods", nargs="*", default=["zero", "smooth", "physics", "gan", "sbdm"])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--option", action="append", default=[], help="METHOD:KEY=VALUE, e.g. sbdm:checkpoint=runs/x.safetensors")
    parser.add_argument("--card", action="append", default=[], help="record the numbers in this method's checkpoint card")
    parser.add_argument("--paired", default="sbdm", help="tabulate this method minus every other, with 95%% intervals")
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipping: real-phase data not found at {args.data}")
        return
    started = time.perf_counter()
    options: dict[str, dict[str, str]] = {}
    for item in args.option:
        method, _, pair = item.partition(":")
        key, _, value = pair.partition("=")
        options.setdefault(method, {})[key] = value
    synthesizers = {}
    for name in args.methods:
        try:
            synthesizers[name] = phase.create(name, device="cpu", **options.get(name, {}))
        except Exception as error:  # a method that cannot be built here is reported, not measured
            print(f"{name}: skipped ({error})")
    refs = list_volumes(args.data)
    seen = set().union(*(seen_by(s) for s in synthesizers.values()))
    held_out = [r for r in refs if fingerprint(r) not in seen]
    pairs = load_pairs(held_out, 256, SHARED_TRAIN_ACQUISITION)
    print(f"{len(held_out)} held-out volumes ({len(pairs)} slices) of {len(refs)}; {len(refs) - len(held_out)} left out as seen")
    net = default_feature_net()
    real = real_statistics(pairs, net)
    unknown = replace(pairs, acquisitions=[UNKNOWN] * len(pairs.keys))
    rows, results = [], {}
    for name, synthesizer in synthesizers.items():
        for label, data in ((name, pairs), (f"{name} (acquisition unknown)", unknown)):
            if label.endswith("(acquisition unknown)") and name in ("zero", "smooth", "gan"):
                continue  # they do not read the acquisition
            results[label] = evaluate_method(synthesizer, data, args.seeds, net, real)
            rows.append((label, results[label]))
            print(f"{label}: {results[label]['mean']} ({time.perf_counter() - started:.0f} s)", flush=True)
    volumes = sorted(set(pairs.keys))
    half = np.isin(pairs.volume, np.arange(0, len(volumes), 2))
    floor = compare(real.take(half), real.take(~half))
    rows.append(("real, one half of the volumes vs the other (floor)", {"per_seed": {m: [v] for m, v in floor.items()}}))

    paired, versus = paired_table(args.paired, results, real) if args.paired in results else ("", {})
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, CPU"
    block = "\n".join([
        table(rows), "",
        f"Held-out real spin-echo slices: {len(pairs)} slices of {len(held_out)} volumes of {args.data.name} "
        f"({len(refs) - len(held_out)} volumes left out: a learned method trained or validated on them). Methods: "
        f"mean ± sd over seeds {', '.join(map(str, args.seeds))}; told the set's acquisition ({FAMILY}, 3 T) unless the "
        "row says unknown. Lower is closer to real phase; the classifier AUROC's floor is 0.5.", "",
        *([paired, "",
           f"Paired differences ({args.paired} minus each method, mean over the seeds) with bootstrap 95% intervals "
           f"over the {len(volumes)} volumes and the seeds (one draw of volumes for both methods and the real phase; "
           f"negative: {args.paired} is closer; an interval that spans 0: no measured difference).", ""] if paired else []),
        f"Made by `python benchmarks/phase_realism.py` on {_dt.date.today().isoformat()} ({machine}; "
        f"{time.perf_counter() - started:.0f} s).",
    ])  # fmt: skip
    print(block)
    if not args.no_docs:
        write_docs(block)
        print(f"wrote the table into {DOCS.relative_to(ROOT)}")
    if args.json:
        plain = {label: {k: v for k, v in result.items() if k != "statistics"} for label, result in results.items()}
        args.json.write_text(json.dumps({"results": plain, "paired": {"subject": args.paired, "minus": versus}}, indent=2) + "\n")
    facts = {"set": f"held-out volumes of {args.data.name} ({len(pairs)} slices; never trained or validated on)",
             "seeds": args.seeds, "measured": _dt.date.today().isoformat(), "lower_is_closer": True}  # fmt: skip
    for name in args.card:
        synthesizer = synthesizers.get(name)
        path = getattr(synthesizer, "path", None)
        if synthesizer is None or path is None:
            print(f"--card {name}: no checkpoint to record into")
            continue
        speed = cpu_speed(synthesizer, pairs)
        against = versus["physics"] if name == args.paired and "physics" in versus else \
            paired_difference(results[name]["statistics"], results["physics"]["statistics"], real)  # fmt: skip
        noise = {"receiver_noise": synthesizer.settings().get("receiver_noise")}  # type: ignore[attr-defined]
        record(Path(path).with_suffix(".json"), results[name]["mean"], results["physics"]["mean"], {**facts, **noise}, speed, against)
        print(f"recorded the {FAMILY} realism in {Path(path).with_suffix('.json')}")


if __name__ == "__main__":
    main()
