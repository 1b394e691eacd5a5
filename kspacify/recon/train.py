"""Training and testing a single-coil VarNet on k-space synthesized from magnitudes (the paper's 2.4).

The question the paper asks of a phase method: train a VarNet on k-space made from magnitude images
plus that method's phase, test it on real k-space, and see how good the reconstructions are. So:

* `build_training_set` takes the complex training volumes, keeps only their magnitudes and gives each
  slice a phase: the real one (`gt`) or one synthesized by a registered phase method (`smooth`,
  `physics`, `zero`, later `gan`, `sbdm`: looked up by name in `kspacify.phase`). Each batch of a volume
  draws from `default_rng([seed, key hash, first slice])`, so a volume's phase does not depend on the
  others. A set is saved as safetensors (no pickle) and reused.
* `VarNetTask` trains on it through the project's one loop (`kspacify.training.fit`): SSIM loss with
  the volume's maximum as data range (as fastMRI), Adam 3e-4, batch 4, and a fresh mask per sample
  and step drawn from the step's seeded generator (resumable exactly).
* `evaluate` reconstructs real k-space (validation or test volumes) with fixed masks, the same for
  every method and seed (drawn from [mask_seed, key hash, slice]), and reports the fastMRI metrics
  per volume and their mean over volumes (`model=None`: the zero-filled baseline).
* `train_varnet(VarNetRun(...))` is `kspacify train varnet`: patient-level splits (`rec_splits`, the
  same file the benchmark uses), the training set from recTrain, validation on recVal.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from kspacify import metrics, phase
from kspacify.errors import UsageError
from kspacify.datasets import VolumeRef, list_volumes, load_splits_with_meta, make_volume_splits, read_volume, save_splits
from kspacify.kspace import fft2c, ifft2c
from kspacify.phase.base import UnknownMethodError
from kspacify.recon.losses import SSIMLoss
from kspacify.recon.masks import UndersamplingMask, sample_mask
from kspacify.recon.varnet import VarNet, VarNetConfig
from kspacify.training import LoopConfig, Part, StepContext, TrainResult, TrainTask, World, fit, load_weights

__all__ = [
    "GT",
    "REC_FRACTIONS",
    "ComplexVolume",
    "DataError",
    "Evaluation",
    "Sampling",
    "TrainingSet",
    "VarNetRun",
    "VarNetTask",
    "build_training_set",
    "check_phase_method",
    "eval_mask",
    "evaluate",
    "key_hash",
    "load_varnet",
    "load_volumes",
    "rec_splits",
    "train_varnet",
]

GT = "gt"  # the real phase of the data, not a registry method


def key_hash(key: str) -> int:
    """A stable 60-bit integer for a volume key (seeds per-volume random streams)."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:15], 16)


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
    return sampling.draw(width, np.random.default_rng([mask_seed, key_hash(key), index]))


@dataclass(frozen=True)
class ComplexVolume:
    """One volume's complex images (S, H, W) complex64, normalized as the dataset readers do."""

    key: str
    image: np.ndarray

    @property
    def magnitude(self) -> np.ndarray:
        return np.abs(self.image).astype(np.float32)


def load_volumes(refs: Iterable[VolumeRef], size: int = 256) -> list[ComplexVolume]:
    """Read listed volumes (`kspacify.datasets`) into memory, size x size slices."""
    out = []
    for ref in refs:
        slices = list(read_volume(ref, size))
        if slices:
            out.append(ComplexVolume(ref.key, np.stack([s.image for s in slices])))
    return out


@dataclass
class TrainingSet:
    """Magnitudes with a phase per slice, and each slice's volume maximum (SSIM data range)."""

    magnitude: np.ndarray  # (N, H, W) float32
    phase: np.ndarray  # (N, H, W) float32, radians
    maxval: np.ndarray  # (N,) float32
    info: dict[str, Any] = field(default_factory=dict)  # method, settings, seed, volumes, slices

    def save(self, path: str | Path) -> None:
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tensors = {"magnitude": self.magnitude, "phase": self.phase, "maxval": self.maxval}
        save_file(tensors, str(tmp), metadata={"format": "kspacify-training-set", "info": json.dumps(self.info)})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> TrainingSet:
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as f:
            info = json.loads((f.metadata() or {}).get("info", "{}"))
            arrays = {k: f.get_tensor(k) for k in ("magnitude", "phase", "maxval")}
        return cls(arrays["magnitude"], arrays["phase"], arrays["maxval"], info)


def build_training_set(
    volumes: Sequence[ComplexVolume], method: str, seed: int = 0, device: str = "cpu", batch_size: int = 16
) -> TrainingSet:
    """Magnitudes of `volumes` with the real phase (`gt`) or a phase synthesized by `method`.
    Raises the method's own error (e.g. a missing checkpoint) if it cannot be created."""
    synthesizer = None if method == GT else phase.create(method, device=device)
    magnitudes, phases, maxvals = [], [], []
    for volume in volumes:
        magnitude = volume.magnitude
        if synthesizer is None:
            volume_phase = np.angle(volume.image).astype(np.float32)
        else:
            volume_phase = np.empty_like(magnitude)
            for start in range(0, len(magnitude), batch_size):
                rng = np.random.default_rng([seed, key_hash(volume.key), start])
                volume_phase[start : start + batch_size] = synthesizer.synthesize(magnitude[start : start + batch_size], rng)
        magnitudes.append(magnitude)
        phases.append(volume_phase)
        maxvals.append(np.full(len(magnitude), magnitude.max(), dtype=np.float32))
    info = {
        "phase": method,
        "phase_settings": synthesizer.settings() if synthesizer is not None else "real phase of the data",
        "seed": seed,
        "volumes": [v.key for v in volumes],
        "slices": int(sum(len(m) for m in magnitudes)),
    }
    return TrainingSet(np.concatenate(magnitudes), np.concatenate(phases), np.concatenate(maxvals), info)


class _Slices(Dataset):
    """(complex image, target magnitude, volume max) per slice of a TrainingSet."""

    def __init__(self, data: TrainingSet) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data.magnitude)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        magnitude = torch.from_numpy(np.ascontiguousarray(self.data.magnitude[index]))
        angle = torch.from_numpy(np.ascontiguousarray(self.data.phase[index]))
        return torch.polar(magnitude, angle), magnitude, torch.tensor(self.data.maxval[index])


@dataclass
class Evaluation:
    """Metrics of reconstructions of real k-space: mean over volumes, and per volume."""

    metrics: dict[str, float]
    per_volume: dict[str, dict[str, float]]
    effective_acceleration: float  # mean over the slices' masks
    examples: dict[str, np.ndarray] = field(default_factory=dict)  # "key#slice" -> reconstruction


def evaluate(
    model: nn.Module | None,
    volumes: Sequence[ComplexVolume],
    sampling: Sampling,
    device: torch.device | str = "cpu",
    batch_size: int = 4,
    mask_seed: int = 0,
    examples: Iterable[tuple[str, int]] = (),
) -> Evaluation:
    """Reconstruct every slice of `volumes` from its masked real k-space (`model=None`: zero-filled)
    and score each volume with fastMRI's metrics (data range = the volume's maximum)."""
    wanted = set(examples)
    per_volume: dict[str, dict[str, float]] = {}
    kept: dict[str, np.ndarray] = {}
    accelerations = []
    for volume in volumes:
        kspace = fft2c(volume.image).astype(np.complex64)
        width = kspace.shape[-1]
        drawn = [eval_mask(sampling, width, mask_seed, volume.key, i) for i in range(len(kspace))]
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
        per_volume[volume.key] = metrics.evaluate(volume.magnitude, recon)
        for key, index in wanted:
            if key == volume.key and 0 <= index < len(recon):
                kept[f"{key}#{index}"] = recon[index]
    names = ("ssim", "psnr", "nmse", "nrmse")
    mean = {n: float(np.mean([v[n] for v in per_volume.values()])) for n in names} if per_volume else {}
    return Evaluation(mean, per_volume, float(np.mean(accelerations)) if accelerations else float("nan"), kept)


class VarNetTask(TrainTask):
    """A single-coil VarNet trained on a TrainingSet (see the module doc), validated on real k-space."""

    def __init__(
        self,
        data: TrainingSet,
        net: VarNetConfig,
        sampling: Sampling,
        lr: float = 3e-4,
        val_volumes: Sequence[ComplexVolume] = (),
        data_description: Mapping[str, Any] | None = None,
        mask_seed: int = 0,
    ) -> None:
        self.data, self.net, self.sampling, self.lr = data, net, sampling, lr
        self.val_volumes, self.mask_seed = list(val_volumes), mask_seed
        self.data_description = dict(data_description or {})
        self.loss = SSIMLoss()

    def describe(self) -> dict[str, Any]:
        return {
            "architecture": "single-coil end-to-end VarNet (kspacify.recon.varnet.VarNet)",
            "config": {
                "varnet": self.net.to_dict(),
                "sampling": self.sampling.to_dict(),
                "loss": "1 - SSIM (7x7, data range = volume max)",
                "optimizer": {"type": "Adam", "lr": self.lr},
            },
            "data": {
                **self.data_description,
                "training": self.data.info,
                "validation": {"volumes": [v.key for v in self.val_volumes], "k-space": "real", "mask_seed": self.mask_seed},
            },
        }

    def dataset(self) -> Dataset:
        return _Slices(self.data)

    def build(self, device: torch.device) -> dict[str, Part]:
        model = VarNet(self.net).to(device)
        return {"varnet": Part(model, torch.optim.Adam(model.parameters(), lr=self.lr))}

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
        if not self.val_volumes:
            return {}
        return evaluate(models["varnet"], self.val_volumes, self.sampling, device, mask_seed=self.mask_seed).metrics


def load_varnet(path: str | Path, device: torch.device | str = "cpu") -> tuple[VarNet, dict[str, Any]]:
    """A VarNet exported by training (sha256-verified), in eval mode, and its model card."""
    tensors, card = load_weights(path)
    model = VarNet(VarNetConfig(**card["config"]["varnet"]))
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval(), card


REC_FRACTIONS = {"recTrain": 0.6, "recVal": 0.2, "recTest": 0.2}  # the paper's 126/30/40 patients, rounded


class DataError(ValueError):
    """The data cannot be used as asked (no complex volumes, too few patients, a stale splits file)."""


def rec_splits(refs: Sequence[VolumeRef], path: Path, seed: int = 0, save: bool = True) -> dict[str, list[str]]:
    """The paper's patient-level recTrain / recVal / recTest splits of `refs`: read from `path` when it
    exists (every key must still be in the data), else made from `seed` and written there (if `save`:
    under torchrun only rank 0 writes; the others make the same splits). With only two patients there
    is no recVal (training then keeps its last weights)."""
    keys = {ref.key for ref in refs}
    if path.exists():
        splits, _ = load_splits_with_meta(path)
        missing = sorted(k for name in ("recTrain", "recVal", "recTest") for k in splits.get(name, []) if k not in keys)
        if missing or not splits.get("recTrain"):
            raise DataError(f"{path} does not fit this data (e.g. volume {missing[0] if missing else '?'} is not in it); "
                            "use another output directory or --splits file")  # fmt: skip
        return splits
    patients = len({ref.patient or ref.key for ref in refs})
    if patients < 2:
        raise DataError(f"found {len(refs)} volume(s) of {patients} patient(s); training and testing need at least 2")
    fractions = REC_FRACTIONS if patients >= 3 else {"recTrain": 0.5, "recVal": 0.0, "recTest": 0.5}
    splits = make_volume_splits(refs, fractions, seed)
    if save:
        save_splits(path, splits, {"seed": seed, "fractions": fractions, "patients": patients, "volumes": len(refs)})
    return splits


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
        data = TrainingSet.load(cache)
    else:
        volumes = load_volumes([by_key[k] for k in splits["recTrain"]], run.size)
        data = build_training_set(volumes, run.phase, run.seed, run.device)
        if main:
            data.save(cache)
    task = VarNetTask(
        data, net, run.sampling, run.lr,
        val_volumes=load_volumes([by_key[k] for k in splits.get("recVal", [])], run.size),
        data_description={"source": str(run.data.resolve()), "splits": splits, "size": run.size},
    )  # fmt: skip
    config = LoopConfig(
        out_dir=run.out, name=f"varnet-{run.phase}-{run.preset}", max_steps=run.max_steps, batch_size=run.batch_size,
        seed=run.seed, max_minutes=run.max_minutes, device=run.device, validate_every=run.validate_every,
        select_metric="ssim" if task.val_volumes else None, console=run.console,
    )  # fmt: skip
    return fit(task, config)
