"""What the score network is conditioned on besides the magnitude: the acquisition.

Real phase depends on how the image was acquired (a spin echo refocuses off-resonance, a gradient
echo accumulates it for TE, in proportion to B0), so a model trained on several kinds must be told
which kind a slice is. The `Acquisition` becomes a fixed-length feature vector (`encode`), fed to the
network as constant channels concatenated with the magnitude (the paper's conditioning by
concatenation, extended), so samplers and the loss see one condition tensor. "Unknown" is a value
too: the all-unknown vector, which training shows the network at random (`condition_dropout`), so a
volume whose headers say nothing still gets a sample from the mixture the model learned.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from kspacify.acquisition import UNKNOWN, Acquisition, Family

FAMILIES = tuple(Family)  # one-hot order: unknown, spin_echo, gradient_echo, epi, inversion_recovery
FEATURES = len(FAMILIES) + 2 + 2 + 2  # family, refocused (yes, no), field (known, log B0/3T), TE (known, log TE/30 ms)


def encode(acquisition: Acquisition) -> np.ndarray:
    """The feature vector (FEATURES,) float32 of an acquisition; unknown fields are zeros (and the
    'unknown' family bit)."""
    features = np.zeros(FEATURES, np.float32)
    features[FAMILIES.index(acquisition.family)] = 1.0
    offset = len(FAMILIES)
    if acquisition.refocused is not None:
        features[offset + (0 if acquisition.refocused else 1)] = 1.0
    if acquisition.field_strength_t is not None:
        features[offset + 2], features[offset + 3] = 1.0, math.log(acquisition.field_strength_t / 3.0)
    if acquisition.echo_time_ms is not None:
        features[offset + 4], features[offset + 5] = 1.0, math.log(acquisition.echo_time_ms / 30.0)
    return features


UNKNOWN_FEATURES = encode(UNKNOWN)


def condition(magnitude: torch.Tensor, features: torch.Tensor | None, channels: int) -> torch.Tensor:
    """The network's condition (B, channels, H, W): the magnitude (B, 1, H, W), and for a network
    with more condition channels the acquisition features (B, FEATURES) as constant planes (None:
    unknown)."""
    if channels == 1:
        return magnitude
    if channels != 1 + FEATURES:
        raise ValueError(f"a score network with {channels} condition channels is not one this version conditions")
    batch, _, height, width = magnitude.shape
    if features is None:
        features = torch.from_numpy(UNKNOWN_FEATURES).to(magnitude.device).expand(batch, -1)
    planes = features.to(magnitude.dtype)[:, :, None, None].expand(batch, FEATURES, height, width)
    return torch.cat([magnitude, planes], dim=1)
