"""Errors the CLI turns into exit codes: 1 for a failure of the work, 2 for bad usage or input."""


class EcgtoolError(Exception):
    """The work failed (exit code 1)."""

    exit_code = 1


class BadInput(EcgtoolError):
    """Bad usage or bad input (exit code 2). The message names the file and the reason, in one line."""

    exit_code = 2
