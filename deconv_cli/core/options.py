"""``KEY=VALUE`` options as the command line (``--set``) and batch manifests (``set``) spell them."""

from __future__ import annotations

import ast
import re

from .errors import ConfigError

_BARE_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_set(items, *, flag: str = "--set") -> dict[str, object]:
    """``KEY=VALUE`` pairs; VALUE is a Python literal (ast.literal_eval), bare words are strings."""
    options: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"{flag} {item!r} is not KEY=VALUE", f"write e.g. {flag} stride=2")
        if key in options:
            raise ConfigError(f"{flag} {key} is given twice", "keep one")
        text = text.strip()
        try:
            options[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            if not _BARE_WORD.match(text):
                raise ConfigError(
                    f"{flag} {key}={text}: the value is not a Python literal",
                    "use a number, a tuple like (2,1,1), a list, or a word like same",
                ) from None
            options[key] = text
    return options
