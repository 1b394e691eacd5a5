"""pix2pix networks for phase synthesis: a U-Net generator and a PatchGAN discriminator.

Generator (pix2pix "unet_256"): `depth` stride-2 4x4 convolutions down (LeakyReLU 0.2, norm on all
but the outermost and innermost), the mirror of transposed convolutions up (ReLU, norm, dropout 0.5
on the `dropout_levels` innermost), each up level concatenated with its down twin (skip). With
depth 8 a 256x256 input reaches 1x1, as in pix2pix, so every output pixel sees the whole slice.
In: the magnitude (1 channel). Out: 2 channels (tanh), normalized to a unit phasor (cos, sin), the
representation of `kspacify.sbdm`: smooth across phase wraps, phase = atan2.

Noise: with `noise_channels` > 0 the generator also takes standard normal noise (B, noise_channels,
H, W), concatenated to the magnitude at the input and, as block means rescaled to unit variance
(1x1 at 256), to the innermost features. The training phase is largely random given the magnitude:
global terms (B0 direction, TE, shim, coil) and a noise-only background of uniform random phase. A
generator without noise regresses to its conditional median (the first `small` run: a flat phase),
and its discriminator wins on the background texture alone. The bottleneck latent lets it draw the
global terms, the full-resolution noise the background. The caller draws the noise
(`sample_noise`, from a numpy generator), so a seeded synthesis stays reproducible.

Discriminator (pix2pix "basic", n_layers 3): 4x4 convolutions with strides 2, 2, 2, 1, 1; each
output logit judges a 70x70 patch of the (magnitude, phasor) pair (`receptive_field` computes it).

Sizes are configs; `PRESETS` holds the pix2pix sizes (`unet_256`) and the CPU-sized `small`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PRESETS",
    "Discriminator",
    "DiscriminatorConfig",
    "GanConfig",
    "Generator",
    "GeneratorConfig",
    "receptive_field",
    "sample_noise",
    "unit_phasor",
]

NORMS = ("batch", "instance")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


@dataclass(frozen=True)
class GeneratorConfig:
    """U-Net sizes: `ngf` channels at the top, doubling per level up to `ngf * max_mult`."""

    in_channels: int = 1
    out_channels: int = 2
    ngf: int = 64
    depth: int = 8  # downsamplings; input sides must be multiples of 2**depth
    max_mult: int = 8
    norm: str = "batch"
    dropout: float = 0.5
    dropout_levels: int = 3  # innermost up levels (below the bottleneck's) with dropout, as pix2pix
    noise_channels: int = 0  # Gaussian noise channels (input + bottleneck); 0: pix2pix's deterministic U-Net

    def __post_init__(self) -> None:
        if self.depth < 2 or self.ngf < 1 or self.max_mult < 1 or self.noise_channels < 0:
            raise ValueError("generator: depth must be >= 2, ngf and max_mult >= 1, noise_channels >= 0")
        if self.norm not in NORMS:
            raise ValueError(f"generator: norm must be one of {NORMS}, got {self.norm!r}")

    @property
    def multiple(self) -> int:
        return 2**self.depth

    def channels(self) -> list[int]:
        """Channels after each down level (outermost first)."""
        return [self.ngf * min(2**i, self.max_mult) for i in range(self.depth)]

    def noise_shape(self, batch: int, height: int, width: int) -> tuple[int, int, int, int]:
        """Shape of the noise for a (batch, 1, height, width) magnitude."""
        return (batch, self.noise_channels, height, width)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """PatchGAN sizes: `n_layers` stride-2 convolutions after the first (3: the 70x70 PatchGAN)."""

    in_channels: int = 3  # magnitude + phasor
    ndf: int = 64
    n_layers: int = 3
    norm: str = "batch"

    def __post_init__(self) -> None:
        if self.n_layers < 1 or self.ndf < 1:
            raise ValueError("discriminator: n_layers and ndf must be >= 1")
        if self.norm not in NORMS:
            raise ValueError(f"discriminator: norm must be one of {NORMS}, got {self.norm!r}")


@dataclass(frozen=True)
class GanConfig:
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GanConfig:
        return cls(GeneratorConfig(**data["generator"]), DiscriminatorConfig(**data["discriminator"]))


PRESETS: dict[str, GanConfig] = {
    # pix2pix's unet_256 + 70x70 PatchGAN (54 M + 2.8 M parameters), for a GPU; with a bottleneck latent
    "unet_256": GanConfig(GeneratorConfig(ngf=64, noise_channels=8), DiscriminatorConfig(ndf=64)),
    # same depth and receptive fields, generator 1/8 as wide (~1/64 of its FLOPs): trains on a shared CPU
    "small": GanConfig(GeneratorConfig(ngf=8, max_mult=8, noise_channels=8), DiscriminatorConfig(ndf=16)),
}


def unit_phasor(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """(B, 2, H, W) -> unit length along dim 1 (eps keeps the gradient finite near 0). The squared norm
    is clamped before the square root: hypot's gradient is NaN at an exact (0, 0), which a small
    generator does output. Not linalg.vector_norm over dim 1: that took half the generator's CPU time
    (measured, torch 2.13)."""
    return x / (x[:, :1] ** 2 + x[:, 1:] ** 2).clamp_min(eps**2).sqrt()


def sample_noise(config: GeneratorConfig, magnitude: torch.Tensor, rng: np.random.Generator) -> torch.Tensor | None:
    """Standard normal noise for a (B, 1, H, W) magnitude, from a numpy generator (the
    caller's seeded stream, so synthesis and resumed training draw the same); None without noise."""
    if not config.noise_channels:
        return None
    shape = config.noise_shape(magnitude.shape[0], *magnitude.shape[-2:])
    return torch.from_numpy(rng.standard_normal(shape, dtype=np.float32)).to(magnitude.device)


class Generator(nn.Module):
    """U-Net: magnitude (B, 1, H, W) [+ bottleneck noise] -> unit phasor (B, 2, H, W); H, W multiples
    of 2**depth."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        ch = config.channels()
        self.down = nn.ModuleList()
        for i in range(config.depth):
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            inner = i == config.depth - 1
            in_ch = config.in_channels + config.noise_channels if i == 0 else ch[i - 1]
            layers.append(nn.Conv2d(in_ch, ch[i], 4, 2, 1, bias=i == 0 or inner))
            if 0 < i < config.depth - 1:
                layers.append(_norm(config.norm, ch[i]))
            self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList()
        for i in reversed(range(config.depth)):
            inner = i == config.depth - 1
            in_ch = ch[i] + config.noise_channels if inner else 2 * ch[i]
            if i == 0:
                layers = [nn.ReLU(), nn.ConvTranspose2d(in_ch, config.out_channels, 4, 2, 1), nn.Tanh()]
            else:
                layers = [nn.ReLU(), nn.ConvTranspose2d(in_ch, ch[i - 1], 4, 2, 1, bias=False), _norm(config.norm, ch[i - 1])]
                # pix2pix: dropout on the `dropout_levels` up levels just below the innermost
                if not inner and i >= config.depth - 1 - config.dropout_levels and config.dropout > 0:
                    layers.append(nn.Dropout(config.dropout))
            self.up.append(nn.Sequential(*layers))

    def forward(self, magnitude: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """`noise` of shape `config.noise_shape(B, H, W)` is required when `config.noise_channels` > 0."""
        m = self.config.multiple
        if magnitude.dim() != 4 or magnitude.shape[-1] % m or magnitude.shape[-2] % m:
            raise ValueError(f"generator: expected (B, {self.config.in_channels}, H, W) with H, W multiples of {m}, "
                             f"got {tuple(magnitude.shape)}")  # fmt: skip
        expected = self.config.noise_shape(magnitude.shape[0], *magnitude.shape[-2:]) if self.config.noise_channels else None
        if (None if noise is None else tuple(noise.shape)) != expected:
            raise ValueError(f"generator: noise must be {'None' if expected is None else f'of shape {expected}'}, "
                             f"got {None if noise is None else tuple(noise.shape)}")  # fmt: skip
        skips = []
        x = magnitude if noise is None else torch.cat([magnitude, noise.to(magnitude)], dim=1)
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        skips.pop()  # the innermost output feeds the first up level directly
        if noise is not None:  # block means x block side: N(0, 1) again, one latent per bottleneck pixel
            x = torch.cat([x, F.avg_pool2d(noise.to(x), m) * m], dim=1)
        for layer in self.up:
            x = layer(x)
            if skips:
                x = torch.cat([skips.pop(), x], dim=1)
        return unit_phasor(x)


class Discriminator(nn.Module):
    """PatchGAN: (magnitude, phasor) (B, 3, H, W) -> logits (B, 1, h, w), one per patch."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        nf = config.ndf
        layers: list[nn.Module] = [nn.Conv2d(config.in_channels, nf, 4, 2, 1), nn.LeakyReLU(0.2)]
        for n in range(1, config.n_layers + 1):
            stride = 2 if n < config.n_layers else 1
            prev, nf = nf, config.ndf * min(2**n, 8)
            layers += [nn.Conv2d(prev, nf, 4, stride, 1, bias=False), _norm(config.norm, nf), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(nf, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.net(pair)


def receptive_field(model: nn.Module) -> int:
    """Receptive field (pixels) of one output of a stack of convolutions, from kernels and strides."""
    size, jump = 1, 1
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d):
            size += (layer.kernel_size[0] - 1) * jump
            jump *= layer.stride[0]
    return size
