"""Realism of each registered phase method against real acquired phase.

    python benchmarks/phase_realism.py

For every method in the phase registry that says it is usable here (smooth, physics, zero now; sbdm
and gan join by themselves once they are), phase is synthesized for the magnitudes of the real-phase
set (../shared/data/real-phase, read by kspacify.datasets at 256x256), one batch per volume, with
seeds 0, 1, 2, and the three realism measures are computed against the real phase of the same slices.
Two comparisons:

* paired: method on all slices vs real on all slices (same magnitudes);
* cross-half: the slices split into halves (every other slice in reading order); method on one half
  vs real on the other, averaged over both ways round. Its floor is real vs real across the halves
  (same sample sizes, same magnitude mismatch), the row "real (split-half floor)".

The markdown table is printed and written into docs/phase-methods.md, section `## Realism measures`,
between the markers below (the rest of that section is prose kept by hand). Nothing here feeds back
into any phase model: the shared slices are a measurement set only.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kspacify import phase  # noqa: E402
from kspacify.datasets import iter_slices  # noqa: E402
from kspacify.device import resolve_device  # noqa: E402
from kspacify.realism import MEASURES, PhaseStatistics, compare, default_feature_net, describe, describe_slices  # noqa: E402

REAL_PHASE = ROOT.parent / "shared" / "data" / "real-phase"
DOCS = ROOT / "docs" / "phase-methods.md"
SECTION = "## Realism measures"
BEGIN = "<!-- phase_realism.py: begin table -->"
END = "<!-- phase_realism.py: end table -->"
SEEDS = (0, 1, 2)
LABELS = {"gradient_w1": "gradient W1", "spectrum_rms": "spectrum RMS", "feature_fd": "feature FD"}


def synthesize(name: str, magnitudes: dict[str, np.ndarray], seed: int, where: str) -> dict[str, np.ndarray]:
    """Phase for each volume's magnitudes (one batch per volume, a generator per (seed, volume))."""
    synthesizer = phase.create(name, device=where)
    return {
        key: synthesizer.synthesize(m, np.random.default_rng([seed, index]))
        for index, (key, m) in enumerate(sorted(magnitudes.items()))
    }


def cross_half(a: PhaseStatistics, b: PhaseStatistics, half: np.ndarray) -> dict[str, float]:
    """Mean of compare(a on half 0, b on half 1) and compare(a on half 1, b on half 0)."""
    one, two = compare(a.take(half), b.take(~half)), compare(a.take(~half), b.take(half))
    return {k: (one[k] + two[k]) / 2 for k in MEASURES}


def fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3g}"
    return f"{np.mean(values):.3g} ± {np.std(values, ddof=1):.2g}"


def table(rows: list[tuple[str, dict[str, list[float]], dict[str, list[float]]]]) -> str:
    head = "| method | " + " | ".join(f"{LABELS[m]} paired" for m in MEASURES) + " | "
    head += " | ".join(f"{LABELS[m]} cross-half" for m in MEASURES) + " |"
    lines = [head, "| --- |" + " ---: |" * (2 * len(MEASURES))]
    for name, paired, crossed in rows:
        cells = [fmt(paired[m]) if paired else "" for m in MEASURES] + [fmt(crossed[m]) for m in MEASURES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def record_realism(card_path: Path, model: dict[str, float], anchors: dict[str, dict[str, float]], **facts: object) -> None:
    """Write `quality.realism` into a checkpoint's model card: the model's paired measures against the
    real-phase set beside those of `physics` (and other anchors) from the same run; `--phase auto`
    reads it (`kspacify.weights.realism_gate`). The weights file, and so its sha256, is untouched."""
    import json

    card = json.loads(card_path.read_text(encoding="utf-8"))
    card.setdefault("quality", {})["realism"] = {
        "set": "real-phase slices of ../shared/data/real-phase (measurement only, never trained on)",
        "comparison": "paired: each method's phase vs the acquired phase of the same magnitudes; lower is closer",
        "seeds": list(SEEDS), **facts, "model": model, **anchors,
    }  # fmt: skip
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")


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
    if not REAL_PHASE.is_dir():
        print(f"skipping: real-phase data not found at {REAL_PHASE}")
        return
    started = time.perf_counter()
    slices = list(iter_slices(REAL_PHASE, size=256))
    keys = [s.volume_key for s in slices]
    magnitudes = {k: np.stack([s.magnitude for s in slices if s.volume_key == k]) for k in sorted(set(keys))}
    net = default_feature_net()
    real = describe_slices(slices, features=net)
    half = np.arange(len(slices)) % 2 == 0
    order = {k: [i for i, key in enumerate(keys) if key == k] for k in magnitudes}

    rows = []
    where = str(resolve_device("auto"))
    for name, spec in phase.registry().items():
        usable, reason = spec.usable(where)
        if not usable:
            print(f"{name}: skipped ({reason})")
            continue
        paired: dict[str, list[float]] = {m: [] for m in MEASURES}
        crossed: dict[str, list[float]] = {m: [] for m in MEASURES}
        for seed in SEEDS:
            phases = synthesize(name, magnitudes, seed, where)
            synthesized = np.empty((len(slices), 256, 256), dtype=np.float32)
            for k, rows_of_k in order.items():
                synthesized[rows_of_k] = phases[k]
            stats = describe(np.stack([s.magnitude for s in slices]), synthesized, features=net, keys=keys)
            for m, value in compare(stats, real).items():
                paired[m].append(value)
            for m, value in cross_half(stats, real, half).items():
                crossed[m].append(value)
        rows.append((name, paired, crossed))
        print(f"{name}: done ({time.perf_counter() - started:.0f} s)", flush=True)
    floor = compare(real.take(half), real.take(~half))
    rows.append(("real (split-half floor)", {}, {m: [floor[m]] for m in MEASURES}))

    counts = ", ".join(f"{k} {len(v)}" for k, v in order.items())
    machine = f"{platform.machine()} {platform.processor() or ''}".strip() + f", {os.cpu_count()} CPUs, {where}"
    block = "\n".join(
        [
            table(rows),
            "",
            f"Real-phase set: {len(slices)} slices ({counts}); halves {int(half.sum())} / {int((~half).sum())} slices. "
            f"Methods: mean ± sd over seeds {', '.join(map(str, SEEDS))}. Lower is closer to real phase.",
            "",
            f"Made by `python benchmarks/phase_realism.py` on {_dt.date.today().isoformat()} ({machine}; "
            f"{time.perf_counter() - started:.0f} s).",
        ]
    )
    print(block)
    write_docs(block)
    print(f"\nwrote the table into {DOCS.relative_to(ROOT)} ({SECTION})")


if __name__ == "__main__":
    main()
