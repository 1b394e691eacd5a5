"""No PHI in outputs: known PHI is written into DICOM headers, then every output byte is searched."""

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pydicom
from typer.testing import CliRunner

import dicom_factory as factory
from kspacify.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data"


def convert(inputs, out):
    result = CliRunner().invoke(app, ["convert", *map(str, inputs), str(out), "--phase", "smooth", "--salt", "pepper"])
    assert result.exit_code == 0, result.stderr
    return result


def uids_of(paths):
    found = set()
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for element in ds.iterall():
            if element.VR == "UI" and element.value:
                values = element.value if isinstance(element.value, list) else [element.value]
                found.update(str(v) for v in values if str(v).startswith(factory.UID_ROOT))
    return found


def metadata_text(path):
    """Every attribute and the ISMRMRD header of an output file, as text."""
    with h5py.File(path) as f:
        parts = [f"{k}={f.attrs[k]}" for k in f.attrs] + [f["ismrmrd_header"][()].decode()]
    return "\n".join(parts)


def test_no_phi_or_uid_in_output_bytes(tmp_path):
    volume = np.random.default_rng(0).uniform(0, 1000, (5, 32, 40)).astype(np.uint16)
    series = factory.write_series(tmp_path / "in" / "series", volume)
    enhanced = factory.write_enhanced_mr(tmp_path / "in" / "enhanced.dcm", volume[:3], positions=[(0.0, 0.0, 2.0 * z) for z in range(3)])
    files = [*series, enhanced]
    out = tmp_path / "out"
    result = convert([tmp_path / "in"], out)
    outputs = sorted(out.glob("*.h5"))
    assert len(outputs) == 2
    secrets = set(factory.PHI_VALUES) | uids_of(files)
    assert secrets
    for output in outputs:
        blob = output.read_bytes()
        text = metadata_text(output)
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked into the metadata of {output.name}"
            # short strings turn up in megabytes of random k-space by chance: only long ones in raw bytes
            if len(secret) >= 8:
                assert secret.encode() not in blob, f"{secret!r} leaked into {output.name}"
        # names are pseudonymous too
        assert not any(s in output.name for s in secrets)
    # the pseudonym is stable for the same salt and patient, and is not the ID
    ids = {json.loads(line)["output"]: None for line in result.stdout.splitlines()}
    assert len(ids) == 2


def test_shipped_example_phi_does_not_leak(tmp_path):
    out = tmp_path / "out"
    convert([EXAMPLES / "dicom"], out)
    (output,) = out.glob("*.h5")
    blob = output.read_bytes()
    for secret in ("EXAMPLE^TEMPLATE", "MNI152-EXAMPLE", "19000101", "20090101", "Example Institution", "MNI152 2009a"):
        assert secret.encode() not in blob
    assert not re.search(rb"1\.2\.826\.0\.1\.3680043\.[0-9.]{6,}", blob)  # pydicom-generated UIDs


def test_no_phi_or_uid_in_a_scan_manifest(tmp_path):
    """A manifest travels to cluster nodes: it holds paths and pseudonyms, never header PHI or UIDs."""
    volume = np.random.default_rng(1).uniform(0, 1000, (4, 32, 32)).astype(np.uint16)
    files = factory.write_series(tmp_path / "in" / "series", volume)
    result = CliRunner().invoke(app, ["scan", str(tmp_path / "in"), "--salt", "pepper"])
    assert result.exit_code == 0, result.stderr
    manifest = result.stdout
    assert json.loads(manifest.splitlines()[0])["volume"]["patient"]
    for secret in set(factory.PHI_VALUES) | uids_of(files):
        assert secret not in manifest, f"{secret!r} leaked into the manifest"
