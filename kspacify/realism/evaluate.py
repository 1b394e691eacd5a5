"""The one realism loop: a phase method against the real phase of a held-out `PairSet`.

For each seed the method synthesizes phase for every volume of the set (told each volume's
acquisition, one stream per volume: `seeding.stream(seed, key, batch)`), and the synthetic set is
compared with the real one on the same magnitudes: the three distances of `summary.compare`, and the
classifier two-sample AUROC (`classifier`). Lower is closer for every measure (AUROC: 0.5 is the
floor, indistinguishable). The benchmark scripts, the model cards and `--phase auto` all read
numbers made by this function.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from kspacify.realism.classifier import classifier_auroc
from kspacify.realism.summary import MEASURES, PhaseStatistics, compare, describe
from kspacify.seeding import stream

ALL_MEASURES = (*MEASURES, "classifier_auroc")


def synthesize_set(synthesizer: Any, pairs: Any, seed: int, batch_size: int = 16) -> np.ndarray:
    """Phase (N, H, W) for every slice of `pairs`, volume by volume, with each volume's acquisition."""
    out = np.empty_like(pairs.magnitude)
    for number, key in enumerate(pairs.keys):
        where = np.flatnonzero(pairs.volume == number)
        for start in range(0, where.size, batch_size):
            part = where[start : start + batch_size]
            out[part] = synthesizer.synthesize(pairs.magnitude[part], stream(seed, key, start), pairs.acquisitions[number])
    return out


def real_statistics(pairs: Any, net: Any) -> PhaseStatistics:
    keys = [pairs.keys[int(v)] for v in pairs.volume]
    return describe(pairs.magnitude, pairs.phase, features=net, keys=keys)


def evaluate_method(
    synthesizer: Any, pairs: Any, seeds: Sequence[int], net: Any, real: PhaseStatistics | None = None, classifier: bool = True
) -> dict[str, Any]:
    """Mean and per-seed values of every measure of `synthesizer` against the real phase of `pairs`,
    and the per-seed statistics of its phase ("statistics", for `summary.paired_difference`)."""
    real = real if real is not None else real_statistics(pairs, net)
    groups = [pairs.keys[int(v)] for v in pairs.volume]
    values: dict[str, list[float]] = {m: [] for m in ALL_MEASURES}
    statistics = []
    for seed in seeds:
        fake = synthesize_set(synthesizer, pairs, seed)
        statistics.append(describe(pairs.magnitude, fake, features=net, keys=groups))
        for name, value in compare(statistics[-1], real).items():
            values[name].append(float(value))
        if classifier:
            values["classifier_auroc"].append(classifier_auroc(pairs.magnitude, pairs.phase, fake, groups, seed=seed))
    measured = {m: v for m, v in values.items() if v}
    return {"mean": {m: float(np.mean(v)) for m, v in measured.items()}, "per_seed": measured, "statistics": statistics}
