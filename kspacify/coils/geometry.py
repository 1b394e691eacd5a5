"""Where the object is, in millimetres, so that a coil array can be placed around it.

Coordinates are the slices' own, as written out: x along the columns, y along the rows, n along
the slice normal, with the origin at the centre of the volume (the resize centres the field of
view, so the output grid shares it). The main field B0 points along `b0` in these coordinates: the
acquisition's own direction where the source records it, else the head-foot axis of the plane
(axial: n; coronal and sagittal: the rows); head and body arrays wrap around that axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kspacify.acquisition import Acquisition

OBJECT_THRESHOLD = 0.1  # of the normalization scale: darker voxels are background for the extent
_MAX_POINTS = 4096


@dataclass(frozen=True)
class Body:
    """The imaged object: a sample of its voxel positions (mm) and the B0 direction (unit)."""

    points: np.ndarray  # (Q, 3) float64, slice coordinates x, y, n
    b0: np.ndarray  # (3,)

    def frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(axis, e1, e2): the B0 axis and a right-handed transverse basis (e1 x e2 = axis)."""
        return transverse_basis(self.b0)


def transverse_basis(b0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(b0, e1, e2) with e1 the column axis (else the row axis) made orthogonal to b0, e2 = b0 x e1."""
    axis = np.asarray(b0, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    for candidate in (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])):
        e1 = candidate - axis * np.dot(candidate, axis)
        if np.linalg.norm(e1) > 0.3:
            break
    e1 /= np.linalg.norm(e1)
    return axis, e1, np.cross(axis, e1)


def b0_direction(acquisition: Acquisition, plane: str | None) -> np.ndarray:
    """B0 in slice coordinates: the recorded direction, else the plane's head-foot axis."""
    if acquisition.b0_direction is not None:
        return np.asarray(acquisition.b0_direction, dtype=np.float64)
    if plane in ("coronal", "sagittal"):
        return np.array([0.0, 1.0, 0.0])
    return np.array([0.0, 0.0, 1.0])


def slice_positions(slices: int, slice_step_mm: float) -> np.ndarray:
    """n (mm) of each slice, the stack centred on 0."""
    step = float(slice_step_mm) if slice_step_mm and np.isfinite(slice_step_mm) and slice_step_mm > 0 else 1.0
    return (np.arange(slices) - (slices - 1) / 2.0) * step


def body_from_volume(
    data: np.ndarray, spacing: tuple[float, float, float], scale: float, b0: np.ndarray
) -> Body:
    """A sample of the object's voxels from the loaded (unnormalized) volume: strided so that at most
    a few thousand positions remain, voxels above OBJECT_THRESHOLD x scale; the whole stack when
    none is (a blank volume still gets an array around its field of view)."""
    slices, rows, cols = data.shape
    step = max(1, int(np.ceil(np.sqrt(rows * cols * slices / (4 * _MAX_POINTS)))))
    slice_step = max(1, int(np.ceil(slices / max(1, _MAX_POINTS // 16))))
    sample = data[::slice_step, ::step, ::step]
    index = np.argwhere(sample > OBJECT_THRESHOLD * scale)
    if len(index) == 0:
        index = np.argwhere(np.ones(sample.shape, dtype=bool))
    if len(index) > _MAX_POINTS:
        index = index[:: int(np.ceil(len(index) / _MAX_POINTS))]
    k = index[:, 0] * slice_step
    r = index[:, 1] * step
    c = index[:, 2] * step
    dz, dy, dx = (float(s) if s and np.isfinite(s) and s > 0 else 1.0 for s in spacing)
    points = np.stack(
        [(c - (cols - 1) / 2.0) * dx, (r - (rows - 1) / 2.0) * dy, (k - (slices - 1) / 2.0) * dz], axis=1
    )
    return Body(points.astype(np.float64), np.asarray(b0, dtype=np.float64) / np.linalg.norm(b0))


def cross_section(body: Body) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The object around the B0 axis: (centre (3,), axial positions of the points (Q,),
    transverse coordinates (Q, 2) in the (e1, e2) basis relative to the centre, (axis, e1, e2))."""
    axis, e1, e2 = body.frame()
    along = body.points @ axis
    transverse = np.stack([body.points @ e1, body.points @ e2], axis=1)
    middle = 0.5 * (transverse.min(axis=0) + transverse.max(axis=0))
    centre = middle[0] * e1 + middle[1] * e2 + 0.5 * (along.min() + along.max()) * axis
    return centre, along - centre @ axis, transverse - middle, np.stack([axis, e1, e2])


def tilted(normals: np.ndarray, rng: np.random.Generator, degrees: float) -> np.ndarray:
    """Unit normals (C, 3) each turned by a random angle of about `degrees` (Gaussian, per axis)."""
    if degrees <= 0:
        return normals
    turned = normals + np.radians(degrees) * rng.standard_normal(normals.shape)
    return turned / np.linalg.norm(turned, axis=1, keepdims=True)


def spread_counts(total: int, groups: int) -> list[int]:
    """`total` items in `groups` groups as even as can be (the first ones one larger)."""
    return [total // groups + (1 if j < total % groups else 0) for j in range(groups)]
