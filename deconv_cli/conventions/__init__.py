"""The registry of conventions ("styles"): each turns one framework's keywords into a DeconvConfig. May import core.

Every module has ``NAME``, ``FRAMEWORK`` (name and version the rules were verified on), ``KEYWORDS``
(keyword -> one-line help), ``DTYPES`` (the dtypes the framework computes in) and
``parse(options, *, input_shape, weight_shape, bias_shape, quirks) -> Parsed`` and
``express(config, input_shape) -> Expression`` (its inverse, for ``deconv explain``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..core.errors import ConfigError
from ._common import Expression, Parsed

__all__ = ["Expression", "Parsed", "STYLES", "get"]

# style name -> module name (imported on first use, so `deconv --help` stays fast)
STYLES = {
    "mindspore": "mindspore",
    "megengine": "megengine",
    "oneflow": "oneflow",
    "dragon": "dragon",
    "torch": "pytorch",
    "onnx": "onnx",
    "keras": "keras",
    "tensorflow": "tensorflow",
    "jax": "jax",
    "flax": "flax",
    "paddle": "paddle",
}


def get(style: str) -> ModuleType:
    """The convention module for ``style``; an unknown name gets the list of available ones."""
    try:
        module = STYLES[style]
    except KeyError:
        raise ConfigError(f"unknown style '{style}'", f"available styles: {', '.join(sorted(STYLES))}") from None
    return importlib.import_module(f".{module}", __name__)
