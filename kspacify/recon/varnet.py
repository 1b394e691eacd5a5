"""Single-coil end-to-end variational network (after Sriram et al., "End-to-End Variational Networks
for Accelerated MRI Reconstruction", MICCAI 2020), in plain PyTorch.

Each cascade updates the k-space estimate k as

    k <- k - eta_t * M (k - k0) - F( U_t( F^-1 k ) )

with M the sampling mask, k0 the measured (masked) k-space, eta_t a learned scalar (soft data
consistency) and U_t a U-Net giving a correction of the complex image (2 real channels, real and
imag), computed under per-sample, per-channel mean/std normalization and scaled back by the std.
The U-Net's last convolution starts at zero (as residual branches in Fixup or NCSN++), so an
untrained VarNet is exactly zero-filling (k = k0 passes every cascade unchanged) and training moves
it from there only where that lowers the loss: a VarNet that starts as noise around the zero-filled
image can end worse than the inverse FFT it was given (the benchmark's first version did). With one coil the coil-sensitivity network and the
sensitivity expand/reduce of the multi-coil model are the identity, so they are left out.
F = `kspacify.kspace.fft2c` (centred orthonormal), the project's one FFT convention.

Tensors: k-space is complex64 (B, H, W) (complex128 / float64 models work too), the mask is bool
(or 0/1) broadcastable to (B, H, W): normally (B, 1, W), or (W,) for one mask for the whole batch.
The output is the magnitude image (B, H, W). Any H, W is accepted: inside each U-Net the image is
zero-padded (after normalization, so zero = the mean) to a multiple of 2**pools and cropped back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kspacify.errors import UsageError
from kspacify.kspace import fft2c, ifft2c

__all__ = ["VARNET_PRESETS", "NormUNet", "UNet", "VarNet", "VarNetCascade", "VarNetConfig", "soft_data_consistency"]


@dataclass(frozen=True)
class VarNetConfig:
    """Architecture of a single-coil VarNet.

    Defaults are the `paper` preset (fastMRI's VarNet defaults: 12 cascades, 18 channels, 4 pools);
    `small` (4 / 8 / 2) trains on a CPU.
    """

    num_cascades: int = 12
    chans: int = 18
    pools: int = 4
    drop_prob: float = 0.0
    eta_init: float = 1.0

    def __post_init__(self) -> None:
        if self.num_cascades < 1 or self.chans < 1 or self.pools < 0:
            raise ValueError(f"invalid VarNet config {self}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> VarNetConfig:
        try:
            base = VARNET_PRESETS[name]
        except KeyError:
            raise UsageError(f"unknown VarNet preset {name!r}; known: {', '.join(VARNET_PRESETS)}") from None
        return replace(base, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


VARNET_PRESETS: dict[str, VarNetConfig] = {
    "paper": VarNetConfig(num_cascades=12, chans=18, pools=4),
    "small": VarNetConfig(num_cascades=4, chans=8, pools=2),
}


def _conv_block(in_chans: int, out_chans: int, drop_prob: float) -> nn.Sequential:
    """Two (3x3 conv, instance norm, leaky ReLU, dropout) layers; norm makes bias redundant."""
    layers: list[nn.Module] = []
    for c_in in (in_chans, out_chans):
        layers += [
            nn.Conv2d(c_in, out_chans, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Dropout2d(drop_prob),
        ]
    return nn.Sequential(*layers)


def _up_block(in_chans: int, out_chans: int) -> nn.Sequential:
    """2x upsampling by transposed convolution, halving the channels."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_chans, out_chans, kernel_size=2, stride=2, bias=False),
        nn.InstanceNorm2d(out_chans),
        nn.LeakyReLU(0.2, inplace=True),
    )


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015): `pools` 2x average-pool levels, channels doubling per level.

    H and W must be multiples of 2**pools (NormUNet pads to guarantee it).
    """

    def __init__(self, in_chans: int, out_chans: int, chans: int, pools: int, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.pools = pools
        self.down = nn.ModuleList()
        c = chans
        self.down.append(_conv_block(in_chans, c, drop_prob))
        for _ in range(pools):
            self.down.append(_conv_block(c, 2 * c, drop_prob))
            c *= 2
        # Decoder, deepest level first: upsample c -> c/2, concatenate the skip (c/2), fuse c -> c/2.
        self.up = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for _ in range(pools):
            self.up.append(_up_block(c, c // 2))
            self.fuse.append(_conv_block(c, c // 2, drop_prob))
            c //= 2
        self.head = nn.Conv2d(c, out_chans, kernel_size=1)
        nn.init.zeros_(self.head.weight)  # a zero correction at the start: the VarNet begins as zero-filling
        nn.init.zeros_(self.head.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        x = self.down[0](x)
        for block in self.down[1:]:
            skips.append(x)
            x = block(F.avg_pool2d(x, kernel_size=2))
        for up, fuse in zip(self.up, self.fuse):
            x = fuse(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


class NormUNet(nn.Module):
    """A correction of a complex image, from a U-Net on its (real, imag) channels under per-sample
    normalization.

    k-space scales vary by orders of magnitude between scanners and between real and synthetic
    data; normalizing each sample's channels to zero mean / unit std keeps the U-Net in its trained
    range, as in E2E-VarNet. The output is a correction, so it is scaled back by the std only (a
    zero U-Net output is a zero correction).
    """

    def __init__(self, chans: int, pools: int, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.multiple = 2**pools
        self.unet = UNet(2, 2, chans, pools, drop_prob)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        b, h, w = image.shape
        x = torch.view_as_real(image).permute(0, 3, 1, 2)  # (B, 2, H, W)
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True)
        std = torch.where(std > 0, std, torch.ones_like(std))  # a constant channel: no scaling
        x = (x - mean) / std
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        top, left = ph // 2, pw // 2
        x = F.pad(x, (left, pw - left, top, ph - top))
        x = self.unet(x)[:, :, top : top + h, left : left + w]
        x = x * std
        return torch.view_as_complex(x.permute(0, 2, 3, 1).contiguous())


def soft_data_consistency(
    kspace: torch.Tensor, measured: torch.Tensor, mask: torch.Tensor, eta: torch.Tensor | float
) -> torch.Tensor:
    """k - eta * M (k - k0): pulls sampled lines toward the measurement; eta = 1 replaces them."""
    return kspace - eta * torch.where(mask, kspace - measured, torch.zeros((), dtype=kspace.dtype, device=kspace.device))


class VarNetCascade(nn.Module):
    """One unrolled iteration: soft data consistency with learned eta, minus a U-Net refinement."""

    def __init__(self, config: VarNetConfig) -> None:
        super().__init__()
        self.eta = nn.Parameter(torch.tensor(float(config.eta_init)))
        self.refine = NormUNet(config.chans, config.pools, config.drop_prob)

    def forward(self, kspace: torch.Tensor, measured: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        refinement = fft2c(self.refine(ifft2c(kspace)))
        return soft_data_consistency(kspace, measured, mask, self.eta) - refinement


class VarNet(nn.Module):
    """Single-coil VarNet: masked k-space (B, H, W) complex + mask -> magnitude image (B, H, W)."""

    def __init__(self, config: VarNetConfig | str = "small") -> None:
        super().__init__()
        self.config = VarNetConfig.preset(config) if isinstance(config, str) else config
        self.cascades = nn.ModuleList(VarNetCascade(self.config) for _ in range(self.config.num_cascades))

    def _inputs(self, masked_kspace: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not torch.is_complex(masked_kspace) or masked_kspace.ndim != 3:
            raise TypeError(
                "masked_kspace must be a complex (B, H, W) tensor; for a (B, H, W, 2) real tensor use "
                f"torch.view_as_complex; got {masked_kspace.dtype} {tuple(masked_kspace.shape)}"
            )
        real_dtype = self.cascades[0].eta.dtype
        kspace = masked_kspace.to(torch.complex128 if real_dtype == torch.float64 else torch.complex64)
        mask = torch.as_tensor(mask, device=kspace.device)
        if mask.ndim == 1:
            mask = mask.reshape(1, 1, -1)
        mask = mask.to(torch.bool)
        try:
            torch.broadcast_shapes(mask.shape, kspace.shape)
        except RuntimeError:
            raise ValueError(f"mask {tuple(mask.shape)} does not broadcast to k-space {tuple(kspace.shape)}") from None
        # Zero what the mask says was not measured, so k0 and M always agree.
        kspace = torch.where(mask, kspace, torch.zeros((), dtype=kspace.dtype, device=kspace.device))
        return kspace, mask

    def reconstruct_kspace(self, masked_kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The final k-space estimate, complex (B, H, W)."""
        measured, mask = self._inputs(masked_kspace, mask)
        kspace = measured
        for cascade in self.cascades:
            kspace = cascade(kspace, measured, mask)
        return kspace

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return ifft2c(self.reconstruct_kspace(masked_kspace, mask)).abs()
