"""The low-resolution diffusion grid: where a slice is diffused, and the pairs on it.

The network diffuses at its trained size; a larger slice is area-averaged down to that grid, and a
training pair is built the same way (`to_diffusion_grid`), so the network sees at training exactly
what it sees at sampling. Used by `kspacify.phase.sbdm` (sampling) and `kspacify.sbdm.train`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def diffusion_grid(height: int, width: int, size: int, multiple: int) -> tuple[int, int]:
    """The grid a (height, width) slice is diffused on: the longer side becomes `size`, the other
    keeps the aspect ratio, rounded to a multiple the network accepts."""
    if height == width:
        return size, size
    scale = size / max(height, width)
    return tuple(max(multiple, round(n * scale / multiple) * multiple) for n in (height, width))  # type: ignore[return-value]


def residual_noise_gain(grid: tuple[int, int], height: int, width: int) -> float:
    """The share of the receiver noise sigma that phase sampled on a coarser `grid` and upsampled to
    (height, width) does not already carry: sqrt(1 - cells / pixels); 1 on a grid no coarser than
    the slice (there `background=noise` is a choice over the network's own noise, taken whole).

    A grid cell is the area average of (height x width) / cells pixels, so its phase keeps the
    pixels' complex noise at variance sigma^2 x cells / pixels, and a model trained on such targets
    learns that noise. Adding the full sigma on top counts it twice: on the 128 x 128 oracle
    (real phase on the grid, docs/phase-methods.md) gradient W1 is 0.044 with the full sigma and
    0.008 with this share (0.866), against a floor of 0.007. On 32 x 32 it is 0.992."""
    cells, pixels = grid[0] * grid[1], height * width
    return float((1.0 - cells / pixels) ** 0.5) if cells < pixels else 1.0


def to_diffusion_grid(
    magnitude: torch.Tensor, grid: tuple[int, int], phase: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Magnitude (B, 1, H, W) -> (B, 1, *grid) by area averaging; with `phase` (B, H, W) also the
    target unit phasor (B, 2, *grid): the area average of magnitude x exp(i phase), normalized
    (the pair a low-resolution model is trained on)."""
    import torch
    import torch.nn.functional as F

    def area(x: torch.Tensor) -> torch.Tensor:
        return x if tuple(x.shape[-2:]) == tuple(grid) else F.interpolate(x, size=grid, mode="area")

    coarse = area(magnitude)
    if phase is None:
        return coarse, None
    weighted = area(magnitude * torch.stack([torch.cos(phase), torch.sin(phase)], dim=1))
    norm = torch.linalg.vector_norm(weighted, dim=1, keepdim=True)
    return coarse, weighted / norm.clamp_min(1e-12)
