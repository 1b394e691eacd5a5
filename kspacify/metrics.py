"""Reconstruction metrics computed the way fastMRI's evaluation computes them.

All functions take magnitude volumes (slices, H, W) (a single (H, W) slice is treated as a volume of
one) and work in float64. The conventions matter because numbers are compared with published ones:

* `data_range` (maxval) defaults to the maximum of the *ground-truth volume*, not per slice and not
  the dtype range;
* PSNR uses the MSE over the whole volume;
* SSIM is the mean over slices of skimage's default `structural_similarity` (7x7 uniform window,
  K1=0.01, K2=0.03, sample covariance N/(N-1), averaged over the region where the window fits).

The SSIM formula lives once, in `ssim_map`, written only with array arithmetic so the same code
serves numpy here and torch in `kspacify.recon.losses.SSIMLoss` (each backend passes its own local
mean filter).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy.ndimage import uniform_filter

__all__ = ["SSIM_K1", "SSIM_K2", "SSIM_WIN", "evaluate", "nmse", "nrmse", "psnr", "ssim", "ssim_map"]

SSIM_WIN = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def ssim_map(
    x: Any,
    y: Any,
    data_range: Any,
    local_mean: Callable[[Any], Any],
    win_size: int = SSIM_WIN,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
) -> Any:
    """Per-pixel SSIM (Wang et al. 2004) with skimage's sample-covariance correction.

    `local_mean(a)` must return the window mean of `a` over the valid region (where the whole
    win_size x win_size window lies inside the image); the result has that shape. `data_range` is a
    scalar or anything broadcastable against it (e.g. (B, 1, 1, 1) in torch).
    """
    n = win_size * win_size
    cov_norm = n / (n - 1)
    ux, uy = local_mean(x), local_mean(y)
    vx = cov_norm * (local_mean(x * x) - ux * ux)
    vy = cov_norm * (local_mean(y * y) - uy * uy)
    vxy = cov_norm * (local_mean(x * y) - ux * uy)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    num = (2 * ux * uy + c1) * (2 * vxy + c2)
    den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
    return num / den


def _volumes(gt: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as float64 (slices, H, W) arrays of the same shape; complex input is refused."""
    a, b = np.asarray(gt), np.asarray(pred)
    if np.iscomplexobj(a) or np.iscomplexobj(b):
        raise TypeError("metrics take magnitude images; pass np.abs(...) of complex data")
    if a.shape != b.shape:
        raise ValueError(f"gt and pred shapes differ: {a.shape} vs {b.shape}")
    if a.ndim == 2:
        a, b = a[None], b[None]
    if a.ndim != 3:
        raise ValueError(f"expected a (slices, H, W) volume or an (H, W) slice, got shape {a.shape}")
    return a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)


def _maxval(gt: np.ndarray, maxval: float | None) -> float:
    return float(gt.max()) if maxval is None else float(maxval)


def nmse(gt: Any, pred: Any) -> float:
    """Normalized MSE of the volume, ||gt - pred||^2 / ||gt||^2 (Frobenius norms over all voxels)."""
    a, b = _volumes(gt, pred)
    return float(np.sum((a - b) ** 2) / np.sum(a * a))


def nrmse(gt: Any, pred: Any) -> float:
    """Normalized RMSE = sqrt(nmse) = ||gt - pred|| / ||gt|| (Frobenius, whole volume).

    This is the Euclidean-norm-normalized form the paper reports (skimage's
    `normalized_root_mse(..., normalization="euclidean")`), not RMSE / range or RMSE / mean.
    """
    return float(np.sqrt(nmse(gt, pred)))


def psnr(gt: Any, pred: Any, maxval: float | None = None) -> float:
    """10 log10(maxval^2 / MSE) over the volume; maxval defaults to gt.max(). inf if pred == gt."""
    a, b = _volumes(gt, pred)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(_maxval(a, maxval) ** 2 / mse))


def _np_local_mean(win_size: int) -> Callable[[np.ndarray], np.ndarray]:
    pad = (win_size - 1) // 2

    def local_mean(a: np.ndarray) -> np.ndarray:
        # uniform_filter then crop = mean over valid windows (border mode never reaches them);
        # the same filter skimage uses, so rounding matches too.
        return uniform_filter(a, size=(1, win_size, win_size))[:, pad : a.shape[1] - pad, pad : a.shape[2] - pad]

    return local_mean


def ssim(gt: Any, pred: Any, maxval: float | None = None, win_size: int = SSIM_WIN) -> float:
    """Mean over slices of per-slice SSIM, data_range = maxval (default: gt volume max)."""
    a, b = _volumes(gt, pred)
    if win_size % 2 != 1 or win_size < 3:
        raise ValueError(f"win_size must be odd and >= 3, got {win_size}")
    if min(a.shape[1:]) < win_size:
        raise ValueError(f"slices of {a.shape[1:]} are smaller than the {win_size}x{win_size} SSIM window")
    smap = ssim_map(a, b, _maxval(a, maxval), _np_local_mean(win_size), win_size)
    return float(np.mean(smap.mean(axis=(1, 2))))


def evaluate(gt: Any, pred: Any, maxval: float | None = None) -> dict[str, float]:
    """All four metrics of one volume, keyed by name."""
    return {
        "nmse": nmse(gt, pred),
        "nrmse": nrmse(gt, pred),
        "psnr": psnr(gt, pred, maxval),
        "ssim": ssim(gt, pred, maxval),
    }
