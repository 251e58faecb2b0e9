"""``deconv layers MODEL``: the porting report, every transposed convolution of a model at once.

Each layer is planned like ``deconv shape`` plans it (its style's keywords against its shapes); its output
shape is reported where the model records the layer's input shape. ``--to STYLE`` writes each layer with
``explain`` and ``--code`` adds ``snippets``' runnable code. Where the model does not record an input's
spatial size, a stand-in size plans the layer: the keywords' translation does not depend on it unless the
keywords themselves do (a target size, a 'same' padding), and those layers say so instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

from .. import conventions
from ..conventions.plan import plan
from ..core.errors import DeconvError
from ..core.shapes import Derivation
from .explain import Explanation, explain, set_item

STAND_IN = 8  # spatial size that plans a layer whose input size the model does not record


@dataclass(frozen=True)
class Entry:
    layer: object  # models.Layer
    record: Derivation | None  # None: the keywords cannot be planned without the input size
    assumed: bool  # the record's spatial input size is a stand-in
    explanation: Explanation | None = None
    code: str | None = None
    note: str | None = None  # why there is no translation
    error: DeconvError | None = None  # why the layer has no report: unreadable, or keywords that do not plan

    @property
    def output_shape(self) -> list | None:
        if self.assumed or self.record is None:
            return None
        recorded = self.layer.input_shape
        shape = list(self.record.output_shape)
        return [None, *shape[1:]] if recorded[0] is None else shape

    def as_dict(self) -> dict:
        layer = self.layer
        if layer.problem is not None:  # unreadable: no shapes to report
            return {"name": layer.name, "index": layer.index, "op": layer.op, "error": str(layer.problem)}
        data = {
            "name": layer.name, "index": layer.index, "op": layer.op, "rank": layer.rank, "style": layer.style,
            "set": [set_item(k, v) for k, v in layer.options.items()],
            "input_shape": None if layer.input_shape is None else list(layer.input_shape),
            "weight_shape": list(layer.weight_shape),
            "bias_shape": None if layer.bias_shape is None else list(layer.bias_shape),
            "output_shape": self.output_shape, "dtype": layer.dtype,
        }
        if self.explanation is not None:
            data["to"] = self.explanation.as_dict()
        if self.error is not None:
            data["error"] = str(self.error)
        elif self.note is not None:
            data["to"] = {"note": self.note}
        if self.code is not None:
            data["code"] = self.code
        return data


def _planning_shape(layer) -> tuple[tuple[int, ...], bool]:
    """The input shape to plan with, and whether its spatial size is a stand-in."""
    channels = layer.weight_shape[0]
    recorded = layer.input_shape
    if recorded is None or len(recorded) != layer.rank + 2 or any(d is None for d in recorded[1:]):
        return (1, channels, *(STAND_IN,) * layer.rank), True
    return (1 if recorded[0] is None else recorded[0], *recorded[1:]), False


def _size_dependent(layer) -> bool:
    """Whether the layer's keywords depend on the input size (a target size, a 'same' padding)."""
    module = conventions.get(layer.style)
    sized = {key for key, kind in getattr(module, "SIZE_KEYWORDS", ()) if kind != "offset"}
    return any(key in sized or (isinstance(value, str) and value.lower().startswith("same"))
               for key, value in layer.options.items())


def entries(layers, target: str | None = None, code: bool = False) -> list[Entry]:
    out = []
    for layer in layers:
        if layer.problem is not None:
            out.append(Entry(layer, None, False, note=f"cannot be read: {layer.problem}", error=layer.problem))
            continue
        shape, assumed = _planning_shape(layer)
        try:
            record = plan(layer.style, layer.options, shape, layer.weight_shape, layer.bias_shape)
        except DeconvError as error:
            if assumed and _size_dependent(layer):  # e.g. an output_shape: the stand-in size is the problem
                out.append(Entry(layer, None, True, note=_needs_size(layer, target)))
            else:  # the model's own keywords and shapes do not plan: this layer's report is the error
                named = type(error)(f"{layer.model}#{layer.name}: {error.message}", error.hint)
                out.append(Entry(layer, None, assumed, note=f"cannot be planned: {error}", error=named))
            continue
        out.append(_translate(layer, record, assumed, target, code))
    return out


def _translate(layer, record, assumed, target, code) -> Entry:
    if target is None:
        return Entry(layer, record, assumed)
    if assumed and _size_dependent(layer):
        return Entry(layer, record, assumed, note=_needs_size(layer, target))
    explanation = explain(record, target)
    text = None
    if code:
        from .snippets import snippet

        text = snippet(record, explanation, {"input": None, "weight": layer.weight, "bias": layer.bias})
    return Entry(layer, record, assumed, explanation, text)


def _needs_size(layer, target: str | None) -> str:
    how = f"--to {target}" if target else "--to STYLE"
    return (f"its keywords depend on the input size, which the model does not record: deconv explain "
            f"'{layer.model}#{layer.name}' --input-shape ... {how}")


def _shape(shape) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def print_layers(model: str, found: list[Entry], stream: TextIO) -> None:
    from .report import emit

    lines = [f"{model}: {len(found)} transposed convolution{'s' if len(found) != 1 else ''}"]
    for entry in found:
        layer = entry.layer
        if layer.problem is not None:
            lines += [f"#{layer.index} {layer.name}  {layer.op}", f"    note: {entry.note}"]
            continue
        shapes = [f"input {_shape(layer.input_shape)}" if layer.input_shape is not None else "input not recorded",
                  f"weight {_shape(layer.weight_shape)}"]
        if layer.bias_shape is not None:
            shapes.append(f"bias {_shape(layer.bias_shape)}")
        if entry.output_shape is not None:
            shapes.append(f"-> output {_shape(entry.output_shape)}")
        lines.append(f"#{layer.index} {layer.name}  {layer.op} {layer.rank}-D  {'  '.join(shapes)}")
        lines.append(f"    {layer.style}: {' '.join(set_item(k, v) for k, v in layer.options.items()) or '(defaults)'}")
        lines += _translation_lines(entry)
    emit(lines, stream)


def _translation_lines(entry: Entry) -> list[str]:
    if entry.note is not None:
        return [f"    note: {entry.note}"]
    e = entry.explanation
    if e is None:
        return []
    verdict = "" if e.expression.expressible else f"  (not expressible exactly: {e.expression.reason})"
    return [f"    {e.expression.style}: {' '.join(e.set) or '(defaults)'}{verdict}", f"      weight: {e.weight}"]


def print_code(found: list[Entry], stream: TextIO) -> None:
    """Every layer's snippet, one after the other: the whole output is one runnable Python file."""
    for entry in found:
        layer = entry.layer
        keywords = " ".join(set_item(k, v) for k, v in layer.options.items()) or "(defaults)"
        stream.write(f"# ---- #{layer.index} {layer.name}: {layer.style} {keywords}\n")
        stream.write(f"# no code: {entry.note}\n\n" if entry.code is None else entry.code + "\n")
