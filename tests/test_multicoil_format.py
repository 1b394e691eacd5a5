"""`convert --coils N` writes fastMRI's multi-coil layout: read by fastMRI's own SliceDataset and
VarNetDataTransform, and fastMRI's VarNet runs on it; from NIfTI and DICOM; bad counts exit 2."""

import hashlib
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from kspacify.cli import app
from kspacify.kspace import ifft2c

sys.path.insert(0, str(Path(__file__).parent))
import dicom_factory  # noqa: E402

NS = {"m": "http://www.ismrm.org/ISMRMRD"}
COILS = 4


def phantom(shape=(3, 40, 48), seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1 : 1 : shape[1] * 1j, -1 : 1 : shape[2] * 1j]
    inside = (x / 0.8) ** 2 + (y / 0.85) ** 2 < 1
    volume = np.stack([inside * (400 + 80 * np.sin(5 * x + s)) for s in range(shape[0])])
    noise = np.abs(rng.normal(0, 12, volume.shape) + 1j * rng.normal(0, 12, volume.shape))
    return (volume + noise).astype(np.float32)


def convert(*args):
    return CliRunner().invoke(app, ["convert", *map(str, args), "--salt", "s"])


@pytest.fixture(scope="module")
def nifti(tmp_path_factory):
    root = tmp_path_factory.mktemp("multicoil")
    nib.save(nib.Nifti1Image(phantom().transpose(2, 1, 0).astype(np.int16), np.diag([4.0, 4.0, 5.0, 1.0])), root / "vol.nii.gz")
    return root / "vol.nii.gz"


@pytest.fixture(scope="module")
def converted(nifti):
    out = nifti.parent / "out" / "vol.h5"
    result = convert(nifti, out, "--coils", COILS, "--size", 32, "--phase", "physics")
    assert result.exit_code == 0, result.output
    return out


def test_datasets_attributes_and_header(converted):
    with h5py.File(converted) as f:
        kspace, rss = f["kspace"][()], f["reconstruction_rss"][()]
        assert "reconstruction_esc" not in f
        assert kspace.dtype == np.complex64 and kspace.shape == (3, COILS, 32, 32)
        assert rss.dtype == np.float32 and rss.shape == (3, 32, 32)
        # the target is the RSS of the coil images, as in fastMRI's multi-coil files
        np.testing.assert_allclose(np.sqrt(np.sum(np.abs(ifft2c(kspace)) ** 2, axis=1)), rss, atol=1e-5)
        assert f.attrs["max"] == pytest.approx(rss.max())
        assert f.attrs["norm"] == pytest.approx(np.linalg.norm(rss), rel=1e-5)
        settings = json.loads(f.attrs["coil_settings"])
        assert settings["model"] == f.attrs["coil_model"] == "cylinder" and settings["coils"] == COILS
        geometry = json.loads(f.attrs["coil_geometry"])
        assert len(geometry["centres_mm"]) == COILS
        assert f.attrs["coil_noise_sigma"] > 0 and f.attrs["seed"] == 0
        header = ET.fromstring(f["ismrmrd_header"][()])
    assert header.find("m:acquisitionSystemInformation/m:receiverChannels", NS).text == str(COILS)


def test_header_is_valid_for_the_ismrmrd_bindings(converted):
    xsd = pytest.importorskip("ismrmrd.xsd", reason="the ismrmrd package is not installed")
    import warnings

    with h5py.File(converted) as f:
        text = f["ismrmrd_header"][()].decode()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        header = xsd.CreateFromDocument(text)
    assert header.acquisitionSystemInformation.receiverChannels == COILS


def test_fastmri_loads_the_files_and_its_varnet_runs_on_them(converted):
    pytest.importorskip("fastmri", reason="fastmri is not installed (pip install --no-deps fastmri)")
    import fastmri
    import torch
    from fastmri.data import SliceDataset
    from fastmri.data.subsample import EquispacedMaskFractionFunc
    from fastmri.data.transforms import VarNetDataTransform
    from fastmri.models import VarNet

    transform = VarNetDataTransform(mask_func=EquispacedMaskFractionFunc([0.16], [2], seed=0), use_seed=True)
    dataset = SliceDataset(root=converted.parent, challenge="multicoil", transform=transform)
    assert len(dataset) == 3
    samples = [dataset[i] for i in range(2)]
    assert samples[0].masked_kspace.shape == (COILS, 32, 32, 2)
    assert samples[0].target.shape == (32, 32) and samples[0].crop_size == (32, 32)
    assert samples[0].max_value == pytest.approx(float(h5py.File(converted).attrs["max"]))
    # fastMRI's own RSS of its own inverse FFT of the full k-space is the stored target
    with h5py.File(converted) as f:
        full = torch.from_numpy(np.stack([f["kspace"][1].real, f["kspace"][1].imag], -1))
    torch.testing.assert_close(fastmri.rss(fastmri.complex_abs(fastmri.ifft2c(full)), dim=0), samples[1].target, atol=1e-5, rtol=1e-4)

    torch.manual_seed(0)
    model = VarNet(num_cascades=2, sens_chans=4, sens_pools=2, chans=4, pools=2)
    batch = torch.stack([s.masked_kspace for s in samples])
    mask = torch.stack([s.mask for s in samples])
    with torch.no_grad():
        output = model(batch, mask, samples[0].num_low_frequencies)
    assert output.shape == (2, 32, 32) and torch.isfinite(output).all()


def test_kspacify_reads_its_own_multicoil_file_as_an_emulated_single_coil(converted):
    from kspacify.datasets import fastmri as reader

    ref = reader.scan(converted, "v")
    assert ref.meta["multicoil"] and ref.meta["coils"] == COILS
    slices = list(reader.read(ref, size=32))
    assert len(slices) == 3
    assert slices[0].source["coil_compression"] == "pca-first-virtual-coil"
    assert slices[0].source["virtual_coil_energy_fraction"] > 0.5


def test_from_dicom(tmp_path):
    volume = phantom((4, 32, 32), seed=1)
    dicom_factory.write_series(tmp_path / "series", np.clip(volume, 0, 4000).astype(np.uint16), spacing=(5.0, 6.0, 6.0))
    out = tmp_path / "d.h5"
    result = convert(tmp_path / "series", out, "--coils", 3, "--coil-model", "surface", "--coil-opt", "pads=1", "--size", 32, "--phase", "smooth")
    assert result.exit_code == 0, result.output
    with h5py.File(out) as f:
        assert f["kspace"].shape == (4, 3, 32, 32)
        assert json.loads(f.attrs["coil_settings"])["pads"] == 1
        assert f.attrs["source_kind"] == "dicom"


def test_the_same_seed_gives_the_same_file_and_another_seed_another_array(nifti, tmp_path):
    paths = [tmp_path / name for name in ("a.h5", "b.h5", "c.h5")]
    for path, seed in zip(paths, (3, 3, 4)):
        assert convert(nifti, path, "--coils", 2, "--size", 32, "--phase", "smooth", "--seed", seed).exit_code == 0
    a, b, c = (h5py.File(p) for p in paths)
    np.testing.assert_array_equal(a["kspace"][()], b["kspace"][()])
    assert a.attrs["coil_geometry"] == b.attrs["coil_geometry"] != c.attrs["coil_geometry"]


def test_coils_1_is_the_single_coil_file_byte_for_byte(nifti, tmp_path):
    default, one = tmp_path / "default.h5", tmp_path / "one.h5"
    assert convert(nifti, default, "--size", 32, "--phase", "smooth").exit_code == 0
    assert convert(nifti, one, "--size", 32, "--phase", "smooth", "--coils", 1).exit_code == 0
    assert hashlib.sha256(default.read_bytes()).digest() == hashlib.sha256(one.read_bytes()).digest()
    with h5py.File(one) as f:
        assert set(f) == {"kspace", "reconstruction_esc", "ismrmrd_header"} and f["kspace"].ndim == 3
        assert not any(key.startswith("coil") for key in f.attrs)
        assert b"receiverChannels" not in f["ismrmrd_header"][()]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--coils", "0"], "--coils must be at least 1, got 0"),
        (["--coils", "-3"], "--coils must be at least 1"),
        (["--coils", "65"], "places at most 64 coils"),
        (["--coils", "8", "--coil-model", "birdcage"], "unknown coil model"),
        (["--coils", "8", "--coil-opt", "gapmm=3"], "unknown option(s) gapmm"),
        (["--coil-opt", "pads=1"], "need --coils 2 or more"),
    ],
)
def test_bad_coil_requests_are_one_line_and_exit_2(nifti, tmp_path, extra, message):
    result = convert(nifti, tmp_path / "x.h5", "--phase", "smooth", *extra)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.h5").exists()
