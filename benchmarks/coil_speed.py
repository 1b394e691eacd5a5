"""Multi-coil convert time per slice against single-coil, in the same process and run.

One DICOM series of 256 x 256 slices (the convert_speed series, 1 mm slices), converted with
`--phase smooth` (the cheapest phase, so the coils' share is as large as it gets; `--phase physics`
is what `auto` picks on a CPU) alternately with `--coils 1` and `--coils N`, output on tmpfs where there is one. The figure is the median of the per-pair ratios
of the times (adjacent runs: these machines are shared, single timings move by 2x), for wall time
and for the process's CPU time (what the conversion itself costs, less sensitive to other jobs on a
shared machine; BLAS runs single-threaded, so CPU time is one core's work). The load average before
and after is part of the report. `--profile`: where one `--coils N` run's time goes (cProfile,
CPU ms per slice of the costliest functions; numpy's element-wise work counts to its caller, the
coil encoder).

    python benchmarks/coil_speed.py [--slices 128] [--coils 8] [--repeats 5] [--phase smooth] [--workers 1]
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

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from convert_speed import make_series  # noqa: E402


def convert(directory: Path, out: Path, coils: int, extra: list[str], phase: str = "smooth") -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its finished children) of one convert."""
    from typer.testing import CliRunner

    from kspacify.cli import app

    args = ["convert", str(directory), str(out), "--phase", phase, "--overwrite", "--salt", "b", "--coils", str(coils), *extra]
    start, cpu = time.perf_counter(), _cpu()
    result = CliRunner().invoke(app, args)
    seconds, cpu_seconds = time.perf_counter() - start, _cpu() - cpu
    if result.exit_code != 0:
        raise RuntimeError(result.output)
    return seconds, cpu_seconds


def _cpu() -> float:
    own = os.times()
    return own.user + own.system + own.children_user + own.children_system


def profile(directory: Path, out: Path, coils: int, extra: list[str], phase: str, slices: int) -> dict[str, float]:
    import cProfile
    import pstats

    profiler = cProfile.Profile(time.process_time)
    profiler.runcall(convert, directory, out, coils, extra, phase)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = sorted(((value[2], f"{Path(key[0]).name}:{key[2]}") for key, value in stats.items()), reverse=True)[:12]
    return {name: round(1e3 * seconds / slices, 2) for seconds, name in rows}


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=128)
    parser.add_argument("--coils", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--phase", default="smooth")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--workers", type=int, default=1, help="--workers of both runs (series are split to give each worker a volume)")
    args = parser.parse_args()
    report: dict[str, object] = {
        "command": "python benchmarks/coil_speed.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_before": load(),
        "slices": args.slices,
        "coils": args.coils,
        "phase": args.phase,
    }
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        root = Path(tmp)
        per_series = args.slices // args.workers
        for index in range(args.workers):
            make_series(root / "series" / f"s{index}", per_series, seed=index)
        extra = ["--workers", str(args.workers)] if args.workers > 1 else []
        convert(root / "series", root / "warm", args.coils, extra, args.phase)  # imports, first-call costs
        single, multi = [], []
        for _ in range(args.repeats):
            single.append(convert(root / "series", root / "one", 1, extra, args.phase))
            multi.append(convert(root / "series", root / "many", args.coils, extra, args.phase))
        total = per_series * args.workers
        for index, kind in ((0, "wall"), (1, "cpu")):
            ratios = [m[index] / s[index] for s, m in zip(single, multi)]
            report.update(
                {
                    f"single_{kind}_ms_per_slice": round(1e3 * statistics.median(s[index] for s in single) / total, 2),
                    f"multi_{kind}_ms_per_slice": round(1e3 * statistics.median(m[index] for m in multi) / total, 2),
                    f"{kind}_ratio_multi_over_single": round(statistics.median(ratios), 2),
                    f"{kind}_ratio_range": [round(min(ratios), 2), round(max(ratios), 2)],
                }
            )
        report["workers"] = args.workers
        if args.profile:
            report["profile_cpu_ms_per_slice"] = profile(root / "series", root / "many", args.coils, extra, args.phase, total)
    report["load_after"] = load()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
