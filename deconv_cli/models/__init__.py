"""Layers straight from model files: ``MODEL#LAYER`` stands for a weight, a bias, a style and its keywords.
May import core and tensor_io.

One module per model format (``onnx.py``) returns the model's transposed convolutions as ``Layer`` records:
name, index, op, the style whose keywords the model writes, those keywords, and the weight and bias as tensor
references (``model.onnx:initializer``) that ``tensor_io`` reads lazily, so that ``deconv shape`` and
``deconv layers`` read headers only. The commands above resolve a layer source here and then take their
usual paths.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field

from ..core.errors import ConfigError, DeconvError

# extension -> format module
FORMATS = {".onnx": "onnx", ".keras": "keras"}


@dataclass(frozen=True)
class Layer:
    """One transposed convolution of a model. ``weight``/``bias`` are tensor references; ``input_shape`` is
    what the model records for the layer's input (None where it records nothing; a None dim where it is
    symbolic, like a batch size)."""

    model: str
    name: str
    index: int
    op: str
    style: str
    options: dict = field(default_factory=dict)
    weight: str = ""
    bias: str | None = None
    weight_shape: tuple[int, ...] = ()
    bias_shape: tuple[int, ...] | None = None
    input_shape: tuple[int | None, ...] | None = None
    dtype: str = "float32"
    problem: DeconvError | None = None  # why this layer cannot be read (raised when it is chosen; listed otherwise)

    @property
    def rank(self) -> int:
        return len(self.weight_shape) - 2

    def load_weight(self):
        return _load(self.weight)

    def load_bias(self):
        return None if self.bias is None else _load(self.bias)


def _load(reference: str):
    from .. import tensor_io

    return tensor_io.load(tensor_io.parse_ref(reference))


def split(text: str) -> tuple[str, str] | None:
    """``(model path, layer)`` when ``text`` is a layer source ``MODEL.ext#LAYER``, else None."""
    at = text.rfind("#")
    while at > 0:
        path = text[:at]
        if os.path.splitext(path)[1].lower() in FORMATS:
            return path, text[at + 1:]
        at = text.rfind("#", 0, at)
    return None


def is_layer_source(text: str | None) -> bool:
    return text is not None and split(text) is not None


def format_of(path: str):
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise ConfigError(f"{path} is not a model file deconv reads", f"give a {', '.join(FORMATS)} model")
    return importlib.import_module(f".{FORMATS[ext]}", __name__)


def layers(path: str) -> list[Layer]:
    """Every transposed convolution in the model, in the model's order."""
    return format_of(path).layers(path)


def layer(source: str) -> Layer:
    """The layer ``MODEL#NAME`` or ``MODEL#N`` (the N-th transposed convolution) names."""
    parts = split(source)
    if parts is None:
        raise ConfigError(f"'{source}' is not a layer source", "write MODEL.onnx#NODE or MODEL.onnx#N")
    path, wanted = parts
    module = format_of(path)
    found = module.layers(path)
    chosen = next((item for item in found if item.name == wanted), None)
    if chosen is None and wanted.isdigit() and int(wanted) < len(found):
        chosen = found[int(wanted)]
    if chosen is not None:
        if chosen.problem is not None:
            raise chosen.problem
        return chosen
    other = getattr(module, "other_node", lambda p, n: None)(path, wanted)
    listed = ", ".join(f"#{i.index} {i.name}" for i in found) or "none"
    if other is not None:
        raise ConfigError(f"{path}: '{wanted}' is a {other}, not a transposed convolution",
                          f"the transposed convolutions are: {listed}")
    what = f"only {len(found)} transposed convolutions" if wanted.isdigit() else f"no transposed convolution '{wanted}'"
    raise ConfigError(f"{path} has {what}", f"the ones it has: {listed}")
