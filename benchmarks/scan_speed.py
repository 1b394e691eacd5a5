"""DICOM header pass + grouping (what `kspacify scan` does before any pixel is read) against dcm2niix.

An export like a PACS one is generated once (`--files`, default about 2,700 files): Siemens 3D T1,
fMRI and DWI mosaics and localizers, GE multi-echo and magnitude/phase series, Philips FLAIR and
classic one-file-per-slice DWI, plain 2D series, and a few non-images (structured report,
presentation state). Each file carries vendor private blocks of about the size real ones have
(Siemens CSA image and series headers, GE and Philips private groups), since the header pass cost
grows with the bytes it has to step over.

Each repeat times, one after another on the same files (warm page cache, output on tmpfs):

* `dcm2niix`: the whole conversion (`-z n`: uncompressed NIfTI + BIDS sidecars), the reference;
* `dcm2niix -b o`: dcm2niix's own headers-only pass (sidecars only, no NIfTI written);
* kspacify's header pass + grouping in a fresh process: `sources.scan(sources.discover(...))`,
  timed inside the process, so start-up is not in it (start-up is timed on its own);
* with `--compare SRC`: the same pass of another kspacify source tree (e.g. a `git archive` of
  main), for before/after figures from one run.

Each run is timed as wall-clock and as CPU time (the process's own, or the child's user + system
from its rusage): on a shared, loaded machine CPU time is the steadier figure. Figures are
medians over repeats of the per-repeat ratios: ratios of adjacent runs are what can be compared.
`uptime` is printed at the start and the end.

    python benchmarks/scan_speed.py [--files 2700] [--repeats 7] [--workers 1] [--compare SRC] [--export DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import dicom_factory as F  # noqa: E402

# (vendor, kind, count, rows, cols, extra): `count` files; mosaics tile `tiles` slices
SERIES = [
    ("siemens", "localizer", 9, 256, 256, {}),
    ("siemens", "t1_3d", 176, 256, 256, {"orientation": "sagittal"}),
    ("siemens", "fmri_mosaic", 300, 64, 64, {"tiles": 36}),
    ("siemens", "dwi_mosaic", 65, 64, 64, {"tiles": 25, "b": True}),
    ("ge", "t2_axial", 40, 512, 512, {}),
    ("ge", "multi_echo", 240, 256, 256, {"echoes": 4}),
    ("ge", "swi_mag_phase", 200, 256, 256, {"components": True}),
    ("philips", "flair", 150, 256, 256, {"series": 3}),
    ("philips", "dwi", 990, 128, 128, {"directions": 33}),
    ("acme", "t2_2d", 500, 256, 256, {"series": 5}),
    ("acme", "non_image", 30, 0, 0, {}),
]


def _vendor_blocks(ds: Dataset, vendor: str, mosaic_tiles: int = 0) -> None:
    """Private groups of about the size real files carry (the values are filler)."""
    if vendor == "siemens":
        ds.Manufacturer = "SIEMENS"
        block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
        for e in range(0x08, 0x30):
            block.add_new(e, "LO", f"value {e}")
        if mosaic_tiles:
            block.add_new(0x0A, "US", mosaic_tiles)
        image = {f"Element{i:03d}": [f"{i}.0"] * (i % 4) for i in range(100)}
        image["NumberOfImagesInMosaic"] = [str(mosaic_tiles)] if mosaic_tiles else []
        image["SliceNormalVector"] = ["0.0", "0.0", "1.0"]
        csa = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
        csa.add_new(0x08, "CS", "IMAGE NUM 4")
        csa.add_new(0x10, "OB", F.csa2(image))
        csa.add_new(0x18, "CS", "MR")
        protocol = "### ASCCONV BEGIN ###\n" + "".join(f"sKSpace.ucParam{i} = {i}\n" for i in range(2500))
        csa.add_new(0x20, "OB", F.csa2({"MrPhoenixProtocol": [protocol + "### ASCCONV END ###"]}))
    elif vendor == "ge":
        ds.Manufacturer = "GE MEDICAL SYSTEMS"
        for group, creator in ((0x0019, "GEMS_ACQU_01"), (0x0021, "GEMS_RELA_01"), (0x0043, "GEMS_PARM_01")):
            block = ds.private_block(group, creator, create=True)
            for e in range(0x10, 0x60):
                if (group, e) != (0x0043, 0x2F):
                    block.add_new(e, "DS", str(e))
    elif vendor == "philips":
        ds.Manufacturer = "Philips Medical Systems"
        for group in (0x2001, 0x2005):
            block = ds.private_block(group, "Philips Imaging DD 001", create=True)
            for e in range(0x10, 0x90):
                block.add_new(e, "LO", f"p{e}")


def _write(directory: Path, name: str, ds: Dataset) -> None:
    F.save(ds, directory / name)


def make_export(directory: Path, scale: float = 1.0) -> int:
    """Write the export; returns the number of files."""
    rng = np.random.default_rng(0)
    written = 0
    for vendor, kind, count, rows, cols, extra in SERIES:
        count = max(1, round(count * scale))
        folder = directory / f"{vendor}_{kind}"
        if kind == "non_image":
            for i in range(count):
                F.write_non_image(folder / f"NI{i:04d}", ["sr", "presentation_state", "key_object"][i % 3])
            written += count
            continue
        tiles = extra.get("tiles", 0)
        grid = int(np.ceil(np.sqrt(tiles))) if tiles else 1
        image = rng.integers(0, 4000, (rows * grid, cols * grid)).astype(np.uint16)
        n_series = extra.get("series", 1)
        per_series = count // n_series
        study = F.new_uid()
        for s in range(n_series):
            uids = {"series": F.new_uid(), "phase": F.new_uid()}
            for i in range(per_series):
                kw: dict = {"series_uid": uids["series"], "study_uid": study, "series_number": 10 * s + len(kind),
                            "instance_number": i + 1, "manufacturer": "x", "iop": extra.get("orientation", "axial"),
                            "pixel_spacing": (0.9, 0.9), "slice_thickness": 3.0}
                slices = per_series
                itype = ["ORIGINAL", "PRIMARY", "M", "ND"]
                z = i
                if kind == "localizer":
                    kw["iop"] = ["axial", "coronal", "sagittal"][i % 3]
                    itype = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
                if "echoes" in extra:
                    slices = max(1, per_series // extra["echoes"])
                    echo, z = divmod(i, slices)
                    kw.update(echo_number=echo + 1, echo_time=5.0 + 7.0 * echo)
                if "components" in extra:
                    slices = max(1, per_series // 2)
                    part, z = divmod(i, slices)
                    if part:
                        itype = ["ORIGINAL", "PRIMARY", "P", "ND"]
                if "directions" in extra:
                    slices = max(1, per_series // extra["directions"])
                    direction, z = divmod(i, slices)
                    kw["extra"] = {"DiffusionBValue": 0.0 if direction == 0 else 1000.0,
                                   "DiffusionGradientOrientation": [float(np.cos(direction)), float(np.sin(direction)), 0.0]}
                if tiles:
                    itype.append("MOSAIC")
                    z = 0
                    kw["acquisition_number"] = i + 1
                kw["ipp"] = (-115.0, -115.0, -60.0 + 3.0 * z) if kw["iop"] != "sagittal" else (-60.0 + 1.0 * z, -128.0, 128.0)
                ds = F.mr_dataset(image, image_type=itype, spacing_between_slices=3.0, **kw)
                ds.ReferencedImageSequence = DicomSequence([Dataset() for _ in range(3)])
                for item in ds.ReferencedImageSequence:
                    item.ReferencedSOPClassUID = F.MRImageStorage
                    item.ReferencedSOPInstanceUID = F.new_uid()
                _vendor_blocks(ds, vendor, tiles)
                _write(folder, f"{s:02d}{i:05d}", ds)
                written += 1
    return written


def _python_pass(src: Path, export: Path, workers: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the header pass + grouping in a fresh interpreter on the kspacify
    source tree `src` (run from a neutral folder, so `src` is what is imported)."""
    code = (
        "import sys, time, inspect\n"
        "from kspacify import sources\n"
        "from kspacify.sources.base import Pseudonymizer\n"
        "kw = {'workers': int(sys.argv[2])} if 'workers' in inspect.signature(sources.scan).parameters else {}\n"
        "wall, cpu = time.perf_counter(), time.process_time()\n"
        "items = list(sources.scan(sources.discover([sys.argv[1]]), Pseudonymizer(b'b'), **kw))\n"
        "print(time.perf_counter() - wall, time.process_time() - cpu)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(src))
    done = subprocess.run([sys.executable, "-c", code, str(export), str(workers)], capture_output=True, text=True,
                          env=env, check=True, cwd=tempfile.gettempdir())
    wall, cpu = done.stdout.split()
    return float(wall), float(cpu)


def _timed(command: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of a child process (CPU: user + system, from its rusage)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _startup() -> tuple[float, float]:
    """Seconds of `kspacify scan --help` (imports of the CLI, no work)."""
    return _timed([str(Path(sys.executable).with_name("kspacify")), "scan", "--help"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2700, help="about this many files in the export")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--workers", type=int, default=1, help="passed to sources.scan where it takes it")
    parser.add_argument("--compare", type=Path, help="another kspacify source tree to time the same way")
    parser.add_argument("--export", type=Path, help="keep the export here (made if missing) instead of a temporary one")
    args = parser.parse_args()
    uptime = lambda: subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()  # noqa: E731
    report: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "uptime_start": uptime(),
    }
    dcm2niix = shutil.which("dcm2niix")
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        tmp_path = Path(tmp)
        export = args.export or tmp_path / "export"
        if not export.exists():
            make_export(export, args.files / sum(s[2] for s in SERIES))
        n_files = sum(1 for p in export.rglob("*") if p.is_file())
        report["files"] = n_files
        report["export_mb"] = round(sum(p.stat().st_size for p in export.rglob("*") if p.is_file()) / 2**20, 1)
        times: dict[str, list[float]] = {"kspacify": []}
        if args.compare:
            times["compare"] = []
        if dcm2niix:
            times["dcm2niix"], times["dcm2niix_headers"] = [], []
            report["dcm2niix"] = subprocess.run([dcm2niix, "-v"], capture_output=True, text=True).stdout.split("\n")[0]
        else:
            report["dcm2niix"] = "not installed (apt-get install dcm2niix): no reference figures"
        times["startup"] = []
        for _ in range(args.repeats):
            if dcm2niix:
                out = tmp_path / "nii"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                times["dcm2niix"].append(_timed([dcm2niix, "-z", "n", "-o", str(out), str(export)]))
                shutil.rmtree(out)
                out.mkdir()
                times["dcm2niix_headers"].append(_timed([dcm2niix, "-b", "o", "-o", str(out), str(export)]))
            times["kspacify"].append(_python_pass(ROOT, export, args.workers))
            if args.compare:
                times["compare"].append(_python_pass(args.compare, export, args.workers))
            times["startup"].append(_startup())
        for name, values in times.items():
            report[f"{name}_wall_s"] = round(statistics.median(w for w, _ in values), 3)
            report[f"{name}_cpu_s"] = round(statistics.median(c for _, c in values), 3)
        report["kspacify_cpu_ms_per_file"] = round(1000 * report["kspacify_cpu_s"] / n_files, 3)

        def ratio(a: str, b: str, which: int) -> list[float]:
            return [x[which] / y[which] for x, y in zip(times[a], times[b])]

        pairs = [("compare", "kspacify", "speedup_over_compare")] if args.compare else []
        if dcm2niix:
            pairs += [("kspacify", "dcm2niix", "kspacify_over_dcm2niix"),
                      ("kspacify", "dcm2niix_headers", "kspacify_over_dcm2niix_headers_only")]
        for a, b, name in pairs:
            for which, kind in ((0, "wall"), (1, "cpu")):
                values = ratio(a, b, which)
                report[f"{name}_{kind}"] = round(statistics.median(values), 3)
                report[f"{name}_{kind}_range"] = [round(min(values), 3), round(max(values), 3)]
    report["uptime_end"] = uptime()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
