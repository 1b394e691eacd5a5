"""`kspacify benchmark`: the paper's downstream experiment (its Fig. 1C, Figs. 3-8) in one command.

What a phase method is worth is what a reconstruction network learns from k-space made with it. So:

1. Data: `--data DIR` (anything `kspacify.datasets` reads: fastMRI h5, complex NIfTI, ...), else the
   real-phase slices in ../shared/data/real-phase beside a checkout, else the project's magnitude-only
   examples converted with the physics phase model (then the "real" test k-space is synthetic too, and
   `gt` is not available: the output says so).
2. Patient-level splits recTrain / recVal / recTest (`out/splits.json`, reused by every later run).
3. One training set per method from the magnitudes of recTrain: `gt` (the real phase), `smooth`,
   `physics`, `gan`, `sbdm` (any registered phase method; one that is not installed or cannot be
   created is skipped, with the reason); the zero-filled baseline needs none.
4. One VarNet per (method, R, ACS, seed), trained through `kspacify.training.fit` on random masks,
   validated on recVal, then tested on the REAL k-space of recTest with fixed masks that are the same
   for every method and seed.
5. Output in `out/`: `results.json`, `results.csv` (mean and sample std over seeds), a metric-vs-R
   figure per ACS like the paper's Fig. 3, and example reconstructions with error maps and NRMSE like
   its Figs. 6-8; the table is printed by the command.

Resumable: each finished cell writes `cells/<id>/result.json` and is never trained again; a cell cut
short (by `max_minutes` or Ctrl-C) resumes from its training checkpoint. `out/benchmark.json` records
the settings; a later run with other settings must use another `out`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

from kspacify import phase
from kspacify.recon.masks import MASKS, make_mask
from kspacify.recon.varnet import VarNetConfig

__all__ = [
    "METHODS",
    "ZERO_FILLED",
    "BenchmarkConfig",
    "BenchmarkError",
    "BenchmarkResult",
    "Cell",
    "DataSource",
    "resolve_data",
    "run_benchmark",
    "summary_table",
]

ZERO_FILLED = "zero-filled"
METHODS = (ZERO_FILLED, "smooth", "physics", "gan", "sbdm", "gt")  # the paper's, plus physics
MASK_SEED = 0  # validation and test masks: eval_mask(sampling, width, MASK_SEED, key, slice)
DATA_SEED = 0  # splits and training-set phase synthesis
REPO = Path(__file__).resolve().parents[1]
SHARED_REAL_PHASE = REPO.parent / "shared" / "data" / "real-phase"
EXAMPLES = REPO / "examples" / "data"
QUICK_NET = VarNetConfig(num_cascades=2, chans=4, pools=2)
QUICK_STEPS, QUICK_LR = 40, 1e-3
FULL_EPOCHS, FULL_LR = 50, 3e-4
METRICS = ("ssim", "psnr", "nrmse", "nmse")


class BenchmarkError(ValueError):
    """A usage problem (bad option, no data, an out dir of other settings): one line, no traceback."""


@dataclass(frozen=True)
class BenchmarkConfig:
    """A benchmark run. Lists sweep; `quick` swaps the paper's settings for a small, short demo."""

    out: Path
    data: Path | None = None
    accelerations: tuple[float, ...] = (4.0,)
    acs: tuple[int, ...] = (26,)
    seeds: int = 3
    methods: tuple[str, ...] = METHODS
    quick: bool = False
    mask: str = "equispaced"
    max_steps: int | None = None  # per VarNet; default QUICK_STEPS, or FULL_EPOCHS epochs of recTrain
    max_minutes: float | None = None  # this whole run; unfinished cells resume next time
    device: str = "auto"
    size: int = 256
    batch_size: int = 4
    console: bool = True  # training progress lines on stderr

    @property
    def net(self) -> VarNetConfig:
        return QUICK_NET if self.quick else VarNetConfig.preset("paper")

    @property
    def lr(self) -> float:
        return QUICK_LR if self.quick else FULL_LR

    def settings(self, data: DataSource) -> dict[str, Any]:
        """What fixes a cell's result (besides its method, R, ACS and seed)."""
        steps = self.max_steps or (QUICK_STEPS if self.quick else f"{FULL_EPOCHS} epochs of recTrain")
        return {
            "quick": self.quick, "varnet": self.net.to_dict(), "lr": self.lr, "batch_size": self.batch_size,
            "max_steps": steps, "mask": self.mask, "size": self.size, "data": str(data.path.resolve()), "data_seed": DATA_SEED,
            "mask_seed": MASK_SEED,
        }  # fmt: skip


@dataclass(frozen=True)
class DataSource:
    """Where the benchmark's volumes come from, and what that means for the results."""

    path: Path
    kind: Literal["data", "real-phase", "examples"]
    real_phase: bool
    note: str


@dataclass(frozen=True)
class Cell:
    """One trained (or, zero-filled, computed) reconstruction: method x R x ACS x seed."""

    method: str
    acceleration: float
    acs: int
    seed: int

    @property
    def id(self) -> str:
        return f"{self.method}_R{self.acceleration:g}_acs{self.acs}_seed{self.seed}"


@dataclass
class BenchmarkResult:
    """What `run_benchmark` found: per-cell results, the summary rows, what was skipped or failed."""

    out: Path
    data: DataSource
    summary: list[dict[str, Any]]
    cells: list[dict[str, Any]]
    skipped: dict[str, str]  # method -> reason
    failed: dict[str, str]  # cell id -> error
    complete: bool  # every planned cell has a result
    seconds: float
    files: list[Path] = field(default_factory=list)


def _convert_examples(source: Path, dest: Path, size: int) -> None:
    """The magnitude-only examples as fastMRI files with physics phase (once; reused after)."""
    from kspacify import convert, executors, sources
    from kspacify.preprocess import Preprocessing

    salt = b"kspacify-benchmark-examples"
    planned = convert.plan(sources.discover([str(source)]), dest, salt, single_file=False)
    config = convert.ConvertConfig(preprocessing=Preprocessing(size=size), phase="physics", seed=DATA_SEED)
    for outcome in executors.run(planned.volumes, config):
        if outcome.status == "failed":
            raise BenchmarkError(f"could not convert the example data: {outcome.reason}")


def resolve_data(data: Path | None, out: Path, size: int = 256) -> DataSource:
    """`data` if given; else the shared real-phase set; else the converted examples (see module doc)."""
    if data is not None:
        if not data.exists():
            raise BenchmarkError(f"--data {data}: no such file or directory")
        return DataSource(data, "data", True, f"complex data from {data}; its phase is taken as the real phase")
    if SHARED_REAL_PHASE.is_dir():
        return DataSource(
            SHARED_REAL_PHASE, "real-phase", True,
            f"the real-phase demo set {SHARED_REAL_PHASE} (4 small volumes: a demo of the pipeline, far too "
            "little data to rank phase methods)",
        )  # fmt: skip
    if EXAMPLES.is_dir():
        dest = out / "example-data"
        _convert_examples(EXAMPLES, dest, size)
        return DataSource(
            dest, "examples", False,
            f"the project's magnitude-only example volumes ({EXAMPLES}) given PHYSICS phase: there is no real "
            "phase, so `gt` is unavailable and the test k-space itself has synthetic (physics) phase",
        )  # fmt: skip
    raise BenchmarkError("no data: pass --data DIR (a directory of fastMRI .h5 or complex NIfTI/.npy volumes)")


def _check(config: BenchmarkConfig) -> None:
    known = set(METHODS) | set(phase.method_names())
    unknown = [m for m in config.methods if m not in known]
    if unknown:
        raise BenchmarkError(f"unknown method {unknown[0]!r}; choose from: {', '.join(sorted(known))}")
    if config.mask not in MASKS:
        raise BenchmarkError(f"unknown mask {config.mask!r}; choose from: {', '.join(MASKS)}")
    if config.seeds < 1 or config.size < 16 or config.batch_size < 1:
        raise BenchmarkError("--seeds and --batch-size must be >= 1, size >= 16")
    if config.max_steps is not None and config.max_steps < 1:
        raise BenchmarkError("--max-steps must be >= 1")
    for r in config.accelerations:
        for acs in config.acs:
            try:
                make_mask(config.mask, config.size, r, acs, 0)
            except (TypeError, ValueError) as error:
                raise BenchmarkError(f"--R {r:g} --acs {acs}: {error}") from None


def _method_status(method: str, real_phase: bool, device: str) -> str | None:
    """None if the method can be benchmarked here, else why not."""
    from kspacify.recon.train import GT

    if method == ZERO_FILLED:
        return None
    if method == GT:
        return None if real_phase else "the data has no real phase (magnitude-only examples)"
    if method not in phase.registry():
        return f"no `{method}` phase method in this installation"
    try:
        phase.create(method, device=device)
    except Exception as error:  # a plug-in's own failure (missing checkpoint, ...): skip it, say why
        return f"cannot be used here: {error}"
    return None


def _plan(config: BenchmarkConfig, methods: Sequence[str]) -> list[Cell]:
    cells = []
    for r in config.accelerations:
        for acs in config.acs:
            for method in methods:
                seeds = [0] if method == ZERO_FILLED else range(config.seeds)  # deterministic: one cell
                cells.extend(Cell(method, float(r), int(acs), seed) for seed in seeds)
    return cells


def _write_json(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _claim_out(config: BenchmarkConfig, data: DataSource) -> None:
    """Record the settings in out/benchmark.json, or refuse an out dir made with other ones."""
    path = config.out / "benchmark.json"
    settings = json.loads(json.dumps(config.settings(data)))
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8")).get("settings", {})
        changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
        if changed:
            raise BenchmarkError(
                f"{config.out} holds a benchmark run with other settings ({', '.join(changed)}); use another --out"
            )
        return
    _write_json(path, {"format": "kspacify-benchmark", "settings": settings})


def _summarize(cells: list[dict[str, Any]], order: Sequence[str]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation over seeds per (method, R, ACS)."""
    groups: dict[tuple[str, float, int], list[dict[str, Any]]] = {}
    for cell in cells:
        groups.setdefault((cell["method"], cell["acceleration"], cell["acs"]), []).append(cell)
    rows = []
    for (method, r, acs), members in sorted(groups.items(), key=lambda g: (g[0][2], g[0][1], order.index(g[0][0]))):
        row: dict[str, Any] = {"method": method, "acceleration": r, "acs": acs,
                               "effective_acceleration": members[0]["effective_acceleration"], "seeds": len(members)}  # fmt: skip
        for name in METRICS:
            values = np.array([m["metrics"][name] for m in members], dtype=np.float64)
            row[f"{name}_mean"] = float(values.mean())
            row[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def summary_table(result: BenchmarkResult) -> Any:
    """The summary as a rich Table (mean ± std over seeds)."""
    from rich.table import Table

    table = Table(title=f"VarNets tested on the real k-space of recTest ({result.data.path}); mean ± std over seeds",
                  title_justify="left")  # fmt: skip
    for name in ("method", "R", "ACS", "R_eff", "seeds", "SSIM", "PSNR (dB)", "NRMSE", "NMSE"):
        table.add_column(name, justify="left" if name == "method" else "right")
    digits = {"ssim": 4, "psnr": 2, "nrmse": 4, "nmse": 4}
    for row in result.summary:
        stats = [f"{row[f'{m}_mean']:.{digits[m]}f} ± {row[f'{m}_std']:.{digits[m]}f}" for m in METRICS]
        table.add_row(row["method"], f"{row['acceleration']:g}", str(row["acs"]),
                      f"{row['effective_acceleration']:.2f}", str(row["seeds"]), *stats)  # fmt: skip
    notes = [f"skipped {m}: {why}" for m, why in result.skipped.items()]
    notes += [f"FAILED {c}: {why}" for c, why in result.failed.items()]
    if notes:
        table.caption = "\n".join(notes)
        table.caption_justify = "left"
    return table


def _figures(result: BenchmarkResult, order: Sequence[str], references: dict[str, np.ndarray]) -> list[Path]:
    """Metric vs R per method (Fig. 3), and example reconstructions with error maps (Figs. 6-8)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from safetensors.numpy import load_file

    written = []
    by_acs: dict[int, list[dict[str, Any]]] = {}
    for row in result.summary:
        by_acs.setdefault(row["acs"], []).append(row)
    for acs, rows in sorted(by_acs.items()):
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
        for ax, (name, label) in zip(axes, (("ssim", "SSIM"), ("psnr", "PSNR (dB)"), ("nrmse", "NRMSE"))):
            for method in order:
                mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["acceleration"])
                if mine:
                    ax.errorbar([r["acceleration"] for r in mine], [r[f"{name}_mean"] for r in mine],
                                yerr=[r[f"{name}_std"] for r in mine], marker="o", capsize=3, label=method)  # fmt: skip
            ax.set_xlabel("acceleration R")
            ax.set_title(label)
            ax.set_xticks(sorted({r["acceleration"] for r in rows}))
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"VarNets tested on the real k-space of recTest, ACS = {acs} lines (mean ± std over seeds)")
        fig.tight_layout()
        path = result.out / f"figure-metrics-acs{acs}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    cells = {(c["method"], c["acceleration"], c["acs"]): c for c in result.cells if c["seed"] == 0}
    for acs in sorted(by_acs):
        rs = sorted({r for (_, r, a) in cells if a == acs})
        methods = [m for m in order if any((m, r, acs) in cells for r in rs)]
        r_eff = {r: next(c["effective_acceleration"] for (_, cr, ca), c in cells.items() if cr == r and ca == acs) for r in rs}
        for number, (example, reference) in enumerate(sorted(references.items())):
            vmax = float(reference.max()) or 1.0
            fig, axes = plt.subplots(2 * len(rs), len(methods) + 1, figsize=(2.2 * (len(methods) + 1), 4.4 * len(rs)),
                                     squeeze=False)  # fmt: skip
            for i, r in enumerate(rs):
                top, bottom = axes[2 * i], axes[2 * i + 1]
                top[0].imshow(reference, cmap="gray", vmin=0, vmax=vmax)
                top[0].set_title("ground truth", fontsize=9)
                bottom[0].axis("off")
                for j, method in enumerate(methods, start=1):
                    cell = cells.get((method, r, acs))
                    stored = result.out / "cells" / cell["id"] / "examples.safetensors" if cell else None
                    if stored is None or not stored.exists():
                        top[j].axis("off")
                        bottom[j].axis("off")
                        continue
                    recon = load_file(str(stored))[example]
                    error = np.abs(recon - reference)
                    top[j].imshow(recon, cmap="gray", vmin=0, vmax=vmax)
                    top[j].set_title(f"{method}", fontsize=9)
                    bottom[j].imshow(error, cmap="magma", vmin=0, vmax=0.3 * vmax)
                    nrmse = float(np.linalg.norm(error) / (np.linalg.norm(reference) or 1.0))
                    bottom[j].text(0.03, 0.97, f"NRMSE {nrmse:.3f}", color="yellow", fontsize=8, va="top",
                                   transform=bottom[j].transAxes, bbox={"facecolor": "black", "alpha": 0.6, "pad": 1})  # fmt: skip
                top[0].set_ylabel(f"R={r:g} (R_eff {r_eff[r]:.2f})", fontsize=9)
                bottom[0].text(0.5, 0.5, "error maps\n|recon - GT|", ha="center", va="center", fontsize=8)
                for ax in (*top, *bottom):
                    ax.set_xticks([])
                    ax.set_yticks([])
            fig.suptitle(f"{example.replace('#', ', slice ')}: reconstructions of real k-space, ACS {acs}", fontsize=10)
            fig.tight_layout()
            path = result.out / f"examples-acs{acs}-{number}.png"
            fig.savefig(path, dpi=90)
            plt.close(fig)
            written.append(path)
    return written


def _write_tables(result: BenchmarkResult, settings: dict[str, Any], methods: dict[str, str], device: str) -> list[Path]:
    import torch

    json_path, csv_path = result.out / "results.json", result.out / "results.csv"
    _write_json(json_path, {
        "format": "kspacify-benchmark-results",
        "settings": settings,
        "data": {**asdict(result.data), "path": str(result.data.path)},
        "methods": methods,
        "complete": result.complete,
        "seconds": round(result.seconds, 1),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "device": device},
        "summary": result.summary,
        "cells": result.cells,
        "failed": result.failed,
    })  # fmt: skip
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        columns = ["method", "acceleration", "acs", "effective_acceleration", "seeds"]
        columns += [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(result.summary)
    return [json_path, csv_path]


class _TrainingSets:
    """Each method's training set, built once from recTrain's magnitudes and cached in out/."""

    def __init__(self, out: Path, refs: list[Any], config: BenchmarkConfig, say: Callable[[str], None]) -> None:
        self.out, self.refs, self.config, self.say = out, refs, config, say
        self.sets: dict[str, Any] = {}
        self.broken: dict[str, str] = {}  # method -> why its set could not be built (its other cells fail fast)

    def get(self, method: str) -> Any:
        from kspacify.recon.train import TrainingSet, build_training_set, load_volumes

        if method in self.broken:
            raise RuntimeError(self.broken[method])
        if method not in self.sets:
            path = self.out / "training-sets" / f"{method}.safetensors"
            if path.exists():
                self.sets[method] = TrainingSet.load(path)
            else:
                self.say(f"building the {method} training set from the magnitudes of recTrain")
                try:
                    volumes = load_volumes(self.refs, self.config.size)
                    self.sets[method] = build_training_set(volumes, method, DATA_SEED, self.config.device)
                except Exception as error:  # e.g. a learned method failing mid-way: this method only
                    self.broken[method] = f"building its training set failed: {type(error).__name__}: {error}"
                    raise RuntimeError(self.broken[method]) from error
                self.sets[method].save(path)
        return self.sets[method]


def _train_cell(
    cell: Cell, cell_dir: Path, train_set: Any, val: list[Any], config: BenchmarkConfig, description: dict[str, Any],
    minutes_left: float | None,
) -> Any:
    """Train (or resume) one cell's VarNet; the TrainResult (not finished if time ran out)."""
    from kspacify.recon.train import Sampling, VarNetTask
    from kspacify.training import LoopConfig, fit

    steps = config.max_steps or (
        QUICK_STEPS if config.quick else FULL_EPOCHS * math.ceil(len(train_set.magnitude) / config.batch_size)
    )
    sampling = Sampling(cell.acceleration, cell.acs, config.mask)
    task = VarNetTask(train_set, config.net, sampling, config.lr, val, description, mask_seed=MASK_SEED)
    loop = LoopConfig(
        out_dir=cell_dir / "train", name=f"varnet-{cell.method}", max_steps=steps, batch_size=config.batch_size,
        seed=cell.seed, max_minutes=minutes_left, device=config.device,
        validate_every=0 if config.quick else max(1, steps // 10), log_every=max(1, steps // 4),
        select_metric="ssim" if val else None, export_dir=cell_dir, console=config.console,
    )  # fmt: skip
    return fit(task, loop)


def run_benchmark(config: BenchmarkConfig, say: Callable[[str], None] = lambda text: None) -> BenchmarkResult:
    """Run (or resume) the benchmark; `say` gets one line per step worth telling the user."""
    import torch
    from safetensors.numpy import save_file

    from kspacify.datasets import list_volumes
    from kspacify.recon.train import Sampling, evaluate, load_varnet, load_volumes, rec_splits
    from kspacify.training import World, pick_device

    started = time.monotonic()
    if World.from_env().distributed:
        raise BenchmarkError("run the benchmark as one process, not under torchrun: it trains its many small VarNets one after another")
    _check(config)
    try:
        device = pick_device(config.device)
    except ValueError as error:
        raise BenchmarkError(str(error)) from None
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    data = resolve_data(config.data, out, config.size)
    say(f"data: {data.note}")
    _claim_out(config, data)
    refs = list_volumes(data.path)
    if not refs:
        raise BenchmarkError(f"no complex volumes (fastMRI .h5, complex or magnitude+phase NIfTI, complex .npy) in {data.path}")
    splits = rec_splits(refs, out / "splits.json", DATA_SEED)
    by_key = {ref.key: ref for ref in refs}
    say("splits (patient-level, out/splits.json): " + ", ".join(f"{k} {len(v)} volume(s)" for k, v in splits.items()))

    order = list(dict.fromkeys(config.methods))
    statuses = {m: _method_status(m, data.real_phase, config.device) for m in order}
    skipped = {m: why for m, why in statuses.items() if why is not None}
    for method, why in skipped.items():
        say(f"skipped {method}: {why}")
    cells = _plan(config, [m for m in order if m not in skipped])

    test = load_volumes([by_key[k] for k in splits["recTest"]], config.size)
    examples = [(v.key, len(v.image) // 2) for v in test[:2]]
    references = {f"{v.key}#{i}": np.abs(v.image[i]) for v, (_, i) in zip(test, examples)}
    train_sets = _TrainingSets(out, [by_key[k] for k in splits["recTrain"]], config, say)
    description = {"source": str(data.path.resolve()), "splits": splits}
    val: list[Any] | None = None
    results: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    stopped = False
    for number, cell in enumerate(cells, start=1):
        cell_dir = out / "cells" / cell.id
        done = cell_dir / "result.json"
        if done.exists():
            results[cell.id] = json.loads(done.read_text(encoding="utf-8"))
            continue
        left = None if config.max_minutes is None else config.max_minutes - (time.monotonic() - started) / 60
        if left is not None and left <= 0:
            stopped = True
            break
        say(f"cell {number}/{len(cells)}: {cell.id}")
        try:
            model, training = None, {}
            if cell.method != ZERO_FILLED:
                train_set = train_sets.get(cell.method)
                if val is None:
                    val = load_volumes([by_key[k] for k in splits.get("recVal", [])], config.size)
                trained = _train_cell(cell, cell_dir, train_set, val, config, description, left)
                if not trained.finished:
                    stopped = True
                    say(f"stopped by --max-minutes during {cell.id}; run the same command again to resume")
                    break
                model, card = load_varnet(trained.weights, device)
                training = {"steps": trained.step, "selected_step": card["training"]["selected_step"],
                            "seconds": card["training"]["seconds"], "validation": trained.validation,
                            "weights": str(trained.weights.relative_to(out)), "sha256": card["sha256"]}  # fmt: skip
            sampling = Sampling(cell.acceleration, cell.acs, config.mask)
            evaluation = evaluate(model, test, sampling, device, config.batch_size, MASK_SEED, examples)
        except Exception as error:  # one cell's failure must not lose the others: reported, exit code 1
            failed[cell.id] = f"{type(error).__name__}: {error}"
            say(f"FAILED {cell.id}: {failed[cell.id]}")
            continue
        cell_dir.mkdir(parents=True, exist_ok=True)
        if cell.seed == 0 and evaluation.examples:
            save_file({k: np.ascontiguousarray(v) for k, v in evaluation.examples.items()}, str(cell_dir / "examples.safetensors"))
        results[cell.id] = {
            "id": cell.id, **asdict(cell), "metrics": evaluation.metrics, "per_volume": evaluation.per_volume,
            "effective_acceleration": evaluation.effective_acceleration, "training": training,
        }  # fmt: skip
        _write_json(done, results[cell.id])
        say(f"  {cell.id}: " + "  ".join(f"{k} {v:.4f}" for k, v in evaluation.metrics.items()))
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()

    finished = [results[c.id] for c in cells if c.id in results]
    complete = not stopped and not failed and len(finished) == len(cells)
    result = BenchmarkResult(out, data, _summarize(finished, order), finished, skipped, failed, complete,
                             time.monotonic() - started)  # fmt: skip
    methods = {m: ("skipped: " + skipped[m]) if m in skipped else "ok" for m in order}
    result.files = _write_tables(result, config.settings(data), methods, str(device))
    if result.summary:
        result.files += _figures(result, order, references)
    return result
