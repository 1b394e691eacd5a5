"""Conversion throughput out of one process: local worker processes and Dask, against one process.

An archive of `--series` 256x256 DICOM series (`--slices` in all) is converted, in each repeat and
in this order, by: one process; `--workers N` local processes; `--dask local --workers N` (a fresh
LocalCluster, its start-up included, as a user's one-off command sees it); and a LocalCluster of N
workers started once before the repeats (`--dask ADDRESS`, the steady state of a long-lived
cluster). Every figure is a speed-up over the single process of the same repeat (median over
repeats, with the range): these machines are noisy, so only ratios of adjacent runs mean
something. Every run's files are checked to be byte-identical to the single process's.

    python benchmarks/scale_speed.py [--series 8] [--slices 600] [--workers 2] [--repeats 3] [--phase smooth]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from convert_speed import make_series  # noqa: E402


def convert(archive: Path, out: Path, phase: str, *extra: str) -> float:
    from typer.testing import CliRunner

    from kspacify.cli import app

    start = time.perf_counter()
    result = CliRunner().invoke(app, ["convert", str(archive), str(out), "--phase", phase, "--overwrite", "--salt", "b", *extra])
    seconds = time.perf_counter() - start
    if result.exit_code != 0:
        raise RuntimeError(result.stderr)
    return seconds


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.h5"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=8)
    parser.add_argument("--slices", type=int, default=600, help="slices in the whole archive")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--phase", default="smooth")
    args = parser.parse_args()
    from distributed import LocalCluster

    workers = str(args.workers)
    report: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "archive": f"{args.series} DICOM series, {args.slices} slices of 256x256, --phase {args.phase}",
        "workers": args.workers,
    }
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        tmp_path = Path(tmp)
        archive = tmp_path / "archive"
        for i in range(args.series):
            make_series(archive / f"s{i}", args.slices // args.series, seed=i)
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=None) as cluster:
            runs = {
                "single process": (),
                f"--workers {workers}": ("--workers", workers),
                f"--dask local --workers {workers} (cluster start-up included)": ("--dask", "local", "--workers", workers),
                f"--dask ADDRESS (a running LocalCluster of {workers})": ("--dask", cluster.scheduler_address),
            }
            seconds: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(args.repeats):
                for index, (name, extra) in enumerate(runs.items()):
                    seconds[name].append(convert(archive, tmp_path / f"out{index}", args.phase, *extra))
            reference = contents(tmp_path / "out0")
            identical = all(contents(tmp_path / f"out{i}") == reference for i in range(len(runs)))
        single = seconds["single process"]
        report["single_process_slices_per_s"] = round(args.slices / statistics.median(single), 1)
        report["speedup_over_single_process"] = {
            name: {
                "median": round(statistics.median(s / t for s, t in zip(single, times)), 3),
                "range": [round(min(s / t for s, t in zip(single, times)), 3), round(max(s / t for s, t in zip(single, times)), 3)],
            }
            for name, times in seconds.items()
            if name != "single process"
        }
        report["outputs_identical"] = identical
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
