"""A classifier two-sample test: can a small network tell synthetic phase from real phase?

The feature distance (`feature_fd`) uses a network trained on physics-family phase, so it favours
phase that looks like physics. This measure learns what to look at from the data itself: a small CNN
is trained to label slices real or synthetic on one half of the volumes and scored on the other half
by AUROC (the probability that a random real slice scores more "real" than a random synthetic one);
then the halves swap and the two AUROCs are averaged. 0.5 means indistinguishable; 1.0 (or 0.0)
means a classifier tells them apart every time.

Design choices that keep it about phase:
* Paired sets: real and synthetic phase of the same magnitudes, split by volume, so the magnitude
  carries no label and a held-out volume is new to the classifier.
* The arbitrary global phase is removed (each slice is rotated so its magnitude-weighted mean phasor
  is real and positive), as receive chains set it at random; the classifier sees the magnitude and
  the canonical unit phasor (cos, sin) of each slice, average-pooled to `size` x `size`.
* Everything random (initialization, batches, the pooling offsets) comes from the seed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def canonical(magnitude: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """(B, 3, H, W): magnitude, and cos/sin of the phase rotated so each slice's magnitude-weighted
    mean phasor is real and positive."""
    z = np.exp(1j * phase.astype(np.float64))
    mean = (magnitude * z).sum(axis=(1, 2), keepdims=True)
    z = z * np.exp(-1j * np.angle(mean))
    return np.stack([magnitude, z.real, z.imag], axis=1).astype(np.float32)


def auroc(scores_real: np.ndarray, scores_fake: np.ndarray) -> float:
    """P(score of a real slice > score of a synthetic one), ties counting half (Mann-Whitney U)."""
    scores = np.concatenate([scores_real, scores_fake])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    n_real, n_fake = len(scores_real), len(scores_fake)
    return float((ranks[:n_real].sum() - n_real * (n_real + 1) / 2) / (n_real * n_fake))


def _network(channels: int, width: int):  # type: ignore[no-untyped-def]
    from torch import nn

    layers: list[nn.Module] = []
    c_in = channels
    for c_out in (width, 2 * width, 4 * width, 4 * width):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(4, c_out), nn.SiLU(), nn.AvgPool2d(2)]
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 1)]
    return nn.Sequential(*layers)


def classifier_auroc(
    magnitude: np.ndarray,
    real_phase: np.ndarray,
    fake_phase: np.ndarray,
    groups: Sequence[str],
    *,
    seed: int = 0,
    size: int = 64,
    steps: int = 300,
    batch_size: int = 32,
    width: int = 16,
) -> float:
    """The two-sample AUROC (see module doc) of `fake_phase` against `real_phase`, both (N, H, W)
    for the same magnitudes (N, H, W); `groups` gives each slice's volume, so halves are by volume."""
    import torch
    import torch.nn.functional as F

    magnitude = np.asarray(magnitude, np.float32)
    if not (magnitude.shape == np.shape(real_phase) == np.shape(fake_phase)) or len(groups) != len(magnitude):
        raise ValueError("classifier_auroc: magnitude, real and fake phase must be (N, H, W) of one shape with one group per slice")
    volumes = sorted(set(groups))
    if len(volumes) < 2:
        raise ValueError("classifier_auroc: needs slices of at least 2 volumes (halves are by volume)")
    rng = np.random.default_rng(seed)
    half = set(rng.permutation(volumes)[: len(volumes) // 2].tolist())
    in_first = np.array([g in half for g in groups])
    with torch.no_grad():
        def pooled(phase: np.ndarray) -> torch.Tensor:
            x = torch.from_numpy(canonical(magnitude, np.asarray(phase, np.float32)))
            return F.adaptive_avg_pool2d(x, size) if x.shape[-1] != size or x.shape[-2] != size else x

        real, fake = pooled(real_phase), pooled(fake_phase)
    scores = []
    for train_mask in (in_first, ~in_first):
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(2**62)))
            net = _network(3, width)
        optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
        x = torch.cat([real[torch.from_numpy(train_mask)], fake[torch.from_numpy(train_mask)]])
        y = torch.cat([torch.ones(int(train_mask.sum())), torch.zeros(int(train_mask.sum()))])
        net.train()
        for _ in range(steps):
            pick = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=generator)
            flips = [d for d, f in zip((-2, -1), (torch.rand(2, generator=generator) < 0.5).tolist()) if f]
            batch = x[pick].flip(flips) if flips else x[pick]
            loss = F.binary_cross_entropy_with_logits(net(batch)[:, 0], y[pick])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        net.eval()
        test = torch.from_numpy(~train_mask)
        with torch.no_grad():
            scores.append(auroc(net(real[test])[:, 0].numpy(), net(fake[test])[:, 0].numpy()))
    return float(np.mean(scores))
