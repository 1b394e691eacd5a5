"""Slices/s of `kspacify convert --phase gan` against `--phase smooth`, alternating in one process.

Why a ratio: the machines are shared and noisy, so only adjacent runs compare. One synthetic
256x256 DICOM series (benchmarks/convert_speed.py's), written to tmpfs where there is one; each
repeat runs smooth then gan on the same files; the figure is the median of the per-pair ratios.
The GAN checkpoint is the bundled one (kspacify/weights/gan-small.safetensors) unless --checkpoint is given.

    python benchmarks/gan_speed.py [--slices 64] [--repeats 5] [--checkpoint PATH] [--batch-size 16]
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


def convert(directory: Path, out: Path, method: str, extra: list[str]) -> float:
    from typer.testing import CliRunner

    from kspacify.cli import app

    start = time.perf_counter()
    result = CliRunner().invoke(app, ["convert", str(directory), str(out), "--phase", method, "--overwrite", "--salt", "b",
                                      "--device", "cpu", *extra])  # fmt: skip
    if result.exit_code != 0:
        raise RuntimeError(result.output)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--checkpoint", type=Path, default=None)
    args = parser.parse_args()
    import torch

    gan_extra = ["--batch-size", str(args.batch_size)]
    if args.checkpoint is not None:
        gan_extra += ["--phase-opt", f"checkpoint={args.checkpoint}"]
    report: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                   f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
        "load_average_at_start": os.getloadavg(),
        "slices": args.slices,
    }  # fmt: skip
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        tmp_path = Path(tmp)
        make_series(tmp_path / "series", args.slices)
        convert(tmp_path / "series", tmp_path / "warm", "gan", gan_extra)  # load torch and the weights once
        smooth, gan = [], []
        for _ in range(args.repeats):
            smooth.append(convert(tmp_path / "series", tmp_path / "smooth", "smooth", ["--batch-size", str(args.batch_size)]))
            gan.append(convert(tmp_path / "series", tmp_path / "gan", "gan", gan_extra))
    report["smooth_slices_per_s"] = round(args.slices / statistics.median(smooth), 1)
    report["gan_slices_per_s"] = round(args.slices / statistics.median(gan), 1)
    ratios = [s / g for s, g in zip(smooth, gan)]
    report["gan_over_smooth_throughput"] = round(statistics.median(ratios), 3)
    report["ratio_range"] = [round(min(ratios), 3), round(max(ratios), 3)]
    report["load_average_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
