"""The variance-exploding SDE and the denoising score-matching loss (Song et al., ICLR 2021).

Forward process: dx = g(t) dw with sigma(t) = sigma_min (sigma_max / sigma_min)^t, t in [eps, 1],
so x(t) = x(0) + sigma(t) z and g(t) = sigma(t) sqrt(2 log(sigma_max / sigma_min)). The drift is 0.
Reverse SDE: dx = [f - g^2 score] dt + g dw_bar (integrated from t = 1 down to eps); probability
flow ODE: dx = [f - g^2 score / 2] dt, i.e. dx/dsigma = -sigma * score (the EDM form).

Loss (the paper's eq. 3, sigma(t)^2-weighted denoising score matching):

    L = E_t E_(x0, mag) E_z || sigma(t) s_theta(x0 + sigma(t) z, sigma(t), mag) + z ||^2,

t ~ U[eps, 1], reduced as a mean over batch and all elements (so an untrained network that
outputs 0 scores 1.0).

Choice of sigma_max. Song & Ermon ("Improved Techniques for Training Score-Based Generative
Models", 2020, technique 1) take sigma_max about the largest Euclidean distance between two
training images, so the prior N(0, sigma_max^2 I) covers the data and Langevin/reverse dynamics can
move between them. Our data are unit phasors (cos phi, sin phi) on a 2 x H x W grid: a pixel
contributes at most |e^{i a} - e^{i b}| = 2 to a distance, so the maximum is 2 sqrt(H W) (512 at
256x256), and two slices whose phases are uncorrelated (the noise-only background alone is uniform
random phase) are sqrt(2 H W) apart (362 at 256x256). The paper's 378 (Song & Ermon's value for
256x256 CelebA-HQ) is therefore the right size for our 256x256 phasors too, and it is the default.
A much smaller sigma_max (20-50) only meets the rule for crops of about 16x16 to 24x24 pixels; at
256x256 it would leave a prior mismatch of about ||x0||^2 / (2 sigma_max^2) = 65536 / 5000 ~ 13 nats
per slice (vs 0.23 nats at 378). `phasor_sigma_max(h, w)` gives sqrt(2 H W) for other sizes and
`max_pairwise_distance` measures the rule on a data sample.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal

import torch

PHASOR_SIGMA_DATA = math.sqrt(0.5)  # rms of one component of a unit phasor with uniform phase

__all__ = ["VESDE", "ScoreModel", "dsm_loss", "max_pairwise_distance", "phasor_sigma_max"]

# The model signature every sampler and the loss use: (x (B,C,H,W), sigma (B,), magnitude (B,1,H,W)) -> score.
ScoreModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class VESDE:
    """Variance-exploding SDE, sigma(t) = sigma_min (sigma_max / sigma_min)^t on t in [eps, 1]."""

    sigma_min: float = 0.01
    sigma_max: float = 378.0
    eps: float = 1e-5

    def __post_init__(self) -> None:
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"VESDE: need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if not 0 < self.eps < 1:
            raise ValueError(f"VESDE: eps must be in (0, 1), got {self.eps}")

    @property
    def log_ratio(self) -> float:
        return math.log(self.sigma_max / self.sigma_min)

    def marginal_std(self, t: torch.Tensor | float) -> torch.Tensor:
        """sigma(t): std of x(t) given x(0)."""
        t = torch.as_tensor(t, dtype=torch.float32) if not isinstance(t, torch.Tensor) else t
        return self.sigma_min * torch.exp(t * self.log_ratio)

    def sigma_to_t(self, sigma: torch.Tensor | float) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float32) if not isinstance(sigma, torch.Tensor) else sigma
        return torch.log(sigma / self.sigma_min) / self.log_ratio

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """f(x, t) = 0 for the VE SDE."""
        return torch.zeros_like(x)

    def diffusion(self, t: torch.Tensor | float) -> torch.Tensor:
        """g(t) = sigma(t) sqrt(2 log(sigma_max / sigma_min)), so that d[sigma^2]/dt = g^2."""
        return self.marginal_std(t) * math.sqrt(2.0 * self.log_ratio)

    def reverse_drift(self, x: torch.Tensor, t: torch.Tensor, score: torch.Tensor, probability_flow: bool = False) -> torch.Tensor:
        """Drift of the reverse-time SDE, f - g^2 score (or f - g^2 score / 2 for the probability-flow
        ODE), in forward-time units: step with dt < 0."""
        g2 = self.diffusion(t).to(x.dtype) ** 2
        g2 = g2.reshape(-1, *([1] * (x.dim() - 1))) if g2.dim() else g2
        return self.drift(x, t) - g2 * score * (0.5 if probability_flow else 1.0)

    def sample_t(self, batch: int, generator: torch.Generator, device: torch.device | str | None = None) -> torch.Tensor:
        """t ~ U[eps, 1], shape (batch,)."""
        u = torch.rand(batch, generator=generator, device=device)
        return u * (1.0 - self.eps) + self.eps

    def prior_sample(
        self,
        shape: tuple[int, ...] | torch.Size,
        generator: torch.Generator,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """x(1) ~ N(0, sigma_max^2 I)."""
        return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype) * self.sigma_max

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VESDE:
        return cls(**data)


def dsm_loss(
    model: ScoreModel,
    x0: torch.Tensor,
    magnitude: torch.Tensor,
    sde: VESDE,
    generator: torch.Generator,
    weighting: Literal["sigma2", "edm"] = "sigma2",
) -> torch.Tensor:
    """sigma^2-weighted denoising score matching, mean over batch and elements (scalar tensor).

    x0: clean phasors (B, 2, H, W); magnitude: (B, 1, H, W). t and z are drawn from `generator`
    (which must live on x0's device). The sigma^2-weighted term |sigma s + z|^2 is the denoiser's
    error |D - x0|^2 / sigma^2, so high noise levels count for almost nothing; `weighting="edm"`
    multiplies it by (sigma^2 + sigma_data^2) / sigma_data^2 (EDM's 1 / c_out^2 on |D - x0|^2), which
    gives every noise level about the same weight (for the `edm` parameterization)."""
    t = sde.sample_t(x0.shape[0], generator, device=x0.device)
    sigma = sde.marginal_std(t).to(x0.dtype)
    z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    xt = x0 + sigma[:, None, None, None] * z
    score = model(xt, sigma, magnitude)
    error = (sigma[:, None, None, None] * score.to(x0.dtype) + z) ** 2
    if weighting == "edm":
        error = error * ((sigma**2 + PHASOR_SIGMA_DATA**2) / PHASOR_SIGMA_DATA**2)[:, None, None, None]
    elif weighting != "sigma2":
        raise ValueError(f"dsm_loss: weighting must be 'sigma2' or 'edm', got {weighting!r}")
    return error.mean()


def phasor_sigma_max(height: int, width: int) -> float:
    """sqrt(2 H W): the distance between two unit-phasor images with uncorrelated phases (the typical
    largest pairwise distance of phasor training data; the hard bound is 2 sqrt(H W))."""
    return math.sqrt(2.0 * height * width)


def max_pairwise_distance(x: torch.Tensor) -> float:
    """Largest Euclidean distance between two samples of a batch (B, ...): Song & Ermon's sigma_max."""
    flat = x.reshape(x.shape[0], -1).double()
    return float(torch.cdist(flat, flat).max())
