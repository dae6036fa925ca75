"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""


class ReconError(Exception):
    """A user-facing failure: bad input file, bad option, missing run folder, ...

    The message is one line that says what is wrong and, where it helps, what to do about it.
    """

    exit_code = 2


class InputError(ReconError):
    """An input file is missing, unreadable, empty, corrupt or degenerate."""


class RunDirError(ReconError):
    """A run folder is missing, incomplete, or would be overwritten without ``--force``."""


class ConfigError(ReconError):
    """An option or configuration value is out of range or unknown."""


class FitRefusedError(ReconError):
    """A fit ran, but its surface failed the check against the scan with every start tried."""

    exit_code = 3
