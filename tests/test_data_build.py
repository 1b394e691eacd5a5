"""`kspacify data build`: tiny magnitude volumes written here -> complex pairs the dataset readers accept."""

from __future__ import annotations

import json
import zipfile
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from kspacify import data_build, sources
from kspacify.commands import data as data_command
from kspacify.datasets import iter_slices
from kspacify.preprocess import Prepared, Preprocessing

SIZE = 32
CONFIG = data_build.BuildConfig(draws=3, seed=5, preprocessing=Preprocessing(size=SIZE), min_size=8)
MNI = "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def head(shape=(20, 24, 18), zoom=(1.0, 1.0, 1.0), seed=0) -> nib.Nifti1Image:
    """An ellipsoid of noisy 'tissue' in a dark noisy background; the first and last 3 slices along
    the third axis hold background only."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    inside = sum((g / 0.8) ** 2 for g in grid) < 1
    data = np.where(inside, 800 + 200 * grid[0], 0) + rng.uniform(0, 20, shape)
    data[:, :, :3] = rng.uniform(0, 20, (*shape[:2], 3))
    data[:, :, -3:] = rng.uniform(0, 20, (*shape[:2], 3))
    return nib.Nifti1Image(data.astype(np.float32), np.diag([*zoom, 1.0]))


def build(inputs, out: Path, config: data_build.BuildConfig) -> list[data_build.Built]:
    scratch = out.parent / f"{out.name}-scratch"
    scratch.mkdir()
    items, _ = data_build.collect([str(i) for i in inputs], [], packages=False, workdir=scratch, salt=b"test")
    return list(data_build.run(items, config, out))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Two volumes (isotropic, anisotropic) built twice with one seed and once with another."""
    root = tmp_path_factory.mktemp("build")
    inputs = root / "in"
    inputs.mkdir()
    nib.save(head(), inputs / "iso.nii.gz")
    nib.save(head((20, 24, 10), (1.0, 1.0, 3.0), seed=1), inputs / "aniso.nii.gz")
    outs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        build([inputs], root / name, replace(CONFIG, seed=seed))
        outs[name] = root / name
    return inputs, outs


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_output_is_read_by_the_dataset_readers_with_the_preprocessed_magnitude(built):
    inputs, outs = built
    document = manifest(outs["a"])
    assert document["complete"] and document["totals"]["volumes"] == 2
    record = next(r for r in document["volumes"] if r["key"].endswith("/iso"))
    sidecar = json.loads((outs["a"] / record["sidecar"]).read_text())
    slices = [s for s in iter_slices(outs["a"], size=SIZE, on_error="raise") if s.volume_key == record["key"]]
    n = record["slices"]
    assert len(slices) == n * 3 and all(s.shape == (SIZE, SIZE) for s in slices)

    # the native plane equals convert's preprocessing of the input, kept slices only, rescaled once
    (info,) = [i for i in sources.scan(sources.discover([str(inputs / "iso.nii.gz")]), sources.Pseudonymizer(b"t"))]
    expected = Prepared(sources.load(info).data, info.spacing[1:], Preprocessing(size=SIZE)).slab()
    origins = sidecar["slice_origins"]
    native = [o["index"] for o in origins if o["axis"] == "slice"]
    for draw in range(3):
        for position, index in enumerate(native):
            magnitude = slices[draw * n + position].magnitude
            np.testing.assert_allclose(magnitude, expected[index] / sidecar["reader_rescale"], rtol=2e-5, atol=1e-6)


def test_three_planes_only_for_isotropic_volumes_and_empty_slices_dropped(built):
    _, outs = built
    planes = {r["key"].rsplit("/", 1)[1]: r["planes"] for r in manifest(outs["a"])["volumes"]}
    assert set(planes["iso"]) == {"slice", "row", "column"} and planes["iso"]["row"] > 0
    assert set(planes["aniso"]) == {"slice"}
    iso = next(r for r in manifest(outs["a"])["volumes"] if r["key"].endswith("/iso"))
    sidecar = json.loads((outs["a"] / iso["sidecar"]).read_text())
    native = [o["index"] for o in sidecar["slice_origins"] if o["axis"] == "slice"]
    # canonical slice order of a NIfTI with an identity affine follows the third axis; 3 empty at each end
    total = sidecar["source_shape"][0]
    assert native and min(native) >= 3 and max(native) <= total - 4
    assert sidecar["planes"]["slice"]["of"] == total


def test_draws_differ_and_seed_reproduces(built):
    _, outs = built
    for record in manifest(outs["a"])["volumes"]:
        a = np.asarray(nib.load(outs["a"] / record["file"]).dataobj)
        b = np.asarray(nib.load(outs["b"] / record["file"]).dataobj)
        c = np.asarray(nib.load(outs["c"] / record["file"]).dataobj)
        assert a.dtype == np.complex64 and a.shape == (SIZE, SIZE, record["slices"], 3)
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(np.angle(a[..., 0]), np.angle(a[..., 1]))
        assert not np.allclose(np.angle(a), np.angle(c))
        np.testing.assert_allclose(np.abs(a), np.abs(c), rtol=1e-5, atol=1e-6)  # only the phase is drawn


def test_keys_group_every_slice_and_draw_of_a_volume_under_its_subject(built):
    _, outs = built
    document = manifest(outs["a"])
    keys = defaultdict(int)
    for s in iter_slices(outs["a"], size=SIZE):
        keys[s.volume_key] += 1
    assert dict(keys) == {r["key"]: r["pairs"] for r in document["volumes"]}
    for record in document["volumes"]:
        assert record["key"].split("/")[0] == record["subject"] == record["file"].split("/")[0]
    assert document["totals"]["subjects"] == 2 and document["licenses"]


def test_a_wheel_is_read_without_installing_it(tmp_path):
    image = head((18, 20, 16))
    nib.save(image, tmp_path / "t1.nii.gz")
    wheel = tmp_path / "nilearn-9.9.9-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zipped:
        zipped.write(tmp_path / "t1.nii.gz", MNI)
        zipped.write(tmp_path / "t1.nii.gz", "nilearn/datasets/data/mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz")
    plain = tmp_path / "mine.zip"
    with zipfile.ZipFile(plain, "w") as zipped:
        zipped.write(tmp_path / "t1.nii.gz", "scans/brain.nii.gz")
        zipped.writestr("scans/notes.txt", "not an image")

    loose = tmp_path / "copy" / Path(MNI).name
    loose.parent.mkdir()
    loose.write_bytes((tmp_path / "t1.nii.gz").read_bytes())

    (tmp_path / "work").mkdir()
    items, _ = data_build.collect([str(plain)], [wheel], packages=False, workdir=tmp_path / "work", salt=b"s")
    by_kind = {item.origin["kind"]: item for item in items}
    assert set(by_kind) == {"wheel", "archive"}  # the grey-matter map is not a catalogue volume
    template = by_kind["wheel"]
    assert template.key == "mni152-2009a/t1"
    assert template.origin["version"] == "9.9.9" and template.origin["member"] == MNI
    assert "McConnell Brain Imaging Centre" in template.origin["license"]
    assert by_kind["archive"].origin["member"] == "scans/brain.nii.gz"

    # the template given as a file is the same catalogue volume (same key, same random stream)
    (item,), _ = data_build.collect([], [loose], packages=False, workdir=tmp_path / "work", salt=b"s")
    assert item.key == template.key and item.info.key == template.info.key and item.origin["kind"] == "file"


def test_command_builds_refuses_a_used_directory_and_replaces_its_own_build(tmp_path):
    app = typer.Typer()
    app.command()(data_command.command)
    app.callback()(lambda: None)
    nib.save(head((16, 18, 14)), tmp_path / "scan.nii.gz")
    out = tmp_path / "out"
    args = ["command", str(tmp_path / "scan.nii.gz"), str(out), "--size", "32", "--draws", "2", "--min-size", "8"]
    runner = CliRunner()

    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    written = [json.loads(line) for line in first.stdout.splitlines() if line.startswith("{")]
    assert [w["status"] for w in written] == ["written"]  # a plain INPUT: no installed-package volumes
    assert runner.invoke(app, args).exit_code == 2  # OUT is not empty
    assert runner.invoke(app, ["command", "--source", str(tmp_path / "scan.nii.gz"), str(tmp_path / "new")]).exit_code == 2
    (out / "keep.txt").write_text("not ours")
    again = runner.invoke(app, [*args, "--overwrite", "--seed", "1"])
    assert again.exit_code == 0, again.output
    assert (out / "keep.txt").exists() and manifest(out)["settings"]["seed"] == 1
