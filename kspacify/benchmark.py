"""`kspacify benchmark`: the paper's downstream experiment (its Fig. 1C, Figs. 3-8) in one command.

What a phase method is worth is what a reconstruction network learns from k-space made with it. So:

1. Data: `--data DIR` (anything `kspacify.datasets` reads: fastMRI h5, complex NIfTI, ...), else the
   500 real spin-echo slices in ../shared/data/real-phase-train beside a checkout, else the small
   real-phase demo set there, else the project's magnitude-only examples converted with the physics
   phase model (then the "real" test k-space is synthetic too, and `gt` is not available).
2. Volumes a benchmarked phase generator trained or validated on (its model card lists their
   fingerprints) are left out: the paper's genTest, so that no method has seen its test data, and
   no generator has seen the training magnitudes of its own VarNet.
3. Subject-level splits recTrain / recVal / recTest (`datasets.rec_splits`, `out/splits.json`); with
   `--test-data DIR` every volume there is recTest and `--data` gives recTrain / recVal.
4. One training set per method from the magnitudes of recTrain: `gt` (the real phase), `zero`,
   `smooth`, `physics`, `gan`, `sbdm` (any registered phase method, told each volume's acquisition;
   one that cannot be created here is skipped, with the reason); zero-filling needs none.
5. One VarNet per (method, R, ACS, seed), trained through `kspacify.training.fit` on random masks from
   zero-filling onwards (`recon.varnet`), its weights chosen by SSIM on recVal's real k-space (where
   it never beats zero-filling there, the results say so), then tested on the REAL k-space of recTest
   with fixed masks that are the same for every method and seed.
6. Statistics: every test slice's metrics are kept; for every pair of methods the paired difference
   per test volume (same slices, same masks; mean over seeds) with a bootstrap 95% interval over test
   volumes, and a plain verdict (`a > b`, `a < b`, or within uncertainty).
7. Output in `out/`: `results.json`, `results.csv`, a metric-vs-R figure per ACS like the paper's
   Fig. 3, example reconstructions with error maps and NRMSE like its Figs. 6-8; the command prints
   the tables.

Profiles (`--profile`): `quick` (a small VarNet, one seed, minutes on a laptop), `cpu` (a VarNet and
step count that rank methods on the shared 500-slice set on 2 CPU cores in about an hour, R 4 and 8),
`paper` (the paper's VarNet and 50 epochs, for a GPU).

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
from kspacify.acquisition import UNKNOWN, Acquisition, Family
from kspacify.atomic import write_json
from kspacify.errors import UsageError
from kspacify.intervals import mean_interval
from kspacify.recon.masks import MASKS, make_mask
from kspacify.recon.varnet import VarNetConfig

__all__ = [
    "METHODS",
    "PROFILES",
    "ZERO_FILLED",
    "BenchmarkConfig",
    "BenchmarkError",
    "BenchmarkResult",
    "Cell",
    "DataSource",
    "Profile",
    "paired_differences",
    "resolve_data",
    "run_benchmark",
    "summary_table",
]

ZERO_FILLED = "zero-filled"
METHODS = (ZERO_FILLED, "zero", "smooth", "physics", "gan", "sbdm", "gt")  # the paper's, plus zero and physics
MASK_SEED = 0  # validation and test masks: eval_mask(sampling, width, MASK_SEED, key, slice)
DATA_SEED = 0  # splits and training-set phase synthesis
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SHARED_REAL_PHASE_TRAIN = SHARED_DATA / "real-phase-train"
SHARED_REAL_PHASE = SHARED_DATA / "real-phase"
# what the shared train set's README says of it; its NIfTI files and sidecars do not say it in keys
SHARED_TRAIN_ACQUISITION = Acquisition(field_strength_t=3.0, family=Family.SPIN_ECHO, refocused=True)
EXAMPLES = REPO / "examples" / "data"
METRICS = ("ssim", "psnr", "nrmse", "nmse")
LOWER_IS_BETTER = {"nrmse", "nmse"}


class BenchmarkError(UsageError):
    """A usage problem (bad option, no data, an out dir of other settings): one line, no traceback."""


@dataclass(frozen=True)
class Profile:
    """How much training each VarNet gets, and the sweep a profile runs by default."""

    name: str
    net: VarNetConfig
    lr: float
    steps: int | None  # per VarNet; None: `epochs` epochs of recTrain
    epochs: int = 0
    warmup_steps: int = 1
    validate_every: int = 0  # 0: only at the end
    seeds: int = 3
    accelerations: tuple[float, ...] = (4.0,)


PROFILES = {
    # measured (docs/benchmark.md): quick is the cheapest setting found whose gt VarNet beats zero-filling
    # by >= 0.03 SSIM on recTest at R = 4, 26 ACS lines, all methods within 10 minutes on 2 cores (6.3);
    # cpu trains the same network longer, with 2 seeds, at R 4 and 8, within 90 minutes
    "quick": Profile("quick", VarNetConfig(num_cascades=2, chans=4, pools=2), lr=3e-3, steps=60, warmup_steps=10,
                     validate_every=30, seeds=1),
    "cpu": Profile("cpu", VarNetConfig(num_cascades=2, chans=4, pools=2), lr=3e-3, steps=160, warmup_steps=10,
                   validate_every=40, seeds=2, accelerations=(4.0, 8.0)),
    "paper": Profile("paper", VarNetConfig.preset("paper"), lr=3e-4, steps=None, epochs=50, validate_every=0, seeds=3,
                     accelerations=(2.0, 3.0, 4.0, 6.0)),
}  # fmt: skip


@dataclass(frozen=True)
class BenchmarkConfig:
    """A benchmark run. Lists sweep; `profile` sets the VarNet, its training and the default sweep
    (`quick=True` is `profile="quick"`)."""

    out: Path
    data: Path | None = None
    test_data: Path | None = None
    accelerations: tuple[float, ...] | None = None  # None: the profile's
    acs: tuple[int, ...] = (26,)
    seeds: int | None = None  # None: the profile's
    methods: tuple[str, ...] = METHODS
    profile: str = "paper"
    quick: bool = False
    mask: str = "equispaced"
    max_steps: int | None = None  # per VarNet; default: the profile's
    max_minutes: float | None = None  # this whole run; unfinished cells resume next time
    device: str = "auto"
    size: int = 256
    batch_size: int = 4
    assume: Acquisition | None = None  # the acquisition of volumes whose files do not say (None: known defaults)
    console: bool = True  # training progress lines on stderr

    def __post_init__(self) -> None:
        if self.quick:
            object.__setattr__(self, "profile", "quick")
        if self.profile not in PROFILES:
            raise BenchmarkError(f"unknown profile {self.profile!r}; choose one of: {', '.join(PROFILES)}")

    @property
    def chosen(self) -> Profile:
        return PROFILES[self.profile]

    @property
    def sweep(self) -> tuple[float, ...]:
        return self.accelerations if self.accelerations is not None else self.chosen.accelerations

    @property
    def seed_count(self) -> int:
        return self.seeds if self.seeds is not None else self.chosen.seeds

    def steps_for(self, train_slices: int) -> int:
        if self.max_steps:
            return self.max_steps
        profile = self.chosen
        return profile.steps if profile.steps is not None else profile.epochs * math.ceil(train_slices / self.batch_size)

    def settings(self, data: DataSource) -> dict[str, Any]:
        """What fixes a cell's result (besides its method, R, ACS and seed)."""
        profile = self.chosen
        steps = self.max_steps or (profile.steps if profile.steps is not None else f"{profile.epochs} epochs of recTrain")
        return {
            "profile": profile.name, "varnet": profile.net.to_dict(), "lr": profile.lr, "warmup_steps": profile.warmup_steps,
            "validate_every": profile.validate_every, "batch_size": self.batch_size, "max_steps": steps, "mask": self.mask,
            "size": self.size, "data": str(data.path.resolve()), "test_data": str(data.test.resolve()) if data.test else None,
            "acquisition": data.assume.to_json(), "data_seed": DATA_SEED, "mask_seed": MASK_SEED,
        }  # fmt: skip


@dataclass(frozen=True)
class DataSource:
    """Where the benchmark's volumes come from, and what that means for the results."""

    path: Path
    kind: Literal["data", "real-phase-train", "real-phase", "examples"]
    real_phase: bool
    note: str
    test: Path | None = None  # --test-data: every volume there is recTest
    assume: Acquisition = UNKNOWN  # for volumes whose files do not say


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
    """What `run_benchmark` found: per-cell results, the summary rows, the paired differences, what was
    skipped or failed, and the plain-language findings."""

    out: Path
    data: DataSource
    summary: list[dict[str, Any]]
    cells: list[dict[str, Any]]
    skipped: dict[str, str]  # method -> reason
    failed: dict[str, str]  # cell id -> error
    complete: bool  # every planned cell has a result
    seconds: float
    paired: list[dict[str, Any]] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    excluded: dict[str, list[str]] = field(default_factory=dict)  # method -> volume keys it saw (left out)
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


def resolve_data(data: Path | None, out: Path, size: int = 256, test_data: Path | None = None,
                 assume: Acquisition | None = None) -> DataSource:  # fmt: skip
    """`data` if given; else the shared real-phase train set; else the shared real-phase demo set;
    else the converted examples (see the module doc). `assume` overrides the acquisition assumed
    for volumes whose files do not say."""
    if test_data is not None and not test_data.exists():
        raise BenchmarkError(f"--test-data {test_data}: no such file or directory")
    if data is not None:
        if not data.exists():
            raise BenchmarkError(f"--data {data}: no such file or directory")
        return DataSource(data, "data", True, f"complex data from {data}; its phase is taken as the real phase",
                          test_data, assume or UNKNOWN)  # fmt: skip
    if SHARED_REAL_PHASE_TRAIN.is_dir():
        return DataSource(
            SHARED_REAL_PHASE_TRAIN, "real-phase-train", True,
            f"the shared real-phase train set {SHARED_REAL_PHASE_TRAIN} (T2 fast spin echo, 3 T, 25 blocks of 20 slices;"
            " a block is the unit of splitting, and blocks are split in contiguous runs)", test_data,
            assume or SHARED_TRAIN_ACQUISITION,
        )  # fmt: skip
    if SHARED_REAL_PHASE.is_dir():
        return DataSource(
            SHARED_REAL_PHASE, "real-phase", True,
            f"the real-phase demo set {SHARED_REAL_PHASE} (4 small volumes: a demo of the pipeline, far too "
            "little data to rank phase methods)", test_data, assume or UNKNOWN,
        )  # fmt: skip
    if EXAMPLES.is_dir():
        dest = out / "example-data"
        _convert_examples(EXAMPLES, dest, size)
        return DataSource(
            dest, "examples", False,
            f"the project's magnitude-only example volumes ({EXAMPLES}) given PHYSICS phase: there is no real "
            "phase, so `gt` is unavailable and the test k-space itself has synthetic (physics) phase", test_data,
            assume or UNKNOWN,
        )  # fmt: skip
    raise BenchmarkError("no data: pass --data DIR (a directory of fastMRI .h5 or complex NIfTI/.npy volumes)")


def _check(config: BenchmarkConfig) -> None:
    known = set(METHODS) | set(phase.method_names())
    unknown = [m for m in config.methods if m not in known]
    if unknown:
        raise BenchmarkError(f"unknown method {unknown[0]!r}; choose from: {', '.join(sorted(known))}")
    if config.mask not in MASKS:
        raise BenchmarkError(f"unknown mask {config.mask!r}; choose from: {', '.join(MASKS)}")
    if config.seed_count < 1 or config.size < 16 or config.batch_size < 1:
        raise BenchmarkError("--seeds and --batch-size must be >= 1, size >= 16")
    if config.max_steps is not None and config.max_steps < 1:
        raise BenchmarkError("--max-steps must be >= 1")
    for r in config.sweep:
        for acs in config.acs:
            try:
                make_mask(config.mask, config.size, r, acs, 0)
            except (TypeError, ValueError) as error:
                raise BenchmarkError(f"--R {r:g} --acs {acs}: {error}") from None


def _method_status(method: str, real_phase: bool, device: str) -> tuple[str | None, Any]:
    """(None, the synthesizer) if the method can be benchmarked here, else (why not, None)."""
    from kspacify.recon.train import GT

    if method == ZERO_FILLED:
        return None, None
    if method == GT:
        return (None, None) if real_phase else ("the data has no real phase (magnitude-only examples)", None)
    if method not in phase.registry():
        return f"no `{method}` phase method in this installation", None
    try:
        return None, phase.create(method, device=device)
    except Exception as error:  # a plug-in's own failure (missing checkpoint, ...): skip it, say why
        return f"cannot be used here: {error}", None


def _seen_volumes(synthesizers: dict[str, Any], refs: Sequence[Any]) -> dict[str, list[str]]:
    """Per learned method, the keys of `refs` that its model card lists among the volumes it trained
    or validated on (by content fingerprint, so another root or copy of the same data is recognized)."""
    from kspacify.datasets import fingerprint

    seen: dict[str, set[str]] = {}
    for method, synthesizer in synthesizers.items():
        card = getattr(synthesizer, "card", None) or {}
        prints = set(card.get("data", {}).get("fingerprints", []) or [])
        if prints:
            seen[method] = prints
    if not seen:
        return {}
    prints_of = {ref.key: fingerprint(ref) for ref in refs}
    return {m: sorted(k for k, p in prints_of.items() if p in prints) for m, prints in seen.items()
            if any(p in prints for p in prints_of.values())}  # fmt: skip


def _plan(config: BenchmarkConfig, methods: Sequence[str]) -> list[Cell]:
    cells: list[Cell] = []
    for r in config.sweep:
        for acs in config.acs:
            for method in methods:
                seeds = [0] if method == ZERO_FILLED else range(config.seed_count)  # deterministic: one cell
                cells.extend(Cell(method, float(r), int(acs), seed) for seed in seeds)
    return cells


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
    write_json(path, {"format": "kspacify-benchmark", "settings": settings})


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
        beats = [m.get("training", {}).get("beats_zero_filled_on_val") for m in members]
        if any(b is not None for b in beats):
            row["beats_zero_filled_on_val"] = f"{sum(bool(b) for b in beats)}/{len(beats)}"
        rows.append(row)
    return rows


def paired_differences(cells: list[dict[str, Any]], order: Sequence[str]) -> list[dict[str, Any]]:
    """For every (R, ACS) and every pair of methods (a listed before b), per metric: the mean over
    test volumes of (a - b), each volume's value being its mean over seeds, with a bootstrap 95%
    interval over test volumes, and which is better (or neither, when the interval holds 0)."""
    per_volume: dict[tuple[str, float, int], dict[str, dict[str, list[float]]]] = {}
    for cell in cells:
        slot = per_volume.setdefault((cell["method"], cell["acceleration"], cell["acs"]), {})
        for key, values in cell["per_volume"].items():
            for name in METRICS:
                slot.setdefault(name, {}).setdefault(key, []).append(values[name])
    rows = []
    settings = sorted({(r, acs) for _, r, acs in per_volume})
    for r, acs in settings:
        present = [m for m in order if (m, r, acs) in per_volume]
        for i, a in enumerate(present):
            for b in present[i + 1 :]:
                for name in METRICS:
                    va, vb = per_volume[(a, r, acs)][name], per_volume[(b, r, acs)][name]
                    volumes = sorted(set(va) & set(vb))
                    if not volumes:
                        continue
                    d = np.array([np.mean(va[v]) - np.mean(vb[v]) for v in volumes])
                    low, high = mean_interval(d)
                    sign = -1 if name in LOWER_IS_BETTER else 1
                    verdict = f"{a} > {b}" if sign * low > 0 and sign * high > 0 else f"{a} < {b}" if sign * low < 0 and sign * high < 0 else "within uncertainty"
                    rows.append({"a": a, "b": b, "acceleration": r, "acs": acs, "metric": name, "difference": float(d.mean()),
                                 "low": low, "high": high, "volumes": len(volumes), "verdict": verdict})  # fmt: skip
    return rows


def findings(summary: list[dict[str, Any]], paired: list[dict[str, Any]]) -> list[str]:
    """What the numbers say, plainly: which trained networks do not beat zero-filling on recTest, and
    which method pairs cannot be told apart by SSIM at this data size."""
    lines = []
    for row in paired:
        if row["metric"] != "ssim" or ZERO_FILLED not in (row["a"], row["b"]):
            continue
        method = row["b"] if row["a"] == ZERO_FILLED else row["a"]
        gain = row["difference"] if row["a"] == method else -row["difference"]
        low, high = (row["low"], row["high"]) if row["a"] == method else (-row["high"], -row["low"])
        if high <= 0 or low <= 0 < high:
            how = "is WORSE than" if high <= 0 else "does not beat"
            lines.append(f"R={row['acceleration']:g}, ACS {row['acs']}: the {method} VarNet {how} zero-filling on recTest "
                         f"(SSIM {gain:+.4f} [{low:+.4f}, {high:+.4f}])")  # fmt: skip
    for row in summary:
        if row.get("beats_zero_filled_on_val", "").startswith("0/"):
            lines.append(f"R={row['acceleration']:g}, ACS {row['acs']}: no {row['method']} VarNet beat zero-filling on recVal")
    ties = [row for row in paired if row["metric"] == "ssim" and ZERO_FILLED not in (row["a"], row["b"])
            and row["verdict"] == "within uncertainty"]  # fmt: skip
    for row in ties:
        lines.append(f"R={row['acceleration']:g}, ACS {row['acs']}: {row['a']} and {row['b']} differ by less than their "
                     f"uncertainty (SSIM {row['difference']:+.4f} [{row['low']:+.4f}, {row['high']:+.4f}], "
                     f"{row['volumes']} test volumes)")  # fmt: skip
    return lines


def summary_table(result: BenchmarkResult) -> Any:
    """The summary as a rich Table (mean ± std over seeds)."""
    from rich.table import Table

    table = Table(title=f"VarNets tested on the real k-space of recTest ({result.data.test or result.data.path}); "
                        "mean ± std over seeds", title_justify="left")  # fmt: skip
    for name in ("method", "R", "ACS", "R_eff", "seeds", "SSIM", "PSNR (dB)", "NRMSE", "NMSE", "beats ZF on recVal"):
        table.add_column(name, justify="left" if name == "method" else "right")
    digits = {"ssim": 4, "psnr": 2, "nrmse": 4, "nmse": 4}
    for row in result.summary:
        stats = [f"{row[f'{m}_mean']:.{digits[m]}f} ± {row[f'{m}_std']:.{digits[m]}f}" for m in METRICS]
        table.add_row(row["method"], f"{row['acceleration']:g}", str(row["acs"]), f"{row['effective_acceleration']:.2f}",
                      str(row["seeds"]), *stats, row.get("beats_zero_filled_on_val", ""))  # fmt: skip
    notes = [f"skipped {m}: {why}" for m, why in result.skipped.items()]
    notes += [f"left out: {len(keys)} volume(s) {m} trained or validated on" for m, keys in result.excluded.items()]
    notes += [f"FAILED {c}: {why}" for c, why in result.failed.items()]
    if notes:
        table.caption = "\n".join(notes)
        table.caption_justify = "left"
    return table


def paired_table(result: BenchmarkResult, metric: str = "ssim") -> Any:
    """The paired differences of one metric as a rich Table: `a - b: mean [95% interval]`, verdict."""
    from rich.table import Table

    table = Table(title=f"Paired differences in {metric.upper()} on recTest (same slices and masks; per test volume, "
                        f"mean over seeds; bootstrap 95% interval over test volumes)", title_justify="left")  # fmt: skip
    for name in ("R", "ACS", "a - b", "difference [95% interval]", "volumes", "verdict"):
        table.add_column(name, justify="left" if name in ("a - b", "verdict") else "right")
    for row in result.paired:
        if row["metric"] == metric:
            table.add_row(f"{row['acceleration']:g}", str(row["acs"]), f"{row['a']} - {row['b']}",
                          f"{row['difference']:+.4f} [{row['low']:+.4f}, {row['high']:+.4f}]", str(row["volumes"]), row["verdict"])  # fmt: skip
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
    write_json(json_path, {
        "format": "kspacify-benchmark-results",
        "settings": settings,
        "data": {**asdict(result.data), "path": str(result.data.path), "test": str(result.data.test) if result.data.test else None,
                 "assume": result.data.assume.to_json(), "excluded": result.excluded},
        "methods": methods,
        "complete": result.complete,
        "seconds": round(result.seconds, 1),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "device": device},
        "summary": result.summary,
        "paired": result.paired,
        "findings": result.findings,
        "cells": result.cells,
        "failed": result.failed,
    }, allow_nan=True)  # fmt: skip
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        columns = ["row", "method", "versus", "acceleration", "acs", "effective_acceleration", "seeds", "volumes"]
        columns += [f"{m}_{s}" for m in METRICS for s in ("mean", "std")] + ["metric", "difference", "low", "high", "verdict"]
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({"row": "method", **row} for row in result.summary)
        writer.writerows({"row": "paired", "method": row["a"], "versus": row["b"], **row} for row in result.paired)
    return [json_path, csv_path]


class _TrainingSets:
    """Each method's training set, built once from recTrain's magnitudes and cached in out/."""

    def __init__(self, out: Path, pairs: Callable[[], Any], config: BenchmarkConfig, say: Callable[[str], None]) -> None:
        self.out, self.pairs, self.config, self.say = out, pairs, config, say
        self.sets: dict[str, Any] = {}
        self.broken: dict[str, str] = {}  # method -> why its set could not be built (its other cells fail fast)

    def get(self, method: str) -> Any:
        from kspacify.datasets import PairSet
        from kspacify.recon.train import build_training_set

        if method in self.broken:
            raise RuntimeError(self.broken[method])
        if method not in self.sets:
            path = self.out / "training-sets" / f"{method}.safetensors"
            if path.exists():
                self.sets[method] = PairSet.load(path)
            else:
                self.say(f"building the {method} training set from the magnitudes of recTrain")
                try:
                    self.sets[method] = build_training_set(self.pairs(), method, DATA_SEED, self.config.device)
                except Exception as error:  # e.g. a learned method failing mid-way: this method only
                    self.broken[method] = f"building its training set failed: {type(error).__name__}: {error}"
                    raise RuntimeError(self.broken[method]) from error
                self.sets[method].save(path)
        return self.sets[method]


def _train_cell(
    cell: Cell, cell_dir: Path, train_set: Any, val: Any, config: BenchmarkConfig, description: dict[str, Any],
    minutes_left: float | None,
) -> Any:
    """Train (or resume) one cell's VarNet; the TrainResult (not finished if time ran out)."""
    from kspacify.recon.train import Sampling, VarNetTask
    from kspacify.training import LoopConfig, fit

    profile = config.chosen
    steps = config.steps_for(len(train_set))
    sampling = Sampling(cell.acceleration, cell.acs, config.mask)
    task = VarNetTask(train_set, profile.net, sampling, profile.lr, val, description, mask_seed=MASK_SEED,
                      warmup_steps=min(profile.warmup_steps, steps))  # fmt: skip
    every = profile.validate_every if profile.validate_every else max(1, steps // 10)
    loop = LoopConfig(
        out_dir=cell_dir / "train", name=f"varnet-{cell.method}", max_steps=steps, batch_size=config.batch_size,
        seed=cell.seed, max_minutes=minutes_left, device=config.device, validate_every=min(every, steps) if val is not None else 0,
        log_every=max(1, steps // 4), select_metric="ssim" if val is not None else None, export_dir=cell_dir,
        console=config.console,
    )  # fmt: skip
    return fit(task, loop)


def run_benchmark(config: BenchmarkConfig, say: Callable[[str], None] = lambda text: None) -> BenchmarkResult:
    """Run (or resume) the benchmark; `say` gets one line per step worth telling the user."""
    import torch
    from safetensors.numpy import save_file

    from kspacify.datasets import list_volumes, load_pairs, rec_splits, volume_splits
    from kspacify.recon.train import Sampling, evaluate, load_varnet
    from kspacify.training import World, pick_device

    started = time.monotonic()
    if World.from_env().distributed:
        raise BenchmarkError("run the benchmark as one process, not under torchrun: it trains its many small VarNets one after another")
    _check(config)
    device = pick_device(config.device)
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    data = resolve_data(config.data, out, config.size, config.test_data, config.assume)
    say(f"data: {data.note}")
    if data.assume.known:
        say(f"acquisition assumed where the files do not say: {json.dumps({k: v for k, v in data.assume.to_json().items() if v not in (None, 'unknown')})}")
    _claim_out(config, data)
    refs = list_volumes(data.path)
    if not refs:
        raise BenchmarkError(f"no complex volumes (fastMRI .h5, complex or magnitude+phase NIfTI, complex .npy) in {data.path}")
    test_refs = []
    if data.test is not None:
        test_refs = list_volumes(data.test)
        if not test_refs:
            raise BenchmarkError(f"--test-data {data.test}: no complex volumes (fastMRI .h5 with full k-space, complex or "
                                 "magnitude+phase NIfTI, complex .npy) to test on")  # fmt: skip

    order = list(dict.fromkeys(config.methods))
    statuses = {m: _method_status(m, data.real_phase, config.device) for m in order}
    skipped = {m: why for m, (why, _) in statuses.items() if why is not None}
    for method, why in skipped.items():
        say(f"skipped {method}: {why}")
    excluded = _seen_volumes({m: s for m, (why, s) in statuses.items() if s is not None}, refs + test_refs)
    left_out = {k for keys in excluded.values() for k in keys}
    for method, keys in excluded.items():
        say(f"left out {len(keys)} volume(s) that {method} trained or validated on (they are not test data for anyone)")
    refs = [r for r in refs if r.key not in left_out]
    test_refs = [r for r in test_refs if r.key not in left_out]
    if data.test is not None:
        splits = volume_splits(refs, out / "splits.json", {"recTrain": 0.8, "recVal": 0.2}, DATA_SEED, required=("recTrain",))
        splits["recTest"] = [r.key for r in test_refs]
    else:
        splits = rec_splits(refs, out / "splits.json", DATA_SEED)
    if not splits.get("recTest"):
        raise BenchmarkError("no recTest volumes left to test on (too few subjects after leaving out what the generators saw)")
    by_key = {ref.key: ref for ref in refs}
    test_by_key = {ref.key: ref for ref in test_refs} if data.test is not None else by_key
    say("splits (subject-level, out/splits.json): " + ", ".join(f"{k} {len(v)} volume(s)" for k, v in splits.items()))
    cells = _plan(config, [m for m in order if m not in skipped])

    test = load_pairs([test_by_key[k] for k in splits["recTest"]], config.size, data.assume)
    examples = [(key, int(np.sum(test.volume == number)) // 2) for number, key in enumerate(test.keys[:2])]
    references = {f"{key}#{i}": np.abs(image[i]) for (key, image), (_, i) in zip(test.volume_images(), examples)}
    train_sets = _TrainingSets(out, lambda: load_pairs([by_key[k] for k in splits["recTrain"]], config.size, data.assume), config, say)
    description = {"source": str(data.path.resolve()), "splits": splits}
    val: Any = None
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
                    val = load_pairs([by_key[k] for k in splits.get("recVal", [])], config.size, data.assume)
                trained = _train_cell(cell, cell_dir, train_set, val if len(val) else None, config, description, left)
                if not trained.finished:
                    stopped = True
                    say(f"stopped by --max-minutes during {cell.id}; run the same command again to resume")
                    break
                model, card = load_varnet(trained.weights, device)
                zero_filled_val = card["data"]["validation"].get("zero_filled", {}).get("ssim")
                best = trained.validation.get("ssim")
                training = {"steps": trained.step, "selected_step": card["training"]["selected_step"],
                            "seconds": card["training"]["seconds"], "validation": trained.validation,
                            "zero_filled_validation_ssim": zero_filled_val,
                            "beats_zero_filled_on_val": None if best is None or zero_filled_val is None else bool(best > zero_filled_val),
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
            "per_slice": evaluation.per_slice, "effective_acceleration": evaluation.effective_acceleration, "training": training,
        }  # fmt: skip
        write_json(done, results[cell.id], allow_nan=True)
        say(f"  {cell.id}: " + "  ".join(f"{k} {v:.4f}" for k, v in evaluation.metrics.items()))
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()

    finished = [results[c.id] for c in cells if c.id in results]
    complete = not stopped and not failed and len(finished) == len(cells)
    summary = _summarize(finished, order)
    paired = paired_differences(finished, order)
    result = BenchmarkResult(out, data, summary, finished, skipped, failed, complete, time.monotonic() - started,
                             paired, findings(summary, paired), excluded)  # fmt: skip
    methods = {m: ("skipped: " + skipped[m]) if m in skipped else "ok" for m in order}
    result.files = _write_tables(result, config.settings(data), methods, str(device))
    if result.summary:
        result.files += _figures(result, order, references)
    return result
