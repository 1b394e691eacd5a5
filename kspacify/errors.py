"""The one root of the errors a user can cause or meet: a bad option, an unreadable input, data that
cannot be used as asked. The CLI prints such an error as one line and exits with its `exit_code`;
any other exception is a bug, and keeps its traceback so that it gets reported."""

from __future__ import annotations


class KspacifyError(Exception):
    """Something about the user's input, options or data, said in one line (`str(error)`)."""

    exit_code = 1


class UsageError(KspacifyError, ValueError):
    """A bad option, argument or combination of them: nothing was done (exit code 2). Also a
    ValueError, which is what a bad value is to library callers."""

    exit_code = 2


class OptionError(UsageError):
    """A setting of a registered plug-in (phase method, coil model, ...) that cannot be used."""


class DataError(KspacifyError, ValueError):
    """Data that cannot be used as asked: no complex volumes, too few subjects to split, a file a
    reader listed but cannot read, a splits file that does not fit the data (exit code 2)."""

    exit_code = 2


class VolumeError(KspacifyError):
    """One volume cannot be converted (its values are not magnitudes, it needs more memory than
    there is, ...): that volume fails, the run goes on (exit code 1 at the end)."""
