"""Derived diffusion images are not magnitude acquisitions (issue 16, item 2): Philips stores an
isotropic trace ((2001,1004) = 'I', b > 0) with the directional images of a DWI series, as
dcm2niix notes ('1 volumes appear to be ADC or trace images that will be removed'); ADC, FA and
trace maps are named in ImageType. They are skipped and counted; an isotropic acquisition with no
directional images beside it is kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import dicom_factory as F
from kspacify.sources import Pseudonymizer, Skipped, VolumeInfo, discover, scan

PZ = Pseudonymizer(b"philips")
DIRECTIONS = {"O": [0.6, 0.8, 0.0], "P": [1.0, 0.0, 0.0], "M": [0.0, 1.0, 0.0]}


def philips_slice(path, z, *, series, letter, b, public=True, image_type=("ORIGINAL", "PRIMARY", "M_SE", "M")):
    extra = {}
    if public:
        extra["DiffusionBValue"] = float(b)
        extra["DiffusionGradientOrientation"] = DIRECTIONS.get(letter, [0.0, 0.0, 0.0])
    ds = F.mr_dataset(np.full((8, 8), 100 + z, np.uint16), series_uid=series, ipp=(0.0, 0.0, 3.0 * z),
                      manufacturer="Philips Medical Systems", image_type=image_type, extra=extra)
    block = ds.private_block(0x2001, "Philips Imaging DD 001", create=True)
    block.add_new(0x03, "FL", float(b))
    block.add_new(0x04, "CS", letter)
    return F.save(ds, path)


def write_dwi(directory: Path, letters, slices=4, public=True):
    series = F.new_uid()
    for v, letter in enumerate(letters):
        for z in range(slices):
            philips_slice(directory / f"IM_{v:02d}_{z:02d}", z, series=series, letter=letter,
                          b=0 if letter == "" else 1000, public=public)


def scanned(directory):
    items = list(scan(discover([str(directory)]), PZ))
    return [i for i in items if isinstance(i, VolumeInfo)], [i for i in items if isinstance(i, Skipped)]


def test_isotropic_trace_beside_directional_images_is_removed(tmp_path):
    write_dwi(tmp_path, ["", "O", "P", "M", "I"])  # b=0, three directions, the derived trace
    vols, skips = scanned(tmp_path)
    assert len(vols) == 4 and all(v.shape == (4, 8, 8) for v in vols)
    assert len(skips) == 4 and all(Path(s.path).name.startswith("IM_04_") for s in skips)
    assert all(not s.failed and "isotropic trace" in s.reason for s in skips)


def test_private_tags_alone_are_enough(tmp_path):
    """Older Philips files: no public b-value or gradient, only (2001,1003) and (2001,1004)."""
    write_dwi(tmp_path, ["", "O", "I"], public=False)
    vols, skips = scanned(tmp_path)
    assert len(skips) == 4 and all("isotropic trace" in s.reason for s in skips)
    assert sum(v.shape[0] for v in vols) == 8  # the b=0 and the directional images, nothing else


def test_isotropic_acquisition_alone_is_kept(tmp_path):
    """A clinical 'isotropic' DWI (b=0 and trace, no directional images) is what was acquired."""
    write_dwi(tmp_path, ["", "I"])
    vols, skips = scanned(tmp_path)
    assert not skips and len(vols) == 2


def test_derived_maps_are_skipped_by_image_type(tmp_path):
    for kind in ("ADC", "FA", "TRACEW", "EADC"):
        F.write_series(tmp_path / kind, np.ones((3, 4, 4), np.uint16),
                       image_type=("DERIVED", "PRIMARY", "DIFFUSION", kind))
    F.write_series(tmp_path / "dwi", np.ones((3, 4, 4), np.uint16), image_type=("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"))
    vols, skips = scanned(tmp_path)
    assert len(vols) == 1 and len(skips) == 12
    assert all(not s.failed and "derived diffusion map" in s.reason for s in skips)
