"""`workers` > 1 reads DICOM headers in a process pool and gives exactly the one-process result:
what depends on other files (duplicate copies, grouping, the Philips trace rule) is decided in
input order in the main process."""

from __future__ import annotations

import dicom_factory as F
import numpy as np

from kspacify.sources import Pseudonymizer, discover, scan
from kspacify.sources.dicom import scan_dicom

PZ = Pseudonymizer(b"workers")


def test_pool_gives_the_same_scan(tmp_path):
    paths = F.write_series(tmp_path / "a", np.ones((40, 6, 6), np.uint16))
    paths += F.write_series(tmp_path / "b", np.ones((20, 6, 6), np.uint16), echo_number=2, echo_time=30.0)
    (tmp_path / "a" / "copy.dcm").write_bytes(paths[3].read_bytes())  # a duplicate copy
    (tmp_path / "a" / "notes.txt").write_text("not dicom")
    F.truncate(paths[5], 0.5, tmp_path / "b" / "cut.dcm")
    F.write_mr(tmp_path / "b" / "loc.dcm", np.ones((6, 6), np.uint16), image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    one = list(scan(discover([str(tmp_path)]), PZ))
    two = list(scan(discover([str(tmp_path)]), PZ, workers=2))
    assert one == two and sum(1 for i in one if hasattr(i, "slices")) == 2
    assert sum(1 for i in one if "duplicate" in getattr(i, "reason", "")) == 1


def test_few_files_are_read_in_process(tmp_path):
    paths = F.write_series(tmp_path, np.ones((3, 4, 4), np.uint16))
    assert list(scan_dicom(paths, PZ, workers=4)) == list(scan_dicom(paths, PZ))


def test_workers_on_the_command_line(tmp_path, monkeypatch):
    """`scan --workers N` reads headers in N processes (the manifest is the same); `convert
    --workers N` passes N on to the header pass too."""
    from corpus import cli

    from kspacify import convert as pipeline

    F.write_series(tmp_path / "a", np.ones((70, 6, 6), np.uint16))
    one, two = cli("scan", tmp_path, "--salt", "x"), cli("scan", tmp_path, "--salt", "x", "--workers", "2")
    assert one.exit == two.exit == 0 and one.stdout == two.stdout and len(one.stdout.splitlines()) == 1
    seen = []
    real = pipeline.plan
    monkeypatch.setattr(pipeline, "plan", lambda *a, **kw: seen.append(kw["workers"]) or real(*a, **kw))
    run = cli("convert", tmp_path, tmp_path / "out", "--salt", "x", "--workers", "3", "--dry-run")
    assert run.exit == 0 and seen == [3]
