"""Samplers: draw unit-phasor maps x ~ p(x | magnitude) with a trained score model.

Every sampler is a class in `SAMPLERS` (adding one is one class + one line) with the signature

    sampler = SAMPLERS["heun"]()            # or make_sampler("heun", churn=...)
    x = sampler.sample(model, magnitude, sde, steps=None, generator=g, snr=None, progress=None, dtype=None)
    sampler.nfe                             # network evaluations of that call, counted

model: any callable (x (B,2,H,W), sigma (B,), magnitude (B,1,H,W)) -> score (B,2,H,W) -- a
`ScoreNet` or an analytic score. magnitude: (B,1,H,W). Returns the (not yet unit-norm) phasor
(B,2,H,W) in float32; read phase with `kspacify.sbdm.phasor_to_phase`. All randomness comes from
`generator` (a torch.Generator on magnitude's device); there is no global-RNG use, so a fixed
seed gives the same samples for the same batch (a slice's sample depends on its position in the
batch, because the noise for the whole batch comes from one stream). Sampling runs under
torch.no_grad; `dtype` (torch.float16 / torch.bfloat16) runs the network under autocast, the
sampler state stays float32; None (default) is plain float32. Prefer bfloat16: it has float32's
range, while float16 activations can overflow near sigma_max when the network's input_scaling is off.

* `pc` -- the paper's reference sampler (score_sde's PC sampler for the VE SDE): `steps` (N, default
  1000) noise levels sigma(t_i), t_i = linspace(1, eps, N); at each, `corrector_steps` Langevin
  corrector steps (step size 2 (snr |z| / |score|)^2 per sample, snr default 0.16) and one
  reverse-diffusion predictor step x <- x + (sigma_i^2 - sigma_{i+1}^2) score + sqrt(...) z with
  sigma_N = 0; the last predictor step adds no noise (the final denoising step, a Tweedie
  estimate). NFE = N (1 + corrector_steps) = 2000 by default.
* `heun` -- fast: the probability-flow ODE dx/dsigma = -sigma score solved with Heun's 2nd-order
  method on Karras et al.'s schedule sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) -
  smax^(1/rho)))^rho, rho = 7, and a last Euler step to sigma = 0 (EDM's Algorithm 1/2). NFE =
  2N - 1; default N = 25 -> 49. `churn` > 0 turns on EDM's stochastic churn (noise re-injected
  for sigma in [churn_min, churn_max]); default 0 (deterministic given the prior draw).
* `dpm2m` -- fast: DPM-Solver++(2M) (Lu et al. 2022), a second-order multistep exponential
  integrator of the same ODE in lambda = -log sigma on the same schedule, one NFE per level, the
  last level jumping to the denoised (Tweedie) estimate. Default N = 50 -> 50 NFE. On a Gaussian
  target with the exact score it is ~4x more accurate than `heun` at the same NFE (std error ~1%
  vs ~4-6%), see tests/test_sbdm.py.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar

import torch

from kspacify.errors import UsageError
from kspacify.sbdm.sde import VESDE, ScoreModel

__all__ = ["SAMPLERS", "DPMSolver2MSampler", "HeunSampler", "PCSampler", "Sampler", "karras_sigmas", "make_sampler"]

Progress = Callable[[int, int], None]  # (steps done, total steps)
ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, sigma scalar tensor) -> score


class Sampler(ABC):
    name: ClassVar[str]
    default_steps: ClassVar[int]

    def __init__(self) -> None:
        self.nfe = 0  # network evaluations of the last `sample` call

    @abstractmethod
    def nfe_for(self, steps: int | None = None) -> int:
        """Network evaluations (one per batch) that `sample` makes with `steps`."""

    def settings(self) -> dict[str, Any]:
        """JSON-able provenance of the sampler's options."""
        return {"sampler": self.name}

    def sample(
        self,
        model: ScoreModel,
        magnitude: torch.Tensor,
        sde: VESDE,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        *,
        snr: float | None = None,
        progress: Progress | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Phasors (B, 2, H, W), float32. `snr` is the PC corrector's signal-to-noise ratio (None: the
        sampler's own; ODE samplers ignore it)."""
        if generator is None:
            raise TypeError(f"{self.name} sampler: pass a torch.Generator (no global RNG is used)")
        if magnitude.dim() != 4:
            raise ValueError(f"{self.name} sampler: the condition must be (B, C, H, W) (magnitude, then any acquisition channels), got {tuple(magnitude.shape)}")
        steps = self.default_steps if steps is None else int(steps)
        magnitude = magnitude.float()
        batch = magnitude.shape[0]
        self.nfe = 0
        if dtype is None or dtype == torch.float32:
            autocast = contextlib.nullcontext
        else:
            device_type = magnitude.device.type

            def autocast() -> Any:  # type: ignore[misc]
                return torch.autocast(device_type=device_type, dtype=dtype)

        def score_fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            self.nfe += 1
            sigma_b = sigma.to(device=x.device, dtype=torch.float32).reshape(()).expand(batch)
            with autocast():
                out = model(x, sigma_b, magnitude)
            return out.float()

        shape = (batch, 2, *magnitude.shape[2:])
        with torch.no_grad():
            x = self._run(score_fn, shape, magnitude.device, sde, steps, generator, snr, progress)
        return x

    @abstractmethod
    def _run(
        self,
        score: ScoreFn,
        shape: tuple[int, ...],
        device: torch.device,
        sde: VESDE,
        steps: int,
        generator: torch.Generator,
        snr: float | None,
        progress: Progress | None,
    ) -> torch.Tensor: ...


def _per_sample_norm(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x.reshape(x.shape[0], -1), dim=1).reshape(-1, *([1] * (x.dim() - 1)))


class PCSampler(Sampler):
    """Reverse-diffusion predictor + Langevin corrector (the paper's sampler)."""

    name = "pc"
    default_steps = 1000

    def __init__(self, snr: float = 0.16, corrector_steps: int = 1, denoise: bool = True) -> None:
        super().__init__()
        if snr < 0 or corrector_steps < 0:
            raise ValueError(f"pc sampler: snr and corrector_steps must be >= 0, got {snr}, {corrector_steps}")
        self.snr = float(snr)
        self.corrector_steps = int(corrector_steps)
        self.denoise = bool(denoise)

    def nfe_for(self, steps: int | None = None) -> int:
        steps = self.default_steps if steps is None else steps
        return steps * (1 + self.corrector_steps)

    def settings(self) -> dict[str, Any]:
        return {"sampler": self.name, "snr": self.snr, "corrector_steps": self.corrector_steps, "denoise": self.denoise}

    def _run(self, score, shape, device, sde, steps, generator, snr, progress):  # type: ignore[override]
        if steps < 1:
            raise ValueError(f"pc sampler: steps must be >= 1, got {steps}")
        snr = self.snr if snr is None else float(snr)
        ts = torch.linspace(1.0, sde.eps, steps, dtype=torch.float64)
        sigmas = sde.marginal_std(ts).tolist() + [0.0]
        x = sde.prior_sample(shape, generator, device=device)
        x_mean = x
        for i in range(steps):
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            sig = torch.tensor(sigma, dtype=torch.float32, device=device)
            for _ in range(self.corrector_steps):  # Langevin corrector
                grad = score(x, sig)
                noise = torch.randn(shape, generator=generator, device=device)
                ratio = snr * _per_sample_norm(noise) / _per_sample_norm(grad).clamp_min(1e-12)
                step = 2.0 * ratio**2
                x = x + step * grad + torch.sqrt(2.0 * step) * noise
            g2 = sigma**2 - sigma_next**2  # reverse-diffusion predictor
            x_mean = x + g2 * score(x, sig)
            last = i == steps - 1
            if last and self.denoise:
                x = x_mean
            else:
                x = x_mean + math.sqrt(g2) * torch.randn(shape, generator=generator, device=device)
            if progress is not None:
                progress(i + 1, steps)
        return x


class HeunSampler(Sampler):
    """Probability-flow ODE, Heun's method, Karras sigma schedule (EDM); optional stochastic churn."""

    name = "heun"
    default_steps = 25

    def __init__(
        self,
        rho: float = 7.0,
        churn: float = 0.0,
        churn_min: float = 0.0,
        churn_max: float = float("inf"),
        churn_noise: float = 1.0,
    ) -> None:
        super().__init__()
        if rho <= 0 or churn < 0:
            raise ValueError(f"heun sampler: need rho > 0 and churn >= 0, got {rho}, {churn}")
        self.rho = float(rho)
        self.churn = float(churn)
        self.churn_min = float(churn_min)
        self.churn_max = float(churn_max)
        self.churn_noise = float(churn_noise)

    def nfe_for(self, steps: int | None = None) -> int:
        steps = self.default_steps if steps is None else steps
        return 2 * steps - 1

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sampler": self.name, "rho": self.rho, "churn": self.churn}
        if self.churn:
            out.update(churn_min=self.churn_min, churn_max=self.churn_max, churn_noise=self.churn_noise)
        return out

    def sigmas(self, sde: VESDE, steps: int) -> list[float]:
        return karras_sigmas(sde, steps, self.rho)

    def _run(self, score, shape, device, sde, steps, generator, snr, progress):  # type: ignore[override]
        sigmas = self.sigmas(sde, steps)
        x = sde.prior_sample(shape, generator, device=device)
        gamma_max = math.sqrt(2.0) - 1.0
        for i in range(steps):
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            if self.churn > 0 and self.churn_min <= sigma <= self.churn_max:
                sigma_hat = sigma * (1.0 + min(self.churn / steps, gamma_max))
                noise = torch.randn(shape, generator=generator, device=device)
                x = x + math.sqrt(sigma_hat**2 - sigma**2) * self.churn_noise * noise
            else:
                sigma_hat = sigma
            d = -sigma_hat * score(x, torch.tensor(sigma_hat, device=device))
            x_next = x + (sigma_next - sigma_hat) * d
            if sigma_next > 0:  # Heun correction
                d_next = -sigma_next * score(x_next, torch.tensor(sigma_next, device=device))
                x_next = x + (sigma_next - sigma_hat) * 0.5 * (d + d_next)
            x = x_next
            if progress is not None:
                progress(i + 1, steps)
        return x


class DPMSolver2MSampler(Sampler):
    """DPM-Solver++(2M) on the probability-flow ODE, Karras sigma schedule: one NFE per level."""

    name = "dpm2m"
    default_steps = 50

    def __init__(self, rho: float = 7.0) -> None:
        super().__init__()
        if rho <= 0:
            raise ValueError(f"dpm2m sampler: need rho > 0, got {rho}")
        self.rho = float(rho)

    def nfe_for(self, steps: int | None = None) -> int:
        return self.default_steps if steps is None else steps

    def settings(self) -> dict[str, Any]:
        return {"sampler": self.name, "rho": self.rho}

    def _run(self, score, shape, device, sde, steps, generator, snr, progress):  # type: ignore[override]
        sigmas = karras_sigmas(sde, steps, self.rho)
        x = sde.prior_sample(shape, generator, device=device)
        denoised_prev: torch.Tensor | None = None
        h_prev = 0.0
        for i in range(steps):
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            denoised = x + sigma**2 * score(x, torch.tensor(sigma, device=device))  # Tweedie: E[x0 | x]
            if sigma_next == 0:
                x = denoised
            else:
                h = math.log(sigma / sigma_next)  # step in lambda = -log(sigma)
                if denoised_prev is None:
                    d = denoised
                else:  # second-order multistep correction of the denoised estimate
                    r = h_prev / h
                    d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * denoised_prev
                x = (sigma_next / sigma) * x + (1 - sigma_next / sigma) * d
                denoised_prev, h_prev = denoised, h
            if progress is not None:
                progress(i + 1, steps)
        return x


def karras_sigmas(sde: VESDE, steps: int, rho: float = 7.0) -> list[float]:
    """Karras et al.'s N noise levels from sigma_max to sigma_min (uniform in sigma^(1/rho)), then 0."""
    if steps < 2:
        raise ValueError(f"Karras schedule: steps must be >= 2, got {steps}")
    hi, lo = sde.sigma_max ** (1 / rho), sde.sigma_min ** (1 / rho)
    return [(hi + i / (steps - 1) * (lo - hi)) ** rho for i in range(steps)] + [0.0]


SAMPLERS: dict[str, type[Sampler]] = {
    PCSampler.name: PCSampler,
    HeunSampler.name: HeunSampler,
    DPMSolver2MSampler.name: DPMSolver2MSampler,
}


def make_sampler(name: str, **options: Any) -> Sampler:
    """A sampler from the registry, with its own options (e.g. snr=, rho=, churn=)."""
    try:
        cls = SAMPLERS[name]
    except KeyError:
        raise UsageError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}") from None
    return cls(**options)
