"""A wheel carries the bundled weights: installed from it (not from the checkout), `--phase sbdm`
finds its checkpoint and converts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project's wheel, built here and unpacked into a folder of its own (its dependencies are this
    environment's), so imports come from the wheel's files, not from the checkout."""
    work = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work), str(ROOT)],
                           capture_output=True, text=True)  # fmt: skip
    if build.returncode != 0:
        pytest.fail(f"pip wheel failed: {build.stderr[-2000:]}")
    wheel = next(work.glob("kspacify-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("sbdm-small", "gan-small", "phase-features"):
        assert f"kspacify/weights/{name}.safetensors" in names and f"kspacify/weights/{name}.json" in names
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)], check=True)
    return target


def test_an_installed_wheel_converts_with_the_bundled_sbdm(installed, tmp_path):
    data = np.random.default_rng(0).uniform(0, 300, (24, 20, 2)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "in.nii.gz")
    env = {**os.environ, "PYTHONPATH": str(installed), "KSPACIFY_SALT": "t"}
    env.pop("KSPACIFY_WEIGHTS", None)
    where = subprocess.run([sys.executable, "-c", "import kspacify, kspacify.weights as w; print(kspacify.__file__); "
                            "print(w.find_weights('sbdm-small'))"], env=env, cwd=tmp_path, capture_output=True, text=True, check=True)  # fmt: skip
    module, checkpoint = where.stdout.split()
    assert module.startswith(str(installed)) and checkpoint.startswith(str(installed))
    run = subprocess.run([sys.executable, "-m", "kspacify", "convert", str(tmp_path / "in.nii.gz"), str(tmp_path / "out.h5"),
                          "--phase", "sbdm", "--device", "cpu", "--size", "32", "--steps", "3"],
                         env=env, cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1])["phase"] == "sbdm"
