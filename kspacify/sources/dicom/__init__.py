"""DICOM reader: find MR magnitude volumes in a pile of files, then load their pixels.

Scanning reads headers only (no pixel data) and keeps a small record per image (or per frame of an
Enhanced MR file), so it scales to archives of 10^5 files. Images are grouped into volumes by series
and then by everything that must not differ inside one stack (orientation, matrix, pixel spacing,
echo, temporal position, image type, diffusion weighting, ...), so a localizer or a second echo never
lands in a stack. Slices are ordered by their position along the canonical slice normal (see
`orientation.py`); duplicated positions are split into separate volumes (repeated acquisitions) or
reported, never mixed. A Siemens mosaic file is one volume whose slices are tiles of its image.

Every volume name, key and meta value is PHI-free: no names, IDs, UIDs, dates, institutions or
free-text descriptions leave this package (descriptions are read only to recognise localizers).

The parts, in the order a file goes through them: `header` (one header read: the needed elements,
truncation checks, where native pixels are), `vendor` (GE and Siemens private tags, mosaics),
`records` (a `Frame` per stored image, tile or frame, whatever the layout), `grouping` (`GroupKey`,
slice order, splits, output names), `pairing` (phase images with their magnitudes), `scan` (the loop
over files), `pixels` (loading), `phase` (acquired phase: its vendors' units, loading it).
"""

from .grouping import GroupKey
from .header import KEYWORDS, SCAN_TAGS, Header, header_of
from .phase import load_phase
from .pixels import CODECS_FIX, load_dicom
from .records import Frame, Image
from .scan import looks_like_dicom, scan_dicom
from .vendor import csa_values, mosaic_tiles

__all__ = ["CODECS_FIX", "Frame", "GroupKey", "Header", "Image", "KEYWORDS", "SCAN_TAGS", "csa_values",
           "header_of", "load_dicom", "load_phase", "looks_like_dicom", "mosaic_tiles", "scan_dicom"]
