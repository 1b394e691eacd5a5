"""`kspacify train sbdm`: the conditional score model of `--phase sbdm`, trained on paired magnitude/phase."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from kspacify.commands.common import AcquisitionOption, assumed_acquisition, stderr_console, user_errors
from kspacify.commands.training import run_training


@user_errors
def command(
    data: Annotated[Path, typer.Option("--data", help="Directory (or file) of complex MRI: fastMRI .h5, complex or magnitude+phase NIfTI, complex .npy.", show_default=False)],
    preset: Annotated[str, typer.Option(help="Score-network size: small (CPU; the bundled checkpoint) or paper (NCSN++ as in the paper; GPU).")] = "small",
    nf: Annotated[Optional[int], typer.Option(help="Override the preset's base width (channels at full resolution; FLOPs grow as nf^2).", show_default=False)] = None,
    parameterization: Annotated[str, typer.Option(help="What the network body predicts: edm (EDM's preconditioned denoiser, trained with EDM's loss weight; measured far more realistic, docs/phase-methods.md) or eps (-z, NCSN++ as in the paper).")] = "edm",
    diffusion_size: Annotated[int, typer.Option(help="Grid the network diffuses on (slices are area-averaged to it, as `--phase sbdm` does).")] = 64,
    read_size: Annotated[int, typer.Option(help="Slices are read at this size (as `convert` resizes) before going to the diffusion grid.")] = 256,
    max_steps: Annotated[int, typer.Option(help="Total optimizer steps (across resumed sessions); the checkpoint is exported when reached.")] = 100_000,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop this session after this many minutes (checkpointed; rerun to resume).", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option(help="Slices per step (per process under torchrun); the paper: 32 (brain), 12 (knee).")] = 8,
    lr: Annotated[float, typer.Option(help="Adam learning rate reached after the warm-up; the paper: 1e-4.")] = 1e-4,
    warmup_steps: Annotated[int, typer.Option(help="Linear learning-rate warm-up; the paper: 5000.")] = 5000,
    grad_clip: Annotated[float, typer.Option(help="Gradient-norm clipping.")] = 1.0,
    ema_decay: Annotated[float, typer.Option(help="Decay of the EMA of the weights (the exported, sampling weights).")] = 0.999,
    sigma_max: Annotated[Optional[float], typer.Option(help="VE-SDE sigma_max (default sqrt(2) x diffusion size: Song & Ermon's rule for unit phasors).", show_default=False)] = None,
    validate_every: Annotated[int, typer.Option(help="Validation DSM score on genVal every N steps (and at the end).")] = 500,
    val_slices: Annotated[int, typer.Option(help="Score at most this many genVal slices (evenly spaced; fixed across the run).")] = 64,
    checkpoint_every: Annotated[int, typer.Option(help="Write a resumable checkpoint every N steps (and every 5 minutes).")] = 200,
    out: Annotated[Path, typer.Option(help="Output directory: splits.json, checkpoints/, log.jsonl, weights/sbdm-<preset>.safetensors.")] = Path("sbdm-run"),
    export_dir: Annotated[Optional[Path], typer.Option(help="Where the finished checkpoint goes (default OUT/weights; kspacify/weights to bundle it).", show_default=False)] = None,
    splits: Annotated[Optional[Path], typer.Option(help="genTrain/genVal splits JSON to reuse (default OUT/splits.json, made by patient if absent).", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed of initialization, data order, noise and splits.")] = 0,
    device: Annotated[str, typer.Option(help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")] = "auto",
    hold_out: Annotated[float, typer.Option(help="Share of the subjects held out as genTest, never seen (what a benchmark or a realism measure may test on).")] = 0.0,
    condition: Annotated[bool, typer.Option("--condition/--no-condition", help="Condition on the acquisition as well as the magnitude.")] = True,
    condition_dropout: Annotated[float, typer.Option(help="Probability that a training sample's acquisition is shown as unknown.")] = 0.2,
    acquisition: AcquisitionOption = None,
) -> None:
    """Train the conditional score network by denoising score matching (EDM-preconditioned and -weighted by default) on the unit
    phasor of the data's real phase, conditioned on the magnitude, at the diffusion grid of `--phase sbdm`.

    Resumable: rerunning with the same --out continues from the last checkpoint. Under `torchrun` it
    trains with DistributedDataParallel. Prints one JSON line on stdout at the end.
    Exit codes: 0 trained (or stopped by --max-minutes), 2 usage or data error.
    """
    from kspacify.acquisition import UNKNOWN
    from kspacify.sbdm.train import SbdmRun, train_sbdm

    cards: list[dict | None] = []

    def train():  # type: ignore[no-untyped-def]
        result, card = train_sbdm(
            SbdmRun(
                data=data, out=out, preset=preset, nf=nf, parameterization=parameterization, diffusion_size=diffusion_size, read_size=read_size, sigma_max=sigma_max,
                max_steps=max_steps, max_minutes=max_minutes, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps,
                grad_clip=grad_clip, ema_decay=ema_decay, seed=seed, device=device, splits=splits,
                validate_every=validate_every, val_slices=val_slices, checkpoint_every=checkpoint_every,
                export_dir=export_dir, hold_out=hold_out, condition=condition, condition_dropout=condition_dropout,
                assume=assumed_acquisition(acquisition) or UNKNOWN,
            )  # fmt: skip
        )
        cards.append(card)
        return result

    def details(result):  # type: ignore[no-untyped-def]
        """The exported checkpoint (this trainer writes its own format) and its sha256."""
        card = cards[-1] if cards else None
        weights = (export_dir or out / "weights") / f"sbdm-{preset}.safetensors" if card else None
        return {"weights": str(weights) if weights else None, "sha256": card["sha256"] if card else None}

    run_training(data, train, stderr_console(), details)
