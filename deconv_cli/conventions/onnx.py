"""ONNX ``ConvTranspose`` (opset 17), as the spec defines it and onnxruntime (1.31, 1.32) runs it.

Per dimension, with full = (n-1)*s + d*(k-1) + 1 and op = output_padding (docs/CONVENTIONS.md section 6):

    auto_pad NOTSET, pads [b.., e..]   crop (b, e - op)
    auto_pad VALID                     crop (0, -op)
    output_shape O                     T = full + op - O; lo = floor(T/2) with SAME_UPPER, else ceil(T/2)
    SAME_UPPER / SAME_LOWER            as output_shape with O = n*s (odd unit at the end / beginning)

When T < 0 (the target is longer than full + op) the spec splits the negative T the same way, adding
zeros on both sides. onnxruntime (1.31 and 1.32) instead clamps: without output_shape it returns full + op, with
output_shape it appends all the zeros at the end. That is a runtime defect: by default we compute the
spec and warn; ``--quirks`` reproduces onnxruntime.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..core.config import DeconvConfig, Shape
from ..core.errors import ConfigError
from ..core.shapes import axis_names, full_length, split_total
from ._common import (
    Expression,
    Parsed,
    as_int,
    as_ints,
    check_bias,
    check_groups,
    check_kernel,
    check_keywords,
    express_first,
    fmt,
    fmt_shape,
)

NAME = "onnx"
FRAMEWORK = "ONNX ConvTranspose (opset 17; onnxruntime 1.31 and 1.32)"
RUNTIME = "onnxruntime (1.31 and 1.32)"
DTYPES = ("float16", "float32", "float64")
DTYPE_WARNINGS = {
    "float64": "onnxruntime has no float64 ConvTranspose kernel (the ONNX spec allows float64): deconv computes it, "
               "a model with a float64 ConvTranspose will not load in onnxruntime",
}
AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
# keywords that set the output size (deconv shape lists what they reach and solves --target-shape)
SIZE_KEYWORDS = (("output_padding", "offset"), ("output_shape", "size"))
KEYWORDS = {
    "kernel_shape": "ints: checked against the weight's spatial dims",
    "strides": "ints: stride per spatial axis (default 1)",
    "pads": "ints [x1_begin, x2_begin, ..., x1_end, x2_end, ...] (default 0)",
    "dilations": "ints: dilation per spatial axis (default 1)",
    "group": "int: number of groups (default 1)",
    "auto_pad": "NOTSET (default), SAME_UPPER, SAME_LOWER or VALID",
    "output_padding": "ints: extra size at the end of each axis, < stride (default 0)",
    "output_shape": "ints: target spatial output shape; pads are then computed (SAME_UPPER split, else SAME_LOWER)",
}


def parse(
    options: Mapping[str, object],
    *,
    input_shape: Shape,
    weight_shape: Shape,
    bias_shape: Shape | None = None,
    quirks: bool = False,
) -> Parsed:
    check_keywords(options, KEYWORDS, NAME)
    rank = len(input_shape) - 2
    if rank not in (1, 2, 3):
        raise ConfigError(f"input has {len(input_shape)} dimensions {tuple(input_shape)}; ONNX needs (N, C, D1, ..., Dn) with 1 to 3 spatial dims")
    if len(weight_shape) != rank + 2:
        raise ConfigError(
            f"weight has {len(weight_shape)} dimensions {tuple(weight_shape)} for a {rank}-D input: weight tensor spatial "
            "rank does not match input tensor spatial rank (onnxruntime rejects it)"
        )
    kernel = tuple(weight_shape[2:])
    if "kernel_shape" in options:
        check_kernel("kernel_shape", options["kernel_shape"], kernel, "ONNX")
    strides = as_ints("strides", options.get("strides", 1), rank)
    dilations = as_ints("dilations", options.get("dilations", 1), rank)
    output_padding = as_ints("output_padding", options.get("output_padding", 0), rank)
    group = as_int("group", options.get("group", 1))
    auto_pad = options.get("auto_pad", "NOTSET")
    if auto_pad not in AUTO_PADS:
        raise ConfigError(f"auto_pad={auto_pad!r}: unknown AutoPadType string", f"use one of {', '.join(AUTO_PADS)}")
    if "pads" in options and auto_pad != "NOTSET":
        raise ConfigError(
            f"pads cannot be used together with auto_pad={auto_pad} (onnxruntime rejects the model)",
            "drop pads or set auto_pad=NOTSET",
        )
    pads = as_ints("pads", options.get("pads", (0,) * 2 * rank), rank, lengths=(2 * rank,), scalar=False)
    if min(strides) < 1:
        raise ConfigError(f"strides={fmt(strides)} must be positive (onnxruntime rejects it)")
    if min(dilations) < 1:
        raise ConfigError(f"dilations={fmt(dilations)} must be positive (onnxruntime rejects it)")
    if min(pads) < 0:
        raise ConfigError(f"pads={fmt(pads)} must not be negative (onnxruntime rejects it)")
    for i, (op, s, d) in enumerate(zip(output_padding, strides, dilations)):
        if not 0 <= op < s:
            raise ConfigError(
                f"output_padding[{i}] ({op}) must be at least 0 and less than the stride ({s}) "
                f"(onnxruntime rejects it{'; dilation does not relax this' if op < d else ''})"
            )
    check_groups(group, input_shape[1], "ONNX")
    if weight_shape[0] != input_shape[1]:
        raise ConfigError(
            f"weight of shape {tuple(weight_shape)} has {weight_shape[0]} input channels but X has {input_shape[1]}: "
            "filter number not equal to input channel number (onnxruntime rejects it)",
            "ONNX's W is (C, M/group, k1, ...)",
        )
    out_channels = weight_shape[1] * group
    check_bias(bias_shape, out_channels, accept=[(out_channels,)], framework="ONNX (B is 1-D)")

    spatial = tuple(input_shape[2:])
    fulls = [full_length(n, k, s, d) for n, k, s, d in zip(spatial, kernel, strides, dilations)]
    targets = None
    if "output_shape" in options:
        targets = as_ints("output_shape", options["output_shape"], rank, scalar=False)
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        targets = tuple(n * s for n, s in zip(spatial, strides))

    crops, dim_notes, warnings = [], [], []
    for i in range(rank):
        full, op, s = fulls[i], output_padding[i], strides[i]
        if targets is None:
            lo, hi = (0, 0) if auto_pad == "VALID" else (pads[i], pads[i + rank])
            crops.append((lo, hi - op))
            how = "auto_pad=VALID" if auto_pad == "VALID" else f"pads begin {lo}, end {hi}"
            dim_notes.append((f"{how}, output_padding={op} -> crop ({lo}, {hi - op})",))
            continue
        crop, notes, warning = _crop_for_target(i, rank, full, op, s, targets[i], auto_pad, "output_shape" in options, quirks)
        crops.append(crop)
        dim_notes.append(notes)
        if warning:
            warnings.append(warning)

    sizes = [full - lo - hi for full, (lo, hi) in zip(fulls, crops)]
    if min(sizes) < 1:
        raise ConfigError(f"computed output dimension {fmt_shape(sizes)} is <= 0 (onnxruntime rejects it)", "reduce pads")
    config = DeconvConfig(
        kernel=kernel, stride=strides, dilation=dilations, crops=tuple(crops), groups=group,
        in_channels=input_shape[1], out_channels=out_channels,
    )
    return Parsed(config, tuple(dim_notes), warnings=tuple(warnings))


def _crop_for_target(axis, rank, full, op, stride, target, auto_pad, explicit, quirks):
    """The crop that makes one axis exactly ``target`` long (output_shape or SAME_* target n*s)."""
    source = f"output_shape {target}" if explicit else f"auto_pad={auto_pad}: target n*s = {target}"
    upper = auto_pad == "SAME_UPPER"
    total = full + op - target
    if explicit and target > full + op + stride - 1:
        raise ConfigError(
            f"output_shape[{axis}]={target} is inconsistent with the input: at most {full + op + stride - 1} "
            f"is reachable (full {full} + output_padding {op} + stride {stride} - 1; onnxruntime rejects it)"
        )
    lo, hi = split_total(total, larger_at_end=upper)
    lo_hi_note = f"total crop T = {full} + {op} - {target} = {total}, split {'floor' if upper else 'ceil'} -> ({lo}, {hi - op})"
    ort = (0, full - target) if explicit else (0, -op)
    if total >= 0 or ort == (lo, hi - op):
        return (lo, hi - op), (source, lo_hi_note), None
    # T < 0: the spec pads zeros on both sides; onnxruntime puts them all at the end.
    before, after = max(0, -lo), max(0, op - hi)
    ort_text = f"pads all {target - full} at the end (length {target})" if explicit else f"does not pad (length {full + op})"
    warning = (
        f"axis {axis_names(rank)[axis]}: {source} is longer than full + output_padding = {full + op}: the ONNX spec "
        f"pads {before} bias-only position(s) at the start and {after} at the end (length {target}), {RUNTIME} "
        f"{ort_text}"
    )
    if quirks:
        return ort, (source, f"--quirks: {RUNTIME} behaviour -> crop {ort}"), None
    return (lo, hi - op), (source, lo_hi_note), warning + "; deconv computes the spec, --quirks gives onnxruntime's result"


def express(config: DeconvConfig, input_shape: Shape) -> Expression:
    """ONNX attributes for a canonical config: pads + output_padding, else an output_shape split."""
    rank = config.rank
    shape = tuple(input_shape) if len(input_shape) == rank + 2 else (1, *input_shape)  # explain gives (N, C, ...)
    base = {"strides": list(config.stride), "dilations": list(config.dilation), "group": config.groups}
    base = {k: v for k, v in base.items() if v not in ([1] * rank, 1)}
    ops = [min(max(0, -hi), s - 1) for (_, hi), s in zip(config.crops, config.stride)]
    begins = [max(lo, 0) for lo, _ in config.crops]
    ends = [max(hi + op, 0) for (_, hi), op in zip(config.crops, ops)]
    fulls = [full_length(n, k, s, d) for n, k, s, d in zip(shape[2:], config.kernel, config.stride, config.dilation)]
    targets = [full - lo - hi for full, (lo, hi) in zip(fulls, config.crops)]

    def with_pads(pads, output_padding):
        options = dict(base)
        if any(pads):
            options["pads"] = pads
        if any(output_padding):
            options["output_padding"] = output_padding
        return options

    candidates = [
        with_pads(begins + ends, ops),
        dict(base, output_shape=targets),
        dict(base, output_shape=targets, auto_pad="SAME_UPPER"),
        with_pads(begins + ends, [0] * rank),
        with_pads([0] * 2 * rank, [0] * rank),
    ]
    return express_first(NAME, parse, config, shape, config.weight_shape, "as is: (C, M/group, *kernel_shape)", candidates)
