"""`kspacify train varnet`: a single-coil VarNet trained on k-space synthesized with one phase method."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from kspacify.commands.common import stderr_console, usage_error, user_errors
from kspacify.commands.training import run_training


@user_errors
def command(
    data: Annotated[Path, typer.Option("--data", help="Directory (or file) of complex MRI: fastMRI .h5, complex or magnitude+phase NIfTI, complex .npy.", show_default=False)],
    phase_method: Annotated[str, typer.Option("--phase", help="Phase of the training k-space: gt (the data's real phase) or a phase method (smooth, physics, zero; sbdm, gan when installed).", show_default=False)],
    preset: Annotated[str, typer.Option(help="VarNet size: small (4 cascades, 8 channels, 2 pools; CPU) or paper (12, 18, 4).")] = "small",
    acceleration: Annotated[float, typer.Option("--R", help="Acceleration R: sampled lines = round(width / R), ACS included.")] = 4.0,
    acs: Annotated[int, typer.Option("--acs", help="Fully sampled centre (ACS) lines.")] = 26,
    mask: Annotated[str, typer.Option(help="Mask type: equispaced or random (a new random mask per sample and step).")] = "equispaced",
    max_steps: Annotated[int, typer.Option(help="Total optimizer steps (across resumed sessions).")] = 10_000,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop this session after this many minutes (checkpointed; rerun to resume).", show_default=False)] = None,
    out: Annotated[Path, typer.Option(help="Output directory: splits, training set, checkpoints, log.jsonl, weights/.")] = Path("varnet-run"),
    seed: Annotated[int, typer.Option(help="Seed of initialization, data order, masks and phase synthesis.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Slices per step (per process under torchrun); the paper: 4.")] = 4,
    lr: Annotated[float, typer.Option(help="Adam learning rate; the paper: 3e-4.")] = 3e-4,
    validate_every: Annotated[int, typer.Option(help="Validate on recVal's real k-space every N steps (and at the end).")] = 500,
    device: Annotated[str, typer.Option(help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")] = "auto",
    splits: Annotated[Optional[Path], typer.Option(help="recTrain/recVal/recTest splits JSON to reuse (default: OUT/splits.json, made if absent).", show_default=False)] = None,
    size: Annotated[int, typer.Option(help="Slice matrix size (the paper: 256).")] = 256,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch (default: one per core; 1 is often faster on a busy machine).", show_default=False)] = None,
) -> None:
    """Train a single-coil VarNet (SSIM loss, Adam) on k-space made from training MAGNITUDES with the chosen phase.

    Validates on the real k-space of held-out patients (recVal) and exports OUT/weights/varnet-PHASE-PRESET.safetensors.
    Rerunning with the same --out resumes from the last checkpoint; under `torchrun` it trains with DistributedDataParallel.
    Prints one JSON line on stdout at the end. Exit codes: 0 trained (or stopped by --max-minutes), 2 usage or data error.
    """
    import torch

    from kspacify.recon.train import Sampling, VarNetRun, train_varnet

    console = stderr_console()
    if threads is not None:
        if threads < 1:
            raise usage_error(console, "--threads must be >= 1")
        torch.set_num_threads(threads)

    def train():  # type: ignore[no-untyped-def]
        return train_varnet(
            VarNetRun(
                data=data, phase=phase_method, out=out, preset=preset, sampling=Sampling(acceleration, acs, mask),
                max_steps=max_steps, max_minutes=max_minutes, seed=seed, batch_size=batch_size, lr=lr, device=device,
                validate_every=validate_every, splits=splits, size=size,
            )  # fmt: skip
        )

    run_training(data, train, console)
