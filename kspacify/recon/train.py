"""Training and testing a single-coil VarNet on k-space synthesized from magnitudes (the paper's 2.4).

The question the paper asks of a phase method: train a VarNet on k-space made from magnitude images
plus that method's phase, test it on real k-space, and see how good the reconstructions are. So:

* `build_training_set` takes the training `PairSet` (`kspacify.datasets.pairs`), keeps only its
  magnitudes and gives each slice a phase: the real one (`gt`) or one synthesized by a registered
  phase method (`smooth`, `physics`, `zero`, `gan`, `sbdm`: looked up by name in `kspacify.phase`),
  told each volume's acquisition. Each batch of a volume draws from `seeding.stream(seed, key, first
  slice)`, so a volume's phase does not depend on the others. A set is saved as safetensors and reused.
* `VarNetTask` trains on it through the project's one loop (`kspacify.training.fit`): SSIM loss with
  the volume's maximum as data range (as fastMRI), Adam, and a fresh mask per sample and step drawn
  from the step's seeded generator (resumable exactly). The VarNet starts as zero-filling (its
  refinement gates start at 0, `kspacify.recon.varnet`), so training can only add to it.
* `evaluate` reconstructs real k-space (validation or test volumes) with fixed masks, the same for
  every method and seed (drawn from `seeding.stream(mask_seed, key, slice)`), and reports the fastMRI
  metrics per slice, per volume and their mean over volumes (`model=None`: the zero-filled baseline).
* `train_varnet(VarNetRun(...))` is `kspacify train varnet`: the project's split policy
  (`rec_splits`, the same file the benchmark uses), the training set from recTrain, validation on recVal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from kspacify import metrics, phase
from kspacify.acquisition import UNKNOWN, Acquisition
from kspacify.datasets import (
    REC_FRACTIONS,
    PairDataset,
    PairSet,
    list_volumes,
    load_pairs,
    rec_splits,
)
from kspacify.errors import DataError, UsageError
from kspacify.kspace import fft2c, ifft2c
from kspacify.phase.base import UnknownMethodError
from kspacify.recon.losses import SSIMLoss
from kspacify.recon.masks import UndersamplingMask, sample_mask
from kspacify.recon.varnet import VarNet, VarNetConfig
from kspacify.seeding import stream
from kspacify.training import (
    LoopConfig,
    Part,
    StepContext,
    TrainResult,
    TrainTask,
    World,
    fit,
    load_weights,
)

__all__ = [
    "GT",
    "REC_FRACTIONS",
    "Evaluation",
    "Sampling",
    "VarNetRun",
    "VarNetTask",
    "build_training_set",
    "check_phase_method",
    "eval_mask",
    "evaluate",
    "load_varnet",
    "rec_splits",
    "train_varnet",
]

GT = "gt"  # the real phase of the data, not a registry method
METRIC_NAMES = ("ssim", "psnr", "nmse", "nrmse")


@dataclass(frozen=True)
class Sampling:
    """The undersampling a VarNet is trained and tested with (`kspacify.recon.masks`)."""

    acceleration: float = 4.0
    acs: int = 26
    mask: str = "equispaced"

    def draw(self, width: int, rng: np.random.Generator) -> UndersamplingMask:
        return sample_mask(self.mask, width, self.acceleration, self.acs, rng)

    def check(self, width: int) -> None:
        """A UsageError naming the problem if this sampling cannot be drawn at `width`, before any work."""
        try:
            self.draw(width, np.random.default_rng(0))
        except (TypeError, ValueError) as error:
            raise UsageError(f"--R {self.acceleration:g} --acs {self.acs}: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"acceleration": self.acceleration, "acs": self.acs, "mask": self.mask}


def eval_mask(sampling: Sampling, width: int, mask_seed: int, key: str, index: int) -> UndersamplingMask:
    """The fixed mask of slice `index` of volume `key` in validation/testing (same for every model)."""
    return sampling.draw(width, stream(mask_seed, key, index))


def build_training_set(
    pairs: PairSet, method: str, seed: int = 0, device: str = "cpu", batch_size: int = 16
) -> PairSet:
    """The magnitudes of `pairs` with the real phase (`gt`) or a phase synthesized by `method` for each
    volume's acquisition. Raises the method's own error (e.g. a missing checkpoint) if it cannot be created."""
    if method == GT:
        return pairs.with_phase(pairs.phase, {"phase": GT, "phase_settings": "real phase of the data", "seed": seed,
                                              "volumes": pairs.keys, "slices": len(pairs)})  # fmt: skip
    synthesizer = phase.create(method, device=device)
    synthesized = np.empty_like(pairs.magnitude)
    for number, key in enumerate(pairs.keys):
        where = np.flatnonzero(pairs.volume == number)
        for start in range(0, where.size, batch_size):
            part = where[start : start + batch_size]
            synthesized[part] = synthesizer.synthesize(pairs.magnitude[part], stream(seed, key, start), pairs.acquisitions[number])
    info = {"phase": method, "phase_settings": synthesizer.settings(), "seed": seed, "volumes": pairs.keys, "slices": len(pairs)}
    return pairs.with_phase(synthesized, info)


def _training_sample(pairs: PairSet, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(complex image, target magnitude, volume max) of one slice: the VarNet's view of a pair."""
    magnitude = torch.from_numpy(np.ascontiguousarray(pairs.magnitude[index]))
    angle = torch.from_numpy(np.ascontiguousarray(pairs.phase[index]))
    return torch.polar(magnitude, angle), magnitude, torch.tensor(pairs.maxval[index])


@dataclass
class Evaluation:
    """Metrics of reconstructions of real k-space: mean over volumes, per volume and per slice."""

    metrics: dict[str, float]
    per_volume: dict[str, dict[str, float]]
    effective_acceleration: float  # mean over the slices' masks
    examples: dict[str, np.ndarray] = field(default_factory=dict)  # "key#slice" -> reconstruction
    per_slice: list[dict[str, Any]] = field(default_factory=list)  # {"volume", "slice", metric: value}


def evaluate(
    model: nn.Module | None,
    pairs: PairSet,
    sampling: Sampling,
    device: torch.device | str = "cpu",
    batch_size: int = 4,
    mask_seed: int = 0,
    examples: Iterable[tuple[str, int]] = (),
) -> Evaluation:
    """Reconstruct every slice of `pairs` from its masked real k-space (`model=None`: zero-filled)
    and score each slice and each volume with fastMRI's metrics (data range = the volume's maximum)."""
    wanted = set(examples)
    per_volume: dict[str, dict[str, float]] = {}
    per_slice: list[dict[str, Any]] = []
    kept: dict[str, np.ndarray] = {}
    accelerations = []
    for key, image in pairs.volume_images():
        kspace = fft2c(image).astype(np.complex64)
        width = kspace.shape[-1]
        drawn = [eval_mask(sampling, width, mask_seed, key, i) for i in range(len(kspace))]
        accelerations += [m.effective_acceleration for m in drawn]
        masks = np.stack([m.mask for m in drawn])[:, None, :]  # (S, 1, W)
        masked = kspace * masks
        if model is None:
            recon = np.abs(ifft2c(masked)).astype(np.float32)
        else:
            parts = []
            with torch.no_grad():
                for start in range(0, len(masked), batch_size):
                    k = torch.from_numpy(masked[start : start + batch_size]).to(device)
                    m = torch.from_numpy(masks[start : start + batch_size]).to(device)
                    parts.append(model(k, m).float().cpu().numpy())
            recon = np.concatenate(parts)
        target = np.abs(image).astype(np.float32)
        per_volume[key] = metrics.evaluate(target, recon)
        maxval = float(target.max())
        for i in range(len(recon)):
            per_slice.append({"volume": key, "slice": i, **metrics.evaluate(target[i], recon[i], maxval)})
        for wanted_key, index in wanted:
            if wanted_key == key and 0 <= index < len(recon):
                kept[f"{key}#{index}"] = recon[index]
    mean = {n: float(np.mean([v[n] for v in per_volume.values()])) for n in METRIC_NAMES} if per_volume else {}
    acceleration = float(np.mean(accelerations)) if accelerations else float("nan")
    return Evaluation(mean, per_volume, acceleration, kept, per_slice)


class VarNetTask(TrainTask):
    """A single-coil VarNet trained on a PairSet (see the module doc), validated on real k-space."""

    def __init__(
        self,
        data: PairSet,
        net: VarNetConfig,
        sampling: Sampling,
        lr: float = 3e-4,
        val: PairSet | None = None,
        data_description: Mapping[str, Any] | None = None,
        mask_seed: int = 0,
        warmup_steps: int = 1,
    ) -> None:
        self.data, self.net, self.sampling, self.lr, self.warmup_steps = data, net, sampling, lr, warmup_steps
        self.val = val if val is not None and len(val) else None
        self.mask_seed = mask_seed
        self.data_description = dict(data_description or {})
        self.loss = SSIMLoss()
        # what the network must beat: zero-filling of recVal with the same masks
        self.zero_filled = evaluate(None, self.val, sampling, mask_seed=mask_seed).metrics if self.val is not None else {}

    def describe(self) -> dict[str, Any]:
        return {
            "architecture": "single-coil end-to-end VarNet (kspacify.recon.varnet.VarNet)",
            "config": {
                "varnet": self.net.to_dict(),
                "sampling": self.sampling.to_dict(),
                "loss": "1 - SSIM (7x7, data range = volume max)",
                "optimizer": {"type": "Adam", "lr": self.lr, "warmup_steps": self.warmup_steps},
            },
            "data": {
                **self.data_description,
                "training": self.data.info,
                "validation": {"volumes": self.val.keys if self.val is not None else [], "k-space": "real",
                               "mask_seed": self.mask_seed, "zero_filled": self.zero_filled},  # fmt: skip
            },
        }

    def dataset(self) -> PairDataset:  # type: ignore[override]
        return PairDataset(self.data, _training_sample)

    def build(self, device: torch.device) -> dict[str, Part]:
        from kspacify.training import linear_warmup

        model = VarNet(self.net).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        return {"varnet": Part(model, optimizer, linear_warmup(optimizer, self.warmup_steps))}

    def step(self, ctx: StepContext, batch: Any) -> dict[str, torch.Tensor]:
        image, target, maxval = batch
        count, _, width = image.shape
        masks = np.stack([self.sampling.draw(width, ctx.rng).mask for _ in range(count)])
        mask = torch.from_numpy(masks).to(ctx.device).reshape(count, 1, width)
        with ctx.autocast():
            output = ctx.models["varnet"](fft2c(image) * mask, mask)
        loss = self.loss(output.float(), target, maxval)
        ctx.update("varnet", loss)
        return {"loss": loss.detach()}

    def validate(self, models: Mapping[str, nn.Module], device: torch.device) -> dict[str, float]:
        if self.val is None:
            return {}
        scores = evaluate(models["varnet"], self.val, self.sampling, device, mask_seed=self.mask_seed).metrics
        return {**scores, "ssim_gain_over_zero_filled": scores["ssim"] - self.zero_filled["ssim"]}


def load_varnet(path: str | Path, device: torch.device | str = "cpu") -> tuple[VarNet, dict[str, Any]]:
    """A VarNet exported by training (sha256-verified), in eval mode, and its model card."""
    tensors, card = load_weights(path)
    model = VarNet(VarNetConfig(**card["config"]["varnet"]))
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval(), card


@dataclass(frozen=True)
class VarNetRun:
    """What `kspacify train varnet` does: data, phase method, network, sampling, bounds."""

    data: Path
    phase: str
    out: Path
    preset: str = "small"
    sampling: Sampling = Sampling()
    max_steps: int = 10_000
    max_minutes: float | None = None
    seed: int = 0
    batch_size: int = 4
    lr: float = 3e-4
    device: str = "auto"
    size: int = 256
    validate_every: int = 500
    splits: Path | None = None  # default out/splits.json
    console: bool = True
    warmup_steps: int = 1
    assume: Acquisition = UNKNOWN  # the acquisition of volumes whose files do not say


def check_phase_method(name: str, device: str = "cpu") -> None:
    """Raise ValueError naming the choices unless `name` is `gt` or a phase method that can be created."""
    if name != GT:
        if name not in phase.registry():
            raise UnknownMethodError(f"unknown phase method {name!r}; choose one of: {GT}, {', '.join(phase.method_names())}")
        phase.create(name, device=device)


def train_varnet(run: VarNetRun) -> TrainResult:
    """Split the data by patient, synthesize the training k-space from recTrain's magnitudes with
    `run.phase` (cached in out/), and train a VarNet validated on recVal's real k-space."""
    check_phase_method(run.phase, run.device)
    run.sampling.check(run.size)
    net = VarNetConfig.preset(run.preset)
    refs = list_volumes(run.data)
    if not refs:
        raise DataError(f"no complex volumes (fastMRI .h5, complex or magnitude+phase NIfTI, complex .npy) in {run.data}")
    main = World.from_env().is_main
    splits = rec_splits(refs, run.splits or run.out / "splits.json", save=main)
    by_key = {ref.key: ref for ref in refs}
    cache = run.out / "training-sets" / f"{run.phase}-seed{run.seed}-{run.size}.safetensors"
    if cache.exists():
        data = PairSet.load(cache)
    else:
        data = build_training_set(load_pairs([by_key[k] for k in splits["recTrain"]], run.size, run.assume),
                                  run.phase, run.seed, run.device)  # fmt: skip
        if main:
            data.save(cache)
    task = VarNetTask(
        data, net, run.sampling, run.lr,
        val=load_pairs([by_key[k] for k in splits.get("recVal", [])], run.size, run.assume),
        data_description={"source": str(run.data.resolve()), "splits": splits, "size": run.size},
        warmup_steps=run.warmup_steps,
    )  # fmt: skip
    config = LoopConfig(
        out_dir=run.out, name=f"varnet-{run.phase}-{run.preset}", max_steps=run.max_steps, batch_size=run.batch_size,
        seed=run.seed, max_minutes=run.max_minutes, device=run.device, validate_every=run.validate_every,
        select_metric="ssim" if task.val is not None else None, console=run.console,
    )  # fmt: skip
    return fit(task, config)
