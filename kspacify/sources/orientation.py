"""One in-plane orientation for every reader, so DICOM and NIfTI of the same data give the same slices.

Directions are in DICOM's patient frame, LPS (+x left, +y posterior, +z superior). A slice's plane is
named by the dominant axis of its normal. The canonical display is the radiological one DICOM viewers
show: axial rows run anterior->posterior and columns right->left; coronal rows superior->inferior and
columns right->left; sagittal rows superior->inferior and columns anterior->posterior. Readers only
transpose and flip (no resampling), then order slices by position along the canonical normal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# plane -> (axis, sign) that array columns (right) and rows (down) should follow
_TARGETS = {
    "axial": ((0, 1), (1, 1)),
    "coronal": ((0, 1), (2, -1)),
    "sagittal": ((1, 1), (2, -1)),
}
_PLANE_OF_NORMAL_AXIS = {0: "sagittal", 1: "coronal", 2: "axial"}


@dataclass(frozen=True)
class InPlane:
    """How to turn stored slices into canonical ones: transpose first, then flips."""

    plane: str
    transpose: bool
    flip_rows: bool
    flip_cols: bool
    normal: tuple[float, float, float]  # unit normal of the canonical slice (right x down), LPS
    right: tuple[float, float, float] | None = None  # LPS direction of increasing column index, canonical
    down: tuple[float, float, float] | None = None  # LPS direction of increasing row index, canonical

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Canonicalize the last two axes of `array` (a view where possible)."""
        if self.transpose:
            array = np.swapaxes(array, -1, -2)
        if self.flip_rows:
            array = array[..., ::-1, :]
        if self.flip_cols:
            array = array[..., :, ::-1]
        return array

    def b0_direction(self) -> tuple[float, float, float] | None:
        """The main field (LPS z, a closed-bore scanner's head-foot axis) in canonical slice
        coordinates (x columns, y rows, n normal); None when the orientation is unknown."""
        if self.right is None or self.down is None:
            return None
        return (self.right[2] + 0.0, self.down[2] + 0.0, self.normal[2] + 0.0)

    def spacing(self, row_spacing: float, col_spacing: float) -> tuple[float, float]:
        """(row, column) pixel spacing after the transform."""
        return (col_spacing, row_spacing) if self.transpose else (row_spacing, col_spacing)


IDENTITY = InPlane("unknown", False, False, False, (0.0, 0.0, 1.0))


def canonical_inplane(right: np.ndarray, down: np.ndarray) -> InPlane:
    """The transform for slices whose columns run along `right` and rows along `down` (LPS vectors)."""
    right = np.asarray(right, dtype=float)
    down = np.asarray(down, dtype=float)
    normal = np.cross(right, down)
    if not np.all(np.isfinite(normal)) or np.linalg.norm(normal) < 1e-6:
        return IDENTITY
    plane = _PLANE_OF_NORMAL_AXIS[int(np.argmax(np.abs(normal)))]
    (right_axis, right_sign), (down_axis, down_sign) = _TARGETS[plane]
    transpose = int(np.argmax(np.abs(right))) != right_axis
    if transpose:
        right, down = down, right
    flip_cols = np.sign(right[right_axis]) != right_sign
    flip_rows = np.sign(down[down_axis]) != down_sign
    new_right = -right if flip_cols else right
    new_down = -down if flip_rows else down
    new_normal = np.cross(new_right, new_down)
    new_normal = new_normal / np.linalg.norm(new_normal)
    unit = lambda v: tuple(float(x) for x in v / np.linalg.norm(v))  # noqa: E731
    return InPlane(plane, bool(transpose), bool(flip_rows), bool(flip_cols), unit(new_normal), unit(new_right), unit(new_down))  # type: ignore[arg-type]
