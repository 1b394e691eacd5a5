"""Score-based diffusion model (SBDM) for phase synthesis (Sahin et al., CVPR-W 2026).

Given a magnitude-only slice, a conditional score network trained on (magnitude, phase) pairs
draws a phase map by reverse diffusion. Modules:

* `network`    -- `ScoreNet`, the NCSN++-style conditional U-Net, its `ScoreNetConfig` presets
                  (`paper`, `small`), `count_parameters`, `count_flops`;
* `sde`        -- `VESDE` (sigma(t) = sigma_min (sigma_max/sigma_min)^t) and `dsm_loss`;
* `samplers`   -- `SAMPLERS` registry: `pc` (the paper's predictor-corrector, 2000 NFE), `heun`
                  (EDM probability-flow ODE, 49 NFE) and `dpm2m` (DPM-Solver++(2M), 50 NFE);
* `checkpoint` -- safetensors weights + JSON model card, sha256-verified loading, `EMA`.

Phase representation. The paper min-max normalizes arctan(imag / real) to an image: that keeps
only half the circle (arctan's range is (-pi/2, pi/2), so phi and phi + pi look the same) and the
normalized image jumps wherever the phase wraps, an edge the network must reproduce exactly. We
diffuse the unit phasor instead,

    x = (cos phi, sin phi)           2 channels, smooth across wraps, whole circle,

conditioned on the magnitude (1 channel) normalized as `kspacify.preprocess` does (the volume's
99.5th percentile = 1), and read the phase back as phi = atan2(x1, x0) (`phasor_to_phase`). The
sampled x need not have unit norm; only its angle is used. The magnitude written out is the input
magnitude exactly: the model synthesizes phase only, the complex image is magnitude * exp(i phi).
"""

from __future__ import annotations

import torch

from kspacify.sbdm.checkpoint import EMA, CheckpointError, load_checkpoint, load_sde, save_checkpoint
from kspacify.sbdm.network import SCORE_NET_PRESETS, ScoreNet, ScoreNetConfig, count_flops, count_parameters
from kspacify.sbdm.samplers import SAMPLERS, DPMSolver2MSampler, HeunSampler, PCSampler, Sampler, make_sampler
from kspacify.sbdm.sde import VESDE, dsm_loss, max_pairwise_distance, phasor_sigma_max

__all__ = [
    "EMA",
    "SAMPLERS",
    "SCORE_NET_PRESETS",
    "VESDE",
    "CheckpointError",
    "DPMSolver2MSampler",
    "HeunSampler",
    "PCSampler",
    "Sampler",
    "ScoreNet",
    "ScoreNetConfig",
    "count_flops",
    "count_parameters",
    "dsm_loss",
    "load_checkpoint",
    "load_sde",
    "make_sampler",
    "max_pairwise_distance",
    "phase_to_phasor",
    "phasor_sigma_max",
    "phasor_to_phase",
    "save_checkpoint",
]


def phase_to_phasor(phase: torch.Tensor) -> torch.Tensor:
    """Phase in radians (B, H, W) or (B, 1, H, W) -> unit phasor (B, 2, H, W) = (cos, sin)."""
    if phase.dim() == 4:
        if phase.shape[1] != 1:
            raise ValueError(f"phase_to_phasor: expected (B, 1, H, W), got {tuple(phase.shape)}")
        phase = phase[:, 0]
    return torch.stack([torch.cos(phase), torch.sin(phase)], dim=1)


def phasor_to_phase(phasor: torch.Tensor) -> torch.Tensor:
    """Phasor (B, 2, H, W) -> phase in radians (B, H, W), atan2(x1, x0), in [-pi, pi]."""
    if phasor.dim() != 4 or phasor.shape[1] != 2:
        raise ValueError(f"phasor_to_phase: expected (B, 2, H, W), got {tuple(phasor.shape)}")
    return torch.atan2(phasor[:, 1], phasor[:, 0])
