"""The one exception type of deconv_cli.

Any module may raise it; only ``cli.py`` turns it into output: one line on stderr,
``Error: <what is wrong>. <how to fix it>``, and the exit code below. No traceback.
"""

from __future__ import annotations


class DeconvError(Exception):
    """A problem the user can act on. ``exit_code`` 1: a runtime failure (files, devices)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message.rstrip(".")
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}. {self.hint}" if self.hint else f"{self.message}."


class ConfigError(DeconvError):
    """Bad options or shapes: the framework would reject the configuration. Exit code 2."""

    exit_code = 2


class TensorFileError(DeconvError):
    """A tensor file that cannot be read or written. Exit code 1."""
