"""Training losses. SSIM here is `kspacify.metrics.ssim_map`, the same formula the evaluation uses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kspacify.metrics import SSIM_K1, SSIM_K2, SSIM_WIN, ssim_map

__all__ = ["SSIMLoss"]


class SSIMLoss(nn.Module):
    """1 - SSIM of magnitude images (B, H, W), differentiable.

    Same 7x7 uniform window, K1/K2 and sample covariance as `kspacify.metrics.ssim`; the data range
    is per sample: `data_range` (B,) if given (e.g. the max of the whole target volume, as the
    evaluation uses), else each target slice's max.
    """

    def __init__(self, win_size: int = SSIM_WIN, k1: float = SSIM_K1, k2: float = SSIM_K2) -> None:
        super().__init__()
        if win_size % 2 != 1 or win_size < 3:
            raise ValueError(f"win_size must be odd and >= 3, got {win_size}")
        self.win_size, self.k1, self.k2 = win_size, k1, k2

    def _local_mean(self, a: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(a, kernel_size=self.win_size, stride=1)  # valid windows only

    def forward(self, pred: torch.Tensor, target: torch.Tensor, data_range: torch.Tensor | None = None) -> torch.Tensor:
        if pred.shape != target.shape or pred.ndim != 3:
            raise ValueError(f"expected equal (B, H, W) shapes, got {tuple(pred.shape)} and {tuple(target.shape)}")
        x, y = pred.unsqueeze(1), target.unsqueeze(1)
        if data_range is None:
            data_range = target.detach().amax(dim=(-2, -1))
        data_range = torch.as_tensor(data_range, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        smap = ssim_map(x, y, data_range, self._local_mean, self.win_size, self.k1, self.k2)
        return 1.0 - smap.mean()
