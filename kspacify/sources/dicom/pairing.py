"""Pairing phase images with the magnitude images of the same acquisition (issue 13).

A phase volume (phase images grouped like any other: by series, orientation, matrix, spacing, echo,
temporal position, ...) belongs to a magnitude volume when both are of the same acquisition, the
same patient and study, the same echo (number and time, where known), temporal position,
diffusion weighting and split (repeat, mosaic file, acquisition number, trigger time), and have
the same geometry: frame of reference (where both name one), orientation and in-plane layout,
matrix, pixel spacing, mosaic layout and, slice by slice, the same positions. Philips and GE keep
phase images in the magnitude's series, Siemens in a series of its own (usually the next number):
both pair. Of several magnitudes that would do, the one of the same series is taken, then the
nearest series number; a magnitude takes one phase volume.

A phase volume that matches a magnitude of its own or a neighbouring series (series number one
apart) in everything but geometry is not paired, and the magnitude carries a note naming what
differs (it converts as usual); one that matches nothing is reported, per file, as not converted.
UIDs are compared here and never leave this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..base import PhaseSlices, Skipped, VolumeInfo
from ..checks import note
from .header import rounded

__all__ = ["Built", "Pairing", "pair"]

_IOP_TOL = 1e-3  # as grouping's "same orientation"
_POSITION_TOL = 0.05  # mm: positions written as decimal strings by two series of one reconstruction
_LABELS = ("repeat", "volume_index", "acquisition_number", "trigger_time")  # splits that must agree
NO_MAGNITUDE = ("phase image without a magnitude of the same acquisition (same study, echo, temporal position and "
                "geometry): not converted")  # fmt: skip


@dataclass(frozen=True)
class Built:
    """A volume the grouping made, with what pairing compares (its group's key and facts, and the
    position of each slice's first pixel, in slice order)."""

    info: VolumeInfo
    key: Any  # GroupKey
    facts: Any  # GroupFacts
    positions: tuple[tuple[float, ...] | None, ...]


@dataclass
class Pairing:
    magnitudes: list[VolumeInfo] = field(default_factory=list)  # every magnitude, with its phase or a note
    skipped: list[Skipped] = field(default_factory=list)  # the files of phase volumes paired with none


def _echo_differs(a: Built, b: Built) -> bool:
    numbers = (a.facts.echo_number, b.facts.echo_number)
    times = (rounded(a.facts.echo_time, 3), rounded(b.facts.echo_time, 3))
    return (None not in numbers and numbers[0] != numbers[1]) or (None not in times and times[0] != times[1])


def _same_acquisition(magnitude: Built, phase: Built) -> bool:
    m, p = magnitude, phase
    return (m.info.patient == p.info.patient and m.facts.study_uid == p.facts.study_uid and not _echo_differs(m, p)
            and m.key.temporal_position == p.key.temporal_position and m.key.b_value == p.key.b_value
            and m.key.b_vector == p.key.b_vector
            and all(m.info.meta.get(label) == p.info.meta.get(label) for label in _LABELS))  # fmt: skip


def _mm(values: Sequence[float]) -> str:
    return " x ".join(f"{v:g}" for v in values)


def differences(magnitude: Built, phase: Built) -> list[str]:
    """What differs in geometry between a magnitude and a phase volume (empty: they pair)."""
    m, p = magnitude, phase
    out = []
    frames = (m.facts.frame_of_reference, p.facts.frame_of_reference)
    if None not in frames and frames[0] != frames[1]:
        out.append("frame of reference")
    iops = (m.key.orientation, p.key.orientation)
    if None in iops or max(abs(a - b) for a, b in zip(*iops)) >= _IOP_TOL:
        out.append("orientation" if None not in iops else "orientation unknown")
    elif m.info.meta.get("inplane_transform") != p.info.meta.get("inplane_transform"):
        out.append("in-plane layout")
    if m.info.shape[1:] != p.info.shape[1:]:
        out.append(f"matrix {_mm(p.info.shape[1:])} against {_mm(m.info.shape[1:])}")
    if not np.allclose(m.info.spacing[1:], p.info.spacing[1:], rtol=1e-3, atol=1e-4):
        out.append(f"pixel spacing {_mm(p.info.spacing[1:])} mm against {_mm(m.info.spacing[1:])} mm")
    if (m.info.meta.get("mosaic_grid"), m.info.meta.get("mosaic_grid_rows")) != (
            p.info.meta.get("mosaic_grid"), p.info.meta.get("mosaic_grid_rows")):  # fmt: skip
        out.append("mosaic layout")
    if len(m.positions) != len(p.positions):
        out.append(f"{len(p.positions)} slices against {len(m.positions)}")
    elif any(position is None for position in m.positions + p.positions):
        out.append("slice positions unknown")
    else:
        ours, theirs = ([list(position or ()) for position in b.positions] for b in (m, p))
        apart = float(np.max(np.linalg.norm(np.subtract(ours, theirs), axis=1)))
        if apart > _POSITION_TOL:
            out.append(f"slice positions (up to {apart:.3g} mm apart)")
    return out


def _series_distance(magnitude: Built, phase: Built) -> tuple[int, int]:
    """(0 same series, 1 another), then how far apart the series numbers are."""
    if magnitude.key.series_uid == phase.key.series_uid:
        return 0, 0
    numbers = (magnitude.facts.series_number, phase.facts.series_number)
    return 1, abs(numbers[0] - numbers[1]) if None not in numbers else 1 << 30


def pair(magnitudes: list[Built], phases: list[Built]) -> Pairing:
    """Each magnitude with the phase volume paired with it (`VolumeInfo.phase`), or a note saying
    why a phase volume of its acquisition was not; the files of phase volumes left over."""
    taken: dict[int, Built] = {}  # magnitude index -> its phase volume
    notes: dict[int, list[str]] = {}
    skipped: list[Skipped] = []
    order = sorted(range(len(phases)), key=lambda i: (phases[i].facts.series_number or 0, phases[i].info.name))
    for i in order:
        phase = phases[i]
        candidates = [k for k, m in enumerate(magnitudes) if _same_acquisition(m, phase)]
        by_distance = sorted(candidates, key=lambda k: _series_distance(magnitudes[k], phase))
        exact = [k for k in by_distance if not differences(magnitudes[k], phase)]
        free = [k for k in exact if k not in taken]
        if free:
            taken[free[0]] = phase
            continue
        if exact:
            other = taken[exact[0]].facts.series_number
            reason = f"phase image not paired: its magnitude already has the phase images of series {other}"
        else:
            near = [k for k in by_distance if _series_distance(magnitudes[k], phase)[1] <= 1]
            if near:
                best = min(near, key=lambda k: (len(differences(magnitudes[k], phase)), _series_distance(magnitudes[k], phase)))
                what = ", ".join(differences(magnitudes[best], phase))
                notes.setdefault(best, []).append(
                    f"not paired with the phase images of series {_series(phase)}: {what}; no acquired phase for this volume")
                reason = f"phase image not paired with the magnitudes of series {_series(magnitudes[best])}: {what}"
            else:
                reason = NO_MAGNITUDE
        skipped.extend(Skipped(path, reason) for path in phase.info.files)
    out = Pairing(skipped=skipped)
    for k, magnitude in enumerate(magnitudes):
        info = magnitude.info
        if k in taken:
            rule = taken[k].key.phase_rule
            info = replace(info, phase=PhaseSlices(taken[k].info.slices, rule.unit, rule.scale, rule.offset,
                                                   taken[k].facts.series_number))  # fmt: skip
        for text in notes.get(k, ()):
            info = note(info, text)
        out.magnitudes.append(info)
    return out


def _series(built: Built) -> str:
    number = built.facts.series_number
    return str(number) if number is not None else "?"
