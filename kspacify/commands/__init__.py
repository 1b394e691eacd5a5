"""Subcommands beyond `convert`: each module defines one Typer command function named `command`,
registered in `kspacify/cli.py`. Modules import torch only inside the function, so the CLI starts fast."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import typer
from rich.console import Console

if TYPE_CHECKING:
    from kspacify.training import TrainResult


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def usage_error(console: Console, message: str) -> typer.Exit:
    """One line on stderr and exit code 2, Typer's code for a usage error."""
    console.print(f"kspacify: error: {message}", markup=False)
    return typer.Exit(2)


def run_training(
    data: Path,
    train: Callable[[], TrainResult],
    console: Console | None = None,
    details: Callable[[TrainResult], dict[str, Any]] | None = None,
) -> None:
    """What every `kspacify train` command does around its trainer: check --data, turn a user's mistake
    into one line and exit code 2, Ctrl-C into 130 and SIGTERM (a scheduler's time limit) into 143
    (the run resumes from its last checkpoint), and print the outcome as one JSON line (rank 0 only
    under torchrun)."""
    from kspacify.datasets import DatasetError
    from kspacify.training import ResumeError, World

    console = console or stderr_console()
    if not data.exists():
        raise usage_error(console, f"--data {data}: no such file or directory")
    try:
        result = train()
    except (ValueError, TypeError, ResumeError, DatasetError, FileNotFoundError) as error:
        raise usage_error(console, str(error))
    except KeyboardInterrupt:
        console.print("kspacify: interrupted; rerun the same command to resume from the last checkpoint", markup=False)
        raise typer.Exit(130)
    if World.from_env().is_main:
        status = "finished" if result.finished else f"stopped ({result.stopped.replace('_', '-')}); rerun to resume"
        weights = str(result.weights) if result.weights else None
        line = {"status": status, "step": result.step, "weights": weights, "validation": result.validation}
        print(json.dumps({**line, **(details(result) if details else {})}), flush=True)
    if result.stopped == "terminated":
        raise typer.Exit(143)
