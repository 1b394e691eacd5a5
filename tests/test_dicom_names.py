"""Output names and volume keys of DICOM volumes are pinned: `--resume` finds finished outputs by
name, manifest shards agree on names, and each volume's random stream is seeded by its key, so a
refactor of the grouping must give byte-for-byte what earlier versions gave.

The pinned values were produced by the single-module reader (before `sources/dicom/` became a
package) on exactly these generated series; only the series UIDs matter for them, so those are fixed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dicom_factory as F
from kspacify.sources.base import Pseudonymizer, VolumeInfo
from kspacify.sources.dicom import GroupKey, scan_dicom

PZ = Pseudonymizer(b"pinned-salt")
ROOT = F.UID_ROOT + "424242."


def uid(n: int) -> str:
    return f"{ROOT}{n}"


def img(seed: int, shape=(4, 4)) -> np.ndarray:
    return (np.random.default_rng(seed).integers(1, 3000, shape)).astype(np.uint16)


def write_all(d: Path) -> None:
    """One folder of generated series that exercises every part of a name: echoes, components,
    acquisition / repeat / trigger / stack / volume splits, mosaics, Enhanced MR, oblique jitter."""
    F.write_series(d / "plain", img(1, (3, 4, 4)), series_uid=uid(1), series_number=7)
    F.write_series(d / "echo", img(2, (3, 4, 4)), series_uid=uid(2), echo_number=1, echo_time=10.0, prefix="A")
    F.write_series(d / "echo", img(3, (3, 4, 4)), series_uid=uid(2), echo_number=2, echo_time=25.0, prefix="B")
    F.write_series(d / "comp", img(4, (3, 4, 4)), series_uid=uid(3), prefix="M")
    F.write_series(d / "comp", img(5, (3, 4, 4)), series_uid=uid(3), prefix="P", image_type=("ORIGINAL", "PRIMARY", "P", "ND"))
    F.write_series(d / "acq", img(6, (3, 4, 4)), series_uid=uid(4), acquisition_number=1, prefix="A")
    F.write_series(d / "acq", img(7, (3, 4, 4)), series_uid=uid(4), acquisition_number=2, prefix="B")
    for i in range(3):
        F.write_mr(d / "rep" / f"x{i}.dcm", img(10 + i), series_uid=uid(5), ipp=(0, 0, 2.0 * i), instance_number=3 - i)
        F.write_mr(d / "rep" / f"y{i}.dcm", img(20 + i), series_uid=uid(5), ipp=(0, 0, 2.0 * i), instance_number=10 + i)
        for t, trigger in enumerate((0.0, 250.0)):
            F.write_mr(d / "trig" / f"t{i}{t}.dcm", img(30 + i + 10 * t), series_uid=uid(6), ipp=(0, 0, 2.0 * i),
                       instance_number=None, acquisition_number=None, trigger_time=trigger)
    F.write_series(d / "stacks", img(8, (3, 4, 4)), series_uid=uid(7), origin=(0, 0, 0), prefix="U")
    F.write_series(d / "stacks", img(9, (3, 4, 4)), series_uid=uid(7), origin=(0, 300, 1), prefix="L")
    iop = (0.96, 0.28, 0.0, 0.224, -0.768, -0.6)
    for i in range(4):  # oblique, with orientation jitter below the grouping tolerance
        jitter = tuple(v + 2e-4 * (i % 2) for v in iop)
        F.write_mr(d / "oblique" / f"o{i}.dcm", img(40 + i), series_uid=uid(8), iop=jitter,
                   ipp=tuple(float(v) for v in 3.0 * i * F.slice_normal(iop)), instance_number=i + 1)
    F.write_series(d / "dwi", img(11, (3, 4, 4)), series_uid=uid(9), prefix="B0", extra={"DiffusionBValue": 0.0})
    F.write_series(d / "dwi", img(12, (3, 4, 4)), series_uid=uid(9), prefix="B1",
                   extra={"DiffusionBValue": 1000.0, "DiffusionGradientOrientation": [0.6, 0.8, 0.0]})
    F.write_series(d / "temporal", img(13, (3, 4, 4)), series_uid=uid(10), temporal_position=1, prefix="T1")
    F.write_series(d / "temporal", img(14, (3, 4, 4)), series_uid=uid(10), temporal_position=2, prefix="T2")
    F.write_enhanced_mr(d / "enh" / "me.dcm", img(15, (6, 4, 4)), positions=[(0.0, 2.0 * z, 0.0) for z in range(3)] * 2,
                        echo_times=[5.0] * 3 + [12.0] * 3, iop="coronal", series_uid=uid(11), series_number=12)
    mosaic = np.zeros((8, 8), np.uint16)
    for i in range(2):
        ds = F.mr_dataset(mosaic + i, series_uid=uid(12), instance_number=i + 1, series_number=13,
                          image_type=("ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"), spacing_between_slices=3.0,
                          manufacturer="SIEMENS")
        ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x0A, "US", 4)
        F.save(ds, d / "mosaic" / f"m{i}.dcm")


# (name, key, shape) of every volume, sorted by name, as the single-module reader gave them
PINNED = [
    ('s001_00f2a81e_st1', '283130466b5151528af92123b296ea827174a5eb2fab11b6f1a49a882ad0dca0', (3, 4, 4)),
    ('s001_2e1f9e10_t2', 'c783b696bddedcf4c2f64e6c029e62f09a023b7535bf6c2715691badb2bcb7e4', (3, 4, 4)),
    ('s001_5990211d_r2', '598ee03c7c901180d01ae5f055f7541a7f4e595da145a8f0471c15cd8ad6fc5b', (3, 4, 4)),
    ('s001_5db35161', '6da3fc73463ee638e8b4d8259befb568656a229a0b32eafb6a4fc4872559c6b2', (3, 4, 4)),
    ('s001_5f9dd499', '8caa3fd9b98e220e0a2de840257fc1eb6e0ad0276d9f7fe39a5f0d7c64e1cde4', (4, 4, 4)),
    ('s001_7137a405', 'e2c8add9e5742f825cc95a5bfcb5b14dfbb58a271ed43cabe48f55025f09a9f9', (3, 4, 4)),
    ('s001_8a403665_r1', '4c70b7de988fda8d9c21e13f5de57bbf2f3eb7660d18275428f552dfbd75a3ec', (3, 4, 4)),
    ('s001_9f279fab', 'a5de0b04cb056f2320e94fbc5bc85fc656221a26f0e4ac17684f8bbf6eb0c505', (3, 4, 4)),
    ('s001_aaaddf2f_t1', 'bda84164229dae821286d7adf1c2bd1e7c6d9cf5fe1ab97f52155b56c1f0a248', (3, 4, 4)),
    ('s001_bee75c9b_e2', '57a87bec31735875f4924777a90eb4b15329760ab80a59c89dd0414adf79d712', (3, 4, 4)),
    ('s001_d50c136c', 'c22233b971b09d18dfbf68628ed5dae50f641c4584616a9c553433800936e4ac', (3, 4, 4)),
    ('s001_d99bad95_st2', '8640c05a9dd081a7a8cb1a7aa9f34243bc3e44d4f6f53f755eab6b6f636472ed', (3, 4, 4)),
    ('s001_d9e3c6e3_e1', 'e83732636fad8d7faf1b4ac7ca79dab8f3ab0aa9cf7333f5cd81f4ee4f87d7a3', (3, 4, 4)),
    ('s001_edf476be_a1', '69d25466339748ba0345b1a261dc0df90770269eb71912d9c9c032da8dae6484', (3, 4, 4)),
    ('s001_f13c0311', '5fbf2c04d27ca660f7d64613034b485e62957ff683d3c27f6de89fcfd7dad419', (3, 4, 4)),
    ('s001_fae26a32_a2', '0fd19cee618d487b92a930e15c6d673f175892f74de548af7054c338ec7df13d', (3, 4, 4)),
    ('s007_078c2342', '7e510c3b13ea37f10bc01ca1e0ce7801f5373d4ced3ba9b1b4c9e6bd6093cd36', (3, 4, 4)),
    ('s012_76926b2e_e2', '4451a9f3844e1d4e6c75564aa3c58a894b4e86c75e9d6cda04f4848a3e143231', (3, 4, 4)),
    ('s012_b8d133eb_e1', '00ed1c4602938d7361cdf26419dd7d9beb67460be8c5fe355ac8d9d26c6aa0f8', (3, 4, 4)),
    ('s013_68d88790_v1', '592d3efdcbe231e8082bb70a730e7dd7208a729ea97d59aa8ac6168967697594', (4, 4, 4)),
    ('s013_d2fed3a4_v2', 'd69cb22d1aa1515fa59375741a4fc85510443d2ce20ddeb9161c5ad562193eb6', (4, 4, 4)),
]
# --keep-components adds the phase series (suffix _ph)
PINNED_COMPONENTS = sorted(PINNED + [
    ('s001_4a8f5e78_ph', '8a7c6bf66e88a6b5dcd9e37477a65f601cc6b68738b6da20eff4172c7ab21532', (3, 4, 4)),
])


def volumes(tmp_path: Path, **kw) -> list[tuple[str, str, tuple]]:
    write_all(tmp_path)
    found = [v for v in scan_dicom(sorted(tmp_path.rglob("*.dcm")), PZ, **kw) if isinstance(v, VolumeInfo)]
    return sorted((v.name, v.key, tuple(v.shape)) for v in found)


def test_names_and_keys_are_pinned(tmp_path):
    assert volumes(tmp_path) == PINNED


def test_names_and_keys_with_components_are_pinned(tmp_path):
    assert volumes(tmp_path, keep_components=True) == PINNED_COMPONENTS


@pytest.mark.parametrize("grid, seed", [
    (None, "((1.0, 0.0, 0.0, 0.0, 1.0, 0.0), 4, 6, (0.9, 0.9), 1, 10.0, None, ('ORIGINAL', 'PRIMARY', 'M', 'ND'),"
           " None, None, None, None)"),
    (3, "((0.96, 0.28, 0.0, 0.224, -0.768, -0.6), 4, 6, (0.9, 0.9), 1, 10.0, None, ('ORIGINAL', 'PRIMARY', 'M', 'ND'),"
        " None, None, None, None, 3)"),
])
def test_name_seed_is_the_old_tuple_repr(grid, seed):
    """The seed is the repr of the tuple earlier versions keyed groups by, without the series UID,
    orientation rounded to 3 digits (and -0.0 made 0.0); the mosaic grid only for mosaics."""
    iop = (1.0, -0.0, 0.0, 0.0, 1.0000001, 0.0) if grid is None else (0.96002, 0.28, -0.0, 0.224, -0.768, -0.6)
    key = GroupKey("1.2.3", iop, 4, 6, (0.9, 0.9), 1, 10.0, None, ("ORIGINAL", "PRIMARY", "M", "ND"), None, None,
                   None, None, grid)
    assert key.name_seed() == seed
