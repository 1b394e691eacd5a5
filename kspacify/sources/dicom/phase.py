"""Acquired phase images: how their stored values become radians, and loading them.

Gradient echo, SWI and field-map series often hold phase images beside the magnitudes (ImageType
P / PHASE, ComplexImageComponent PHASE, GE's private image type (0043,102F) = 1). Their pixel values
are integers whose unit the header says only in part, and vendors differ. The rule, from header
values only, tried in this order (`unit_rule`; the rescaled value D = stored x RescaleSlope +
RescaleIntercept, per frame for Enhanced MR):

1. RescaleType (0028,1054) naming a unit: RAD / RADIANS, MRAD / MILLIRADIANS, DEG / DEGREES (others,
   such as 'US', unspecified, say nothing).
2. Philips with its private ScaleSlope SS (2005,100E): the "precise" value D / (RS x SS) (RS the
   RescaleSlope; the formula of Philips' PAR/REC and of dcm2niix's Philips notes) is radians when the
   values the image can hold span -pi..pi with it (Philips phase images rescale to about
   -3142..3142, with RS x SS = 1000).
3. Siemens: the rescaled values the image can hold (from BitsStored, PixelRepresentation, slope and
   intercept) lie within -4096..4095 (12-bit 0..4095 with slope 2 and intercept -4096, or signed
   values): -4096 is -pi, radians = D x pi / 4096. Unsigned 0..4095 without a rescale: 2048 is 0,
   radians = (D - 2048) x pi / 2048.
4. Any vendor: the rescaled values the image can hold span, symmetrically about 0 within 3 %,
   -pi..pi (radians), -180..180 (degrees) or -1000 pi..1000 pi (milliradians).
5. Otherwise (16-bit values with no rescale that says, as GE writes them): decided at load from the
   values themselves. A phase image holds noise over the whole circle outside the object, so its
   values reach the ends of their range: the unit is the one of pi (radians), 180 (degrees),
   1000 pi (milliradians; GE's phase images) or, for Siemens, 4096 whose limit the largest absolute
   value lies within 90 to 100.1 % of. Anything else is refused, naming the range the values span:
   a value kspacify cannot interpret is never written as phase.

After conversion every value must lie within -pi..pi (1 % slack for rounding); it is wrapped to
[-pi, pi). Real and imaginary images are not combined into phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..base import PhaseError, PhaseSlices, SourceError, VolumeInfo
from .header import Header, as_float, as_int, get
from .records import fg_item, shared_groups
from .vendor import private_float

__all__ = ["Rule", "load_phase", "to_radians", "unit_rule"]

_NAMED_UNITS = {"RAD": "radians", "RADIAN": "radians", "RADIANS": "radians", "MRAD": "milliradians",
                "MILLIRADIAN": "milliradians", "MILLIRADIANS": "milliradians", "DEG": "degrees", "DEGREE": "degrees",
                "DEGREES": "degrees"}  # fmt: skip
_SCALES = {"radians": 1.0, "milliradians": 1e-3, "degrees": math.pi / 180.0}
_LIMITS = (("radians", math.pi), ("degrees", 180.0), ("milliradians", 1000.0 * math.pi))  # |value| of pi radians
FROM_VALUES = "from the values"
_SIEMENS = "siemens"


@dataclass(frozen=True)
class Rule:
    """How one series' phase values become radians: radians = value * scale + offset (`scale`
    None: decided at load from the values, `to_radians`); `unit` names the rule."""

    unit: str
    scale: float | None
    offset: float = 0.0


def _storable(ds: Any, slope: float, intercept: float) -> tuple[float, float]:
    """The lowest and highest rescaled value the image's stored integers can hold."""
    bits = as_int(get(ds, "BitsStored")) or as_int(get(ds, "BitsAllocated")) or 16
    bits = min(max(bits, 1), 32)
    signed = as_int(get(ds, "PixelRepresentation")) == 1
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    a, b = low * slope + intercept, high * slope + intercept
    return min(a, b), max(a, b)


def _symmetric_unit(low: float, high: float) -> str | None:
    half, centre = (high - low) / 2.0, (high + low) / 2.0
    if half <= 0 or abs(centre) > 0.03 * half:
        return None
    for unit, limit in _LIMITS:
        if abs(half - limit) <= 0.03 * limit:
            return unit
    return None


def unit_rule(ds: Header, frame: int | None = None) -> Rule:
    """The rule (module docstring) for the phase image (or Enhanced MR `frame`) of file `ds`."""
    pvt = None
    if frame is not None:
        pvt = fg_item(ds, get(ds, "PerFrameFunctionalGroupsSequence"), shared_groups(ds), frame,
                      "PixelValueTransformationSequence")
    slope = as_float(get(pvt, "RescaleSlope")) if pvt is not None else None
    intercept = as_float(get(pvt, "RescaleIntercept")) if pvt is not None else None
    kind = get(pvt, "RescaleType") if pvt is not None else None
    if slope is None and intercept is None:
        slope, intercept = as_float(get(ds, "RescaleSlope")), as_float(get(ds, "RescaleIntercept"))
    kind = kind or get(ds, "RescaleType")
    slope = 1.0 if slope is None or slope == 0 else slope
    intercept = 0.0 if intercept is None else intercept
    named = _NAMED_UNITS.get(str(kind or "").strip().upper())
    if named:
        return Rule(named, _SCALES[named])
    maker = str(get(ds, "Manufacturer") or "").upper()
    low, high = _storable(ds, slope, intercept)
    if "PHILIPS" in maker:
        scale_slope = private_float(ds, 0x20050010, 0x2005100E, "PHILIPS MR IMAGING DD 001")
        if scale_slope and scale_slope > 0:
            factor = 1.0 / (slope * scale_slope)
            if _symmetric_unit(low * factor, high * factor) == "radians":
                return Rule("Philips precise value, radians", factor)
    if _SIEMENS in maker.lower():
        if low >= -4096.5 and high <= 4095.5:
            if low < -0.5:
                return Rule("Siemens -4096..4095", math.pi / 4096.0)
            if slope == 1.0 and intercept == 0.0 and high >= 4094.5:
                return Rule("Siemens 0..4095", math.pi / 2048.0, -math.pi)
    symmetric = _symmetric_unit(low, high)
    if symmetric:
        return Rule(symmetric, _SCALES[symmetric])
    return Rule(f"{FROM_VALUES}, Siemens" if _SIEMENS in maker.lower() else FROM_VALUES, None)


def _from_values(values: np.ndarray, unit: str) -> tuple[float, float, str]:
    """(scale, offset, unit) for values whose header did not say (rule 5), or PhaseError."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise PhaseError("no phase value is a finite number")
    low, high = float(finite.min()), float(finite.max())
    largest = max(abs(low), abs(high))
    limits = list(_LIMITS)
    if unit.endswith("Siemens"):
        if low >= 0 and 0.9 * 4095 <= high <= 4095.5:
            return math.pi / 2048.0, -math.pi, "Siemens 0..4095"
        limits.append(("Siemens -4096..4095", 4096.0))
    for name, limit in limits:
        if 0.9 * limit <= largest <= 1.001 * limit:
            return math.pi / limit, 0.0, name
    raise PhaseError(f"phase values span {low:g} to {high:g}: not radians, degrees or milliradians over -pi..pi "
                     "(nor Siemens' -4096..4095), and the header does not say their unit: not interpreted")


def to_radians(values: np.ndarray, phase: PhaseSlices) -> tuple[np.ndarray, str]:
    """Rescaled phase values -> radians in [-pi, pi), float32, and the unit used; PhaseError for
    values that are not finite or not within -pi..pi once converted."""
    values = np.asarray(values, dtype=np.float32)
    if phase.scale is None:
        scale, offset, unit = _from_values(values, phase.unit)
    else:
        scale, offset, unit = phase.scale, phase.offset, phase.unit
    radians = values * np.float32(scale) + np.float32(offset)
    if not np.all(np.isfinite(radians)):
        raise PhaseError("phase values that are not finite numbers")
    low, high = float(radians.min()), float(radians.max())
    if low < -1.01 * math.pi or high > 1.01 * math.pi:
        raise PhaseError(f"phase values read as {unit} span {low:.4g} to {high:.4g} rad, beyond -pi..pi: not interpreted")
    two_pi = np.float32(2 * math.pi)
    radians -= two_pi * np.floor((radians + np.float32(math.pi)) / two_pi)
    radians[radians >= np.float32(math.pi)] -= two_pi
    return radians, unit


def load_phase(info: VolumeInfo) -> np.ndarray:
    """The acquired phase of `info` (which has `info.phase`), radians [-pi, pi), float32, the shape
    and orientation of its magnitudes; PhaseError naming the file or the values it cannot use."""
    from .pixels import load_dicom

    if info.phase is None:
        raise PhaseError("no acquired phase")
    if len(info.phase.slices) != info.shape[0]:
        raise PhaseError(f"{len(info.phase.slices)} phase slices for {info.shape[0]} magnitude slices")
    try:
        values = load_dicom(replace(info, slices=info.phase.slices, phase=None))
    except SourceError as error:
        raise PhaseError(f"acquired phase: {error}", "a phase image could not be read") from None
    return to_radians(values, info.phase)[0]
