"""Training the conditional score model: `kspacify train sbdm` (the paper's 2.3, on our phasor).

* Data: complex slices from any `kspacify.datasets` reader (fastMRI k-space, complex NIfTI, complex
  .npy) in a `PairSet`, read at `read_size` (normalized per volume as the readers and `convert` do),
  then put on the diffusion grid exactly as inference does (`grid_pairs` (`kspacify.sbdm.grid.to_diffusion_grid`: magnitude
  area-averaged; target = area average of magnitude x exp(i phase), normalized to a unit phasor), so
  the network sees at training what it sees at sampling. Grid cells with no signal at all (an exactly
  zero background, e.g. of a template) get a uniform random phase drawn once from a seed per slice:
  that is what noise-only background looks like, and a zero target is not a phasor.
* Splits: genTrain / genVal by the project's policy (`datasets.gen_splits`: by subject), into JSON,
  reused when present.
* Condition: the magnitude and, for a conditioned network (`SbdmRun.condition`, the default), the
  volume's acquisition as constant channels (`kspacify.sbdm.conditioning`); each training sample's
  acquisition is replaced by "unknown" with probability `condition_dropout`, so the network also
  learns what to draw when the headers say nothing.
* Loss: `dsm_loss` (sigma(t)^2-weighted DSM, t ~ U[eps, 1]; times EDM's weight for the default `edm`
  parameterization, `LOSS_WEIGHTING`) with all noise from the step's generator,
  so a resumed run draws what an uninterrupted one draws. Augmentation: per-step random flips of
  (magnitude, phasor) pairs, also from the step's generator (a flipped slice is an equally valid one).
* Validation score (`val_dsm`): the sigma^2-weighted loss (whatever the training weight) on the validation slices at fixed noise levels
  (t = (k + 1/2) / K, K = 8) with fixed noise (seeded), so numbers are comparable across steps and runs.
* Export: the scaffold exports the EMA (or best) weights; `export_checkpoint` rewrites them in the
  format `kspacify.sbdm.checkpoint.load_checkpoint` reads, as `sbdm-<preset>.safetensors` + card.

Where no complex data exist, `kspacify data build` (kspacify/data_build.py) makes training pairs
from magnitude-only volumes with the `physics` phase model; its manifest goes into the model card.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np
import torch
from torch import nn

from kspacify.acquisition import UNKNOWN, Acquisition
from kspacify.datasets import PairSet, fingerprint, gen_splits, list_volumes, load_pairs, split_unit
from kspacify.errors import DataError, UsageError
from kspacify.sbdm.checkpoint import save_checkpoint
from kspacify.sbdm.conditioning import FEATURES, UNKNOWN_FEATURES, condition, encode
from kspacify.sbdm.grid import to_diffusion_grid
from kspacify.sbdm.network import ScoreNet, ScoreNetConfig
from kspacify.sbdm.sde import VESDE, dsm_loss, phasor_sigma_max
from kspacify.seeding import stream
from kspacify.training import (
    EMA,
    LoopConfig,
    Part,
    StepContext,
    TrainResult,
    TrainTask,
    World,
    fit,
    linear_warmup,
    load_weights,
)

__all__ = ["GridPairs", "SbdmRun", "SbdmTask", "export_checkpoint", "grid_pairs", "train_sbdm", "val_dsm"]

VAL_LEVELS = 8  # fixed noise levels of the validation score
VAL_SEED = 1234  # its fixed noise
DATASET_CARD = "manifest.json"  # `kspacify data build`'s description of a data directory, copied into the model card


@dataclass
class GridPairs:
    """Training pairs on the diffusion grid: magnitude (N, 1, g, g), unit phasor (N, 2, g, g), the
    acquisition features of each slice (N, conditioning.FEATURES)."""

    magnitude: torch.Tensor
    phasor: torch.Tensor
    volumes: list[str]
    skipped_slices: int = 0
    features: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.magnitude.shape[0])


LOSS_WEIGHTING: dict[str, Literal["sigma2", "edm"]] = {"eps": "sigma2", "edm": "edm"}  # the parameterization's training weight (dsm_loss)


def grid_pairs(pairs: PairSet, diffusion_size: int, seed: int = 0, min_signal: float = 0.02) -> GridPairs:
    """Every slice with signal put on the diffusion grid as inference does. Slices whose fraction of
    pixels above 0.1 (normalized) is below `min_signal` are skipped: no phase to learn."""
    grid = (diffusion_size, diffusion_size)
    mags, phasors, features, skipped = [], [], [], 0
    for index in range(len(pairs)):
        magnitude = pairs.magnitude[index]
        if float(np.mean(magnitude > 0.1)) < min_signal:
            skipped += 1
            continue
        mag = torch.from_numpy(np.ascontiguousarray(magnitude))[None, None]
        coarse, phasor = to_diffusion_grid(mag, grid, torch.from_numpy(np.ascontiguousarray(pairs.phase[index]))[None])
        assert phasor is not None
        empty = torch.linalg.vector_norm(phasor, dim=1) < 0.5  # (1, g, g): no signal in the cell
        if bool(empty.any()):
            rng = stream(seed, pairs.keys[int(pairs.volume[index])], index)
            angle = torch.from_numpy(rng.uniform(-math.pi, math.pi, size=grid).astype(np.float32))[None]
            fill = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
            phasor = torch.where(empty[:, None], fill, phasor)
        mags.append(coarse[0])
        phasors.append(phasor[0])
        features.append(torch.from_numpy(encode(pairs.acquisition_of(index))))
    if not mags:
        raise DataError(f"no slices with signal in {len(pairs.keys)} volume(s)")
    return GridPairs(torch.stack(mags).float(), torch.stack(phasors).float(), list(pairs.keys), skipped, torch.stack(features))


class _GridDataset:
    def __init__(self, pairs: GridPairs) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.pairs.features[index] if self.pairs.features is not None else torch.from_numpy(UNKNOWN_FEATURES)
        return self.pairs.magnitude[index], self.pairs.phasor[index], features  # type: ignore[return-value]


@torch.no_grad()
def val_dsm(model: nn.Module, pairs: GridPairs, sde: VESDE, device: torch.device, batch_size: int = 16,
            levels: int = VAL_LEVELS, seed: int = VAL_SEED, channels: int = 1) -> dict[str, float]:  # fmt: skip
    """The DSM loss on `pairs` at `levels` fixed noise levels with fixed noise: comparable across steps.
    `val_dsm` is the mean over levels (an estimate of the training objective), `val_dsm_low` the mean
    over sigma < 1, where the phase detail is decided."""
    generator = torch.Generator(device=device).manual_seed(seed)
    ts = (torch.arange(levels, dtype=torch.float64) + 0.5) / levels * (1 - sde.eps) + sde.eps
    sigmas = [float(sde.marginal_std(float(t))) for t in ts]
    totals = [0.0] * levels
    for start in range(0, len(pairs), batch_size):
        features = pairs.features[start : start + batch_size].to(device) if pairs.features is not None else None
        mag = condition(pairs.magnitude[start : start + batch_size].to(device), features, channels)
        x0 = pairs.phasor[start : start + batch_size].to(device)
        for k, sigma in enumerate(sigmas):
            z = torch.randn(x0.shape, generator=generator, device=device)
            s = torch.full((x0.shape[0],), sigma, device=device)
            score = model(x0 + sigma * z, s, mag)
            totals[k] += float(((sigma * score.float() + z) ** 2).mean(dim=(1, 2, 3)).sum())
    per_level = [t / len(pairs) for t in totals]
    low = [v for v, s in zip(per_level, sigmas) if s < 1.0]
    out = {"val_dsm": float(np.mean(per_level)), "val_dsm_low": float(np.mean(low)) if low else float("nan")}
    out.update({f"val_dsm@{s:.3g}": v for s, v in zip(sigmas, per_level)})
    return out


class SbdmTask(TrainTask):
    """The conditional score network trained by sigma^2-weighted DSM (see the module doc)."""

    def __init__(
        self,
        train: GridPairs,
        val: GridPairs | None,
        net: ScoreNetConfig,
        sde: VESDE,
        lr: float = 1e-4,
        warmup_steps: int = 5000,
        grad_clip: float = 1.0,
        ema_decay: float = 0.999,
        flips: bool = True,
        data_description: Mapping[str, Any] | None = None,
        condition_dropout: float = 0.2,
    ) -> None:
        self.condition_dropout = condition_dropout
        self.train, self.val, self.net, self.sde = train, val, net, sde
        self.lr, self.warmup_steps, self.grad_clip, self.ema_decay, self.flips = lr, warmup_steps, grad_clip, ema_decay, flips
        self.data_description = dict(data_description or {})

    def describe(self) -> dict[str, Any]:
        return {
            "architecture": "NCSN++-style conditional U-Net (kspacify.sbdm.network.ScoreNet)",
            "config": {
                "score_net": self.net.to_dict(),
                "diffusion_size": self.net.image_size,
                "sde": self.sde.to_dict(),
                "loss": "sigma(t)^2-weighted denoising score matching on the unit phasor, t ~ U[eps, 1]"
                + (", times EDM's weight (sigma^2 + sigma_data^2) / sigma_data^2" if self.net.parameterization == "edm" else ""),
                "optimizer": {"type": "Adam", "lr": self.lr, "warmup_steps": self.warmup_steps,
                              "grad_clip": self.grad_clip, "ema_decay": self.ema_decay},
                "augmentation": "random vertical/horizontal flips per step" if self.flips else None,
                "condition": {"magnitude": True, "acquisition_features": self.net.cond_channels - 1,
                              "dropout_to_unknown": self.condition_dropout if self.net.cond_channels > 1 else None},
            },  # fmt: skip
            "data": {
                **self.data_description,
                "train_slices": len(self.train),
                "val_slices": len(self.val) if self.val is not None else 0,
            },
        }

    def dataset(self) -> _GridDataset:  # type: ignore[override]
        return _GridDataset(self.train)

    def build(self, device: torch.device) -> dict[str, Part]:
        model = ScoreNet(self.net, seed=None).to(device)  # seeded by the loop's RNG fork
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        return {"score": Part(model, optimizer, linear_warmup(optimizer, self.warmup_steps),
                              EMA(model, self.ema_decay), self.grad_clip)}  # fmt: skip

    def step(self, ctx: StepContext, batch: Any) -> dict[str, torch.Tensor]:
        magnitude, phasor, features = batch
        if self.flips:
            flip = torch.rand(2, generator=ctx.generator, device=ctx.device) < 0.5
            dims = [d for d, f in zip((-2, -1), flip.tolist()) if f]
            if dims:
                magnitude, phasor = magnitude.flip(dims), phasor.flip(dims)
        if self.net.cond_channels > 1 and self.condition_dropout > 0:
            dropped = torch.rand(len(features), generator=ctx.generator, device=ctx.device) < self.condition_dropout
            unknown = torch.from_numpy(UNKNOWN_FEATURES).to(ctx.device)
            features = torch.where(dropped[:, None], unknown, features)
        cond = condition(magnitude, features, self.net.cond_channels)
        with ctx.autocast():
            loss = dsm_loss(ctx.models["score"], phasor, cond, self.sde, ctx.generator, LOSS_WEIGHTING[self.net.parameterization])
        norm = ctx.update("score", loss)
        out = {"loss": loss.detach()}
        if norm is not None:
            out["grad_norm"] = norm.detach()
        return out

    def validate(self, models: Mapping[str, nn.Module], device: torch.device) -> dict[str, float]:
        if self.val is None or len(self.val) == 0:
            return {}
        return val_dsm(models["score"], self.val, self.sde, device, channels=self.net.cond_channels)


def export_checkpoint(result: TrainResult, net: ScoreNetConfig, sde: VESDE, path: Path, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Rewrite the scaffold's exported weights (EMA, or the best-validating) as a `kspacify-sbdm`
    checkpoint at `path` that `load_checkpoint` reads. Both its `model.*` and `ema.*` tensors are these
    averaged weights (the scaffold's export keeps no raw weights; sampling uses `ema`)."""
    if result.weights is None or result.card is None:
        raise ValueError("export_checkpoint: the run exported no weights (not rank 0?)")
    tensors, card = load_weights(result.weights)
    model = ScoreNet(net, seed=0)
    model.load_state_dict(tensors, strict=True)
    training = dict(card.get("training", {}))
    training.update({"learning_rate": card["config"]["optimizer"]["lr"], "optimizer": card["config"]["optimizer"],
                     "loss": card["config"]["loss"], "augmentation": card["config"].get("augmentation"),
                     "raw_weights": "not kept: model.* = ema.* = the exported averaged weights"})  # fmt: skip
    quality = {"val_dsm_loss": card.get("quality", {}).get("validation", {}).get("val_dsm"),
               "validation": card.get("quality", {}).get("validation", {}),
               "validation_note": f"DSM loss on genVal at {VAL_LEVELS} fixed noise levels with fixed noise (seed {VAL_SEED}); "
                                  "an untrained network scores 1.0, lower is better"}  # fmt: skip
    metadata = {"data": card.get("data", {}), "training": training, "quality": quality,
                "diffusion_size": net.image_size, "trainer": "kspacify train sbdm (kspacify.sbdm.train)"}  # fmt: skip
    from kspacify.training.checkpoint import deep_merge

    return save_checkpoint(path, model, net, deep_merge(metadata, dict(extra or {})), sde=sde)


@dataclass(frozen=True)
class SbdmRun:
    """What `kspacify train sbdm` does: data, network, bounds, optimization, outputs."""

    data: Path
    out: Path
    preset: str = "small"
    nf: int | None = None  # None: the preset's width
    parameterization: str = "edm"  # ScoreNetConfig.parameterization ("eps": the paper's); "edm" trains with EDM's loss weight
    diffusion_size: int = 64
    read_size: int = 256
    sigma_max: float | None = None  # None: sqrt(2 g^2), Song & Ermon's rule for phasors on the g x g grid
    max_steps: int = 100_000
    max_minutes: float | None = None
    batch_size: int = 8
    lr: float = 1e-4
    warmup_steps: int = 5000
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "auto"
    splits: Path | None = None  # default out/splits.json
    val_fraction: float = 0.1
    val_slices: int = 64  # at most this many genVal slices (evenly spaced) are scored
    validate_every: int = 500
    checkpoint_every: int = 200
    checkpoint_minutes: float = 5.0
    log_every: int = 10
    export_dir: Path | None = None  # default out/weights
    console: bool = True
    assume: Acquisition = UNKNOWN  # the acquisition of volumes whose files do not say
    condition: bool = True  # condition on the acquisition (else on the magnitude only)
    condition_dropout: float = 0.2
    hold_out: float = 0.0  # share of subjects in genTest: never seen (for benchmarks and realism)

    def net(self) -> ScoreNetConfig:
        overrides: dict[str, Any] = {"image_size": self.diffusion_size, "cond_channels": 1 + FEATURES if self.condition else 1}
        overrides["parameterization"] = self.parameterization
        if self.nf is not None:
            overrides["nf"] = self.nf
        return ScoreNetConfig.preset(self.preset, **overrides)

    def sde(self) -> VESDE:
        sigma_max = self.sigma_max if self.sigma_max is not None else phasor_sigma_max(self.diffusion_size, self.diffusion_size)
        return VESDE(sigma_max=sigma_max)


def _subset(pairs: GridPairs, count: int) -> GridPairs:
    if len(pairs) <= count:
        return pairs
    index = torch.from_numpy(np.linspace(0, len(pairs) - 1, count).round().astype(np.int64))
    features = pairs.features[index] if pairs.features is not None else None
    return GridPairs(pairs.magnitude[index], pairs.phasor[index], pairs.volumes, pairs.skipped_slices, features)


def train_sbdm(run: SbdmRun) -> tuple[TrainResult, dict[str, Any] | None]:
    """Split by patient, load the pairs, train (resumable), and once max_steps is reached export
    `sbdm-<preset>.safetensors` + card. Returns the loop's result and the checkpoint card (or None)."""
    net, sde = run.net(), run.sde()  # a bad preset or size fails before any reading
    if run.read_size < run.diffusion_size:
        raise UsageError(f"read size {run.read_size} is smaller than the diffusion size {run.diffusion_size}")
    refs = list_volumes(run.data)
    if not refs:
        raise DataError(f"no complex volumes (fastMRI .h5, complex or magnitude+phase NIfTI, complex .npy) in {run.data}")
    splits = gen_splits(refs, run.splits or run.out / "splits.json", run.seed, run.val_fraction, run.hold_out,
                        save=World.from_env().is_main)  # fmt: skip
    by_key = {ref.key: ref for ref in refs}

    def pairs_of(name: str) -> GridPairs:
        return grid_pairs(load_pairs([by_key[k] for k in splits[name]], run.read_size, run.assume), run.diffusion_size, run.seed)

    train = pairs_of("genTrain")
    val = _subset(pairs_of("genVal"), run.val_slices) if splits["genVal"] else None
    description: dict[str, Any] = {
        "source": str(run.data),
        "readers": sorted({ref.reader for ref in refs}),
        "read_size": run.read_size,
        "pairs": "to_diffusion_grid: magnitude area-averaged; phasor = normalized area average of magnitude x exp(i phase)",
        "splits": splits,
        "subjects": {name: sorted({split_unit(by_key[k]) for k in splits[name]}) for name in ("genTrain", "genVal")},
        # what the model saw, by content: the benchmark leaves these volumes out of what it tests on
        "fingerprints": sorted(fingerprint(by_key[k]) for name in ("genTrain", "genVal") for k in splits[name]),
        "assumed_acquisition": run.assume.to_json(),
        "skipped_empty_slices": train.skipped_slices + (val.skipped_slices if val is not None else 0),
    }  # fmt: skip
    card_file = Path(run.data) / DATASET_CARD
    if card_file.is_file():
        description["build"] = json.loads(card_file.read_text(encoding="utf-8"))
    task = SbdmTask(train, val, net, sde, run.lr, run.warmup_steps, run.grad_clip, run.ema_decay, data_description=description,
                    condition_dropout=run.condition_dropout)  # fmt: skip
    name = f"sbdm-{run.preset}"
    config = LoopConfig(
        out_dir=run.out, name=f"{name}-loop", max_steps=run.max_steps, batch_size=run.batch_size, seed=run.seed,
        max_minutes=run.max_minutes, device=run.device, validate_every=run.validate_every,
        checkpoint_every=run.checkpoint_every, checkpoint_minutes=run.checkpoint_minutes, log_every=run.log_every,
        select_metric="val_dsm" if val is not None else None, select_mode="min",
        export_dir=run.out / "loop-export", console=run.console,
    )  # fmt: skip
    result = fit(task, config)
    card = None
    if result.weights is not None and World.from_env().is_main:
        card = export_checkpoint(result, net, sde, (run.export_dir or run.out / "weights") / f"{name}.safetensors")
    return result, card

