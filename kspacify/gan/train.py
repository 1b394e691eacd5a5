"""Training the pix2pix phase GAN through the project's one loop (`kspacify.training.fit`).

One step updates both parts, as pix2pix does: the discriminator on real and generated
(magnitude, phasor) pairs, then the generator on adversarial + `l1_weight` x L1 between its unit
phasor and the target's. Adversarial loss: LSGAN (least squares, `gan_mode="lsgan"`, the default:
steadier on short CPU runs) or the original BCE-with-logits (`"bce"`, pix2pix's "vanilla").
Adam lr 2e-4, betas (0.5, 0.999) for both parts, as pix2pix.

Sampling. A generator with noise inputs (`GeneratorConfig.noise_channels`) draws `l1_samples`
phasors per magnitude, and the L1 counts only the closest one to the target (best of K, "variety
loss"): a plain L1 rewards ignoring the noise and outputting the conditional median, which collapsed
the first `small` run to a flat phase; best of K lets the draws spread over the targets while the
adversarial loss keeps each one realistic. All K draws go to the discriminator. K = 1 is pix2pix.
The noise comes from the step's seeded generator (`ctx.rng`), as the augmentation does.

Target canonicalization. The absolute phase of an MR image is arbitrary (receiver and transmit
phase), so the target phasor is rotated so that its magnitude-weighted mean points along +x; the
generator learns phase up to that constant, and `synthesize` adds a uniform random global phase from
the caller's generator. Without this, L1 would average over random offsets towards a zero phasor.

Augmentation: a random flip / 90-degree rotation per step, drawn from the step's seeded generator
(`ctx.rng`), so resumed runs draw the same.

Data: complex volumes read with `kspacify.datasets` (any reader: fastMRI h5, complex NIfTI, ...)
into a `PairSet`, split by the project's policy (`datasets.gen_splits`, by subject) into
genTrain / genVal (`out/splits.json`, reused when present).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kspacify.acquisition import UNKNOWN, Acquisition
from kspacify.datasets import PairDataset, PairSet, fingerprint, gen_splits, list_volumes, load_pairs
from kspacify.errors import DataError, UsageError
from kspacify.gan.network import (
    PRESETS,
    Discriminator,
    GanConfig,
    Generator,
    sample_noise,
)
from kspacify.training import (
    LoopConfig,
    Part,
    StepContext,
    TrainResult,
    TrainTask,
    World,
    fit,
)

__all__ = ["GAN_MODES", "GanRun", "GanTask", "canonical_phasor", "train_gan"]

GAN_MODES = ("lsgan", "bce")


def canonical_phasor(magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """(B, H, W) magnitude and phase -> unit phasor (B, 2, H, W) rotated so that the magnitude-weighted
    mean phasor is real and positive (removes the arbitrary global phase)."""
    c, s = torch.cos(phase), torch.sin(phase)
    mc, ms = (magnitude * c).sum((-2, -1), keepdim=True), (magnitude * s).sum((-2, -1), keepdim=True)
    norm = torch.sqrt(mc**2 + ms**2).clamp_min(1e-12)
    ca, sa = mc / norm, ms / norm  # cos, sin of the mean angle
    return torch.stack([c * ca + s * sa, s * ca - c * sa], dim=1)


def _gan_sample(pairs: PairSet, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(magnitude (1, H, W), canonical unit phasor (2, H, W)): the GAN's view of a pair."""
    magnitude = torch.from_numpy(np.ascontiguousarray(pairs.magnitude[index]))
    phase = torch.from_numpy(np.ascontiguousarray(pairs.phase[index]))
    return magnitude[None], canonical_phasor(magnitude[None], phase[None])[0]


def _augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The same random flip / 90-degree rotation for every tensor of the batch (dims -2, -1)."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    x = torch.rot90(x, k, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x


def _adversarial(logits: torch.Tensor, real: bool, mode: str) -> torch.Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    if mode == "lsgan":
        return F.mse_loss(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


class GanTask(TrainTask):
    """pix2pix on (magnitude -> canonical unit phasor) pairs; validated by L1 on held-out pairs."""

    def __init__(
        self,
        train: PairSet,
        config: GanConfig,
        val: PairSet | None = None,
        gan_mode: str = "lsgan",
        l1_weight: float = 100.0,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        data_description: Mapping[str, Any] | None = None,
        augment: bool = True,
        l1_samples: int = 1,
    ) -> None:
        if gan_mode not in GAN_MODES:
            raise UsageError(f"gan_mode must be one of {GAN_MODES}, got {gan_mode!r}")
        if l1_samples < 1:
            raise ValueError(f"l1_samples must be >= 1, got {l1_samples}")
        self.train, self.val, self.config, self.l1_samples = train, val, config, l1_samples
        self.gan_mode, self.l1_weight, self.lr, self.betas, self.augment = gan_mode, l1_weight, lr, tuple(betas), augment
        self.data_description = dict(data_description or {})

    def describe(self) -> dict[str, Any]:
        return {
            "architecture": "pix2pix: U-Net generator (magnitude -> unit phasor) + PatchGAN discriminator (kspacify.gan.network)",
            "representation": "unit phasor (cos phi, sin phi) as kspacify.sbdm, canonicalized: magnitude-weighted mean "
                              "phase rotated to 0 in training, a uniform random global phase added at synthesis",
            "config": {
                **self.config.to_dict(),
                "loss": {"adversarial": self.gan_mode, "l1_weight": self.l1_weight, "l1_on": "unit phasor",
                         "l1_samples": self.l1_samples},
                "optimizer": {"type": "Adam", "lr": self.lr, "betas": list(self.betas)},
                "augment": "random flip / 90-degree rotation" if self.augment else None,
            },
            "data": {
                **self.data_description,
                "training_slices": len(self.train),
                "validation_slices": len(self.val) if self.val is not None else 0,
            },
        }  # fmt: skip

    def dataset(self) -> PairDataset:  # type: ignore[override]
        return PairDataset(self.train, _gan_sample)

    def build(self, device: torch.device) -> dict[str, Part]:
        generator = Generator(self.config.generator).to(device)
        discriminator = Discriminator(self.config.discriminator).to(device)
        for model in (generator, discriminator):  # pix2pix init: N(0, 0.02) weights, norm scales N(1, 0.02)
            for module in model.modules():
                if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                    nn.init.normal_(module.weight, 0.0, 0.02)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, (nn.BatchNorm2d, nn.InstanceNorm2d)) and module.weight is not None:
                    nn.init.normal_(module.weight, 1.0, 0.02)
                    nn.init.zeros_(module.bias)
        adam = lambda m: torch.optim.Adam(m.parameters(), lr=self.lr, betas=self.betas)  # type: ignore[arg-type]  # noqa: E731
        return {"generator": Part(generator, adam(generator)), "discriminator": Part(discriminator, adam(discriminator))}

    def step(self, ctx: StepContext, batch: Any) -> dict[str, torch.Tensor]:
        magnitude, target = batch
        if self.augment:
            both = _augment(torch.cat([magnitude, target], dim=1), ctx.rng)
            magnitude, target = both[:, :1], both[:, 1:]
        G, D = ctx.models["generator"], ctx.models["discriminator"]
        batch, k = len(magnitude), self.l1_samples
        magnitude_k = magnitude.repeat(k, 1, 1, 1)  # K draws per slice, draw-major
        with ctx.autocast():
            fake = G(magnitude_k, sample_noise(self.config.generator, magnitude_k, ctx.rng))
        # discriminator: real and generated pairs in one forward (one DDP forward per backward)
        with ctx.autocast():
            logits = D(torch.cat([torch.cat([magnitude, target], 1), torch.cat([magnitude_k, fake.detach()], 1)], 0))
        real_logits, fake_logits = logits.float()[:batch], logits.float()[batch:]
        loss_d = 0.5 * (_adversarial(real_logits, True, self.gan_mode) + _adversarial(fake_logits, False, self.gan_mode))
        ctx.update("discriminator", loss_d)
        # generator: fool the updated discriminator and stay close (L1) to the target phasor
        for p in D.parameters():
            p.requires_grad_(False)
        try:
            with ctx.autocast():
                # the same real + generated batch as the discriminator's step: its batch norm statistics
                # then match those it was trained with (a generated-only batch gets other ones)
                logits = D(torch.cat([torch.cat([magnitude, target], 1), torch.cat([magnitude_k, fake], 1)], 0))
                adv = _adversarial(logits.float()[batch:], True, self.gan_mode)
            per_draw = (fake.float() - target.repeat(k, 1, 1, 1)).abs().mean((1, 2, 3)).view(k, batch)
            l1 = per_draw.min(0).values.mean()  # best of the K draws per slice
            ctx.update("generator", adv + self.l1_weight * l1)
        finally:
            for p in D.parameters():
                p.requires_grad_(True)
        return {"loss_d": loss_d.detach(), "loss_g_adv": adv.detach(), "l1": l1.detach()}

    def validate(self, models: Mapping[str, nn.Module], device: torch.device) -> dict[str, float]:
        if self.val is None or len(self.val) == 0:
            return {}
        return evaluate(models["generator"], self.val, device)

    def export_tensors(self, parts: Mapping[str, Part]) -> dict[str, torch.Tensor]:
        """Only the generator: the discriminator is not needed to synthesize (it stays in checkpoints)."""
        part = parts["generator"]
        return dict((part.ema.state_dict() if part.ema is not None else part.model.state_dict()).items())


@torch.no_grad()
def evaluate(generator: nn.Module, pairs: PairSet, device: torch.device | str = "cpu", batch_size: int = 8) -> dict[str, float]:
    """L1 between generated and canonical target unit phasors (all pixels), and the magnitude-weighted
    mean absolute phase error in degrees (tissue dominates; the noise background hardly counts).
    A generator with noise draws it from a fixed seed, so the numbers are repeatable; for such a
    sampler both are those of one random draw, higher than its conditional median would score."""
    l1_sum, err_sum, weight_sum, pixels = 0.0, 0.0, 0.0, 0
    rng = np.random.default_rng(0)
    for start in range(0, len(pairs.magnitude), batch_size):
        magnitude = torch.from_numpy(pairs.magnitude[start : start + batch_size]).to(device)
        phase = torch.from_numpy(pairs.phase[start : start + batch_size]).to(device)
        target = canonical_phasor(magnitude, phase)
        fake = generator(magnitude[:, None], sample_noise(generator.config, magnitude[:, None], rng)).float()  # type: ignore[arg-type]
        l1_sum += float((fake - target).abs().sum()) / 2
        pixels += target[:, 0].numel()
        error = torch.atan2(fake[:, 1] * target[:, 0] - fake[:, 0] * target[:, 1], (fake * target).sum(1)).abs()
        err_sum += float((error * magnitude).sum())
        weight_sum += float(magnitude.sum())
    return {"l1": l1_sum / max(pixels, 1), "phase_error_deg": float(np.degrees(err_sum / max(weight_sum, 1e-12)))}


@dataclass(frozen=True)
class GanRun:
    """What `kspacify train gan` does: data, network preset, loss, bounds."""

    data: Path
    out: Path
    preset: str = "small"
    gan_mode: str = "lsgan"
    l1_weight: float = 100.0
    l1_samples: int = 1
    noise_channels: int | None = None  # default: the preset's
    lr: float = 2e-4
    max_steps: int = 20_000
    max_minutes: float | None = None
    seed: int = 0
    batch_size: int = 4
    device: str = "auto"
    size: int = 256
    validate_every: int = 500
    checkpoint_every: int = 250
    checkpoint_minutes: float = 5.0
    export_dir: Path | None = None  # default out/weights
    splits: Path | None = None  # default out/splits.json
    console: bool = True
    assume: Acquisition = UNKNOWN  # the acquisition of volumes whose files do not say
    hold_out: float = 0.0  # share of subjects in genTest: never seen (for benchmarks and realism)


def train_gan(run: GanRun) -> TrainResult:
    """Split `run.data` by patient (genTrain / genVal), train the GAN, export `gan-<preset>`."""
    if run.preset not in PRESETS:
        raise UsageError(f"unknown preset {run.preset!r}; choose one of: {', '.join(PRESETS)}")
    config = PRESETS[run.preset]
    if run.noise_channels is not None:
        config = replace(config, generator=replace(config.generator, noise_channels=run.noise_channels))
    if run.size % config.generator.multiple:
        raise UsageError(f"--size must be a multiple of {config.generator.multiple} for preset {run.preset}")
    refs = list_volumes(run.data)
    if not refs:
        raise DataError(f"no complex volumes (fastMRI .h5, complex or magnitude+phase NIfTI, complex .npy) in {run.data}")
    splits = gen_splits(refs, run.splits or run.out / "splits.json", run.seed, 0.15, run.hold_out,
                        save=World.from_env().is_main, allow_single=True)  # fmt: skip
    by_key = {r.key: r for r in refs}
    train = load_pairs([by_key[k] for k in splits["genTrain"]], run.size, run.assume)
    val = load_pairs([by_key[k] for k in splits.get("genVal", [])], run.size, run.assume)
    task = GanTask(
        train, config, val if len(val) else None, run.gan_mode, run.l1_weight, run.lr,
        data_description={"source": str(run.data), "splits": splits, "size": run.size, "assumed_acquisition": run.assume.to_json(),
                          "fingerprints": sorted(fingerprint(by_key[k]) for n in ("genTrain", "genVal") for k in splits.get(n, []))},
        l1_samples=run.l1_samples,
    )  # fmt: skip
    loop = LoopConfig(
        out_dir=run.out, name=f"gan-{run.preset}", max_steps=run.max_steps, batch_size=run.batch_size, seed=run.seed,
        max_minutes=run.max_minutes, device=run.device, validate_every=run.validate_every,
        checkpoint_every=run.checkpoint_every, checkpoint_minutes=run.checkpoint_minutes,
        # a sampler's L1 rewards collapse to the median, so it is not a selection criterion there: last weights
        select_metric="l1" if task.val is not None and not config.generator.noise_channels else None,
        select_mode="min", export_dir=run.export_dir,
        console=run.console,
    )  # fmt: skip
    return fit(task, loop)
