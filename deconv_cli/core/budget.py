"""How many bytes a job may hold in memory (DECONV_MEMORY_BUDGET), and byte counts for people."""

from __future__ import annotations

import math
import os
import re

from .errors import ConfigError

ITEMSIZE = {"float16": 2, "float32": 4, "float64": 8}
# Above this many bytes of input + output, a job streams tiles (batch slices, spatial blocks) from and to disk.
DEFAULT_MEMORY_BUDGET = 2 << 30
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:E[+-]?[0-9]+)?)\s*([KMGT]?)(?:I?B)?")
# numpy cannot index more bytes than this in one array
MAX_ARRAY_BYTES = (1 << 63) - 1


def memory_budget() -> int:
    """Bytes of input + output a job may hold in memory (DECONV_MEMORY_BUDGET overrides, e.g. 512M, 1.5G)."""
    text = os.environ.get("DECONV_MEMORY_BUDGET", "").strip()
    if not text:
        return DEFAULT_MEMORY_BUDGET
    match = _SIZE.fullmatch(text.upper())
    if match is None:
        raise ConfigError(f"DECONV_MEMORY_BUDGET={text!r} is not a size", "write e.g. 512M or 4G")
    number = float(match[1])
    if not math.isfinite(number):
        raise ConfigError(f"DECONV_MEMORY_BUDGET={text!r} is not a size", "write e.g. 512M or 4G")
    if number * _UNITS[match[2]] < 1:
        raise ConfigError(f"DECONV_MEMORY_BUDGET={text!r} is not a positive size", "write e.g. 512M or 4G")
    return int(number * _UNITS[match[2]])


def suggest_budget(n: int) -> str:
    """A DECONV_MEMORY_BUDGET value of at least n bytes, in the largest unit that keeps it whole."""
    for unit in ("T", "G", "M", "K"):
        scale = _UNITS[unit]
        if n >= 10 * scale or unit == "K":
            return f"{-(-n // scale)}{unit}"
    return str(n)


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB' (binary units, as DECONV_MEMORY_BUDGET's K/M/G)."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        value /= 1024
        if value < 1024 or unit == "EiB":
            return f"{value:.1f} {unit}"
    raise AssertionError  # unreachable
