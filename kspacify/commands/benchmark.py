"""`kspacify benchmark`: the paper's experiment: a VarNet per phase method, tested on real k-space."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Callable, Optional, TypeVar

import typer
from rich.console import Console

from kspacify.commands.common import Exit, say, stderr_console, usage_error, user_errors


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
    acceleration: Annotated[list[str], typer.Option("--R", help="Acceleration(s) R, e.g. --R 4 or --R 2,3,4,6 (sweep).")] = ["4"],
    acs: Annotated[list[str], typer.Option("--acs", help="ACS (fully sampled centre) lines, e.g. --acs 26 or --acs 16,26,31.")] = ["26"],
    data: Annotated[Optional[Path], typer.Option(help="Complex MRI (fastMRI .h5, complex NIfTI, ...). Default: the shared real-phase set if present, else the project's examples with physics phase.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output directory (results, figures, checkpoints). Default: kspacify-benchmark[-quick].", show_default=False)] = None,
    seeds: Annotated[int, typer.Option(help="VarNet training seeds per cell (the paper: 3).")] = 3,
    methods: Annotated[Optional[list[str]], typer.Option(help="Methods, e.g. --methods smooth,gt (default: zero-filled, smooth, physics, gan, sbdm, gt).", show_default=False)] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Small VarNets, few steps: a CPU demo in minutes, not the paper's settings.")] = False,
    mask: Annotated[str, typer.Option(help="Mask type: equispaced or random.")] = "equispaced",
    max_steps: Annotated[Optional[int], typer.Option(help="Training steps per VarNet (default: 40 with --quick, else 50 epochs).", show_default=False)] = None,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop after this many minutes; rerun to resume.", show_default=False)] = None,
    size: Annotated[int, typer.Option(help="Slice matrix size (the paper: 256).")] = 256,
    device: Annotated[str, typer.Option(help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")] = "auto",
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch (default: 1 with --quick, whose tiny nets gain nothing from more and lose much on a busy machine; else one per core).", show_default=False)] = None,
) -> None:
    """Train one VarNet per (phase method, R, ACS, seed) on k-space made from recTrain's magnitudes; test on recTest's REAL k-space.

    Reports SSIM / PSNR / NRMSE / NMSE (mean ± std over seeds): a table, results.json, results.csv and PNG figures in --out.
    Finished cells are never trained again: rerun the same command to resume, or to extend the sweep.
    Exit codes: 0 done, 1 some cells failed, 2 usage error, 130 interrupted.
    """
    console = stderr_console()

    def tell(text: str) -> None:
        say(console, text)

    import torch

    from kspacify.benchmark import METHODS, BenchmarkConfig, BenchmarkError, run_benchmark, summary_table

    if threads is not None and threads < 1:
        raise usage_error(console, "--threads must be >= 1")
    if threads or quick:
        torch.set_num_threads(threads or 1)

    config = BenchmarkConfig(
        out=out or Path("kspacify-benchmark-quick" if quick else "kspacify-benchmark"),
        data=data,
        accelerations=tuple(_split_list(acceleration, float, "--R")),
        acs=tuple(_split_list(acs, int, "--acs")),
        seeds=seeds,
        methods=tuple(_split_list(methods, str, "--methods")) if methods else METHODS,
        quick=quick, mask=mask, max_steps=max_steps, max_minutes=max_minutes, size=size, device=device,
    )  # fmt: skip
    try:
        result = run_benchmark(config, tell)
    except BenchmarkError as error:
        raise usage_error(console, str(error))
    except KeyboardInterrupt:
        tell("interrupted; finished cells are kept, rerun the same command to resume")
        raise typer.Exit(int(Exit.INTERRUPTED))
    stdout = Console(highlight=False)
    if not stdout.is_terminal:
        stdout = Console(highlight=False, width=160)  # a file or pipe: no wrapping of the table
    stdout.print(summary_table(result))
    tell(f"data: {result.data.note}")
    tell("wrote " + ", ".join(str(p) for p in result.files))
    if not result.complete and not result.failed:
        tell("incomplete (stopped by --max-minutes): rerun the same command to finish")
    tell(f"{len(result.cells)} cell(s) in {result.seconds / 60:.1f} min")
    raise typer.Exit(1 if result.failed else 0)
