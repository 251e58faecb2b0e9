"""Keras 3 ``.keras`` models: every Conv1DTranspose, Conv2DTranspose and Conv3DTranspose as a Layer in the
``keras`` style, read with ``json`` and ``h5py`` (no TensorFlow, no Keras).

``config.json`` gives each layer's keywords (Keras's own names: filters, kernel_size, strides, padding,
output_padding, data_format, dilation_rate, use_bias) and its input shape (``build_config``, else the
recorded input tensor). ``model.weights.h5`` stores a layer's variables under the path Keras's saver gives
it: in each container, the snake_case class name, numbered ``_1``, ``_2``... in the container's order
(``layers/conv2d_transpose_1/vars/0`` is the second Conv2DTranspose's kernel, ``vars/1`` its bias), nested
models one ``layers/`` level deeper. The layer's activation, when not linear, is not part of the keywords:
deconv computes the transposed convolution and its bias only.
"""

from __future__ import annotations

import re

from ..tensor_io.keras import read_config, weights
from ..tensor_io.onnx import ModelError
from . import Layer

RANKS = {"Conv1DTranspose": 1, "Conv2DTranspose": 2, "Conv3DTranspose": 3}
KEYWORDS = ("filters", "kernel_size", "strides", "padding", "output_padding", "data_format", "dilation_rate", "use_bias")
CONTAINERS = ("Functional", "Sequential", "Model")


def snake_case(name: str) -> str:
    """Keras's own conversion of a class name to a weights-file path element (Conv2DTranspose -> conv2d_transpose)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _walk(config: dict, prefix: str):
    """(entry, weights path) of every layer in a container's config, nested containers included."""
    used: dict[str, int] = {}
    for entry in config.get("config", {}).get("layers", []):
        base = snake_case(str(entry.get("class_name", "")))
        if base in used:
            used[base] += 1
            key = f"{base}_{used[base]}"
        else:
            used[base] = 0
            key = base
        path = f"{prefix}layers/{key}"
        if entry.get("class_name") in CONTAINERS:
            yield from _walk(entry, path + "/")
        else:
            yield entry, path


def layers(path: str) -> list[Layer]:
    config = read_config(path)
    found = []
    with weights(path) as h5:
        for entry, where in _walk(config, ""):
            rank = RANKS.get(entry.get("class_name"))
            if rank is not None:
                found.append(_layer(path, entry, where, len(found), rank, h5))
    return found


def other_node(path: str, name: str) -> str | None:
    for entry, _ in _walk(read_config(path), ""):
        if _name(entry) == name and entry.get("class_name") not in RANKS:
            return f"{entry.get('class_name')} layer"
    return None


def _name(entry: dict) -> str:
    return str(entry.get("config", {}).get("name") or entry.get("name") or "")


def _layer(path, entry, where, index, rank, h5) -> Layer:
    settings = entry.get("config", {})
    name = _name(entry) or f"{entry['class_name']}_{index}"
    options = {key: _plain(settings[key]) for key in KEYWORDS if settings.get(key) is not None}
    kernel = _variable(path, name, h5, f"{where}/vars/0", "kernel")
    bias = _variable(path, name, h5, f"{where}/vars/1", "bias") if settings.get("use_bias", True) else None
    return Layer(
        model=path, name=name, index=index, op=entry["class_name"], style="keras", options=options,
        weight=f"{path}:{where}/vars/0", bias=None if bias is None else f"{path}:{where}/vars/1",
        weight_shape=tuple(kernel.shape), bias_shape=None if bias is None else tuple(bias.shape),
        input_shape=_input_shape(entry, rank), dtype=kernel.dtype.name,
    )


def _variable(path, name, h5, where, role):
    if where not in h5:
        raise ModelError(f"{path}: layer '{name}' has no {role} in model.weights.h5 (expected {where})",
                         "re-save the model with Keras 3's model.save")
    return h5[where]


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _input_shape(entry: dict, rank: int):
    shape = (entry.get("build_config") or {}).get("input_shape")
    if shape is None:
        try:
            shape = entry["inbound_nodes"][0]["args"][0]["config"]["shape"]
        except (KeyError, IndexError, TypeError):
            return None
    if not isinstance(shape, list) or len(shape) != rank + 2:
        return None
    return tuple(d if isinstance(d, int) else None for d in shape)
