"""A small CNN whose features stand in for Inception's in a Frechet distance of phase maps (an offline FID).

Inception weights cannot be had offline, and a network trained on natural images would not look at
phase anyway. `PhaseFeatureNet` reads (magnitude, cos phase, sin phase), average-pools 2x, runs a
4x4 patchify convolution and three strided 3x3 convolutions (GroupNorm, SiLU) and global average
pooling, and a linear layer gives `feature_dim` (32) features, standardized by their mean and std
over the training data (so the Frechet distance is in units of a training feature's variance). The
features are invariant to a global phase offset only as far as training made them (offsets are
random there).

Training objective (self-supervised, exact free labels, tens of minutes at most on a shared CPU). From magnitude slices we
synthesize `physics` phase with known random parameters, then optionally corrupt it, and a small
head regresses from the features

* field RMS:   the RMS over the object of the (unwrapped) susceptibility/shim field phase,
* coil RMS:    the RMS over the object of the smooth coil (B1) phase,
* field scale: log(B0 x TE), the acquisition parameter that sets the field phase,
* added noise: the level of extra complex noise (0: none): how much noisier than the model,
* smoothing:   the width of a Gaussian blur of the phasor (0: none): how much smoother.

The first three make the features measure the physically meaningful amplitudes of phase variation
(realized amplitudes rather than only the prior's parameters, since a parameter such as the coil
amplitude is multiplied by a random factor and cannot be read back); the last two make them measure
departures towards noise or towards over-smooth phase, the typical failures of synthetic phase. None
of the targets can be read off the magnitude channel, so the features must look at the phase.
Limitation: the network has only seen `physics`-family phase (plus corruptions); phase structure
outside that family (e.g. GAN artefacts) moves the features only as far as the conv filters happen
to respond, and the measure may favour `physics`-like phase.

Weights: `kspacify/weights/phase-features.safetensors` with the model card `phase-features.json` beside it
(a `kspacify.training.checkpoint` weights pair whose card says model `kspacify-phase-features`;
sha256 verified on load, as for every shipped checkpoint).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from kspacify.phase.physics import PhysicsPhase, PhysicsSettings, draw_parameters
from kspacify.weights import BUNDLED

__all__ = [
    "DEFAULT_WEIGHTS",
    "FORMAT",
    "TARGETS",
    "FeatureNetConfig",
    "FeatureNetError",
    "PhaseFeatureNet",
    "augment_magnitudes",
    "embed",
    "load_feature_net",
    "make_training_set",
    "save_feature_net",
    "train_feature_net",
]

FORMAT = "kspacify-phase-features"  # the card's "model"; the file pair is kspacify.training.checkpoint's
FORMAT_VERSION = 1
DEFAULT_WEIGHTS = BUNDLED / "phase-features.safetensors"
TARGETS = ("field_rms", "coil_rms", "field_scale", "added_noise", "smoothing")
# log10 ranges (rad) mapped to [-1, 1] for the RMS targets (5th-95th percentiles of the physics prior)
FIELD_RMS_LOG10 = (-0.4, 1.0)
COIL_RMS_LOG10 = (-1.1, 0.0)
INPUT = "(magnitude, cos phase, sin phase), magnitude normalized so the volume's 99.5th percentile is 1, 256x256"

# corruption ranges (training only): complex noise sigma 0.02..0.3 (log; weaker noise hides under the
# model's own), phasor blur 0..2.5 px
NOISE_DECADES = (-1.7, -0.5)
SMOOTHING_MAX_PX = 2.5
CORRUPTION_PROBABILITY = 2.0 / 3.0


class FeatureNetError(RuntimeError):
    """The feature network's weights are missing, corrupt or do not match their model card."""


@dataclass(frozen=True)
class FeatureNetConfig:
    width: int = 16
    feature_dim: int = 32
    input_pool: int = 2
    targets: tuple[str, ...] = TARGETS

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureNetConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"FeatureNetConfig: unknown fields {sorted(unknown)}")
        values = dict(data)
        if "targets" in values:
            values["targets"] = tuple(values["targets"])
        return cls(**values)


def _block(cin: int, cout: int, kernel: int, stride: int) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=(kernel - stride + 1) // 2)
    return nn.Sequential(conv, nn.GroupNorm(4, cout), nn.SiLU())


class PhaseFeatureNet(nn.Module):
    """(B, 3, H, W) -> (B, feature_dim) standardized features; `head` maps features to the targets."""

    def __init__(self, config: FeatureNetConfig | None = None, seed: int = 0) -> None:
        """`seed` fixes the initialization (own generator); the layers' default init runs under a forked
        global RNG, so the global state is left as it was."""
        super().__init__()
        self.config = config if config is not None else FeatureNetConfig()
        w, d = self.config.width, self.config.feature_dim
        with torch.random.fork_rng(devices=[]):
            self.body = nn.Sequential(  # a 4x4 patchify stem keeps CPU training cheap
                _block(3, w, 4, 4), _block(w, 2 * w, 3, 2), _block(2 * w, 4 * w, 3, 2), _block(4 * w, 4 * w, 3, 2)
            )
            self.project = nn.Linear(4 * w, d)
            self.head = nn.Sequential(nn.SiLU(), nn.Linear(d, 64), nn.SiLU(), nn.Linear(64, len(self.config.targets)))
        self.register_buffer("feature_mean", torch.zeros(d))
        self.register_buffer("feature_std", torch.ones(d))
        generator = torch.Generator().manual_seed(seed)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                nn.init.zeros_(module.bias)  # type: ignore[arg-type]

    def raw_features(self, pooled: torch.Tensor) -> torch.Tensor:
        """Unstandardized features of inputs already average-pooled by `input_pool`."""
        return self.project(self.body(pooled).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(x, self.config.input_pool) if self.config.input_pool > 1 else x
        return (self.raw_features(pooled) - self.feature_mean) / self.feature_std  # type: ignore[operator]


def network_input(magnitude: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """(B, H, W) magnitude and phase -> (B, 3, H, W) float32 (magnitude, cos, sin)."""
    magnitude = np.nan_to_num(np.maximum(np.asarray(magnitude, dtype=np.float32), 0.0))
    phase = np.asarray(phase, dtype=np.float32)
    if magnitude.ndim == 2:
        magnitude, phase = magnitude[None], phase[None]
    return np.stack([magnitude, np.cos(phase), np.sin(phase)], axis=1)


@torch.no_grad()
def embed(net: PhaseFeatureNet, magnitude: np.ndarray, phase: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Standardized features (B, feature_dim) float64 of (magnitude, phase) batches (B, H, W)."""
    x = network_input(magnitude, phase)
    net.eval()
    out = [net(torch.from_numpy(x[i : i + batch_size])).double().numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, net.config.feature_dim))


# --- training data ------------------------------------------------------------------------------


def augment_magnitudes(base: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` magnitudes (count, H, W) drawn from `base` (N, H, W) with random geometry and contrast.

    Each: a random slice, rot90/flip, a random zoom into a square of 55-100 % of the side (other
    fields of view), gamma 0.7-1.4, Rician noise with sigma log-uniform 0.001-0.05, renormalized so
    its 99.5th percentile is 1 (as the readers normalize)."""
    _, height, width = base.shape
    out = np.empty((count, height, width), dtype=np.float32)
    for i in range(count):
        m = np.rot90(base[rng.integers(len(base))], k=int(rng.integers(4)))
        if rng.random() < 0.5:
            m = m[:, ::-1]
        side = int(round(min(height, width) * rng.uniform(0.55, 1.0)))
        y0 = int(rng.integers(0, m.shape[0] - side + 1))
        x0 = int(rng.integers(0, m.shape[1] - side + 1))
        crop = m[y0 : y0 + side, x0 : x0 + side]
        m = ndimage.zoom(crop, (height / side, width / side), order=1, grid_mode=True, mode="nearest")[:height, :width]
        m = np.maximum(m, 0.0) ** rng.uniform(0.7, 1.4)
        sigma = 10 ** rng.uniform(-3.0, np.log10(0.05))
        m = np.abs(m + sigma * (rng.standard_normal(m.shape) + 1j * rng.standard_normal(m.shape)))
        scale = np.percentile(m, 99.5)
        out[i] = m / (scale if scale > 0 else 1.0)
    return out


def _corrupt(magnitude: np.ndarray, phase: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A phasor blur, then extra complex noise, each with probability 2/3.

    Returns (phase, noise level u, blur width v), u and v in [0, 1] (0: not applied). Blur first, so
    that the noise (which a blur would hide) stays identifiable."""
    batch = len(phase)
    u = np.where(rng.random(batch) < CORRUPTION_PROBABILITY, rng.uniform(0.0, 1.0, batch), 0.0)
    v = np.where(rng.random(batch) < CORRUPTION_PROBABILITY, rng.uniform(0.0, 1.0, batch), 0.0)
    unit = np.exp(1j * phase.astype(np.float64))
    for i in np.flatnonzero(v > 0):
        s = v[i] * SMOOTHING_MAX_PX
        unit[i] = ndimage.gaussian_filter(unit[i].real, s) + 1j * ndimage.gaussian_filter(unit[i].imag, s)
    sigma = np.where(u > 0, 10 ** (NOISE_DECADES[0] + u * (NOISE_DECADES[1] - NOISE_DECADES[0])), 0.0)
    z = magnitude * unit + sigma[:, None, None] * (rng.standard_normal(unit.shape) + 1j * rng.standard_normal(unit.shape))
    return np.angle(z).astype(np.float32), u, v


def _weighted_rms(values: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """RMS about the weighted mean, per slice, (B,)."""
    total = np.maximum(weight.sum(axis=(1, 2)), 1e-12)
    mean = (values * weight).sum(axis=(1, 2)) / total
    return np.sqrt((((values - mean[:, None, None]) ** 2) * weight).sum(axis=(1, 2)) / total)


def _to_unit(value: np.ndarray, lo_hi: tuple[float, float]) -> np.ndarray:
    lo, hi = lo_hi
    return np.clip(2 * (value - lo) / (hi - lo) - 1, -1.5, 1.5)


def make_training_set(
    base: np.ndarray, count: int, rng: np.random.Generator, settings: PhysicsSettings | None = None, pool: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (count, 3, H/pool, W/pool) float16 (already pooled) and targets (count, 5) float32 in [-1.5, 1.5].

    Magnitudes from `augment_magnitudes(base)`, phase from the `physics` model with its parameters
    drawn here (so they are known), then `_corrupt`ed. Targets follow `TARGETS`: log10 field and coil
    phase RMS over the tissue weight mapped from `FIELD_RMS_LOG10` / `COIL_RMS_LOG10`, log(B0 TE)
    mapped from its prior range, 2u - 1 and 2v - 1 (all to [-1, 1], the RMS ones clipped at +-1.5)."""
    settings = settings if settings is not None else PhysicsSettings()
    model = PhysicsPhase(settings)
    scale_range = (
        float(np.log(settings.b0_tesla[0] * settings.echo_time_ms[0] * 1e-3)),
        float(np.log(settings.b0_tesla[1] * settings.echo_time_ms[1] * 1e-3)),
    )
    inputs = np.empty((count, 3, base.shape[1] // pool, base.shape[2] // pool), dtype=np.float16)
    targets = np.empty((count, len(TARGETS)), dtype=np.float32)
    chunk = 16
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        magnitude = augment_magnitudes(base, n, rng)
        draw = draw_parameters(settings, rng, n)
        parts = model.components(magnitude, rng, draw=draw)
        phase, u, v = _corrupt(magnitude, parts.phase, rng)
        x = torch.from_numpy(network_input(magnitude, phase))
        inputs[start : start + n] = F.avg_pool2d(x, pool).numpy().astype(np.float16)
        rows = targets[start : start + n]
        rows[:, 0] = _to_unit(np.log10(_weighted_rms(parts.b0_phase, parts.weight) + 1e-6), FIELD_RMS_LOG10)
        rows[:, 1] = _to_unit(np.log10(_weighted_rms(parts.coil_phase, parts.weight) + 1e-6), COIL_RMS_LOG10)
        rows[:, 2] = _to_unit(np.log(draw.b0_tesla * draw.echo_time_s), scale_range)
        rows[:, 3] = 2 * u - 1
        rows[:, 4] = 2 * v - 1
    return inputs, targets


def _augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random rot90/flip and a random global phase rotation; none of them changes the targets."""
    k = int(torch.randint(4, (1,), generator=generator))
    x = torch.rot90(x, k, dims=(2, 3))
    if int(torch.randint(2, (1,), generator=generator)):
        x = torch.flip(x, dims=(3,))
    theta = torch.rand(x.shape[0], 1, 1, generator=generator) * (2 * math.pi)
    c, s = torch.cos(theta), torch.sin(theta)
    return torch.stack([x[:, 0], c * x[:, 1] - s * x[:, 2], s * x[:, 1] + c * x[:, 2]], dim=1)


def r_squared(prediction: np.ndarray, target: np.ndarray) -> list[float]:
    """Coefficient of determination per target column."""
    residual = ((prediction - target) ** 2).sum(axis=0)
    total = ((target - target.mean(axis=0)) ** 2).sum(axis=0)
    return [float(1 - r / t) if t > 0 else float("nan") for r, t in zip(residual, total)]


@torch.no_grad()
def _predict(net: PhaseFeatureNet, inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
    net.eval()
    out = []
    for i in range(0, len(inputs), batch_size):
        x = torch.from_numpy(inputs[i : i + batch_size].astype(np.float32))
        out.append(net.head(net.raw_features(x)).numpy())
    return np.concatenate(out)


def train_feature_net(
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    steps: int = 2000,
    batch_size: int = 32,
    learning_rate: float = 2e-3,
    seed: int = 0,
    config: FeatureNetConfig | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[PhaseFeatureNet, dict[str, Any]]:
    """Train on `make_training_set` output; returns the net (features standardized over `train`) and a report.

    AdamW (weight decay 1e-4), cosine decay of the learning rate to 0, MSE on the targets; batches
    get random rot90/flip and global phase rotations. The report has steps, seconds, the final
    training loss and, with `validation`, the R^2 of each target there."""
    config = config if config is not None else FeatureNetConfig()
    inputs, targets = train
    net = PhaseFeatureNet(config, seed=seed)
    optimizer = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    generator = torch.Generator().manual_seed(seed)
    target_tensor = torch.from_numpy(targets)
    started = time.perf_counter()
    running = float("nan")
    net.train()
    for step in range(steps):
        index = torch.randint(len(inputs), (batch_size,), generator=generator)
        x = _augment_batch(torch.from_numpy(inputs[index.numpy()].astype(np.float32)), generator)
        loss = F.mse_loss(net.head(net.raw_features(x)), target_tensor[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        value = float(loss.detach())
        running = value if math.isnan(running) else 0.98 * running + 0.02 * value
        if log is not None and (step + 1) % 100 == 0:
            log(f"step {step + 1}/{steps} loss {running:.4f} ({time.perf_counter() - started:.0f} s)")
    net.eval()
    with torch.no_grad():
        chunks = (torch.from_numpy(inputs[i : i + 64].astype(np.float32)) for i in range(0, len(inputs), 64))
        raw = torch.cat([net.raw_features(x) for x in chunks])
        net.feature_mean.copy_(raw.mean(0))  # type: ignore[operator]
        net.feature_std.copy_(raw.std(0).clamp_min(1e-6))  # type: ignore[operator]
    report: dict[str, Any] = {
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "optimizer": "AdamW, weight decay 1e-4, cosine decay; MSE loss",
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 1),
        "final_loss": round(running, 5),
        "torch_threads": torch.get_num_threads(),
    }
    if validation is not None:
        r2 = r_squared(_predict(net, validation[0]), validation[1])
        report["validation_r2"] = {name: round(value, 3) for name, value in zip(config.targets, r2)}
    return net, report


# --- weights on disk ----------------------------------------------------------------------------


def save_feature_net(path: str | Path, net: PhaseFeatureNet, extra_metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write `path` (.safetensors) and its model card beside it (`kspacify.training.checkpoint` pair); returns the card."""
    from kspacify.training.checkpoint import export_weights

    card = {
        "model": FORMAT,
        "model_version": FORMAT_VERSION,
        "architecture": "PhaseFeatureNet: 2x avg-pool, 4x4 patchify conv, 3 strided 3x3 convs (GroupNorm, SiLU), "
        "global mean pool, linear to features",
        "config": net.config.to_dict(),
        "input": INPUT,
        "features": "standardized by their mean and std over the training set (buffers feature_mean, feature_std)",
        "objective": "regress " + ", ".join(TARGETS) + " of physics-model phase with random corruptions",
        **(extra_metadata or {}),
    }
    return export_weights(path, dict(net.state_dict()), card)


def load_feature_net(path: str | Path | None = None) -> tuple[PhaseFeatureNet, dict[str, Any]]:
    """Load the feature network (default `kspacify/weights/phase-features.safetensors`) in eval mode, with its card.

    The pair is sha256-verified by `kspacify.training.checkpoint.load_weights`; then the card must
    name this model and its config must build a network with exactly the stored tensors. Raises
    FeatureNetError otherwise."""
    from kspacify.training.checkpoint import PairError, load_weights

    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    retrain = "rebuild it with benchmarks/train_phase_features.py"
    try:
        tensors, card = load_weights(path)
    except PairError as error:
        raise FeatureNetError(f"phase feature network: {error}; {retrain}") from None
    if card.get("model") != FORMAT or card.get("model_version") != FORMAT_VERSION:
        raise FeatureNetError(f"phase feature network {path}: the model card is not a {FORMAT} v{FORMAT_VERSION} card")
    try:
        net = PhaseFeatureNet(FeatureNetConfig.from_dict(card["config"]))
    except (KeyError, TypeError, ValueError) as error:
        raise FeatureNetError(f"phase feature network {path}: no valid config in the model card ({error})") from None
    if {k: tuple(v.shape) for k, v in net.state_dict().items()} != {k: tuple(v.shape) for k, v in tensors.items()}:
        raise FeatureNetError(f"phase feature network {path}: tensor names or shapes do not match the config; {retrain}")
    net.load_state_dict(tensors, strict=True)
    return net.eval(), card
