"""Convert throughput against a minimal hand-written loop, and peak memory against archive size.

Speed: one 600-slice 256x256 DICOM series. The baseline is the least a converter must do: pydicom
read of every file, one normalization, one FFT per slice, one HDF5 write (kspace + magnitude). kspacify
runs `convert --phase smooth` on the same files in the same process, alternating with the baseline;
the figure is the median of the per-pair time ratios (these machines are noisy: memory and write-back
stalls move single timings by 2x, so only ratios of adjacent runs mean something). Files go to
/dev/shm where it exists, so disk speed is not what is measured.

Memory: peak RSS of `kspacify convert` child processes on archives of 1, 4 and 16 series.
Workers and Dask: benchmarks/scale_speed.py.

With `--compare SRC` (another kspacify source tree, e.g. a `git archive` of an earlier commit) the
series is also converted by SRC with each of `smooth`, `physics` and `sbdm`, and the files are compared
byte for byte with ours: a speed-up must not change what is written.

    python benchmarks/convert_speed.py [--slices 600] [--repeats 7] [--compare SRC]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pydicom

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import dicom_factory  # noqa: E402

from kspacify.kspace import fft2c  # noqa: E402


def make_series(directory: Path, slices: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1:1:256j, -1:1:256j]
    head = ((xx / 0.8) ** 2 + (yy / 0.9) ** 2 < 1).astype(np.float32)
    volume = np.stack([head * (800 + 200 * np.sin(6 * xx + s / 30)) for s in range(slices)])
    volume += rng.normal(0, 10, volume.shape)
    return dicom_factory.write_series(directory, np.clip(volume, 0, 4000).astype(np.uint16), spacing=(1.0, 0.9, 0.9))


def baseline(files: list[Path], out: Path) -> None:
    volume = np.stack([pydicom.dcmread(f).pixel_array.astype(np.float32) for f in files])
    volume /= np.percentile(volume, 99.5)
    kspace = np.empty(volume.shape, np.complex64)
    for i, image in enumerate(volume):
        kspace[i] = fft2c(image.astype(np.complex64))
    with h5py.File(out, "w") as f:
        f.create_dataset("kspace", data=kspace)
        f.create_dataset("reconstruction_esc", data=volume)


def kspacify_convert(directory: Path, out: Path) -> None:
    from typer.testing import CliRunner

    from kspacify.cli import app

    result = CliRunner().invoke(app, ["convert", str(directory), str(out), "--phase", "smooth", "--overwrite", "--salt", "b"])
    if result.exit_code != 0:
        raise RuntimeError(result.stderr)


def convert_with(src: Path, directory: Path, out: Path, method: str) -> Path:
    """The one output of `kspacify convert` run from the source tree `src` in a fresh interpreter."""
    subprocess.run([sys.executable, "-m", "kspacify.cli", "convert", str(directory), str(out), "--phase", method,
                    "--salt", "b", "--overwrite"], env=dict(os.environ, PYTHONPATH=str(src)), cwd=tempfile.gettempdir(),
                   check=True, capture_output=True)  # fmt: skip
    (output,) = out.glob("*.h5")
    return output


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def peak_rss_mb(directory: Path, out: Path) -> float:
    """Peak RSS (VmHWM, KiB) of a fresh `kspacify convert` process. Not ru_maxrss: Linux carries
    that over from the forking parent across exec."""
    code = (
        "import re, sys; from kspacify.cli import app\n"
        "try: app(sys.argv[1:])\n"
        "except SystemExit: pass\n"
        "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "convert", str(directory), str(out), "--phase", "smooth", "--salt", "b"],
        capture_output=True, text=True, check=True,
    )
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--compare", type=Path, help="another kspacify source tree whose outputs must be byte-identical")
    args = parser.parse_args()
    report: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "slices": args.slices,
    }
    # on tmpfs where there is one: disk write-back makes timings of 500 MB writes erratic
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        tmp_path = Path(tmp)
        files = make_series(tmp_path / "series", args.slices)
        base_times, ours = [], []
        for _ in range(args.repeats):
            base_times.append(timed(baseline, files, tmp_path / "baseline.h5"))
            ours.append(timed(kspacify_convert, tmp_path / "series", tmp_path / "out"))
        report["baseline_s"] = statistics.median(base_times)
        report["kspacify_s"] = statistics.median(ours)
        report["throughput_ratio"] = statistics.median(b / o for b, o in zip(base_times, ours))
        report["throughput_ratio_range"] = [min(b / o for b, o in zip(base_times, ours)), max(b / o for b, o in zip(base_times, ours))]
        report["kspacify_slices_per_s"] = args.slices / report["kspacify_s"]
        if args.compare:
            report["bytes_identical_to_compare"] = {
                method: convert_with(ROOT, tmp_path / "series", tmp_path / f"ours-{method}", method).read_bytes()
                == convert_with(args.compare.resolve(), tmp_path / "series", tmp_path / f"theirs-{method}", method).read_bytes()
                for method in ("smooth", "physics", "sbdm")
            }

        # memory: peak RSS for archives of 1, 4 and 16 series of 40 slices
        memory = {}
        for count in (1, 4, 16):
            archive = tmp_path / f"archive{count}"
            for i in range(count):
                make_series(archive / f"s{i}", 40, seed=i)
            memory[count] = round(peak_rss_mb(archive, tmp_path / f"mem{count}"), 1)
        report["peak_rss_mb_by_series"] = memory
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
