"""How a volume was acquired, as far as its headers say: the facts that shape its real phase.

A spin echo refocuses off-resonance, so its phase is coil phase plus a small residual; a gradient
echo accumulates the field offset for the echo time, in proportion to B0; the field's direction
relative to the slice decides the dipole pattern. Readers fill an `Acquisition` per volume (DICOM
headers, a dcm2niix/BIDS JSON sidecar beside a NIfTI file); every field may be unknown (None), and
a phase synthesizer keeps its acquisition-agnostic behaviour for what is unknown.

`from_header_fields` is the one place that turns header values into the record, so DICOM and a
BIDS sidecar agree (the sidecar carries DICOM's values under the same keywords, times in seconds).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Iterable, Mapping


class Family(str, Enum):
    """The sequence family, from ScanningSequence (SE, GR, EP, IR), SequenceVariant and ImageType."""

    UNKNOWN = "unknown"
    SPIN_ECHO = "spin_echo"
    GRADIENT_ECHO = "gradient_echo"
    EPI = "epi"
    INVERSION_RECOVERY = "inversion_recovery"


@dataclass(frozen=True)
class Acquisition:
    """Acquisition facts of one volume; None (or Family.UNKNOWN) where the source does not say.

    `refocused`: whether the echo is a spin echo (a 180-degree pulse refocuses static off-resonance:
    SE, fast/turbo SE, SE-EPI, SE-based inversion recovery), False for gradient echoes, None unknown.
    `b0_direction`: the unit main-field direction (the patient's head-foot axis in a closed-bore
    scanner) in slice coordinates (x: the column index, y: the row index, n: the slice normal, as the
    slices are written out), from the image orientation.
    """

    field_strength_t: float | None = None
    echo_time_ms: float | None = None
    repetition_time_ms: float | None = None
    inversion_time_ms: float | None = None
    flip_angle_deg: float | None = None
    family: Family = Family.UNKNOWN
    refocused: bool | None = None
    b0_direction: tuple[float, float, float] | None = None

    @property
    def known(self) -> bool:
        return self != UNKNOWN

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["family"] = self.family.value
        data["b0_direction"] = list(self.b0_direction) if self.b0_direction is not None else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Acquisition:
        if not data:
            return UNKNOWN
        direction = data.get("b0_direction")
        return cls(
            field_strength_t=_positive(data.get("field_strength_t")),
            echo_time_ms=_positive(data.get("echo_time_ms")),
            repetition_time_ms=_positive(data.get("repetition_time_ms")),
            inversion_time_ms=_positive(data.get("inversion_time_ms")),
            flip_angle_deg=_positive(data.get("flip_angle_deg")),
            family=_family(data.get("family")),
            refocused=data.get("refocused") if isinstance(data.get("refocused"), bool) else None,
            b0_direction=_unit(direction) if direction is not None else None,
        )


UNKNOWN = Acquisition()


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _family(value: Any) -> Family:
    try:
        return Family(value)
    except ValueError:
        return Family.UNKNOWN


def _unit(vector: Iterable[Any]) -> tuple[float, float, float] | None:
    try:
        x, y, n = (float(v) for v in vector)
    except (TypeError, ValueError):
        return None
    norm = math.sqrt(x * x + y * y + n * n)
    if not math.isfinite(norm) or norm < 1e-6:
        return None
    return (x / norm + 0.0, y / norm + 0.0, n / norm + 0.0)


def _codes(value: Any) -> set[str]:
    """'SE\\IR', ['GR', 'IR'], 'GR_IR' (dcm2niix's sidecar) -> {'SE', 'IR'} ..."""
    if value is None:
        return set()
    items = [value] if isinstance(value, str) else list(value)
    out: set[str] = set()
    for item in items:
        for part in str(item).replace("\\", "_").replace("/", "_").split("_"):
            if part.strip():
                out.add(part.strip().upper())
    return out


# ImageType words (after ORIGINAL/DERIVED and PRIMARY/SECONDARY; a component prefix such as Philips'
# "M_" or "P_" dropped) that name the sequence: Philips writes e.g. ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE
_IMAGE_TYPE_CODES = {"SE": "SE", "TSE": "SE", "FFE": "GR", "TFE": "GR", "IR": "IR", "EPI": "EP"}
_STEADY_STATE = {"SS", "TRSS"}  # SequenceVariant: a steady state forms only with gradient echoes


def _yes(value: Any) -> bool:
    return str(value or "").strip().upper() == "YES"


def sequence_family(scanning_sequence: Any, sequence_variant: Any = None, image_type: Any = None,
                    pulse_sequence_name: Any = None, echo_planar: Any = None,
                    inversion_recovery: Any = None) -> tuple[Family, bool | None]:  # fmt: skip
    """(family, refocused) from DICOM's ScanningSequence (SE, GR, EP, IR, RM), SequenceVariant,
    ImageType and, for Enhanced MR, the echo pulse sequence (SPIN, GRADIENT, BOTH), EchoPlanarPulseSequence
    and InversionRecovery (YES/NO).

    ScanningSequence says most; the ImageType words Philips writes (M_SE, M_FFE, M_IR: `_IMAGE_TYPE_CODES`)
    add to it, as do Enhanced MR's flags. A steady-state SequenceVariant (SS, TRSS) means a gradient echo
    where nothing else names the echo (GE's research-mode 'RM' sequences). EPI wins over the rest (its
    readout dominates the phase), then inversion recovery, then SE/GR. `refocused` says whether a spin
    echo forms the signal, whatever the family."""
    codes = _codes(scanning_sequence)
    types = [str(t).strip().upper() for t in ([image_type] if isinstance(image_type, str) else list(image_type or ()))]
    for token in types[2:]:
        word = token.split("_", 1)[1] if token[:2] in ("M_", "P_", "R_", "I_") else token
        if word in _IMAGE_TYPE_CODES:
            codes.add(_IMAGE_TYPE_CODES[word])
    echo = str(pulse_sequence_name or "").strip().upper()
    if echo in ("SPIN", "SE"):
        codes.add("SE")
    elif echo in ("GRADIENT", "GR"):
        codes.add("GR")
    if _yes(echo_planar):
        codes.add("EP")
    if _yes(inversion_recovery):
        codes.add("IR")
    if "SE" not in codes and "GR" not in codes and _codes(sequence_variant) & _STEADY_STATE:
        codes.add("GR")
    spin, gradient = "SE" in codes, "GR" in codes
    refocused = True if spin and not gradient else False if gradient and not spin else None
    if "EP" in codes:
        return Family.EPI, refocused
    if "IR" in codes:
        return Family.INVERSION_RECOVERY, refocused
    if spin and not gradient:
        return Family.SPIN_ECHO, True
    if gradient and not spin:
        return Family.GRADIENT_ECHO, False
    return Family.UNKNOWN, refocused


def from_header_fields(fields: Mapping[str, Any], b0_direction: tuple[float, float, float] | None = None,
                       seconds: bool = False) -> Acquisition:  # fmt: skip
    """An Acquisition from DICOM keywords (MagneticFieldStrength, EchoTime, RepetitionTime,
    InversionTime, FlipAngle, ScanningSequence, SequenceVariant, ImageType, EchoPulseSequence,
    EchoPlanarPulseSequence, InversionRecovery) or a BIDS sidecar (the same names; times in seconds:
    `seconds=True`). A field strength above 100 cannot be tesla: it is read as gauss (older GE
    software wrote 15000 for 1.5 T)."""
    scale = 1000.0 if seconds else 1.0

    def ms(keyword: str) -> float | None:
        value = _positive(fields.get(keyword))
        return value * scale if value is not None else None

    family, refocused = sequence_family(
        fields.get("ScanningSequence"), fields.get("SequenceVariant"), fields.get("ImageType"),
        fields.get("EchoPulseSequence"), fields.get("EchoPlanarPulseSequence"), fields.get("InversionRecovery"),
    )  # fmt: skip
    field = _positive(fields.get("MagneticFieldStrength"))
    if field is not None and field > 100:
        field /= 10_000.0  # gauss
    return Acquisition(
        field_strength_t=field,
        echo_time_ms=ms("EchoTime"),
        repetition_time_ms=ms("RepetitionTime"),
        inversion_time_ms=ms("InversionTime"),
        flip_angle_deg=_positive(fields.get("FlipAngle")),
        family=family,
        refocused=refocused,
        b0_direction=_unit(b0_direction) if b0_direction is not None else None,
    )


def b0_in_slice(x_direction: Iterable[float], y_direction: Iterable[float], normal: Iterable[float]) -> tuple[float, float, float] | None:
    """The patient head-foot axis (LPS z, B0 of a closed-bore scanner) in slice coordinates, given
    the LPS unit vectors along which the column index (x), the row index (y) and the slice index
    (n) of the written slices increase."""
    vectors = [list(map(float, v)) for v in (x_direction, y_direction, normal)]
    return _unit([v[2] for v in vectors])
