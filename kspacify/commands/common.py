"""What every command shares, and nothing heavy: the exit codes, the stderr console, one-line
messages, the handler that turns a user's mistake into one line and its exit code, and the option
types several commands take. A leaf: it imports no other kspacify command module."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from enum import IntEnum
from typing import Annotated, Any, Callable, Iterator, Optional, TypeVar

import typer
from rich.console import Console

from kspacify.errors import KspacifyError
from kspacify.termination import Terminated, signals_stop


class Exit(IntEnum):
    """Exit codes (the README's table). Typer/Click also use 2 for usage errors."""

    OK = 0
    SOME_FAILED = 1
    USAGE = 2
    NOTHING_FOUND = 3
    INTERRUPTED = 130  # Ctrl-C
    STDOUT_CLOSED = 141  # stdout's reader went away (`| head`): 128 + SIGPIPE, what a shell reports
    TERMINATED = 143  # SIGTERM: a scheduler's time limit or a pre-emption


def stderr_console() -> Console:
    # emoji=False: a file named ":smile:.dcm" is printed as it is named
    return Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def escape(text: str) -> str:
    """`text` with control characters (a newline in a file name, an escape sequence) written as
    escapes, so one message stays one line and cannot forge another or drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def say(console: Console, text: str) -> None:
    """One line on stderr: `kspacify: <text>`, escaped."""
    console.print(f"kspacify: {escape(text)}", markup=False)


@contextlib.contextmanager
def stops(console: Console, left: str) -> Iterator[None]:
    """Ctrl-C (130), SIGTERM (143: a scheduler's time limit) and a closed stdout (141) end the
    command with one line saying what is `left`, never with a traceback; what is being written is
    abandoned (`kspacify.termination`)."""
    with signals_stop():
        try:
            yield
        except KeyboardInterrupt:
            say(console, f"interrupted; {left}")
            raise typer.Exit(int(Exit.INTERRUPTED)) from None
        except Terminated:
            say(console, f"terminated (SIGTERM); {left}")
            raise typer.Exit(int(Exit.TERMINATED)) from None
        except BrokenPipeError:
            with contextlib.suppress(OSError, ValueError, AttributeError):  # no flush error at exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            say(console, f"stdout closed by its reader; stopped; {left}")
            raise typer.Exit(int(Exit.STDOUT_CLOSED)) from None


def usage_error(console: Console, message: str) -> typer.Exit:
    """One line on stderr and exit code 2, Typer's code for a usage error."""
    say(console, f"error: {message}")
    return typer.Exit(int(Exit.USAGE))


F = TypeVar("F", bound=Callable[..., Any])


def user_errors(command: F) -> F:
    """A command wrapper: a `KspacifyError` (a bad option, unusable data) becomes one line on
    stderr and its exit code; any other exception is a bug and keeps its traceback."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except KspacifyError as error:
            say(stderr_console(), f"error: {error}")
            raise typer.Exit(error.exit_code) from None

    return run  # type: ignore[return-value]


# Option types shared by commands (typer reads the help and flags from the annotation).
Inputs = Annotated[list[str], typer.Argument(help="DICOM/NIfTI files, directories or globs; '-' reads paths from stdin.", show_default=False)]
Include = Annotated[Optional[list[str]], typer.Option(help="Only files whose name or path matches this glob (repeatable).")]
Exclude = Annotated[Optional[list[str]], typer.Option(help="Skip files whose name or path matches this glob (repeatable).")]
NullSeparated = Annotated[bool, typer.Option("-0", "--null", help="Paths on stdin are NUL-separated (find -print0).")]
Salt = Annotated[Optional[str], typer.Option(help="Salt for patient pseudonyms (default: $KSPACIFY_SALT or a per-user salt file).", show_default=False)]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Also list each file skipped as not MR image data.")]
Device = Annotated[str, typer.Option(help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.")]
PhaseOptions = Annotated[Optional[list[str]], typer.Option("--phase-opt", help="KEY=VALUE setting of the phase method (repeatable; `kspacify methods` lists them).")]
CoilOptions = Annotated[Optional[list[str]], typer.Option("--coil-opt", help="KEY=VALUE setting of the coil model (repeatable; `kspacify methods` lists them).")]

AcquisitionOption = Annotated[Optional[list[str]], typer.Option("--acquisition", help="KEY=VALUE of the acquisition of volumes whose files do not say, e.g. family=spin_echo, field_strength_t=3 (repeatable; keys: the fields of kspacify.acquisition.Acquisition).", show_default=False)]


def assumed_acquisition(pairs: Optional[list[str]]) -> Any:
    """The `--acquisition KEY=VALUE` settings as an Acquisition (typed and checked like --phase-opt)."""
    from kspacify.acquisition import Acquisition
    from kspacify.options import build_options, parse_pairs

    if not pairs:
        return None
    return build_options(Acquisition, parse_pairs(pairs, "--acquisition"), "--acquisition")
