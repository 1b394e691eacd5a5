"""The training scaffold (kspacify.training) and the VarNet trainer built on it. CPU only, tiny."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from kspacify.training import (
    EMA,
    LoopConfig,
    PairError,
    Part,
    ResumeError,
    TrainTask,
    World,
    fit,
    linear_warmup,
    load_weights,
    pick_device,
    sha256_file,
)
from kspacify.training.checkpoint import join_state, split_state

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


class ToyTask(TrainTask):
    """Regression with everything the scaffold offers: warm-up schedule, EMA, clipping, dropout
    (global RNG), per-step noise from ctx, validation."""

    def __init__(self, n: int = 24, tag: str = "toy") -> None:
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, 8, generator=g)
        self.y = self.x @ torch.randn(8, 1, generator=g)
        self.tag = tag

    def describe(self):
        return {"architecture": "toy MLP", "config": {"tag": self.tag}, "data": {"n": len(self.x)}}

    def dataset(self):
        return TensorDataset(self.x, self.y)

    def build(self, device):
        model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 1)).to(device)
        self.model = model  # for the DDP test to compare ranks
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        return {"net": Part(model, opt, linear_warmup(opt, 3), EMA(model, 0.9), grad_clip=1.0)}

    def step(self, ctx, batch):
        x, y = batch
        x = x + 0.01 * torch.randn(x.shape, generator=ctx.generator) + float(ctx.rng.normal()) * 1e-3
        loss = ((ctx.models["net"](x) - y) ** 2).mean()
        norm = ctx.update("net", loss)
        return {"loss": loss.detach(), "grad_norm": norm}

    def validate(self, models, device):
        return {"mse": float(((models["net"](self.x) - self.y) ** 2).mean())}


def _config(tmp_path: Path, **overrides) -> LoopConfig:
    base = dict(out_dir=tmp_path, name="toy", max_steps=10, batch_size=4, seed=3, device="cpu", log_every=2,
                validate_every=4, checkpoint_every=3, console=False, select_metric="mse", select_mode="min")
    return LoopConfig(**{**base, **overrides})


def test_resume_gives_the_same_weights_as_one_run(tmp_path):
    whole = fit(ToyTask(), _config(tmp_path / "a"))
    assert whole.finished and whole.step == 10

    first = fit(ToyTask(), _config(tmp_path / "b", max_steps=5))  # a bounded session ...
    assert first.finished and first.step == 5
    second = fit(ToyTask(), _config(tmp_path / "b"))  # ... resumed later, mid-epoch
    assert second.step == 10 and second.finished
    a, card_a = load_weights(whole.weights)
    b, _ = load_weights(second.weights)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the exported weights are the best validation's, and the card says which
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    val = {r["step"]: r["metrics"]["mse"] for r in log if r["event"] == "validate"}
    best_step = min(val, key=val.get)
    assert card_a["training"]["selected_step"] == best_step and card_a["quality"]["validation"]["mse"] == val[best_step]
    assert card_a["sha256"] == sha256_file(whole.weights)
    assert card_a["training"]["steps"] == 10 and card_a["config"] == {"tag": "toy"}


def test_max_steps_and_max_minutes_bounds(tmp_path):
    result = fit(ToyTask(), _config(tmp_path, max_steps=7, validate_every=0))
    assert result.step == 7
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in log if r["event"] == "train") == 7
    state = json.loads(sorted((tmp_path / "checkpoints").glob("step-*.json"))[-1].read_text())
    assert state["step"] == 7
    assert fit(ToyTask(), _config(tmp_path, max_steps=7)).step == 7  # nothing left to do

    timed = fit(ToyTask(), _config(tmp_path / "t", max_steps=1000, max_minutes=0.0))
    assert timed.stopped == "max_minutes" and not timed.finished and timed.step == 1
    assert (tmp_path / "t" / "checkpoints" / "step-000000001.safetensors").is_file()
    _, card = load_weights(timed.weights)  # a bounded session leaves usable weights, marked unfinished
    assert card["training"]["steps"] == 1 and card["training"]["finished"] is False
    resumed = fit(ToyTask(), _config(tmp_path / "t", max_steps=3))
    assert resumed.finished and load_weights(resumed.weights)[1]["training"]["finished"] is True


class SignalledTask(ToyTask):
    """Sends itself SIGTERM during step 5, as a batch scheduler does at its time limit."""

    def step(self, ctx, batch):
        if ctx.step == 4:  # 0-based: the 5th step
            os.kill(os.getpid(), signal.SIGTERM)
        return super().step(ctx, batch)


def test_sigterm_checkpoints_the_step_and_stops_then_a_rerun_resumes(tmp_path):
    stopped = fit(SignalledTask(), _config(tmp_path, max_steps=10, checkpoint_every=100))
    assert stopped.stopped == "terminated" and stopped.step == 5 and not stopped.finished and stopped.weights is None
    assert (tmp_path / "checkpoints" / "step-000000005.safetensors").is_file()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone after fit
    resumed = fit(ToyTask(), _config(tmp_path, max_steps=10, checkpoint_every=100))
    assert resumed.finished and resumed.step == 10
    assert [e["step"] for e in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines()) if e["event"] == "resume"] == [5]


def test_checkpoints_are_safetensors_and_verified(tmp_path):
    result = fit(ToyTask(), _config(tmp_path))
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.suffix for p in written} <= {".safetensors", ".json", ".jsonl"}
    assert len(list((tmp_path / "checkpoints").glob("*.safetensors"))) == 2  # keep_checkpoints
    for path in written:
        if path.suffix == ".safetensors":
            blob = path.read_bytes()
            assert not blob.startswith((b"\x80", b"PK"))  # neither pickle nor torch's zip
            header = json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")])
            assert "__metadata__" in header
            assert json.loads(path.with_suffix(".json").read_text())["sha256"] == sha256_file(path)
    # a corrupted weights file is refused
    blob = bytearray(result.weights.read_bytes())
    blob[-1] ^= 0xFF
    result.weights.write_bytes(bytes(blob))
    with pytest.raises(PairError, match="sha256"):
        load_weights(result.weights)
    # a corrupt newest checkpoint is skipped; a checkpoint of another run is refused
    newest = sorted((tmp_path / "checkpoints").glob("step-*.safetensors"))[-1]
    newest.write_bytes(b"garbage")
    assert fit(ToyTask(), _config(tmp_path, max_steps=12)).step == 12
    with pytest.raises(ResumeError):
        fit(ToyTask(tag="other"), _config(tmp_path, max_steps=14))


def test_state_split_round_trip():
    model = nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), betas=(0.8, 0.9))
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    tensors: dict[str, torch.Tensor] = {}
    tree = split_state(opt.state_dict(), "opt", tensors)
    json.dumps(tree)  # JSON-able
    back = join_state(json.loads(json.dumps(tree)), tensors)
    assert list(back["state"]) == [0, 1]  # int keys survive
    assert torch.equal(back["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(TypeError, match="without pickle"):
        split_state({"f": object()}, "x", {})


def test_world_and_device():
    assert World.from_env({}) == World(0, 0, 1) and World.from_env({}).is_main
    w = World.from_env({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"})
    assert w.distributed and not w.is_main and w.local_rank == 1
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            pick_device("cuda")
    with pytest.raises(ValueError):
        pick_device("tpu")


_DDP_WORKER = """
import hashlib, json, os, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from test_training import ToyTask, _config
from kspacify.training import fit
rank = int(os.environ["RANK"])
out = Path({out!r}) / f"rank{{rank}}"   # a directory per rank: rank 1's must stay empty
task = ToyTask(n=32)
result = fit(task, _config(out, max_steps=6, select_metric=None))
assert not torch.distributed.is_initialized()  # fit left the process group it joined
digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in task.model.state_dict().values())).hexdigest()
weights = str(result.weights) if result.weights else None
# a file per rank: two processes printing to one pipe can interleave their lines
(Path({out!r}) / f"result{{rank}}.json").write_text(json.dumps({{"rank": rank, "step": result.step, "weights": weights, "digest": digest}}))
"""


def test_ddp_two_cpu_processes(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(_DDP_WORKER.format(tests=str(Path(__file__).parent), out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = {r: json.loads((tmp_path / f"result{r}.json").read_text()) for r in (0, 1)}
    assert results[0]["step"] == results[1]["step"] == 6
    assert results[0]["weights"] and results[1]["weights"] is None
    assert results[0]["digest"] == results[1]["digest"]  # gradients were averaged: the ranks agree
    assert not (tmp_path / "rank1").exists()  # only rank 0 writes
    log = [json.loads(line) for line in (tmp_path / "rank0" / "log.jsonl").read_text().splitlines()]
    assert log[0]["world_size"] == 2
    weights, card = load_weights(results[0]["weights"])
    assert card["training"]["world_size"] == 2 and np.isfinite(card["quality"]["validation"]["mse"])


# ------------------------------------------------------------------------------------- VarNet trainer


@pytest.fixture(scope="module")
def fastmri_dir(tmp_path_factory) -> Path:
    from fastmri_factory import phantom, write_singlecoil

    root = tmp_path_factory.mktemp("fastmri")
    for v in range(5):
        write_singlecoil(root / f"vol{v}.h5", np.stack([phantom((32, 32), seed=10 * v + s) for s in range(4)]))
    return root


def test_varnet_training_lowers_the_loss(tmp_path, fastmri_dir):
    from kspacify.datasets import list_volumes, load_pairs, load_splits
    from kspacify.recon.train import Sampling, VarNetRun, evaluate, load_varnet, train_varnet

    run = VarNetRun(fastmri_dir, "smooth", tmp_path, sampling=Sampling(4, 4), max_steps=30, size=32, lr=1e-3,
                    validate_every=10, device="cpu", console=False)  # fmt: skip
    result = train_varnet(run)
    losses = [r["metrics"]["loss"] for r in result.history]
    assert len(losses) == 3 and losses[-1] < 0.85 * losses[0]
    assert result.card["data"]["training"]["phase"] == "smooth" and result.card["config"]["sampling"]["acs"] == 4
    splits = load_splits(tmp_path / "splits.json")
    assert result.card["data"]["validation"]["volumes"] == splits["recVal"]
    # the exported net reproduces the validation it was selected by
    model, _ = load_varnet(result.weights)
    refs = {r.key: r for r in list_volumes(fastmri_dir)}
    val = load_pairs([refs[k] for k in splits["recVal"]], 32)
    assert evaluate(model, val, Sampling(4, 4)).metrics["ssim"] == pytest.approx(result.validation["ssim"], abs=1e-6)


def test_train_varnet_cli(tmp_path, fastmri_dir):
    import typer
    from typer.testing import CliRunner

    from kspacify.commands import train_varnet

    app = typer.Typer(add_completion=False)
    app.command("varnet")(train_varnet.command)
    app.command("other")(lambda: None)
    runner = CliRunner()
    common = ["varnet", "--data", str(fastmri_dir), "--out", str(tmp_path / "run"), "--acs", "4", "--size", "32",
              "--device", "cpu", "--threads", "1"]  # fmt: skip
    done = runner.invoke(app, [*common, "--phase", "gt", "--max-steps", "2"])
    assert done.exit_code == 0, done.output
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert line["status"] == "finished" and line["step"] == 2 and Path(line["weights"]).is_file()
    assert Path(line["weights"]).name == "varnet-gt-small.safetensors"
    for bad, message in (
        (["--phase", "nonsense"], "unknown phase method 'nonsense'"),
        (["--phase", "gt", "--R", "4", "--acs", "300"], "acs=300"),
        (["--phase", "gt", "--preset", "huge"], "unknown VarNet preset"),
        (["--phase", "gt", "--max-steps", "4", "--seed", "1"], "different run"),  # same --out, other seed
    ):
        run = runner.invoke(app, [*common, *bad])
        assert run.exit_code == 2, run.output
        assert message in run.stderr and "Traceback" not in run.output
    missing = runner.invoke(app, ["varnet", "--data", str(tmp_path / "nope"), "--phase", "gt"])
    assert missing.exit_code == 2 and "no such file" in missing.stderr
