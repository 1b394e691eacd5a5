"""`kspacify train sbdm` (kspacify.sbdm.train): learning, exact resume, export format, CLI. CPU only, tiny."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from kspacify.commands.train_sbdm import command
from kspacify.datasets import list_volumes, load_splits
from kspacify.sbdm import VESDE, ScoreNet, ScoreNetConfig, load_checkpoint, phasor_sigma_max
from kspacify.sbdm.checkpoint import sha256_file
from kspacify.datasets import gen_splits, load_pairs, split_unit
from kspacify.sbdm.train import GridPairs, SbdmRun, SbdmTask, grid_pairs, train_sbdm, val_dsm
from kspacify.training import LoopConfig, fit, load_weights

TINY = ScoreNetConfig(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), image_size=8, dropout=0.0,
                      input_scaling=True)  # fmt: skip
SDE = VESDE(sigma_max=phasor_sigma_max(8, 8))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def toy_pairs(n: int, seed: int) -> GridPairs:
    """A conditional phase distribution: a bright square whose brightness b sets a phase ramp
    phi = b * pi * x (plus a little noise), so the right phase is only knowable from the magnitude."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-1, 1, 8, dtype=np.float32)[None, :].repeat(8, 0)
    mags, phasors = [], []
    for _ in range(n):
        b = rng.uniform(0.2, 1.0)
        mag = np.full((8, 8), 0.05, np.float32)
        mag[2:6, 2:6] = b
        phi = b * np.pi * x + rng.normal(0, 0.05, (8, 8))
        mags.append(mag[None])
        phasors.append(np.stack([np.cos(phi), np.sin(phi)]).astype(np.float32))
    return GridPairs(torch.from_numpy(np.stack(mags)), torch.from_numpy(np.stack(phasors)), ["toy"])


def _config(out: Path, **kw) -> LoopConfig:
    base = dict(out_dir=out, name="sbdm-toy", max_steps=40, batch_size=8, seed=1, device="cpu", log_every=5,
                validate_every=0, checkpoint_every=100, console=False)  # fmt: skip
    return LoopConfig(**{**base, **kw})


def test_loss_drops_on_a_toy_conditional_phase_distribution(tmp_path):
    train, val = toy_pairs(32, 0), toy_pairs(16, 1)
    task = SbdmTask(train, val, TINY, SDE, lr=3e-3, warmup_steps=5, ema_decay=0.9)
    before = val_dsm(ScoreNet(TINY, seed=0).eval(), val, SDE, torch.device("cpu"))
    result = fit(task, _config(tmp_path))
    assert result.finished and result.step == 40
    after = result.validation
    losses = [r["metrics"]["loss"] for r in result.history]
    assert np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2])
    assert after["val_dsm"] < 0.8 * before["val_dsm"], (before, after)
    assert after["val_dsm_low"] < 0.7 * before["val_dsm_low"], (before, after)
    # the validation score is a fixed function of the weights: same model, same number
    model = ScoreNet(TINY, seed=0)
    model.load_state_dict(load_weights(result.weights)[0])
    again = val_dsm(model.eval(), val, SDE, torch.device("cpu"))
    assert math.isclose(again["val_dsm"], after["val_dsm"], rel_tol=1e-6)


def test_resume_draws_what_one_run_draws(tmp_path):
    def task() -> SbdmTask:
        return SbdmTask(toy_pairs(20, 0), toy_pairs(4, 1), TINY, SDE, lr=1e-3, warmup_steps=3)

    state = torch.random.get_rng_state()
    whole = fit(task(), _config(tmp_path / "a", max_steps=6, checkpoint_every=2))
    fit(task(), _config(tmp_path / "b", max_steps=3, checkpoint_every=2))
    resumed = fit(task(), _config(tmp_path / "b", max_steps=6, checkpoint_every=2))
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's global RNG is untouched
    a, b = load_weights(whole.weights)[0], load_weights(resumed.weights)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    log_a = [r["metrics"]["loss"] for r in whole.history]
    log_b = [r["metrics"]["loss"] for r in resumed.history]
    assert log_a[-1] == log_b[-1]


def _write_dataset(root: Path, subjects: int = 3, size: int = 16) -> None:
    """Complex .npy volumes, one directory per subject (the split group), 2 slices each."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    for s in range(subjects):
        disc = (xx**2 + yy**2 < 0.5).astype(np.float32) * (1 + 0.2 * s)
        phi = 0.5 * s + 2 * xx * yy
        volume = np.stack([disc * np.exp(1j * (phi + k)) for k in range(2)])
        volume = volume + 0.01 * (rng.standard_normal(volume.shape) + 1j * rng.standard_normal(volume.shape))
        (root / f"sub{s}").mkdir(parents=True)
        np.save(root / f"sub{s}" / "scan.npy", volume.astype(np.complex64))


def test_splits_are_by_subject_written_and_reused(tmp_path):
    _write_dataset(tmp_path / "data")
    refs = list_volumes(tmp_path / "data")
    assert sorted(split_unit(r) for r in refs) == ["folder:sub0", "folder:sub1", "folder:sub2"]
    splits = gen_splits(refs, tmp_path / "splits.json", seed=0, val_fraction=0.34)
    assert len(splits["genVal"]) == 1 and len(splits["genTrain"]) == 2
    assert load_splits(tmp_path / "splits.json") == splits
    assert gen_splits(refs, tmp_path / "splits.json", seed=99) == splits  # reused, not remade
    pairs = grid_pairs(load_pairs(refs[:1], 16), 8)
    assert pairs.magnitude.shape == (2, 1, 8, 8) and pairs.phasor.shape == (2, 2, 8, 8)
    assert torch.allclose(torch.linalg.vector_norm(pairs.phasor, dim=1), torch.ones(2, 8, 8), atol=1e-5)


@pytest.mark.parametrize("parameterization", ["eps", "edm"])
def test_export_loads_with_load_checkpoint(tmp_path, parameterization):
    _write_dataset(tmp_path / "data")
    run = SbdmRun(data=tmp_path / "data", out=tmp_path / "run", diffusion_size=8, read_size=16, max_steps=3,
                  batch_size=2, warmup_steps=2, device="cpu", validate_every=0, val_fraction=0.34, console=False,
                  parameterization=parameterization)  # fmt: skip
    result, card = train_sbdm(run)
    path = tmp_path / "run" / "weights" / "sbdm-small.safetensors"
    assert result.finished and card is not None and path.is_file()
    model, loaded = load_checkpoint(path)
    assert loaded["sha256"] == sha256_file(path) == card["sha256"]
    assert model.config.image_size == 8 and loaded["diffusion_size"] == 8
    assert model.config.parameterization == parameterization and ("EDM" in loaded["training"]["loss"]) == (parameterization == "edm")
    assert loaded["sde"]["sigma_max"] == pytest.approx(phasor_sigma_max(8, 8))
    assert loaded["training"]["steps"] == 3 and loaded["data"]["splits"]["genVal"]
    assert math.isfinite(loaded["quality"]["val_dsm_loss"])
    exported, _ = load_weights(result.weights)  # the scaffold's EMA export, now in the sbdm format
    assert all(torch.equal(model.state_dict()[k], v) for k, v in exported.items())


def test_cli_end_to_end(tmp_path):
    _write_dataset(tmp_path / "data")
    app = typer.Typer()
    app.command()(command)
    args = ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--diffusion-size", "8", "--read-size", "16",
            "--max-steps", "2", "--batch-size", "2", "--warmup-steps", "1", "--device", "cpu", "--seed", "3"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["step"] == 2
    model, card = load_checkpoint(summary["weights"])
    assert card["sha256"] == summary["sha256"] and (tmp_path / "run" / "splits.json").is_file()
    missing = CliRunner().invoke(app, ["--data", str(tmp_path / "nothing")])
    assert missing.exit_code == 2
    for bad in (["--parameterization", "x0"], ["--nf", "3"]):  # a mistyped network option: one line, exit 2
        typo = CliRunner().invoke(app, [*args[:4], *bad])
        assert typo.exit_code == 2 and "ScoreNetConfig:" in typo.output and "Traceback" not in typo.output, typo.output


def test_cli_under_torchrun_trains_with_two_processes(tmp_path):
    """`torchrun -m kspacify train sbdm`: DDP over gloo, one summary line, rank 0 alone writes."""
    import os
    import subprocess
    import sys

    _write_dataset(tmp_path / "data")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "kspacify",
               "train", "sbdm", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--nf", "8",
               "--diffusion-size", "8", "--read-size", "16", "--max-steps", "3", "--batch-size", "2", "--warmup-steps", "1",
               "--device", "cpu"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    (summary,) = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert summary["status"] == "finished" and summary["step"] == 3
    _, card = load_checkpoint(summary["weights"])
    assert card["training"]["world_size"] == 2
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["world_size"] == 2 and sum(1 for e in log if e["event"] == "start") == 1
