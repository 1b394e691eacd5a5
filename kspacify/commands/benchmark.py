"""`kspacify benchmark`: the paper's experiment: a VarNet per phase method, tested on real k-space."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Callable, Optional, TypeVar

import typer
from rich.console import Console

from kspacify.commands.common import AcquisitionOption, Device, Exit, assumed_acquisition, say, stderr_console, user_errors

T = TypeVar("T")



def _split_list(values: list[str], cast: Callable[[str], T], option: str) -> list[T]:
    """`--R 2,4 --R 6` -> [2, 4, 6]; raises typer.BadParameter naming the option."""
    items = [item.strip() for value in values for item in value.split(",") if item.strip()]
    try:
        return [cast(item) for item in items]
    except ValueError:
        raise typer.BadParameter(f"expected numbers, got {values}", param_hint=option) from None


@user_errors
def command(
    acceleration: Annotated[Optional[list[str]], typer.Option("--R", help="Acceleration(s) R, e.g. --R 4 or --R 2,3,4,6 (sweep; up to 8 and beyond, as long as the sampled lines hold the ACS). Default: the profile's.", show_default=False)] = None,
    acs: Annotated[Optional[list[str]], typer.Option("--acs", help="ACS (fully sampled centre) lines, e.g. --acs 26 or --acs 16,26,31 (default 26).", show_default=False)] = None,
    data: Annotated[Optional[Path], typer.Option(help="Complex MRI (fastMRI .h5, complex NIfTI, ...). Default: the shared real-phase train set if present, else the real-phase demo set, else the project's examples with physics phase.", show_default=False)] = None,
    test_data: Annotated[Optional[Path], typer.Option(help="Test on the real k-space of every volume here (e.g. fastMRI's validation set); --data then gives recTrain and recVal.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output directory (results, figures, checkpoints). Default: kspacify-benchmark-PROFILE.", show_default=False)] = None,
    profile: Annotated[str, typer.Option(help="quick (minutes), cpu (ranks methods on 2 cores in about an hour; R 4 and 8), or paper (the paper's VarNet and 50 epochs; a GPU).")] = "paper",
    quick: Annotated[bool, typer.Option("--quick", help="The same as --profile quick.")] = False,
    seeds: Annotated[Optional[int], typer.Option(help="VarNet training seeds per cell (default: the profile's; the paper: 3).", show_default=False)] = None,
    methods: Annotated[Optional[list[str]], typer.Option(help="Methods, e.g. --methods smooth,gt (default: zero-filled, zero, smooth, physics, gan, sbdm, gt).", show_default=False)] = None,
    mask: Annotated[str, typer.Option(help="Mask type: equispaced or random.")] = "equispaced",
    max_steps: Annotated[Optional[int], typer.Option(help="Training steps per VarNet (default: the profile's).", show_default=False)] = None,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop after this many minutes; rerun to resume.", show_default=False)] = None,
    size: Annotated[int, typer.Option(help="Slice matrix size (the paper: 256).")] = 256,
    acquisition: AcquisitionOption = None,
    device: Device = "auto",
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch (default: one per core).", show_default=False)] = None,
) -> None:
    """Train one VarNet per (phase method, R, ACS, seed) on k-space made from recTrain's magnitudes; test on recTest's REAL k-space.

    Reports SSIM / PSNR / NRMSE / NMSE (mean ± std over seeds) and, for every pair of methods, the paired
    difference with a bootstrap 95% interval over test volumes: tables, results.json, results.csv, PNG figures.
    Finished cells are never trained again: rerun the same command to resume, or to extend the sweep.
    Exit codes: 0 done, 1 some cells failed, 2 usage error, 130 interrupted.
    """
    console = stderr_console()

    import torch

    from kspacify.benchmark import METHODS, BenchmarkConfig, paired_table, run_benchmark, summary_table

    if threads is not None:
        if threads < 1:
            say(console, "error: --threads must be >= 1")
            raise typer.Exit(int(Exit.USAGE))
        torch.set_num_threads(threads)
    chosen = "quick" if quick else profile
    config = BenchmarkConfig(
        out=out or Path(f"kspacify-benchmark-{chosen}"),
        data=data,
        test_data=test_data,
        accelerations=tuple(_split_list(acceleration, float, "--R")) if acceleration else None,
        acs=tuple(_split_list(acs or ["26"], int, "--acs")),
        seeds=seeds,
        methods=tuple(_split_list(methods, str, "--methods")) if methods else METHODS,
        profile=chosen, mask=mask, max_steps=max_steps, max_minutes=max_minutes, size=size, device=device,
        assume=assumed_acquisition(acquisition),
    )  # fmt: skip
    try:
        result = run_benchmark(config, lambda text: say(console, text))
    except KeyboardInterrupt:
        say(console, "interrupted; finished cells are kept, rerun the same command to resume")
        raise typer.Exit(int(Exit.INTERRUPTED)) from None
    stdout = Console(highlight=False)
    if not stdout.is_terminal:
        stdout = Console(highlight=False, width=160)  # a file or pipe: no wrapping of the table
    stdout.print(summary_table(result))
    if result.paired:
        stdout.print(paired_table(result))
    for line in result.findings:
        stdout.print(f"- {line}", markup=False)
    say(console, f"data: {result.data.note}")
    say(console, "wrote " + ", ".join(str(p) for p in result.files))
    if not result.complete and not result.failed:
        say(console, "incomplete (stopped by --max-minutes): rerun the same command to finish")
    say(console, f"{len(result.cells)} cell(s) in {result.seconds / 60:.1f} min")
    raise typer.Exit(int(Exit.SOME_FAILED if result.failed else Exit.OK))
