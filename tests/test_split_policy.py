"""One split policy for every trainer and the benchmark: by subject; unknown-subject blocks in runs."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from fastmri_factory import phantom

from kspacify.datasets import gen_splits, list_volumes, load_splits, rec_splits, split_unit, split_volumes
from kspacify.datasets.splits import contiguous_splits


def _complex_nifti(path: Path, seed: int, slices: int = 3, size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    volume = np.stack([phantom((size, size), seed=seed * 10 + s) for s in range(slices)], axis=-1).astype(np.complex64)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(path))


def data_build_layout(root: Path, subjects: int = 4, volumes: int = 2) -> Path:
    """What `kspacify data build` writes: OUT/<subject>/<volume>.nii.gz with a sidecar naming the subject."""
    for s in range(subjects):
        for v in range(volumes):
            name = f"vol{v}"
            _complex_nifti(root / f"subj{s}" / f"{name}.nii.gz", 10 * s + v)
            sidecar = {"format": "kspacify-data-build/1", "volume": {"subject": f"pseudo{s:02d}", "key": f"subj{s}/{name}"}}
            (root / f"subj{s}" / f"{name}.json").write_text(json.dumps(sidecar))
    return root


def _same_split_per_subject(splits: dict[str, list[str]], subject_of) -> None:
    where: dict[str, set[str]] = {}
    for name, keys in splits.items():
        for key in keys:
            where.setdefault(subject_of(key), set()).add(name)
    assert where and all(len(names) == 1 for names in where.values()), where


def test_sidecar_subjects_and_folders_are_the_unit(tmp_path):
    root = data_build_layout(tmp_path / "built")
    refs = list_volumes(root)
    assert {split_unit(r) for r in refs} == {f"patient:pseudo{s:02d}" for s in range(4)}
    for splits in (split_volumes(refs, {"a": 0.5, "b": 0.5}, seed=s) for s in range(5)):
        _same_split_per_subject(splits, lambda key: key.split("/")[0])


def test_every_trainer_splits_a_data_build_directory_by_subject(tmp_path):
    """The regression the architecture issue asked for: GAN, SBDM and VarNet trainers and the
    benchmark all keep a subject's volumes in one split."""
    import typer
    from typer.testing import CliRunner

    from kspacify.commands import benchmark, train_gan, train_sbdm, train_varnet

    root = data_build_layout(tmp_path / "built", subjects=5)
    app = typer.Typer(add_completion=False)
    for name, module in (("gan", train_gan), ("sbdm", train_sbdm), ("varnet", train_varnet), ("benchmark", benchmark)):
        app.command(name)(module.command)
    common = ["--data", str(root), "--device", "cpu"]
    runs = {
        "gan": ["gan", *common, "--out", str(tmp_path / "gan"), "--max-steps", "1", "--size", "256", "--batch-size", "1"],
        "sbdm": ["sbdm", *common, "--out", str(tmp_path / "sbdm"), "--max-steps", "1", "--diffusion-size", "8",
                 "--read-size", "16", "--warmup-steps", "1", "--batch-size", "2"],
        "varnet": ["varnet", *common, "--out", str(tmp_path / "varnet"), "--phase", "gt", "--max-steps", "1", "--size", "16",
                   "--acs", "2", "--R", "2"],
        "benchmark": ["benchmark", *common, "--out", str(tmp_path / "benchmark"), "--methods", "zero-filled,gt", "--quick",
                      "--max-steps", "1", "--size", "16", "--acs", "2", "--R", "2"],
    }  # fmt: skip
    runner = CliRunner()
    for name, args in runs.items():
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (name, result.output)
        splits = load_splits(tmp_path / name / "splits.json")
        assert sum(map(len, splits.values())) == 10
        _same_split_per_subject(splits, lambda key: key.split("/")[0])


def test_unknown_subject_blocks_split_in_contiguous_runs(tmp_path):
    (tmp_path / "blocks").mkdir()
    for b in range(12):
        image = phantom((16, 16), seed=b)
        magnitude = np.repeat(np.abs(image)[..., None], 3, axis=-1).astype(np.float32)
        phase = np.repeat(np.angle(image)[..., None], 3, axis=-1).astype(np.float32)
        nib.save(nib.Nifti1Image(magnitude, np.eye(4)), str(tmp_path / "blocks" / f"block{b:02d}_mag.nii.gz"))
        nib.save(nib.Nifti1Image(phase, np.eye(4)), str(tmp_path / "blocks" / f"block{b:02d}_phase.nii.gz"))
        (tmp_path / "blocks" / f"block{b:02d}.json").write_text(json.dumps({"subject": "unknown: consecutive blocks"}))
    refs = list_volumes(tmp_path)
    assert len(refs) == 12 and all(r.meta.get("subject_unknown") for r in refs)
    assert len({split_unit(r) for r in refs}) == 12  # each block its own unit, though all sit in one folder
    numbers = {r.key: int(r.key[-2:]) for r in refs}
    for seed in range(6):
        splits = rec_splits(refs, tmp_path / f"splits{seed}.json", seed)
        assert [len(splits[n]) for n in ("recTrain", "recVal", "recTest")] == [6, 2, 4]
        for keys in splits.values():  # one run per split, cyclically: at most one jump from the end to the start
            ordered = sorted(numbers[k] for k in keys)
            jumps = sum(1 for a, b in zip(ordered, ordered[1:]) if b != a + 1)
            assert jumps <= 1 and (jumps == 0 or (ordered[0] == 0 and ordered[-1] == 11))
    assert contiguous_splits([f"b{i}" for i in range(10)], {"x": 0.5, "y": 0.5}, 0) != contiguous_splits(
        [f"b{i}" for i in range(10)], {"x": 0.5, "y": 0.5}, 3)


def test_gen_splits_need_two_subjects_and_reuse_the_file(tmp_path):
    root = data_build_layout(tmp_path / "one", subjects=1)
    refs = list_volumes(root)
    with pytest.raises(ValueError, match="at least 2"):
        gen_splits(refs, tmp_path / "s.json")
    assert gen_splits(refs, tmp_path / "s.json", allow_single=True)["genVal"] == []
