"""``.onnx``: the tensors a model stores (initializers, Constant nodes) by name (``model.onnx:name``), read only.

The model is parsed with the ``onnx`` package (the ``onnx`` extra, imported only here) without its external
data: shapes and dtypes come from the initializers' headers, and a tensor's bytes are read only when it is
loaded, from the model itself or from its external data file beside the model. ``deconv_cli.models.onnx``
reads the graph (ConvTranspose nodes) from the same parsed model.
"""

from __future__ import annotations

import os

from ..core.errors import TensorFileError
from ._common import ArrayInfo, Ref, missing

STREAMS = False  # read only
CONTAINER = True


class ModelError(TensorFileError):
    """A file that is not a usable model (not ONNX, a missing external data file): exit code 2, the
    model would not load in its framework either."""

    exit_code = 2


_CACHE: dict[str, tuple[tuple, object]] = {}  # path -> ((size, mtime), ModelProto): a job asks several times


def onnx_package():
    try:
        import onnx
    except ImportError:
        raise ModelError("reading .onnx models needs the onnx package", "pip install 'deconv-cli[onnx]'") from None
    return onnx


def read_model(path: str):
    """The parsed ModelProto (external data not loaded); ModelError when the file is not an ONNX model."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise TensorFileError(f"{path}: no such file", "check the path") from None
    stamp = (st.st_size, st.st_mtime_ns)
    cached = _CACHE.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    onnx = onnx_package()
    not_model = ModelError(f"{path} is not an ONNX model", "give a .onnx file saved by onnx.save or torch.onnx.export")
    try:
        model = onnx.ModelProto()
        with open(path, "rb") as f:
            model.ParseFromString(f.read())  # the bytes are freed at once, not held beside the parsed model
    except OSError as exc:
        raise TensorFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception:  # protobuf's DecodeError (and RuntimeError from its C++ parser)
        raise not_model from None
    if model.ir_version < 1 or not model.HasField("graph"):
        raise not_model
    _CACHE.clear()  # one model at a time: a big one is not kept twice
    _CACHE[path] = (stamp, model)
    return model


def initializers(path: str) -> dict:
    """{name: TensorProto} of every tensor the model's main graph stores: its initializers, the tensors of its
    ``Constant`` nodes (some exporters keep weights there), and ``Identity`` nodes of either (a weight shared
    under a second name), each under the name the graph gives it."""
    graph = read_model(path).graph
    found = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or len(node.output) != 1:
            continue
        if node.op_type == "Constant" and [a.name for a in node.attribute] == ["value"]:
            found.setdefault(node.output[0], _named(node.attribute[0].t, node.output[0]))
        elif node.op_type == "Identity" and len(node.input) == 1 and node.input[0] in found:
            found.setdefault(node.output[0], _named(found[node.input[0]], node.output[0]))
    return found


def _named(tensor, name: str):
    if tensor.name == name:
        return tensor
    copy = onnx_package().TensorProto()
    copy.CopyFrom(tensor)
    copy.name = name
    return copy


def external_file(path: str, tensor) -> str | None:
    """The external data file a tensor's bytes live in (None when they are inside the model); checked to
    exist and to lie in the model's folder, as onnx requires."""
    if tensor.data_location != onnx_package().TensorProto.EXTERNAL:
        return None
    entries = {e.key: e.value for e in tensor.external_data}
    location = entries.get("location", "")
    folder = os.path.dirname(os.path.abspath(path))
    target = os.path.normpath(os.path.join(folder, location))
    if not location or os.path.isabs(location) or os.path.dirname(os.path.relpath(target, folder)).startswith(".."):
        raise ModelError(f"{path}: initializer '{tensor.name}' points outside the model's folder ({location!r})",
                         "keep external data files beside the model")
    if not os.path.isfile(target):
        raise ModelError(f"{path}: initializer '{tensor.name}' lives in the external data file {location}, which is "
                         f"missing from {folder}", "copy the data file next to the model")
    return target


def _info(tensor) -> ArrayInfo:
    onnx = onnx_package()
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).name
    except (KeyError, ValueError, TypeError):
        dtype = onnx.TensorProto.DataType.Name(tensor.data_type).lower() if tensor.data_type else "undefined"
    return ArrayInfo(tensor.name, tuple(int(d) for d in tensor.dims), dtype)


def describe(ref: Ref) -> list[ArrayInfo]:
    found = initializers(ref.path)
    if ref.key is not None and ref.key not in found:
        raise missing(ref, ref.key, sorted(found))
    chosen = [found[ref.key]] if ref.key is not None else [found[n] for n in sorted(found)]
    for tensor in chosen:
        external_file(ref.path, tensor)
    return [_info(t) for t in chosen]


def load(ref: Ref, info: ArrayInfo):
    onnx = onnx_package()
    tensor = initializers(ref.path)[info.name]
    target = external_file(ref.path, tensor)
    if target is not None:
        tensor = _with_external_bytes(onnx, tensor, target)
    return onnx.numpy_helper.to_array(tensor)


def _with_external_bytes(onnx, tensor, target: str):
    """A copy of the tensor with its bytes read from ``target`` (offset and length as recorded)."""
    entries = {e.key: e.value for e in tensor.external_data}
    offset, length = int(entries.get("offset", 0) or 0), entries.get("length")
    with open(target, "rb") as f:
        f.seek(offset)
        data = f.read(-1 if length is None else int(length))
    expected = ArrayInfo("", tuple(tensor.dims), "")
    copy = onnx.TensorProto()
    copy.CopyFrom(tensor)
    del copy.external_data[:]
    copy.data_location = onnx.TensorProto.DEFAULT
    copy.raw_data = data
    itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    if len(data) != itemsize * _count(expected.shape):
        raise ModelError(f"{target} holds {len(data)} bytes for initializer '{tensor.name}', which needs "
                         f"{itemsize * _count(expected.shape)}", "re-save the model with its external data")
    return copy


def _count(shape) -> int:
    total = 1
    for d in shape:
        total *= d
    return total
