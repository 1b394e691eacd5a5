"""The one training loop of the project: VarNet, SBDM and GAN trainers all run through `fit`.

A trainer is a `TrainTask`. It says what it trains (`build`: named `Part`s, each a model with its
optimizer and, where wanted, an LR scheduler, an EMA of the weights and gradient clipping), on what
(`dataset`), how one step goes (`step`: it calls `ctx.update(part, loss)` for each part it updates,
so a GAN updates its discriminator and its generator in one step, VarNet and SBDM their one model),
how the result is judged (`validate`) and what it is (`describe`: architecture, config and data, for
the model card and to refuse to resume a checkpoint of a different run). `fit` does everything else:

* Bounds. `max_steps` counts optimizer steps over all sessions; `max_minutes` bounds this session.
  A run that stops on time writes a checkpoint, and calling `fit` again with the same out_dir goes on.
* Checkpoints (`out_dir/checkpoints/step-N.safetensors` + `.json`, see `training.checkpoint`): every
  part's model, optimizer, scheduler and EMA, the AMP scaler, the step, the best validation so far.
  Written every `checkpoint_every` steps, every `checkpoint_minutes`, and when the run stops (also on
  Ctrl-C when not distributed, and at the end of the step in which SIGTERM arrives: a batch
  scheduler's time limit or a pre-emption); the newest valid one is loaded on start. No pickle anywhere.
* Randomness is counter-based: step s of rank r draws from numpy `default_rng([seed, r, s, 0])`
  (`ctx.rng`) and a torch generator seeded from [seed, r, s, 1] (`ctx.generator`), and runs inside a
  fork of torch's global RNG seeded the same way (for dropout and the like), which is restored after.
  So the whole RNG state of a step is a function of (seed, rank, step): a resumed run draws exactly
  what an uninterrupted one draws, nothing random needs saving, and the caller's global RNG is never
  disturbed. Data order: `DistributedSampler(seed=seed)`, epoch e = `set_epoch(e)`, a resumed epoch
  skips the batches already done. Datasets must be deterministic; tasks draw their randomness
  (masks, noise levels, ...) from `ctx`.
* Distributed: under `torchrun` (WORLD_SIZE > 1) every model with trainable weights is wrapped in
  DistributedDataParallel (gloo on CPU, NCCL on CUDA), each rank reads its own shard, the stop and
  checkpoint decisions are agreed by all ranks, and only rank 0 logs, validates and writes files.
  `batch_size` is per process.
* Mixed precision on CUDA only (`ctx.autocast()`; bf16 where supported, else fp16 with a GradScaler).
* Logging on rank 0: one line per `log_every` steps on stderr (rich), and every event as a JSON line
  in `out_dir/log.jsonl` (appended across sessions).
* Validation every `validate_every` steps and at the end, on rank 0, with EMA weights where a part
  has an EMA. With `select_metric`, the best weights so far are kept (`out_dir/best.safetensors`).
* Export when `max_steps` is reached: `export_dir/<name>.safetensors` + `<name>.json`, the model card
  (the task's description, training steps and time, validation metrics, sha256).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from kspacify.errors import UsageError
from kspacify.training.checkpoint import (
    PairError,
    deep_merge,
    export_weights,
    join_state,
    read_pair,
    split_state,
    write_pair,
)
from kspacify.training.distributed import World, pick_device
from kspacify.training.ema import EMA

__all__ = ["LoopConfig", "Part", "ResumeError", "StepContext", "TrainResult", "TrainTask", "fit", "linear_warmup"]

STATE_FORMAT = "kspacify-train-state"


class ResumeError(UsageError):
    """out_dir holds a checkpoint of a different run (another config, data, seed or batch size)."""


@dataclass
class Part:
    """One trained network: its model (on the training device), optimizer and optional extras."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    ema: EMA | None = None
    grad_clip: float | None = None  # max gradient norm, or None for no clipping


@contextlib.contextmanager
def _sigterm_flag() -> Iterator[list[bool]]:
    """A one-item list that turns [True] when SIGTERM arrives (a batch scheduler's time limit, a
    pre-empted node): the loop then checkpoints at the end of the step and stops, instead of dying
    mid-step. Only the main thread may set signal handlers; elsewhere the flag never rises."""
    flag = [False]
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def raise_flag(signum: int, frame: Any) -> None:
        flag[0] = True

    previous = signal.signal(signal.SIGTERM, raise_flag)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def linear_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """LR rises linearly to the optimizer's lr over `warmup_steps` updates, then stays (the SBDM
    paper's schedule: 1e-4 reached at step 5000)."""
    if warmup_steps < 1:
        raise ValueError(f"warmup_steps must be >= 1, got {warmup_steps}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: min(1.0, (done + 1) / warmup_steps))


@dataclass(frozen=True)
class LoopConfig:
    """How to run a task: where, how long, how often to log/validate/checkpoint, on what device."""

    out_dir: Path
    name: str  # exported as export_dir/<name>.safetensors
    max_steps: int
    batch_size: int
    seed: int = 0
    max_minutes: float | None = None
    device: str = "auto"
    amp: bool = True  # CUDA only
    num_workers: int = 0
    log_every: int = 10
    validate_every: int = 0  # 0: only at the end
    checkpoint_every: int = 1000
    checkpoint_minutes: float = 10.0
    keep_checkpoints: int = 2
    select_metric: str | None = None  # e.g. "ssim": export the best-validating weights
    select_mode: Literal["max", "min"] = "max"
    export_dir: Path | None = None  # default out_dir / "weights"
    console: bool = True  # progress lines on stderr (the JSONL log is always written)

    def __post_init__(self) -> None:
        if self.max_steps < 0 or self.batch_size < 1:
            raise ValueError("max_steps must be >= 0 and batch_size >= 1")
        if self.max_minutes is not None and not self.max_minutes >= 0:
            raise ValueError(f"max_minutes must be >= 0, got {self.max_minutes}")
        if min(self.log_every, self.checkpoint_every, self.keep_checkpoints) < 1 or self.validate_every < 0:
            raise ValueError("log_every, checkpoint_every and keep_checkpoints must be >= 1, validate_every >= 0")
        if self.select_mode not in ("max", "min"):
            raise ValueError(f"select_mode must be 'max' or 'min', got {self.select_mode!r}")
        if not self.name or "/" in self.name:
            raise ValueError(f"name must be a plain file stem, got {self.name!r}")

    @property
    def weights_path(self) -> Path:
        return (self.export_dir or Path(self.out_dir) / "weights") / f"{self.name}.safetensors"


class TrainTask:
    """A trainer. Override `describe`, `dataset`, `build` and `step`; `validate`, `export_tensors`
    and `collate` have defaults."""

    collate: Callable[[list[Any]], Any] | None = None  # None: torch's default_collate

    def describe(self) -> dict[str, Any]:
        """JSON-able {"architecture": str, "config": {...}, "data": {...}} for the model card; the
        same description is required to resume a checkpoint."""
        raise NotImplementedError

    def dataset(self) -> Dataset:
        """The training samples (deterministic: randomness belongs in `step`, drawn from ctx)."""
        raise NotImplementedError

    def build(self, device: torch.device) -> dict[str, Part]:
        """The parts, with models and optimizer state on `device`. Called under a seeded RNG fork."""
        raise NotImplementedError

    def step(self, ctx: StepContext, batch: Any) -> Mapping[str, torch.Tensor | float]:
        """One training step on `batch` (already on ctx.device); returns scalars to log."""
        raise NotImplementedError

    def validate(self, models: Mapping[str, nn.Module], device: torch.device) -> dict[str, float]:
        """Validation metrics of the current models (eval mode, EMA weights where kept)."""
        return {}

    def export_tensors(self, parts: Mapping[str, Part]) -> dict[str, torch.Tensor]:
        """What the exported weights file holds: the (EMA-averaged where kept) state of each model,
        keys unprefixed for a single part, `<part>.<key>` for several."""
        single = len(parts) == 1
        out: dict[str, torch.Tensor] = {}
        for name, part in parts.items():
            state = part.ema.state_dict() if part.ema is not None else part.model.state_dict()
            out.update({(k if single else f"{name}.{k}"): v for k, v in state.items()})
        return out


@dataclass
class StepContext:
    """What `TrainTask.step` gets: models to call (DDP-wrapped when distributed), this step's random
    streams, autocast, and `update` to apply a loss to one part."""

    step: int
    epoch: int
    device: torch.device
    world: World
    models: Mapping[str, nn.Module]
    rng: np.random.Generator
    generator: torch.Generator
    _parts: Mapping[str, Part]
    _scaler: torch.amp.GradScaler
    _amp_dtype: torch.dtype | None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed precision for the forward pass on CUDA when enabled; a no-op elsewhere."""
        if self._amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self._amp_dtype)

    def update(self, name: str, loss: torch.Tensor) -> torch.Tensor | None:
        """Backpropagate `loss` into part `name` and step its optimizer, scheduler and EMA (gradients
        clipped first if the part says so). Returns the gradient norm before clipping, if clipped."""
        part = self._parts[name]
        part.optimizer.zero_grad(set_to_none=True)
        self._scaler.scale(loss).backward()
        norm = None
        if part.grad_clip is not None:
            self._scaler.unscale_(part.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(part.model.parameters(), part.grad_clip)
        self._scaler.step(part.optimizer)
        if part.scheduler is not None:
            part.scheduler.step()
        if part.ema is not None:
            part.ema.update(part.model)
        return norm


@dataclass
class TrainResult:
    """How a `fit` call ended."""

    step: int
    finished: bool  # max_steps reached (weights are exported at every stop, on rank 0)
    stopped: Literal["max_steps", "max_minutes", "terminated"]  # terminated: SIGTERM (checkpointed, no export)
    seconds: float  # this session
    validation: dict[str, float] = field(default_factory=dict)  # of the exported weights
    weights: Path | None = None
    card: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # training log records of this session


def fit(task: TrainTask, config: LoopConfig) -> TrainResult:
    """Train `task` as `config` says (resuming from out_dir's newest checkpoint); see the module doc."""
    world = World.from_env()
    device = pick_device(config.device, world)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    joined = world.start(device)
    completed = False
    try:
        result = _Run(task, config, world, device).run()
        completed = True
        return result
    finally:
        if joined:
            # DDP reducers hold the group and its gloo work; one that outlives the group (kept by a
            # reference cycle until interpreter exit) can abort the process (SIGABRT) while Python
            # shuts down, so collect them while the group still exists, and let no rank tear the
            # group down while another still uses it (not after a failure: the peer may be gone)
            gc.collect()
            if completed:
                dist.barrier()
            dist.destroy_process_group()


class _Log:
    """Rank 0's log: JSON lines in a file, and a short line on stderr."""

    def __init__(self, path: Path | None, console: Console | None, name: str) -> None:
        self.path, self.console, self.name = path, console, name
        self.history: list[dict[str, Any]] = []

    def event(self, event: str, text: str | None = None, **fields: Any) -> None:
        if self.path is None:
            return
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "event": event, **fields}
        if event == "train":
            self.history.append(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, allow_nan=True) + "\n")
        if self.console is not None and text:
            self.console.print(f"[{self.name}] {text}", markup=False, highlight=False)


def _fmt(metrics: Mapping[str, float]) -> str:
    return "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(_to_device(b, device) for b in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _fork_rng(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    return torch.random.fork_rng(devices=[device.index or 0], device_type=device.type)


def _prefixed(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


class _Run:
    """One `fit` call's state; `run` is the loop."""

    def __init__(self, task: TrainTask, config: LoopConfig, world: World, device: torch.device) -> None:
        self.task, self.config, self.world, self.device = task, config, world, device
        self.out_dir = Path(config.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.best_path = self.out_dir / "best.safetensors"
        main = world.is_main
        console = Console(stderr=True, highlight=False, soft_wrap=True) if config.console and main else None
        self.log = _Log(self.out_dir / "log.jsonl" if main else None, console, config.name)
        self.description = task.describe()
        fingerprint_source = {"describe": self.description, "batch_size": config.batch_size, "seed": config.seed}
        self.fingerprint = hashlib.sha256(json.dumps(fingerprint_source, sort_keys=True).encode()).hexdigest()
        with _fork_rng(device):
            torch.manual_seed(config.seed)
            self.parts = task.build(device)
        if not self.parts:
            raise ValueError("TrainTask.build returned no parts")
        self.use_amp = config.amp and device.type == "cuda"
        self.amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if self.use_amp else None
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.generator = torch.Generator(device=device)
        self.step = 0
        self.seconds_before = 0.0  # training time of earlier sessions
        self.validated: tuple[int, dict[str, float]] | None = None  # (step, metrics) of the last validation
        self.best: tuple[int, dict[str, float]] | None = None
        self._resume()
        self.models = self._wrap()

    # ---------------------------------------------------------------------------------- state on disk

    def _state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors: dict[str, torch.Tensor] = {}
        parts: dict[str, Any] = {}
        for name, part in self.parts.items():
            tensors.update({f"{name}/model/{k}": v for k, v in part.model.state_dict().items()})
            entry: dict[str, Any] = {
                "optimizer": split_state(part.optimizer.state_dict(), f"{name}/optimizer", tensors),
                "scheduler": split_state(part.scheduler.state_dict(), f"{name}/scheduler", tensors) if part.scheduler else None,
                "ema": None,
            }
            if part.ema is not None:
                tensors.update({f"{name}/ema/{k}": v for k, v in part.ema.state_dict().items()})
                entry["ema"] = {"decay": part.ema.decay, "num_updates": part.ema.num_updates}
            parts[name] = entry
        return tensors, parts

    def _save_checkpoint(self, session_start: float) -> None:
        if not self.world.is_main:
            return
        tensors, parts = self._state_tensors()
        document = {
            "format": STATE_FORMAT,
            "format_version": 1,
            "name": self.config.name,
            "step": self.step,
            "fingerprint": self.fingerprint,
            "seed": self.config.seed,
            "world_size": self.world.size,
            "seconds": self.seconds_before + (time.monotonic() - session_start),
            "rng": "counter-based: step s of rank r draws from seeds [seed, r, s, 0|1]; nothing else to restore",
            "scaler": split_state(self.scaler.state_dict(), "scaler", tensors),
            "validated": {"step": self.validated[0], "metrics": self.validated[1]} if self.validated else None,
            "parts": parts,
        }
        path = self.ckpt_dir / f"step-{self.step:09d}.safetensors"
        write_pair(path, tensors, document)
        for old in sorted(self.ckpt_dir.glob("step-*.json"))[: -self.config.keep_checkpoints]:
            old.with_suffix(".safetensors").unlink(missing_ok=True)
            old.unlink(missing_ok=True)
        self.log.event("checkpoint", f"checkpoint at step {self.step}: {path}", step=self.step, path=str(path))

    def _resume(self) -> None:
        for json_file in sorted(self.ckpt_dir.glob("step-*.json"), reverse=True):
            try:
                document, tensors = read_pair(json_file, STATE_FORMAT)
            except PairError as error:
                self.log.event("checkpoint-skipped", f"skipped unusable checkpoint: {error}", reason=str(error))
                continue
            break
        else:
            return
        if document.get("fingerprint") != self.fingerprint:
            raise ResumeError(
                f"{self.out_dir} holds a checkpoint of a different run (other config, data, seed or batch size); "
                "use another output directory or delete it"
            )
        for name, part in self.parts.items():
            entry = document["parts"][name]
            part.model.load_state_dict(_prefixed(tensors, f"{name}/model/"), strict=True)
            part.optimizer.load_state_dict(join_state(entry["optimizer"], tensors))
            if part.scheduler is not None and entry["scheduler"] is not None:
                part.scheduler.load_state_dict(join_state(entry["scheduler"], tensors))
            if part.ema is not None and entry["ema"] is not None:
                part.ema.load_state_dict(_prefixed(tensors, f"{name}/ema/"), entry["ema"]["num_updates"])
        if self.scaler.is_enabled():
            self.scaler.load_state_dict(join_state(document["scaler"], tensors))
        self.step = int(document["step"])
        self.seconds_before = float(document.get("seconds", 0.0))
        if document.get("validated"):
            self.validated = (int(document["validated"]["step"]), dict(document["validated"]["metrics"]))
        if self.best_path.exists():
            try:
                best_doc, _ = read_pair(self.best_path)
                if int(best_doc["step"]) <= self.step:
                    self.best = (int(best_doc["step"]), dict(best_doc["metrics"]))
            except (PairError, KeyError, ValueError):
                self.best = None
        self.log.event("resume", f"resumed from {json_file.with_suffix('.safetensors')} at step {self.step}", step=self.step)

    def _wrap(self) -> dict[str, nn.Module]:
        if not self.world.distributed:
            return {name: part.model for name, part in self.parts.items()}
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return {
            name: DistributedDataParallel(part.model, device_ids=ids)
            if any(p.requires_grad for p in part.model.parameters())
            else part.model
            for name, part in self.parts.items()
        }

    # ---------------------------------------------------------------------------------- the loop

    def _epoch_batches(self, dataset: Dataset, epoch: int) -> list[list[int]]:
        sampler: DistributedSampler[int] = DistributedSampler(
            dataset, num_replicas=self.world.size, rank=self.world.rank, shuffle=True, seed=self.config.seed
        )
        sampler.set_epoch(epoch)
        indices = list(sampler)
        size = self.config.batch_size
        batches = [indices[i : i + size] for i in range(0, len(indices), size)]
        if len(batches) > 1 and len(batches[-1]) < size:
            batches.pop()  # a short last batch only when it is the only one
        return batches

    def _batches(self, dataset: Dataset) -> Iterator[tuple[int, Any]]:
        """(epoch, batch on device) from the current step on, forever."""
        per_epoch = len(self._epoch_batches(dataset, 0))
        if per_epoch == 0:
            raise ValueError("the training dataset is empty")
        epoch, offset = divmod(self.step, per_epoch)
        while True:
            loader = DataLoader(
                dataset,
                batch_sampler=self._epoch_batches(dataset, epoch)[offset:],
                num_workers=self.config.num_workers,
                collate_fn=self.task.collate,
                pin_memory=self.device.type == "cuda",
                generator=torch.Generator().manual_seed(self.config.seed),
            )
            for batch in loader:
                yield epoch, _to_device(batch, self.device)
            epoch, offset = epoch + 1, 0

    def _seeds(self) -> tuple[np.random.Generator, int]:
        base = [self.config.seed, self.world.rank, self.step]
        torch_seed = int(np.random.SeedSequence(base + [1]).generate_state(1, np.uint64)[0] >> np.uint64(1))
        return np.random.default_rng(base + [0]), torch_seed

    def _one_step(self, epoch: int, batch: Any) -> Mapping[str, torch.Tensor | float]:
        rng, torch_seed = self._seeds()
        self.generator.manual_seed(torch_seed)
        for part in self.parts.values():
            part.model.train()
        with _fork_rng(self.device):
            torch.manual_seed(torch_seed)
            ctx = StepContext(
                self.step, epoch, self.device, self.world, self.models, rng, self.generator,
                self.parts, self.scaler, self.amp_dtype,
            )  # fmt: skip
            metrics = self.task.step(ctx, batch)
        self.scaler.update()
        return metrics

    def _agree(self, *flags: bool) -> list[bool]:
        """Flags true on any rank are true on all (so every rank stops/saves at the same step)."""
        if not self.world.distributed:
            return list(flags)
        tensor = torch.tensor([float(f) for f in flags], device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return [bool(v) for v in tensor.tolist()]

    def _mean_over_ranks(self, values: dict[str, float]) -> dict[str, float]:
        if not self.world.distributed or not values:
            return values
        tensor = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return dict(zip(values, (tensor / self.world.size).tolist()))

    def _validate(self) -> None:
        metrics: dict[str, float] = {}  # rank 0's; other ranks only keep the step
        if self.world.is_main:
            models: dict[str, nn.Module] = {}
            for name, part in self.parts.items():
                models[name] = part.ema.averaged_model(part.model) if part.ema is not None else part.model
                models[name].eval()
            with torch.no_grad():
                metrics = {k: float(v) for k, v in self.task.validate(models, self.device).items()}
            self.log.event("validate", f"step {self.step} validation  {_fmt(metrics)}", step=self.step, metrics=metrics)
            self._keep_if_best(metrics)
        self.validated = (self.step, metrics)
        if self.world.distributed:
            dist.barrier()

    def _keep_if_best(self, metrics: dict[str, float]) -> None:
        key = self.config.select_metric
        if key is None or not metrics:
            return
        if key not in metrics or not math.isfinite(metrics[key]):
            raise KeyError(f"select_metric {key!r} is not among the validation metrics {sorted(metrics)}")
        sign = 1.0 if self.config.select_mode == "max" else -1.0
        if self.best is not None and not sign * metrics[key] > sign * self.best[1][key]:
            return
        self.best = (self.step, metrics)
        write_pair(self.best_path, self.task.export_tensors(self.parts), {"format": "kspacify-best", "step": self.step, "metrics": metrics})

    def _export(self, seconds: float) -> tuple[Path, dict[str, Any], dict[str, float]]:
        config = self.config
        if self.best is not None:
            _, tensors = read_pair(self.best_path)
            selected_step, metrics = self.best
        else:
            tensors = self.task.export_tensors(self.parts)
            selected_step, metrics = self.step, (self.validated[1] if self.validated else {})
        training = {
            "steps": self.step,
            "finished": self.step >= config.max_steps,  # False: a bounded session of a longer run
            "selected_step": selected_step,
            "batch_size": config.batch_size,
            "world_size": self.world.size,
            "seed": config.seed,
            "seconds": round(seconds, 1),
            "device": self.device.type,
            "mixed_precision": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else None,
            "optimizers": {
                name: {"type": type(p.optimizer).__name__, "lr": p.optimizer.defaults.get("lr"), "grad_clip": p.grad_clip,
                       "ema_decay": p.ema.decay if p.ema else None}
                for name, p in self.parts.items()
            },
        }  # fmt: skip
        card = deep_merge(
            self.description,
            {"name": config.name, "training": training, "quality": {"validation": metrics, "selected_by": config.select_metric}},
        )
        card = export_weights(config.weights_path, tensors, card)
        self.log.event("export", f"weights: {config.weights_path} (sha256 {card['sha256'][:12]})", path=str(config.weights_path))
        return config.weights_path, card, metrics

    def run(self) -> TrainResult:
        config = self.config
        start = time.monotonic()
        self.log.event("start", f"training to step {config.max_steps} on {self.device} (x{self.world.size}), from step {self.step}",
                       step=self.step, max_steps=config.max_steps, device=str(self.device), world_size=self.world.size)  # fmt: skip
        self._saved_step = self.step
        try:
            with _sigterm_flag() as terminated:
                stopped = self._steps(start, terminated)
        except KeyboardInterrupt:
            if not self.world.distributed and self.step > self._saved_step:
                self._save_checkpoint(start)
            raise
        seconds = time.monotonic() - start
        if stopped == "terminated":
            self.log.event("stop", f"stopped by SIGTERM at step {self.step} (checkpointed); run again to resume", step=self.step)
            return TrainResult(self.step, False, stopped, seconds, history=self.log.history)
        if stopped == "max_minutes":
            self.log.event("stop", f"stopped by max_minutes at step {self.step}; run again to resume", step=self.step)
        # a bounded session exports too: the weights so far are usable while training goes on later
        if self.validated is None or self.validated[0] != self.step:
            self._validate()
            self._saved_step = -1  # the checkpoint must record this validation, so a rerun does not repeat it
        if self.step != self._saved_step:
            self._save_checkpoint(start)
        result = TrainResult(self.step, stopped == "max_steps", stopped, seconds, history=self.log.history)
        if self.world.is_main:
            result.weights, result.card, result.validation = self._export(self.seconds_before + seconds)
        if self.world.distributed:
            dist.barrier()
        return result

    def _steps(self, start: float, terminated: list[bool]) -> Literal["max_steps", "max_minutes", "terminated"]:
        """Train until max_steps, max_minutes or SIGTERM; checkpoint as configured; say which ended it."""
        config = self.config
        last_save = start
        sums: dict[str, torch.Tensor | float] = {}
        count = 0
        window = time.monotonic()
        if self.step >= config.max_steps:
            return "max_steps"
        for epoch, batch in self._batches(self.task.dataset()):
            metrics = self._one_step(epoch, batch)
            self.step += 1
            count += 1
            for k, v in metrics.items():
                value = v.detach().float() if isinstance(v, torch.Tensor) else float(v)
                sums[k] = sums.get(k, 0.0) + value
            done = self.step >= config.max_steps
            if self.step % config.log_every == 0 or done:
                means = self._mean_over_ranks({k: float(v) / count for k, v in sums.items()})
                rate = count / max(time.monotonic() - window, 1e-9)
                lrs = {f"lr/{n}": p.optimizer.param_groups[0]["lr"] for n, p in self.parts.items()}
                self.log.event("train", f"step {self.step}/{config.max_steps}  {_fmt(means)}  {rate:.2f} step/s",
                               step=self.step, epoch=epoch, metrics=means, steps_per_s=rate, **lrs)  # fmt: skip
                sums, count, window = {}, 0, time.monotonic()
            now = time.monotonic()
            time_up = config.max_minutes is not None and now - start >= 60.0 * config.max_minutes
            save_due = self.step % config.checkpoint_every == 0 or now - last_save >= 60.0 * config.checkpoint_minutes
            time_up, save_due, signalled = self._agree(time_up, save_due, terminated[0])
            if done:
                return "max_steps"
            if signalled:
                self._save_checkpoint(start)
                self._saved_step = self.step
                return "terminated"
            if config.validate_every and self.step % config.validate_every == 0:
                self._validate()
            if save_due or time_up:
                self._save_checkpoint(start)
                last_save, self._saved_step = time.monotonic(), self.step
            if time_up:
                return "max_minutes"
        return "max_steps"
