"""Receive sensitivities of circular loops, by reciprocity from the Biot-Savart field.

The field of a circular loop of radius a carrying a unit current is the Biot-Savart line integral
around it; for a circle it has a closed form in complete elliptic integrals K(m), E(m) (Smythe,
Static and Dynamic Electricity; Simpson et al., NASA/TM-2001-210868). In the loop's own cylindrical
coordinates (rho from its axis, z along its normal), with alpha^2 = (a - rho)^2 + z^2,
beta^2 = (a + rho)^2 + z^2 and m = 1 - alpha^2 / beta^2:

    B_z   = [(a^2 - rho^2 - z^2) E(m) + alpha^2 K(m)] / (2 pi alpha^2 beta)
    B_rho = z [(a^2 + rho^2 + z^2) E(m) - alpha^2 K(m)] / (2 pi alpha^2 beta rho)

in units of mu0 I per mm (at the centre B_z = 1 / (2a), as it must be). It is exact, where a
polygon of line segments only approaches it (`tests/test_coils.py` integrates segments and checks).
Quasi-static: the wavelength in tissue is taken as long against the object (1.5 T and 3 T heads;
at 7 T the field's wave effects are not modelled).

Reciprocity (Hoult, Concepts Magn. Reson. 2000): a coil receives from a voxel in proportion to the
transverse field a unit current in it would make there. With B0 along `axis` and (e1, e2) a
right-handed transverse basis, the receive sensitivity is conj(B . e1 + i B . e2): its magnitude
falls off with distance from the loop, its phase winds around the loop's axis. Which sense it winds
in is a matter of convention (the sign of the gyromagnetic precession and of the Fourier transform);
this one is kept throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ellipe, ellipk


@dataclass(frozen=True)
class Loops:
    """Planar circular loops: centres (C, 3) mm, unit normals (C, 3), radii (C,) mm, in slice
    coordinates (x = columns, y = rows, n = slice normal)."""

    centres: np.ndarray
    normals: np.ndarray
    radii: np.ndarray

    def __len__(self) -> int:
        return len(self.radii)

    def to_json(self) -> dict[str, list]:
        return {
            "centres_mm": np.round(self.centres, 2).tolist(),
            "normals": np.round(self.normals, 4).tolist(),
            "radii_mm": np.round(self.radii, 2).tolist(),
        }


def loop_field(points: np.ndarray, loops: Loops) -> np.ndarray:
    """The field (C, ..., 3) of a unit current in each loop at `points` (..., 3) mm, float64."""
    shape = points.shape[:-1]
    p = points.reshape(1, -1, 3).astype(np.float64)
    relative = p - loops.centres[:, None, :]
    normal = loops.normals[:, None, :]
    z = np.einsum("cpk,cpk->cp", relative, normal)
    radial = relative - z[..., None] * normal
    rho = np.sqrt(np.einsum("cpk,cpk->cp", radial, radial))
    a = loops.radii[:, None]
    alpha2 = (a - rho) ** 2 + z**2
    beta2 = (a + rho) ** 2 + z**2
    beta = np.sqrt(beta2)
    alpha2 = np.maximum(alpha2, 1e-12 * a**2)  # on the wire itself the field is infinite
    m = np.clip(1.0 - alpha2 / beta2, 0.0, 1.0 - 1e-15)
    k, e = ellipk(m), ellipe(m)
    r2 = rho**2 + z**2
    common = 1.0 / (2.0 * np.pi * alpha2 * beta)
    b_z = common * ((a**2 - r2) * e + alpha2 * k)
    near_axis = rho < 1e-9 * a
    safe_rho2 = np.where(near_axis, 1.0, rho**2)
    b_rho_over_rho = np.where(near_axis, 0.0, common * z * ((a**2 + r2) * e - alpha2 * k) / safe_rho2)
    field = b_z[..., None] * normal + b_rho_over_rho[..., None] * radial
    return field.reshape((len(loops), *shape, 3))


def receive_sensitivity(field: np.ndarray, e1: np.ndarray, e2: np.ndarray) -> np.ndarray:
    """conj(B . e1 + i B . e2) of fields (..., 3): the complex receive sensitivity, complex128."""
    return field @ e1 - 1j * (field @ e2)


def normalized(sensitivities: np.ndarray) -> np.ndarray:
    """Maps (C, ...) divided by their root sum of squares over coils, so that sum |S_c|^2 = 1."""
    total = np.sqrt(np.sum(np.abs(sensitivities) ** 2, axis=0, keepdims=True))
    return sensitivities / np.maximum(total, np.finfo(np.float64).tiny)
