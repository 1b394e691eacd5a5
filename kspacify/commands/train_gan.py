"""`kspacify train gan`: the paper's pix2pix GAN baseline, magnitude -> phase, on paired data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from kspacify.commands.common import AcquisitionOption, assumed_acquisition, stderr_console, user_errors
from kspacify.commands.training import run_training


@user_errors
def command(
    data: Annotated[Path, typer.Option("--data", help="Directory (or file) of complex MRI: fastMRI .h5, complex or magnitude+phase NIfTI, complex .npy.", show_default=False)],
    preset: Annotated[str, typer.Option(help="Network sizes: small (CPU; ngf 8, ndf 16) or unet_256 (pix2pix; ngf 64, ndf 64).")] = "small",
    gan_mode: Annotated[str, typer.Option(help="Adversarial loss: lsgan (least squares) or bce (pix2pix's vanilla).")] = "lsgan",
    l1_weight: Annotated[float, typer.Option(help="Weight of the L1 loss on the unit phasor (pix2pix: 100).")] = 100.0,
    l1_samples: Annotated[int, typer.Option(help="Noise draws per slice; the L1 counts the closest (best of K; 1: pix2pix).")] = 1,
    noise_channels: Annotated[Optional[int], typer.Option(help="Gaussian noise channels of the generator, at its input and bottleneck (0: pix2pix's deterministic U-Net; default: the preset's, 8).", show_default=False)] = None,
    lr: Annotated[float, typer.Option(help="Adam learning rate of both networks, betas (0.5, 0.999) (pix2pix: 2e-4).")] = 2e-4,
    max_steps: Annotated[int, typer.Option(help="Total optimizer steps (across resumed sessions); weights are exported when reached.")] = 20_000,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop this session after this many minutes (checkpointed; rerun to resume).", show_default=False)] = None,
    out: Annotated[Path, typer.Option(help="Output directory: splits, checkpoints, log.jsonl, weights/.")] = Path("gan-run"),
    export_dir: Annotated[Optional[Path], typer.Option(help="Where gan-<preset>.safetensors goes (default OUT/weights).", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed of initialization, data order and augmentation.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Slices per step (per process under torchrun).")] = 4,
    size: Annotated[int, typer.Option(help="Slice size (a multiple of 256 for the 8-level U-Net).")] = 256,
    validate_every: Annotated[int, typer.Option(help="Validate (L1 on held-out pairs) every N steps, and at the end.")] = 500,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N steps (also every 5 minutes and at the end).")] = 250,
    device: Annotated[str, typer.Option(help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")] = "auto",
    splits: Annotated[Optional[Path], typer.Option(help="genTrain/genVal splits JSON to reuse (default: OUT/splits.json, made if absent).", show_default=False)] = None,
    hold_out: Annotated[float, typer.Option(help="Share of the subjects held out as genTest, never seen (what a benchmark or a realism measure may test on).")] = 0.0,
    acquisition: AcquisitionOption = None,
) -> None:
    """Train the pix2pix phase GAN (U-Net generator, 70x70 PatchGAN; adversarial + L1 on the unit
    phasor) on the magnitude/phase pairs of --data, split by patient into genTrain / genVal.

    Resumable: rerunning with the same --out continues from the last checkpoint (a larger
    --max-steps trains on; the same step count only exports). Prints one JSON line on stdout.
    Exit codes: 0 trained (or stopped by --max-minutes), 2 usage or data error.
    """
    from kspacify.acquisition import UNKNOWN
    from kspacify.gan.train import GanRun, train_gan

    console = stderr_console()

    def train():  # type: ignore[no-untyped-def]
        return train_gan(
            GanRun(
                data=data, out=out, preset=preset, gan_mode=gan_mode, l1_weight=l1_weight, l1_samples=l1_samples,
                noise_channels=noise_channels, lr=lr, max_steps=max_steps,
                max_minutes=max_minutes, seed=seed, batch_size=batch_size, device=device, size=size,
                validate_every=validate_every, checkpoint_every=checkpoint_every, export_dir=export_dir, splits=splits,
                hold_out=hold_out, assume=assumed_acquisition(acquisition) or UNKNOWN,
            )  # fmt: skip
        )

    run_training(data, train, console)
