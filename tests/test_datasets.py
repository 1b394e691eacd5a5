"""Tests of kspacify.datasets: readers, resize/normalization, directory walking, splits."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import h5py
import nibabel
import numpy as np
import pytest

from fastmri_factory import (
    phantom,
    singlecoil_kspace,
    write_fastmri_h5,
    write_multicoil,
    write_singlecoil,
)
from kspacify.datasets import (
    ComplexSlice,
    iter_slices,
    list_volumes,
    load_splits,
    load_splits_with_meta,
    make_nested_splits,
    make_splits,
    split_volumes,
    normalize_volume,
    save_splits,
    scan,
    to_square_size,
    validate_splits,
)
from kspacify.datasets.fastmri import compress_coils, parse_header
from kspacify.datasets.nifti import phase_to_radians, split_tag
from kspacify.datasets.resize import center_crop, fourier_resize
from kspacify.kspace import fft2c

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-phase"


def _normalized(image: np.ndarray) -> np.ndarray:
    return normalize_volume(image[None])[0][0]


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(abs(np.vdot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _phase_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(np.angle(a * np.conj(b)))


def _save_nifti(path: Path, array: np.ndarray) -> Path:
    nibabel.Nifti1Image(array, np.eye(4)).to_filename(str(path))
    return path


# --- ComplexSlice, normalization, resize -------------------------------------------------------


def test_complex_slice_fields_and_phase_range() -> None:
    image = np.array([[-1.0 + 0j, 1j], [2.0, -1e-9j]], dtype=np.complex64)
    s = ComplexSlice(image=image, volume_key="v", slice_index=0, source={"file": "x"})
    assert s.magnitude.dtype == np.float32 and s.phase.dtype == np.float32
    assert s.phase.min() >= -np.pi and s.phase.max() < np.pi
    assert s.phase[0, 0] == pytest.approx(-np.pi)  # angle(-1) = +pi, wrapped to -pi
    np.testing.assert_allclose(s.magnitude * np.exp(1j * s.phase), s.image, atol=1e-6)
    np.testing.assert_allclose(s.kspace, fft2c(image), atol=1e-6)


def test_normalization_puts_995th_percentile_at_one_per_volume() -> None:
    rng = np.random.default_rng(1)
    volume = (rng.random((3, 16, 16)) * 7 * np.exp(1j * rng.uniform(-3, 3, (3, 16, 16)))).astype(np.complex64)
    normalized, scale = normalize_volume(volume)
    assert np.percentile(np.abs(normalized), 99.5) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(np.angle(normalized), np.angle(volume), atol=1e-5)
    assert normalize_volume(np.zeros((1, 4, 4), np.complex64))[1] == 1.0


def test_fourier_resize_is_exact_for_band_limited_images_and_keeps_intensity() -> None:
    rng = np.random.default_rng(2)
    small = (rng.normal(size=(16, 16)) + 1j * rng.normal(size=(16, 16))).astype(np.complex64)
    big = fourier_resize(small, (40, 40))  # zero-fill: band-limited to the 16 x 16 grid
    np.testing.assert_allclose(fourier_resize(big, (16, 16)), small, atol=1e-5)
    constant = np.full((30, 30), 2 - 1j, np.complex64)
    np.testing.assert_allclose(fourier_resize(constant, (20, 20)), 2 - 1j, atol=1e-5)


def test_non_square_is_centre_cropped_to_square_first() -> None:
    image = np.zeros((20, 12), np.complex64)
    image[4:16, :] = 1 + 1j  # the central 12 rows
    image[10, 6] = 5
    out = to_square_size(image, 12)
    np.testing.assert_allclose(out, image[4:16], atol=1e-5)
    assert center_crop(np.arange(10)[None, :], (1, 4)).tolist() == [[3, 4, 5, 6]]


# --- fastMRI --------------------------------------------------------------------------------------


def test_singlecoil_fastmri_round_trip(tmp_path: Path) -> None:
    image = phantom((32, 32), seed=3)
    path = write_singlecoil(tmp_path / "knee" / "file1000001.h5", image[None], width=40)
    with h5py.File(path, "r") as handle:
        assert handle["kspace"].shape == (1, 64, 40)  # readout oversampled 2x, phase-encode padded
        header = parse_header(handle["ismrmrd_header"][()])
    assert header["recon_size"][:2] == [32, 32] and header["encoded_size"][:2] == [64, 40]
    assert header["kspace_encoding_step_1"]["center"] == 20

    (same_size,) = iter_slices(path, size=32)
    assert same_size.image.shape == (32, 32) and same_size.image.dtype == np.complex64
    np.testing.assert_allclose(same_size.image, _normalized(image), atol=1e-5)
    assert same_size.volume_key == "file1000001" and same_size.slice_index == 0
    assert same_size.source["reader"] == "fastmri" and same_size.source["original_shape"] == [1, 64, 40]
    assert same_size.source["recon_crop"] == [32, 32]

    (shrunk,) = iter_slices(path, size=24)  # anti-aliased: Fourier crop of the recon image
    expected = _normalized(fourier_resize(image, (24, 24)))
    np.testing.assert_allclose(shrunk.image, expected, atol=1e-5)
    large = np.abs(expected) > 0.3
    assert large.sum() > 50
    assert _phase_error(shrunk.image, expected)[large].max() < 1e-3
    assert np.percentile(shrunk.magnitude, 99.5) == pytest.approx(1.0, rel=1e-4)


def test_multicoil_compression_recovers_image_up_to_global_phase(tmp_path: Path) -> None:
    images = np.stack([phantom((32, 32), seed=4), phantom((32, 32), seed=5)])
    path, maps = write_multicoil(tmp_path / "brain.h5", images, n_coils=4, seed=7)
    assert maps.shape == (4, 64, 32)
    slices = list(iter_slices(path, size=32))
    assert [s.slice_index for s in slices] == [0, 1]
    for s, image in zip(slices, images):
        assert _corr(s.image, image) > 0.99
        assert s.source["coil_compression"] == "pca-first-virtual-coil" and s.source["coils"] == 4
    again = list(iter_slices(path, size=32))
    np.testing.assert_array_equal(again[0].image, slices[0].image)  # phase convention is deterministic


def test_coil_compression_of_rank_one_coils_is_exact() -> None:
    image = phantom((16, 16), seed=6)
    weights = np.array([0.2 + 0.1j, 1.0 - 0.5j, -0.3j], np.complex64)
    kspace = fft2c(weights[:, None, None] * image[None])
    virtual, u, fraction = compress_coils(kspace)
    assert fraction == pytest.approx(1.0, abs=1e-6)
    strongest = int(np.argmax(np.abs(u)))
    assert abs(u[strongest].imag) < 1e-6 and u[strongest].real > 0
    assert _corr(virtual, fft2c(image)) == pytest.approx(1.0, abs=1e-5)


def test_fastmri_files_that_cannot_be_used_are_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    image = phantom((16, 16))
    write_singlecoil(tmp_path / "ok.h5", image[None])
    write_fastmri_h5(tmp_path / "test_set.h5", singlecoil_kspace(image[None]), (16, 16), mask=np.ones(16))
    write_fastmri_h5(tmp_path / "noheader.h5", singlecoil_kspace(image[None]), (16, 16), header=False)
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle.create_dataset("data", data=np.zeros(3))
    with caplog.at_level(logging.INFO, logger="kspacify.datasets"):
        refs = list_volumes(tmp_path)
    assert [ref.key for ref in refs] == ["noheader", "ok"]
    assert "undersampled" in caplog.text and "without a 'kspace' dataset" in caplog.text
    (no_header,) = iter_slices(tmp_path / "noheader.h5", size=16)
    assert no_header.image.shape == (16, 16) and "no recon crop" in no_header.source["note"]


# --- NIfTI and npy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encode", "rule"),
    [
        (lambda p: np.round(p / np.pi * 4096).clip(-4096, 4095).astype(np.int16), "siemens signed"),
        (lambda p: np.round((p + np.pi) / np.pi * 2048).clip(0, 4095).astype(np.int16), "unsigned 12-bit"),
        (lambda p: p.astype(np.float32), "radians"),
    ],
)
def test_magnitude_phase_pair_in_scanner_units_gives_radians(tmp_path: Path, encode, rule: str) -> None:
    rng = np.random.default_rng(8)
    magnitude = rng.uniform(0.5, 2.0, (24, 24, 2)).astype(np.float32)
    y, x = np.meshgrid(np.linspace(-1, 1, 24), np.linspace(-1, 1, 24), indexing="ij")
    phase = np.angle(np.exp(1j * (3.0 * x + 2.0 * y)))[..., None].repeat(2, axis=2)
    _save_nifti(tmp_path / "subj_mag.nii.gz", (magnitude * 100).astype(np.int16))
    _save_nifti(tmp_path / "subj_phase.nii.gz", encode(phase))
    slices = list(iter_slices(tmp_path, size=24))
    assert len(slices) == 2 and {s.volume_key for s in slices} == {"subj"}
    assert slices[0].source["reader"] == "nifti-pair" and rule in slices[0].source["phase_units"]
    for z, s in enumerate(slices):
        assert _phase_error(s.image, np.exp(1j * phase[..., z])).max() < 2e-3  # 12-bit quantization
        np.testing.assert_allclose(s.magnitude * np.exp(1j * s.phase), s.image, atol=1e-5)


def test_phase_units_rule() -> None:
    assert phase_to_radians(np.array([-4096, 0, 4095]))[0][0] == pytest.approx(-np.pi)
    assert phase_to_radians(np.array([0, 2048, 4095]))[0][1] == pytest.approx(0.0)
    assert phase_to_radians(np.array([0.0, 1.5 * np.pi]))[0][1] == pytest.approx(-0.5 * np.pi, abs=1e-6)
    with pytest.raises(Exception, match="neither radians"):
        phase_to_radians(np.array([-20000.0, 20000.0]))


def test_pair_names() -> None:
    assert split_tag("X_mag") == ("mag", "X")
    assert split_tag("X_Phase") == ("phase", "X")
    assert split_tag("sub-01_part-mag_T2starw") == ("mag", "sub-01_T2starw")
    assert split_tag("sub-01_part-phase_T2starw") == ("phase", "sub-01_T2starw")
    assert split_tag("scan_e1_ph") == ("phase", "scan_e1")
    assert split_tag("sub-01_phantom") is None and split_tag("mag") is None


def test_bids_dcm2niix_pairs_and_orphans(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    magnitude = np.ones((8, 8, 1), np.float32)
    phase = np.full((8, 8, 1), 0.5, np.float32)
    anat = tmp_path / "sub-01" / "anat"
    anat.mkdir(parents=True)
    _save_nifti(anat / "sub-01_part-mag_T2starw.nii.gz", magnitude)
    _save_nifti(anat / "sub-01_part-phase_T2starw.nii.gz", phase)
    (anat / "sub-01_part-mag_T2starw.json").write_text("{}")
    _save_nifti(tmp_path / "gre.nii", magnitude)
    _save_nifti(tmp_path / "gre_ph.nii", phase)
    _save_nifti(tmp_path / "t1_only.nii.gz", magnitude)
    _save_nifti(tmp_path / "lonely_mag.nii.gz", magnitude)
    with caplog.at_level(logging.INFO, logger="kspacify.datasets"):
        refs = list_volumes(tmp_path)
    assert [(ref.key, Path(ref.partner or "").name) for ref in refs] == [
        ("gre", "gre_ph.nii"),
        ("sub-01/anat/sub-01_T2starw", "sub-01_part-phase_T2starw.nii.gz"),
    ]
    assert "t1_only.nii.gz: real-valued NIfTI without a phase partner" in caplog.text
    assert "lonely_mag.nii.gz: mag NIfTI without a phase partner" in caplog.text
    assert "sub-01_part-mag_T2starw.json: sidecar JSON" in caplog.text
    s = next(iter_slices(tmp_path, size=8))
    assert np.angle(s.image[4, 4]) == pytest.approx(0.5, abs=1e-6)


def test_complex_nifti_4d_and_npy(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    volume = (rng.normal(size=(12, 10, 3, 2)) + 1j * rng.normal(size=(12, 10, 3, 2))).astype(np.complex64)
    _save_nifti(tmp_path / "multi_echo.nii.gz", volume)
    np.save(tmp_path / "stack.npy", volume[..., 0].transpose(2, 0, 1))  # (slices, H, W)
    np.save(tmp_path / "single.npy", volume[..., 0, 0])
    np.save(tmp_path / "real.npy", np.abs(volume[..., 0, 0]))
    refs, skipped = scan(tmp_path)
    assert [ref.key for ref in refs] == ["multi_echo", "single", "stack"]
    assert [Path(item.path).name for item in skipped] == ["real.npy"]
    slices = list(iter_slices(tmp_path, size=10))
    by_key = Counter(s.volume_key for s in slices)
    assert by_key == {"multi_echo": 6, "single": 1, "stack": 3}
    echo = [s for s in slices if s.volume_key == "multi_echo"]
    assert [s.slice_index for s in echo] == list(range(6))
    assert [s.source["volume_index"] for s in echo] == [0, 0, 0, 1, 1, 1]
    # each 3D volume normalized on its own; the crop keeps the central 10 of 12 rows
    first = np.stack([s.image for s in echo[:3]])
    assert np.percentile(np.abs(first), 99.5) == pytest.approx(1.0, rel=1e-4)
    expected = normalize_volume(volume[1:11, :, :, 0].transpose(2, 0, 1))[0]
    np.testing.assert_allclose(first, expected, atol=1e-5)
    stack = [s for s in slices if s.volume_key == "stack"]
    np.testing.assert_allclose(np.stack([s.image for s in stack]), expected, atol=1e-5)


def test_sidecars_and_unknown_files_skipped_with_one_note_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_singlecoil(tmp_path / "vol.h5", phantom((16, 16))[None])
    (tmp_path / "vol.json").write_text(json.dumps({"description": "sidecar"}))
    (tmp_path / "README.md").write_text("hello")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "broken.npy").write_bytes(b"not an npy")
    with caplog.at_level(logging.INFO, logger="kspacify.datasets"):
        slices = list(iter_slices(tmp_path, size=16))
    assert [s.volume_key for s in slices] == ["vol"]
    lines = [record.getMessage() for record in caplog.records]
    for name in ("vol.json", "README.md", "notes.txt", "broken.npy"):
        hits = [line for line in lines if line.startswith(f"skipped {tmp_path / name}: ")]
        assert len(hits) == 1, (name, lines)
    assert any("sidecar JSON" in line for line in lines)
    assert [r.levelno for r in caplog.records if "broken.npy" in r.getMessage()] == [logging.WARNING]


# --- the shared real-phase slices -----------------------------------------------------------------


def test_shared_real_phase_niftis_load() -> None:
    if not SHARED.is_dir():
        print(f"skipping: shared real-phase data not found at {SHARED}")
        pytest.skip(f"shared real-phase data not found at {SHARED}")
    counts: Counter[str] = Counter()
    for s in iter_slices(SHARED, size=256):
        counts[s.volume_key] += 1
        assert s.image.shape == (256, 256) and s.image.dtype == np.complex64
        assert s.phase.min() >= -np.pi and s.phase.max() < np.pi
        np.testing.assert_allclose(s.magnitude * np.exp(1j * s.phase), s.image, atol=1e-5)
        assert s.source["reader"] == "nifti-complex"
    assert counts == {"knee_fastmri_001": 1, "brain_espirit_full": 1, "liver_12echo": 12, "brain_romeo_crop": 7}


# --- splits ---------------------------------------------------------------------------------------


def test_splits_deterministic_disjoint_order_independent() -> None:
    keys = [f"patient{i:03d}" for i in range(50)]
    fractions = {"train": 0.7, "val": 0.1, "test": 0.2}
    splits = make_splits(keys, fractions, seed=3)
    assert {name: len(v) for name, v in splits.items()} == {"train": 35, "val": 5, "test": 10}
    assert sorted(sum(splits.values(), [])) == keys  # every key exactly once
    assert make_splits(list(reversed(keys)), fractions, seed=3) == splits
    assert make_splits(keys + keys[:5], fractions, seed=3) == splits  # duplicates collapse
    assert make_splits(keys, fractions, seed=4) != splits
    tiny = make_splits(["a", "b", "c"], fractions, seed=0)
    assert all(len(v) == 1 for v in tiny.values())
    with pytest.raises(ValueError):
        make_splits(keys, {"train": 0.7, "val": 0.1}, seed=0)


def test_nested_splits_and_json_round_trip(tmp_path: Path) -> None:
    keys = [f"vol{i}" for i in range(40)]
    splits = make_nested_splits(
        keys,
        {"genTrain": 0.5, "genVal": 0.1, "genTest": 0.4},
        {"genTest": {"recTrain": 0.5, "recVal": 0.25, "recTest": 0.25}},
        seed=11,
    )
    assert set(splits["recTrain"]) | set(splits["recVal"]) | set(splits["recTest"]) == set(splits["genTest"])
    assert not set(splits["recTrain"]) & set(splits["recTest"])
    assert make_splits(splits["genTest"], {"recTrain": 0.5, "recVal": 0.25, "recTest": 0.25}, "11/genTest") == {
        k: splits[k] for k in ("recTrain", "recVal", "recTest")
    }
    path = save_splits(tmp_path / "splits.json", splits, {"seed": 11, "source": "synthetic"})
    assert load_splits(path) == splits
    assert load_splits_with_meta(path)[1] == {"seed": 11, "source": "synthetic"}
    assert json.loads(path.read_text())["format"] == "kspacify-splits"
    with pytest.raises(ValueError, match="overlap"):
        validate_splits({"train": ["a", "b"], "test": ["b", "c"]})
    with pytest.raises(ValueError, match="overlap"):
        save_splits(tmp_path / "bad.json", {"train": ["a", "b"], "test": ["b", "c"]})


def test_volume_splits_group_by_patient(tmp_path: Path) -> None:
    for patient in range(6):
        for scan_index in range(2):
            write_singlecoil(
                tmp_path / f"p{patient}_s{scan_index}.h5", phantom((8, 8))[None], patient_id=f"patient{patient}"
            )
    refs = list_volumes(tmp_path)
    assert len(refs) == 12 and refs[0].patient == "patient0"
    splits = split_volumes(refs, {"train": 0.5, "val": 0.25, "test": 0.25}, seed=1)
    where = {key: name for name, keys in splits.items() for key in keys}
    assert len(where) == 12
    for patient in range(6):
        assert where[f"p{patient}_s0"] == where[f"p{patient}_s1"]
