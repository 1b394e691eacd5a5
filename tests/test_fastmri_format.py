"""The output file is what fastMRI's single-coil loaders expect, read by fastMRI's own code."""

import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from kspacify.cli import app
from kspacify.kspace import fft2c, ifft2c

NS = {"m": "http://www.ismrm.org/ISMRMRD"}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from typer.testing import CliRunner

    root = tmp_path_factory.mktemp("fmt")
    rng = np.random.default_rng(0)
    data = (rng.uniform(0, 500, (60, 80, 3))).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 3.0, 1.0])), root / "vol.nii.gz")
    result = CliRunner().invoke(app, ["convert", str(root / "vol.nii.gz"), str(root / "out" / "vol.h5"), "--phase", "smooth", "--salt", "s"])
    assert result.exit_code == 0, result.output
    return root / "out" / "vol.h5"


def test_datasets_and_attributes(converted):
    with h5py.File(converted) as f:
        kspace, recon = f["kspace"][()], f["reconstruction_esc"][()]
        assert kspace.dtype == np.complex64 and kspace.shape == (3, 256, 256)
        assert recon.dtype == np.float32 and recon.shape == (3, 256, 256)
        np.testing.assert_allclose(np.abs(ifft2c(kspace)), recon, atol=1e-5)
        assert f.attrs["max"] == pytest.approx(recon.max())
        assert f.attrs["norm"] == pytest.approx(np.linalg.norm(recon), rel=1e-5)
        for key in ("acquisition", "patient_id", "kspacify_version", "phase_method", "seed"):
            assert key in f.attrs
        header = ET.fromstring(f["ismrmrd_header"][()])
    enc = header.find("m:encoding", NS)
    for space in ("encodedSpace", "reconSpace"):
        size = enc.find(f"m:{space}/m:matrixSize", NS)
        assert [int(size.find(f"m:{a}", NS).text) for a in "xyz"] == [256, 256, 1]
    step1 = enc.find("m:encodingLimits/m:kspace_encoding_step_1", NS)
    assert int(step1.find("m:center", NS).text) == 128
    assert int(step1.find("m:maximum", NS).text) == 255


def test_kspace_uses_the_centred_orthonormal_fft(converted):
    with h5py.File(converted) as f:
        kspace, recon = f["kspace"][0], f["reconstruction_esc"][0]
    # orthonormal: energy is the same in both domains; centred: DC sits at (128, 128)
    assert np.sum(np.abs(kspace) ** 2) == pytest.approx(np.sum(recon.astype(np.float64) ** 2), rel=1e-4)
    image = ifft2c(kspace)
    assert np.abs(fft2c(image)[128, 128]) == pytest.approx(np.abs(image.sum()) / 256, rel=1e-4)


def test_fastmri_slice_dataset_reads_the_file_unchanged(converted):
    pytest.importorskip("fastmri", reason="fastmri is not installed (pip install --no-deps fastmri)")
    import torch
    from fastmri.data import SliceDataset
    from fastmri.data.subsample import EquispacedMaskFractionFunc
    from fastmri.data.transforms import VarNetDataTransform

    transform = VarNetDataTransform(mask_func=EquispacedMaskFractionFunc([0.08], [4], seed=0), use_seed=True)
    dataset = SliceDataset(root=Path(converted).parent, challenge="singlecoil", transform=transform)
    assert len(dataset) == 3
    sample = dataset[1]
    assert sample.masked_kspace.shape == (256, 256, 2)
    assert sample.target.shape == (256, 256)
    assert sample.max_value == pytest.approx(float(h5py.File(converted).attrs["max"]))
    # fastMRI's own inverse FFT of the unmasked k-space reproduces the stored target
    import fastmri

    with h5py.File(converted) as f:
        full = torch.from_numpy(np.stack([f["kspace"][1].real, f["kspace"][1].imag], -1))
    image = fastmri.complex_abs(fastmri.ifft2c(full))
    torch.testing.assert_close(image, sample.target, atol=1e-5, rtol=1e-4)


def test_header_parses_with_the_ismrmrd_bindings(converted):
    xsd = pytest.importorskip("ismrmrd.xsd", reason="the ismrmrd package is not installed")
    import warnings

    with h5py.File(converted) as f:
        text = f["ismrmrd_header"][()].decode()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a value the schema's types reject is a warning there
        header = xsd.CreateFromDocument(text)
    encoding = header.encoding[0]
    assert (encoding.encodedSpace.matrixSize.x, encoding.encodedSpace.matrixSize.y) == (256, 256)
    assert (encoding.reconSpace.matrixSize.x, encoding.reconSpace.matrixSize.y) == (256, 256)
    limits = encoding.encodingLimits.kspace_encoding_step_1
    assert (limits.minimum, limits.maximum, limits.center) == (0, 255, 128)
    assert encoding.trajectory.value == "cartesian"
