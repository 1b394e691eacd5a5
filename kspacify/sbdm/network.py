"""NCSN++-style conditional score network (after Song et al., "Score-Based Generative Modeling
through Stochastic Differential Equations", ICLR 2021), in plain PyTorch (no custom CUDA ops).

    score = ScoreNet(config)(x, sigma, magnitude)      # x: (B, 2, H, W) noisy phasor
                                                       # sigma: (B,) or scalar noise level
                                                       # magnitude: (B, 1, H, W) condition
                                                       # -> (B, 2, H, W), estimate of grad log p_sigma(x | magnitude)

Architecture (the `biggan` residual-block variant of NCSN++ without progressive growing):

* noise embedding: Gaussian Fourier features (fixed random frequencies, scale 16) of log(sigma),
  then Linear -> SiLU -> Linear to 4*nf; each residual block adds a per-block Linear projection of
  SiLU(embedding) after its first convolution;
* input: the noisy phasor (`in_channels`) concatenated with the magnitude (`cond_channels`) along
  channels -- the paper's conditioning -- then a 3x3 convolution to nf channels;
* down path: per level `num_res_blocks` BigGAN residual blocks (GroupNorm, SiLU, conv3x3, + noise
  embedding, GroupNorm, SiLU, dropout, conv3x3; skip through a 1x1 conv where the shape changes;
  sum scaled by 1/sqrt(2)), self-attention after each block at the resolutions in
  `attn_resolutions`, and a residual block with 2x average-pool downsampling between levels;
* middle: residual block, self-attention, residual block;
* up path: per level `num_res_blocks + 1` residual blocks, each taking the concatenation with the
  matching down-path activation (U-Net skip), attention as above, and a residual block with 2x
  nearest upsampling between levels (NCSN++ can use FIR resampling; plain resampling is used here);
* output: GroupNorm, SiLU, conv3x3 to `out_channels`, divided by sigma (NCSN++'s `scale_by_sigma`
  for the VE SDE), so the network body predicts a unit-scale quantity (-z for x = x0 + sigma z).

`parameterization="edm"` (EDM's preconditioning, Karras et al. 2022) reads the body's output F as a
denoiser instead: D = c_skip x + c_out F with c_skip = sigma_data^2 / (sigma^2 + sigma_data^2) and
c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2), returned as the score (D - x) / sigma^2. With
the default `eps` (-z prediction) the denoised estimate x - sigma F carries sigma times any error of F,
so at high noise the body must cancel the noise to a precision of 1/sigma; a small network does not,
leaks noise into the denoised phasor, and the sampler freezes it into random phase domains with
vortices between them (measured, docs/phase-methods.md). `edm` is trained with EDM's loss weight
(`sde.dsm_loss(..., weighting="edm")`).

`input_scaling=True` additionally divides the network input by sqrt(sigma^2 + sigma_data^2)
(EDM's c_in; sigma_data^2 = 0.5 for the unit phasor) so the body never sees values of size
sigma_max; off in the `paper` preset (the paper used NCSN++ as is), on in `small`.

The second convolution of each residual block and the attention output projection start at zero
(NCSN++'s init_scale = 0), so every block starts as a scaled identity.

Any H, W divisible by 2**(len(ch_mult) - 1) is accepted; attention is placed by level, computed at
construction from `image_size` and `attn_resolutions` (the resolution each level has at
`image_size`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kspacify.errors import UsageError
from kspacify.sbdm.sde import PHASOR_SIGMA_DATA

__all__ = [
    "SCORE_NET_PRESETS",
    "ScoreNet",
    "ScoreNetConfig",
    "count_flops",
    "count_parameters",
]

PARAMETERIZATIONS = ("eps", "edm")


@dataclass(frozen=True)
class ScoreNetConfig:
    """Size of an NCSN++-style conditional score network.

    Defaults are the `paper` preset (NCSN++ as in score_sde's deep-ish configs: nf 128,
    ch_mult (1, 2, 2, 2), 4 residual blocks per level, attention at the lowest resolution, 256x256).
    """

    nf: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 4
    attn_resolutions: tuple[int, ...] = (32,)
    dropout: float = 0.1
    in_channels: int = 2  # the diffused quantity: unit phasor (cos phi, sin phi)
    cond_channels: int = 1  # the condition: normalized magnitude
    out_channels: int = 2
    image_size: int = 256
    fourier_scale: float = 16.0
    input_scaling: bool = False
    embedding_seed: int = 0  # seed of the fixed Fourier frequencies (saved in the weights anyway)
    parameterization: str = "eps"  # what the body predicts: "eps" (-z, NCSN++) or "edm" (preconditioned denoiser)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ch_mult", tuple(int(m) for m in self.ch_mult))
        object.__setattr__(self, "attn_resolutions", tuple(int(r) for r in self.attn_resolutions))
        if self.nf < 4 or self.nf % 4:
            raise UsageError(f"ScoreNetConfig: nf must be a positive multiple of 4, got {self.nf}")
        if not self.ch_mult or any(m < 1 for m in self.ch_mult):
            raise UsageError(f"ScoreNetConfig: ch_mult must be non-empty positive ints, got {self.ch_mult}")
        if self.num_res_blocks < 1:
            raise UsageError(f"ScoreNetConfig: num_res_blocks must be >= 1, got {self.num_res_blocks}")
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"ScoreNetConfig: dropout must be in [0, 1), got {self.dropout}")
        if min(self.in_channels, self.out_channels) < 1 or self.cond_channels < 0:
            raise UsageError(f"ScoreNetConfig: invalid channel counts in {self}")
        if self.parameterization not in PARAMETERIZATIONS:
            raise UsageError(f"ScoreNetConfig: parameterization must be one of {', '.join(PARAMETERIZATIONS)}, got {self.parameterization!r}")
        if self.image_size % self.min_multiple:
            raise UsageError(
                f"ScoreNetConfig: image_size {self.image_size} must be divisible by {self.min_multiple} "
                f"(2 ** (len(ch_mult) - 1))"
            )

    @property
    def min_multiple(self) -> int:
        """H and W must be multiples of this."""
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def resolutions(self) -> tuple[int, ...]:
        """The resolution of each level at `image_size`."""
        return tuple(self.image_size // 2**i for i in range(len(self.ch_mult)))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ScoreNetConfig:
        """A preset with overrides. Overriding `image_size` (or `ch_mult`) without `attn_resolutions`
        keeps attention at the lowest resolution."""
        try:
            base = SCORE_NET_PRESETS[name]
        except KeyError:
            raise UsageError(f"unknown score-network preset {name!r}; known: {', '.join(SCORE_NET_PRESETS)}") from None
        if ("image_size" in overrides or "ch_mult" in overrides) and "attn_resolutions" not in overrides:
            size = overrides.get("image_size", base.image_size)
            levels = len(overrides.get("ch_mult", base.ch_mult))
            overrides["attn_resolutions"] = (size // 2 ** (levels - 1),)
        return replace(base, **overrides)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ch_mult"] = list(self.ch_mult)
        d["attn_resolutions"] = list(self.attn_resolutions)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreNetConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise UsageError(f"ScoreNetConfig: unknown fields {sorted(unknown)}")
        values = dict(data)
        for key in ("ch_mult", "attn_resolutions"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


SCORE_NET_PRESETS: dict[str, ScoreNetConfig] = {
    # The paper's NCSN++ (score_sde ncsnpp, VE, 256x256).
    "paper": ScoreNetConfig(),
    # Trains and samples on a CPU: a quarter of the width, 2 blocks per level, attention at 32x32.
    "small": ScoreNetConfig(nf=32, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(32,), dropout=0.1,
                            input_scaling=True),
}


def _groups(channels: int) -> int:
    return min(channels // 4, 32)


def _conv(cin: int, cout: int, kernel: int = 3, zero: bool = False) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)
    if zero:
        nn.init.zeros_(conv.weight)
    else:
        nn.init.xavier_uniform_(conv.weight)
    nn.init.zeros_(conv.bias)  # type: ignore[arg-type]
    return conv


def _linear(cin: int, cout: int) -> nn.Linear:
    lin = nn.Linear(cin, cout)
    nn.init.xavier_uniform_(lin.weight)
    nn.init.zeros_(lin.bias)
    return lin


class GaussianFourierEmbedding(nn.Module):
    """sin/cos of 2 pi w x with fixed random w ~ N(0, scale^2): (B,) -> (B, 2 * size)."""

    def __init__(self, size: int, scale: float, seed: int) -> None:
        super().__init__()
        weight = torch.randn(size, generator=torch.Generator().manual_seed(seed)) * scale
        self.register_buffer("weight", weight.to(torch.empty(()).device))  # honours a meta device context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = x[:, None] * self.weight[None, :].to(x.dtype) * (2 * math.pi)  # type: ignore[index]
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=1)


class ResBlock(nn.Module):
    """BigGAN-style residual block with noise embedding, optional 2x up/down resampling."""

    def __init__(self, cin: int, cout: int, temb_dim: int, dropout: float, resample: str | None = None) -> None:
        super().__init__()
        self.norm0 = nn.GroupNorm(_groups(cin), cin, eps=1e-6)
        self.conv0 = _conv(cin, cout)
        self.temb = _linear(temb_dim, cout)
        self.norm1 = nn.GroupNorm(_groups(cout), cout, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = _conv(cout, cout, zero=True)
        self.resample = resample
        self.skip = _conv(cin, cout, kernel=1) if (cin != cout or resample) else None

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm0(x))
        h = self._resample(h)
        x = self._resample(x)
        h = self.conv0(h)
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = F.silu(self.norm1(h))
        h = self.conv1(self.dropout(h))
        if self.skip is not None:
            x = self.skip(x)
        return (x + h) * (1.0 / math.sqrt(2.0))


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels, residual sum scaled by 1/sqrt(2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels, eps=1e-6)
        self.qkv = _conv(channels, 3 * channels, kernel=1)
        self.out = _conv(channels, channels, kernel=1, zero=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(dim=1)  # (b, hw, c)
        a = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # (b, hw, c)
        a = a.transpose(-1, -2).reshape(b, c, h, w)
        return (x + self.out(a)) * (1.0 / math.sqrt(2.0))


class ScoreNet(nn.Module):
    """s_theta(x, sigma, magnitude) ~ grad_x log p_sigma(x | magnitude). See the module docstring.

    `seed` makes the initialization reproducible without disturbing the global RNG (it is forked).
    """

    def __init__(self, config: ScoreNetConfig, seed: int | None = 0) -> None:
        super().__init__()
        self.config = config
        if seed is None:
            self._build(config)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self._build(config)

    def _build(self, c: ScoreNetConfig) -> None:
        nf = c.nf
        temb_dim = 4 * nf
        self.embed = GaussianFourierEmbedding(nf, c.fourier_scale, c.embedding_seed)
        self.temb0 = _linear(2 * nf, temb_dim)
        self.temb1 = _linear(temb_dim, temb_dim)
        self.conv_in = _conv(c.in_channels + c.cond_channels, nf)

        attn_levels = {i for i, r in enumerate(c.resolutions) if r in c.attn_resolutions}
        self.attn_levels = sorted(attn_levels)
        levels = len(c.ch_mult)

        self.down = nn.ModuleList()
        skip_ch = [nf]
        ch = nf
        for level, mult in enumerate(c.ch_mult):
            blocks = nn.ModuleList()
            attns = nn.ModuleList()
            for _ in range(c.num_res_blocks):
                blocks.append(ResBlock(ch, nf * mult, temb_dim, c.dropout))
                ch = nf * mult
                attns.append(AttnBlock(ch) if level in attn_levels else nn.Identity())
                skip_ch.append(ch)
            stage = nn.Module()
            stage.blocks, stage.attns = blocks, attns
            stage.downsample = ResBlock(ch, ch, temb_dim, c.dropout, "down") if level < levels - 1 else None  # type: ignore[assignment]
            if stage.downsample is not None:
                skip_ch.append(ch)
            self.down.append(stage)

        self.mid0 = ResBlock(ch, ch, temb_dim, c.dropout)
        self.mid_attn = AttnBlock(ch)
        self.mid1 = ResBlock(ch, ch, temb_dim, c.dropout)

        self.up = nn.ModuleList()
        for level in reversed(range(levels)):
            mult = c.ch_mult[level]
            blocks = nn.ModuleList()
            attns = nn.ModuleList()
            for _ in range(c.num_res_blocks + 1):
                blocks.append(ResBlock(ch + skip_ch.pop(), nf * mult, temb_dim, c.dropout))
                ch = nf * mult
                attns.append(AttnBlock(ch) if level in attn_levels else nn.Identity())
            stage = nn.Module()
            stage.blocks, stage.attns = blocks, attns
            stage.upsample = ResBlock(ch, ch, temb_dim, c.dropout, "up") if level > 0 else None  # type: ignore[assignment]
            self.up.append(stage)
        assert not skip_ch

        self.norm_out = nn.GroupNorm(_groups(ch), ch, eps=1e-6)
        self.conv_out = _conv(ch, c.out_channels)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, magnitude: torch.Tensor) -> torch.Tensor:
        c = self.config
        if x.dim() != 4 or x.shape[1] != c.in_channels:
            raise ValueError(f"ScoreNet: x must be (B, {c.in_channels}, H, W), got {tuple(x.shape)}")
        if magnitude.shape != (x.shape[0], c.cond_channels, *x.shape[2:]):
            raise ValueError(
                f"ScoreNet: magnitude must be (B, {c.cond_channels}, H, W) = "
                f"{(x.shape[0], c.cond_channels, *x.shape[2:])}, got {tuple(magnitude.shape)}"
            )
        m = c.min_multiple
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(f"ScoreNet: H and W must be multiples of {m}, got {tuple(x.shape[-2:])}")
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if sigma.dim() == 0:
            sigma = sigma.expand(x.shape[0])
        sigma = sigma.reshape(x.shape[0]).to(x.dtype)

        temb = self.temb1(F.silu(self.temb0(self.embed(torch.log(sigma)))))
        noisy = x
        if c.input_scaling:
            x = x / torch.sqrt(sigma**2 + PHASOR_SIGMA_DATA**2)[:, None, None, None]
        h = self.conv_in(torch.cat([x, magnitude.to(x.dtype)], dim=1))

        hs = [h]
        for stage in self.down:
            for block, attn in zip(stage.blocks, stage.attns):  # type: ignore[arg-type]
                h = attn(block(h, temb))
                hs.append(h)
            if stage.downsample is not None:
                h = stage.downsample(h, temb)  # type: ignore[operator]
                hs.append(h)

        h = self.mid1(self.mid_attn(self.mid0(h, temb)), temb)

        for stage in self.up:
            for block, attn in zip(stage.blocks, stage.attns):  # type: ignore[arg-type]
                h = attn(block(torch.cat([h, hs.pop()], dim=1), temb))
            if stage.upsample is not None:
                h = stage.upsample(h, temb)  # type: ignore[operator]

        h = self.conv_out(F.silu(self.norm_out(h)))
        sigma = sigma.to(h.dtype)[:, None, None, None]
        if c.parameterization == "edm":
            # (D - x) / sigma^2 with D = c_skip x + c_out h, written without the cancellation in c_skip - 1
            c_out = sigma * PHASOR_SIGMA_DATA / torch.sqrt(sigma**2 + PHASOR_SIGMA_DATA**2)
            return c_out * h / sigma**2 - noisy.to(h.dtype) / (sigma**2 + PHASOR_SIGMA_DATA**2)
        return h / sigma


def count_parameters(config: ScoreNetConfig) -> int:
    """Number of parameters, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        model = ScoreNet(config, seed=None)
    return sum(p.numel() for p in model.parameters())


def count_flops(config: ScoreNetConfig, batch: int = 1, size: int | None = None) -> int:
    """FLOPs of one network evaluation on `batch` images of `size` (default `config.image_size`),
    as counted by torch.utils.flop_counter (2 per multiply-add, convolutions/matmuls/attention only),
    on the meta device (no memory allocated)."""
    from torch.utils.flop_counter import FlopCounterMode

    size = config.image_size if size is None else size
    with torch.device("meta"):
        model = ScoreNet(config, seed=None).eval()
        x = torch.zeros(batch, config.in_channels, size, size)
        mag = torch.zeros(batch, config.cond_channels, size, size)
        sigma = torch.ones(batch)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x, sigma, mag)
    return int(counter.get_total_flops())
