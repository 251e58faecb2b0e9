"""The one exception type of deconv_cli.

Any module may raise it; only the command line (``deconv_cli/cli/``) turns it into output: one line on stderr,
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

    def __reduce__(self):
        """Pickle with the hint (a task's error crosses a process boundary in batch and Dask runs)."""
        return self.__class__, (self.message, self.hint)

    def __str__(self) -> str:
        """``<problem>. <Fix>.``: the hint is a sentence of its own."""
        if not self.hint:
            return f"{self.message}."
        hint = self.hint[0].upper() + self.hint[1:]
        return f"{self.message}. {hint}" + ("" if hint[-1] in ".?!" else ".")


class ConfigError(DeconvError):
    """Bad options or shapes: the framework would reject the configuration. Exit code 2."""

    exit_code = 2


class TensorFileError(DeconvError):
    """A tensor file that cannot be read or written. Exit code 1."""
