"""Scaling out: manifests and shards, worker processes that only read, Dask, temporaries of dead writers."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from kspacify import atomic, convert, executors, sources
from kspacify.cli import app
from kspacify.manifest import ManifestError, Shard


def _archive(root: Path, volumes: int = 5) -> Path:
    """NIfTI volumes; two share a name in different folders, so output names need a suffix."""
    rng = np.random.default_rng(0)
    for v in range(volumes):
        folder = root / ("b" if v == volumes - 1 else "a")
        folder.mkdir(parents=True, exist_ok=True)
        name = "v0" if v == volumes - 1 else f"v{v}"
        data = rng.uniform(0, 300, (40, 36, 3 + v)).astype(np.float32)
        nib.save(nib.Nifti1Image(data, np.eye(4)), folder / f"{name}.nii")
    return root


def _cli(*args: object):
    result = CliRunner().invoke(app, [*map(str, args)])
    return result, [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_shards_of_a_manifest_write_exactly_what_one_run_writes(tmp_path):
    archive = _archive(tmp_path / "archive")
    _, direct = _cli("convert", archive, tmp_path / "direct", "--phase", "smooth", "--salt", "s")
    scanned, entries = _cli("scan", archive, "--salt", "s")
    assert scanned.exit_code == 0 and len(entries) == len(direct) == 5
    assert all(Path(ref["path"]).is_absolute() for e in entries for ref in e["volume"]["slices"])
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(scanned.stdout)
    written: list[str] = []
    for index in range(3):
        result, lines = _cli("convert", "--manifest", manifest, "--shard", f"{index}/3", tmp_path / "sharded", "--phase", "smooth")
        assert result.exit_code == 0, result.stderr
        written += [line["output"] for line in lines]
    assert len(written) == len(set(written)) == 5  # no two shards wrote the same file
    assert _files(tmp_path / "sharded") == _files(tmp_path / "direct")  # same names, same bytes
    again, lines = _cli("convert", "--manifest", manifest, "--shard", "1/3", tmp_path / "sharded", "--phase", "smooth")
    assert again.exit_code == 0 and {line["status"] for line in lines} == {"exists"}  # a rerun resumes
    empty, lines = _cli("convert", "--manifest", manifest, "--shard", "7/8", tmp_path / "sharded", "--phase", "smooth")
    assert empty.exit_code == 0 and lines == []  # more shards than volumes is not an error


def test_shard_from_scheduler_variables():
    slurm = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_STEP": "2", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert Shard.resolve(None, slurm) == (Shard(2, 4), "SLURM job array")  # --array=1-7:2, task 5 is the 3rd
    assert Shard.resolve(None, {}) == (Shard(0, 1), "whole manifest")
    assert Shard.resolve("3/8", slurm)[0] == Shard(3, 8)  # an explicit shard wins
    kubernetes = {"JOB_COMPLETION_INDEX": "2"}
    assert Shard.resolve("auto/6", kubernetes) == (Shard(2, 6), "Kubernetes indexed Job")
    with pytest.raises(ManifestError, match="auto/N"):
        Shard.resolve(None, kubernetes)  # Kubernetes does not say how many shards there are
    for bad in ("3", "a/b", "8/8", "-1/2", "auto/4"):
        with pytest.raises(ManifestError):
            Shard.resolve(bad, {})
    assert Shard(1, 3).select(iter(range(8))) == [1, 4, 7]


def test_manifest_usage_errors_name_the_problem(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"format": "kspacify-manifest/1", "volume": {"name": "x"}}\n')
    cases = [
        (["convert", "--manifest", manifest, tmp_path / "out"], f"{manifest}:1"),
        (["convert", "--manifest", tmp_path / "missing.jsonl", tmp_path / "out"], "cannot read the manifest"),
        (["convert", "--manifest", manifest, "--shard", "2/2", tmp_path / "out"], "0 <= I < N"),
        (["convert", tmp_path, "--shard", "0/2", tmp_path / "out"], "--shard needs --manifest"),
        (["convert", tmp_path, "--manifest", manifest, tmp_path / "out"], "not both"),
    ]
    for args, message in cases:
        result, _ = _cli(*args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def _plan(archive: Path, out: Path) -> list[convert.PlannedVolume]:
    return convert.plan(sources.discover([str(archive)]), out, b"s", single_file=False).volumes


def test_workers_that_only_read_give_the_serial_output(tmp_path):
    """The GPU layout (workers decode, this process synthesizes and writes), exercised on the CPU."""
    archive = _archive(tmp_path / "archive", volumes=3)
    config = convert.ConvertConfig(phase="smooth")
    serial = list(executors.run(_plan(archive, tmp_path / "serial"), config))
    split = list(executors.run(_plan(archive, tmp_path / "split"), config, workers=2, synthesize_here=True))
    assert {o.status for o in serial} == {o.status for o in split} == {"written"}
    assert _files(tmp_path / "split") == _files(tmp_path / "serial")


def _age(path: Path, seconds: float) -> Path:
    os.utime(path, (time.time() - seconds,) * 2)
    return path


def test_temporaries_of_dead_writers_are_removed_and_nothing_else(tmp_path):
    """A run removes its own writers' temporaries and any run's stale ones (untouched for an hour),
    never another live run's (two runs into one folder)."""
    out = tmp_path / "out"
    out.mkdir()
    run = atomic.new_run()
    mine = atomic.temporary_for(out / "v1.h5", run=run)
    stale = [mine, out / ".v1.h5.0123abcd.tmp", out / ".v1_2.h5.feedface-deadbeef.tmp"]
    others_live = [out / ".v1.h5.0123abcd-00000001.tmp", out / ".v1_2.h5.deadbeef.tmp"]
    keep = [*others_live, out / ".other.h5.0123abcd.tmp", out / "v1.h5", out / ".v1.h5.notes"]
    for path in stale + keep:
        path.write_bytes(b"x")
    _age(stale[1], 2 * atomic.STALE_AFTER), _age(stale[2], 2 * atomic.STALE_AFTER)
    _age(out / ".other.h5.0123abcd.tmp", 2 * atomic.STALE_AFTER)  # stale, but not of these outputs
    assert atomic.remove_temporaries([out / "v1.h5", out / "v1_2.h5", tmp_path / "gone" / "v9.h5"], run=run) == 3
    assert not any(p.exists() for p in stale) and all(p.exists() for p in keep)


def test_dask_local_cluster_writes_the_serial_output_even_when_a_worker_is_killed(tmp_path):
    distributed = pytest.importorskip("distributed", reason="dask.distributed not installed (kspacify[distributed])")
    archive = _archive(tmp_path / "archive", volumes=6)
    config = convert.ConvertConfig(phase="physics")
    list(executors.run(_plan(archive, tmp_path / "serial"), config))
    planned = _plan(archive, tmp_path / "dask")
    half_file = planned[0].output.with_name(f".{planned[0].output.name}.0123abcd.tmp")  # a killed writer of a past run
    half_file.parent.mkdir(parents=True)
    half_file.write_bytes(b"half")
    _age(half_file, 2 * atomic.STALE_AFTER)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        outcomes = []
        for outcome in executors.run(planned, config, dask=cluster.scheduler_address):
            if not outcomes:  # kill a worker while the others are still queued or running
                os.kill(next(iter(client.run(os.getpid).values())), signal.SIGKILL)
            outcomes.append(outcome)
    assert sorted(o.status for o in outcomes) == ["written"] * 6
    assert _files(tmp_path / "dask") == _files(tmp_path / "serial")  # no hidden temporaries left either


def test_dask_local_from_the_command_line(tmp_path, monkeypatch):
    pytest.importorskip("distributed", reason="dask.distributed not installed (kspacify[distributed])")
    archive = _archive(tmp_path / "archive", volumes=3)
    _cli("convert", archive, tmp_path / "serial", "--phase", "smooth", "--salt", "s")
    result, lines = _cli("convert", archive, tmp_path / "dask", "--phase", "smooth", "--salt", "s", "--dask", "local", "--workers", "2")
    assert result.exit_code == 0, result.stderr
    assert len(lines) == 3 and _files(tmp_path / "dask") == _files(tmp_path / "serial")
    monkeypatch.setattr(executors, "DASK_CONNECT_TIMEOUT", "1s")
    unreachable, _ = _cli("convert", archive, tmp_path / "none", "--phase", "smooth", "--dask", "tcp://127.0.0.1:9")
    assert unreachable.exit_code == 2 and "cannot reach the Dask scheduler" in unreachable.stderr
