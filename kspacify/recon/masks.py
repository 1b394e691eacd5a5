"""1D phase-encoding undersampling masks with an exact auto-calibration (ACS) block.

Why not fastMRI's mask functions: they size the fully sampled centre as a *fraction* of the width
and draw the outer lines with a probability, so the number of sampled lines (and thus the real
acceleration) varies. The benchmark reported here needs an exact centre block (16, 26 or 31 lines on
256) and an acceleration that counts the centre honestly, so:

* total sampled lines = round_half_up(W / R), the ACS block included;
* the ACS block is `acs` contiguous lines around the DC line;
* the remaining `total - acs` lines are picked among the non-ACS lines by the mask's rule.

Geometry. Masks act on the last axis of a (..., H, W) k-space (columns = phase encoding, as fastMRI
masks the last spatial axis). In the project's centred FFT (`kspacify.kspace.fft2c`, fftshifted) the
DC column is index `W // 2` for even and odd W alike. The ACS block is
`[W // 2 - acs // 2, W // 2 - acs // 2 + acs)`: for odd `acs` it is symmetric about the DC line, for
even `acs` it has one more line on the negative-frequency (lower index) side, e.g. W=256, acs=16 ->
columns 120..135; odd W, e.g. W=255, acs=16 -> columns 119..134 around DC 127. For even W, and for
odd `acs`, this is the start fastMRI uses, `(W - acs + 1) // 2`; for odd W with even `acs` fastMRI
puts the extra line on the other side, we keep one rule. The DC line is always sampled (acs >= 1).

Randomness is always explicit: pass an int seed or a `numpy.random.Generator`; the global numpy RNG
is never touched. Adding a mask type = one subclass of `MaskFunction` + one entry in `MASKS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from kspacify.errors import UsageError

__all__ = [
    "MASKS",
    "EquispacedMask",
    "MaskFunction",
    "RandomMask",
    "UndersamplingMask",
    "acs_slice",
    "apply_mask",
    "make_mask",
    "num_sampled_lines",
    "sample_mask",
]


def _as_rng(rng_or_seed: int | np.random.Generator) -> np.random.Generator:
    """A Generator from a seed or a Generator; refuses None so no draw is ever unseeded."""
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    if isinstance(rng_or_seed, (int, np.integer)) and not isinstance(rng_or_seed, bool):
        return np.random.default_rng(int(rng_or_seed))
    raise TypeError(
        f"rng_or_seed must be an int seed or a numpy.random.Generator, got {type(rng_or_seed).__name__}"
    )


def num_sampled_lines(width: int, acceleration: float) -> int:
    """round(width / R), halves rounded up (not Python's banker's rounding), ACS lines included."""
    return int(math.floor(width / acceleration + 0.5))


def acs_slice(width: int, acs: int) -> slice:
    """Columns of the fully sampled centre block; always contains the DC column `width // 2`."""
    start = width // 2 - acs // 2
    return slice(start, start + acs)


@dataclass(frozen=True)
class UndersamplingMask:
    """A drawn mask and what it really is.

    `mask`: bool (W,), True = sampled column. `effective_acceleration` = W / num_sampled, which is
    what the benchmark reports (it can differ slightly from the nominal `acceleration` by rounding).
    """

    name: str
    mask: np.ndarray
    acceleration: float
    acs: int

    @property
    def width(self) -> int:
        return int(self.mask.shape[0])

    @property
    def num_sampled(self) -> int:
        return int(self.mask.sum())

    @property
    def effective_acceleration(self) -> float:
        return self.width / self.num_sampled

    @property
    def acs_columns(self) -> slice:
        return acs_slice(self.width, self.acs)

    def settings(self) -> dict[str, Any]:
        """JSON-able provenance of the mask (not the drawn lines)."""
        return {
            "name": self.name,
            "width": self.width,
            "acceleration": self.acceleration,
            "acs": self.acs,
            "num_sampled": self.num_sampled,
            "effective_acceleration": self.effective_acceleration,
        }


class MaskFunction:
    """Base class: validates (R, acs) against a width, places the ACS block, delegates the rest.

    Subclasses set `name` and implement `_pick_outer(num_candidates, count, rng)`, returning `count`
    distinct indices into the sorted array of non-ACS columns.
    """

    name: ClassVar[str] = ""

    def __init__(self, acceleration: float, acs: int) -> None:
        if isinstance(acs, bool) or not isinstance(acs, (int, np.integer)):
            raise TypeError(f"acs must be an int number of centre lines, got {acs!r}")
        if not (isinstance(acceleration, (int, float, np.integer, np.floating)) and math.isfinite(acceleration)):
            raise TypeError(f"acceleration must be a finite number, got {acceleration!r}")
        if acceleration < 1:
            raise ValueError(f"acceleration R must be >= 1, got {acceleration}")
        if acs < 1:
            raise ValueError(f"acs must be >= 1 (the DC line is always sampled), got {acs}")
        self.acceleration = float(acceleration)
        self.acs = int(acs)

    def check(self, width: int) -> int:
        """Number of sampled lines for this width, or a ValueError saying why it cannot be done."""
        if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
            raise ValueError(f"width must be a positive int, got {width!r}")
        total = num_sampled_lines(int(width), self.acceleration)
        if self.acs > width:
            raise ValueError(f"acs={self.acs} centre lines do not fit in width {width}")
        if self.acs > total:
            raise ValueError(
                f"acs={self.acs} centre lines exceed the {total} lines that R={self.acceleration:g} "
                f"allows on width {width} (round({width}/{self.acceleration:g}) = {total}, ACS "
                "included); lower acs or R"
            )
        return total

    def __call__(self, width: int, rng_or_seed: int | np.random.Generator) -> UndersamplingMask:
        total = self.check(width)
        rng = _as_rng(rng_or_seed)
        mask = np.zeros(int(width), dtype=bool)
        mask[acs_slice(int(width), self.acs)] = True
        candidates = np.flatnonzero(~mask)
        count = total - self.acs
        if count > 0:
            picked = np.asarray(self._pick_outer(candidates.size, count, rng), dtype=np.int64)
            if picked.size != count or np.unique(picked).size != count:
                raise AssertionError(f"{type(self).__name__} picked {picked.size} lines, wanted {count} distinct")
            mask[candidates[picked]] = True
        return UndersamplingMask(self.name, mask, self.acceleration, self.acs)

    def _pick_outer(self, num_candidates: int, count: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


class EquispacedMask(MaskFunction):
    """Outer lines evenly spaced over the non-ACS columns, with a seeded random offset.

    Spacing is taken over the non-ACS columns (step = candidates / count, fractional) rather than the
    full width, so the ACS block never swallows lines and the count stays exact. The step is >= 1, so
    the floor of offset + k * step gives distinct indices; offset is uniform in [0, step).
    """

    name = "equispaced"

    def _pick_outer(self, num_candidates: int, count: int, rng: np.random.Generator) -> np.ndarray:
        step = num_candidates / count
        offset = rng.uniform(0.0, step)
        picked = np.floor(offset + step * np.arange(count)).astype(np.int64)
        return np.minimum(picked, num_candidates - 1)  # guards float round-up at the last index


class RandomMask(MaskFunction):
    """Outer lines drawn uniformly without replacement among the non-ACS columns."""

    name = "random"

    def _pick_outer(self, num_candidates: int, count: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(num_candidates, size=count, replace=False)


MASKS: dict[str, type[MaskFunction]] = {cls.name: cls for cls in (EquispacedMask, RandomMask)}


def _mask_class(name: str) -> type[MaskFunction]:
    try:
        return MASKS[name]
    except KeyError:
        raise UsageError(f"unknown mask {name!r}; known: {', '.join(sorted(MASKS))}") from None


def sample_mask(
    name: str, width: int, acceleration: float, acs: int, rng_or_seed: int | np.random.Generator
) -> UndersamplingMask:
    """Draw a mask by registry name; the result carries the mask and its effective acceleration."""
    return _mask_class(name)(acceleration, acs)(width, rng_or_seed)


def make_mask(
    name: str, width: int, acceleration: float, acs: int, rng_or_seed: int | np.random.Generator
) -> np.ndarray:
    """Bool (W,) mask by registry name (see `sample_mask` for the effective acceleration)."""
    return sample_mask(name, width, acceleration, acs, rng_or_seed).mask


def apply_mask(kspace: Any, mask: Any) -> Any:
    """Zero the unsampled columns of a (..., H, W) k-space (numpy array or torch tensor).

    `mask` is (W,) or anything broadcastable against (..., 1, W); a (W,) mask is applied per column.
    """
    if type(kspace).__module__.startswith("torch"):
        import torch

        m = torch.as_tensor(mask, device=kspace.device).to(torch.bool)
        if m.ndim == 1:
            m = m.reshape(1, -1)
        return kspace * m
    m = np.asarray(mask, dtype=bool)  # type: ignore[assignment]
    if m.ndim == 1:
        m = m.reshape(1, -1)
    return kspace * m
