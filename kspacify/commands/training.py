"""What every `kspacify train` command does around its trainer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import typer
from rich.console import Console

from kspacify.commands.common import Exit, say, stderr_console, usage_error

if TYPE_CHECKING:
    from kspacify.training import TrainResult


def run_training(
    data: Path,
    train: Callable[[], TrainResult],
    console: Console | None = None,
    details: Callable[[TrainResult], dict[str, Any]] | None = None,
) -> None:
    """Check --data, run the trainer, turn Ctrl-C into 130 and SIGTERM (a scheduler's time limit)
    into 143 (the run resumes from its last checkpoint), and print the outcome as one JSON line
    (rank 0 only under torchrun). A user's mistake (a KspacifyError) is left to `user_errors`."""
    from kspacify.training import World

    console = console or stderr_console()
    if not data.exists():
        raise usage_error(console, f"--data {data}: no such file or directory")
    try:
        result = train()
    except KeyboardInterrupt:
        say(console, "interrupted; rerun the same command to resume from the last checkpoint")
        raise typer.Exit(int(Exit.INTERRUPTED)) from None
    if World.from_env().is_main:
        status = "finished" if result.finished else f"stopped ({result.stopped.replace('_', '-')}); rerun to resume"
        weights = str(result.weights) if result.weights else None
        line = {"status": status, "step": result.step, "weights": weights, "validation": result.validation}
        print(json.dumps({**line, **(details(result) if details else {})}), flush=True)
    if result.stopped == "terminated":
        raise typer.Exit(int(Exit.TERMINATED))
