"""ONNX models: every ``ConvTranspose`` node of the main graph as a Layer in the ``onnx`` style.

The node's attributes are the onnx style's keywords as they stand (ONNX ConvTranspose, opsets 1 to 22 share
them); its W and B inputs are tensors the model stores (initializers, or Constant nodes' tensors), read lazily through ``tensor_io`` (``model.onnx:name``), from the
model or from external data files beside it. The input shape is what the model records for X (graph inputs,
value_info, or onnx's shape inference where the model has none).
"""

from __future__ import annotations

from ..core.errors import ConfigError, DeconvError
from ..tensor_io.onnx import ModelError, external_file, initializers, onnx_package, read_model
from . import Layer

OP = "ConvTranspose"
# The spec's ConvTranspose attributes and their types (AttributeProto type names)
ATTRIBUTES = {
    "auto_pad": "STRING", "dilations": "INTS", "group": "INT", "kernel_shape": "INTS", "output_padding": "INTS",
    "output_shape": "INTS", "pads": "INTS", "strides": "INTS",
}


def _is_deconv(node) -> bool:
    return node.op_type == OP and node.domain in ("", "ai.onnx")


def layers(path: str) -> list[Layer]:
    model = read_model(path)
    graph = model.graph
    tensors = initializers(path)
    produced = {out for node in graph.node for out in node.output}
    graph_inputs = {v.name for v in graph.input}
    shapes = _recorded_shapes(model)
    found = []
    for node in graph.node:
        if not _is_deconv(node):
            continue
        index = len(found)
        name = node.name or f"{OP}_{index}"
        try:
            found.append(_layer(path, node, name, index, tensors, produced | graph_inputs, shapes))
        except DeconvError as problem:  # this layer's own: the model's other layers stay usable
            found.append(Layer(model=path, name=name, index=index, op=OP, style="onnx", problem=problem))
    return found


def other_node(path: str, name: str) -> str | None:
    """The op type of the node called ``name`` when it is not a ConvTranspose (for the error line)."""
    for node in read_model(path).graph.node:
        if node.name == name and not _is_deconv(node):
            return f"{node.op_type} node"
    return None


def _layer(path, node, name, index, tensors, computed, shapes) -> Layer:
    where = f"{path}: ConvTranspose '{name}'"
    if len(node.input) < 2 or not node.input[0] or not node.input[1]:
        raise ModelError(f"{where} has {len(node.input)} inputs; the spec needs X and W (and optionally B)",
                         "re-export the model")
    weight = _initializer(where, "W", node.input[1], tensors, computed, path)
    bias = None
    if len(node.input) > 2 and node.input[2]:
        bias = _initializer(where, "B", node.input[2], tensors, computed, path)
    onnx = onnx_package()
    dtype = onnx.helper.tensor_dtype_to_np_dtype(weight.data_type).name if weight.data_type else "undefined"
    return Layer(
        model=path, name=name, index=index, op=OP, style="onnx", options=_options(where, node, onnx),
        weight=f"{path}:{weight.name}", bias=None if bias is None else f"{path}:{bias.name}",
        weight_shape=tuple(int(d) for d in weight.dims), bias_shape=None if bias is None else tuple(int(d) for d in bias.dims),
        input_shape=shapes.get(node.input[0]), dtype=dtype,
    )


def _initializer(where, role, name, tensors, computed, path):
    tensor = tensors.get(name)
    if tensor is None:
        if name in computed:
            raise ConfigError(f"{where}: its {role} '{name}' is computed in the graph, not stored in the model",
                              "deconv reads layers whose weight and bias the model stores (export with constant folding)")
        raise ModelError(f"{where}: its {role} initializer '{name}' is missing from the model",
                         "re-export the model with its initializers")
    external_file(path, tensor)
    return tensor


def _options(where, node, onnx) -> dict:
    options = {}
    for attribute in node.attribute:
        expected = ATTRIBUTES.get(attribute.name)
        if expected is None:
            raise ConfigError(f"{where} has the attribute '{attribute.name}', which the ONNX spec does not allow "
                              "for ConvTranspose", f"the spec allows: {', '.join(sorted(ATTRIBUTES))}")
        kind = onnx.AttributeProto.AttributeType.Name(attribute.type)
        if kind != expected:
            raise ConfigError(f"{where}: attribute '{attribute.name}' is {kind}; the ONNX spec makes it {expected}",
                              "re-export the model")
        value = onnx.helper.get_attribute_value(attribute)
        options[attribute.name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else (
            list(value) if kind == "INTS" else value)
    return options


def _recorded_shapes(model) -> dict[str, tuple[int | None, ...]]:
    """{value name: shape} from the model's records, completed by onnx's shape inference where it can."""
    onnx = onnx_package()
    values = list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)
    try:
        inferred = onnx.shape_inference.infer_shapes(_without_data(model, onnx))
        values += list(inferred.graph.value_info) + list(inferred.graph.output)
    except Exception:  # inference is a convenience: a model it cannot follow still lists its layers
        pass
    shapes = {}
    for value in values:
        if value.name in shapes or not value.type.HasField("tensor_type"):
            continue
        tensor_type = value.type.tensor_type
        if tensor_type.HasField("shape"):
            shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
    return shapes


def _without_data(model, onnx):
    """The model with its initializers as typed graph inputs: what shape inference needs, without copying
    (inference serializes the model) hundreds of megabytes of weights."""
    graph = model.graph
    named = {value.name for value in graph.input}  # IR < 4 lists initializers among the inputs too
    stand_ins = [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                 for t in graph.initializer if t.name not in named]
    light = onnx.helper.make_graph(list(graph.node), graph.name, list(graph.input) + stand_ins, list(graph.output),
                                   value_info=list(graph.value_info))
    return onnx.helper.make_model(light, ir_version=model.ir_version, opset_import=list(model.opset_import),
                                  functions=list(model.functions))
