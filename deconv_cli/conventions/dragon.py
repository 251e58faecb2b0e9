"""Dragon (seeta-dragon): ``dragon.nn.conv{1,2,3}d_transpose`` with its ONNX-like keywords.

Rules (verified on Dragon 0.3.0, CPU; docs/CONVENTIONS.md section 4 and tests/golden/dragon.json), per dim
with full = (n-1)*s + d*(k-1) + 1 and op = output_padding:

    padding VALID (default), pads [b.., e..]   crop (b, e - op)          op and pads may be any integer
    SAME_UPPER + output_shape O                P = max(0, full - O); crop (floor(P/2), full - floor(P/2) - O)
    SAME / SAME_LOWER + O, or VALID + O        the same with ceil(P/2): the larger half at the beginning

- kernel_shape, strides, dilations: an int is repeated; a shorter list is padded with its last value,
  a longer one truncated. pads: 2r values are [begins..., ends...], any other length is normalised
  like strides and used on both sides. output_shape (spatial) and output_padding: exactly r values.
- kernel_shape defaults to 3: it is always checked against the weight (a mismatch aborts Dragon, or,
  when the element counts happen to agree, makes it read the weight buffer with the wrong kernel).
- only the weight's element count is checked: with NCHW a weight whose first two dims disagree with
  (C_in, C_out/group) but whose count fits is read as (C_in, C_out/group, *k) (the seed's (3, 2, 1, 1, 1)
  weight for 2 input channels is really (2, 3, 1, 1, 1)); we reshape the same way and say so in a note.
- NHWC (also for 1-D/3-D): input (N, *spatial, C), weight (C_in, *k, C_out/group), output (N, *spatial, C_out).
- the bias needs only C_out elements; output_shape with VALID switches to SAME (pads are then ignored).

Decision on ``output_padding=<int>``: Dragon documents a sequence and silently ignores an int (the
output is as if none were given). By the bug policy we read an int as repeated per dim, as every other
Dragon size argument is, and warn; ``quirks=True`` reproduces Dragon by ignoring it.

Rejected (ConfigError) because Dragon aborts the process or returns garbage: a kernel/weight mismatch,
a 1x1 kernel with stride 1 and zero pads whose output differs from the input (Dragon's GEMM shortcut
ignores output_padding/output_shape: right shape, values written contiguously at the start; this is
the seed's own conv3d_transpose example, whose shape (1, 3, 3, 3, 3) is right and values are not),
output_shape larger than full + op or of the wrong length, a negative output extent, group with NHWC,
group not dividing C_in, stride/dilation/group < 1, a bias of the wrong size; float16 and mixed
dtypes abort too (``DTYPES``). No unbatched input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..core.config import DeconvConfig, Shape
from ..core.errors import ConfigError
from ..core.shapes import full_length, split_total
from ._common import Expression, Parsed, as_int, as_ints, check_keywords, fmt

NAME = "dragon"
FRAMEWORK = "Dragon 0.3.0"
DTYPES = ("float32", "float64")
DTYPE_NOTES = {"float16": "Dragon aborts the process (FP16 is unsupported for CPUContext)"}
PADDINGS = ("VALID", "SAME", "SAME_UPPER", "SAME_LOWER")
DATA_FORMATS = ("NCHW", "NHWC")
# keywords that set the output size (deconv shape lists what they reach and solves --target-shape)
SIZE_KEYWORDS = (("output_padding", "offset"), ("output_shape", "size"))
KEYWORDS = {
    "kernel_shape": "int or ints: the kernel (default 3!); checked against the weight",
    "strides": "int or ints: stride per spatial axis (default 1)",
    "pads": "int or ints: r values (both sides) or 2r values [begins..., ends...] (default 0); VALID only",
    "dilations": "int or ints: dilation per spatial axis (default 1)",
    "group": "int: number of groups (default 1; NHWC needs 1)",
    "padding": "VALID (default, explicit pads), SAME, SAME_UPPER or SAME_LOWER (case-sensitive)",
    "output_padding": "r ints: extra size at the end of each axis, not range-checked",
    "output_shape": "r ints: target spatial output shape (switches VALID to SAME)",
    "data_format": "NCHW (default) or NHWC, for 1-D, 2-D and 3-D alike",
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
    input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
    rank = len(input_shape) - 2
    if rank not in (1, 2, 3):
        raise ConfigError(
            f"input has {len(input_shape)} dimensions {input_shape}; Dragon's conv{{1,2,3}}d_transpose needs "
            "(N, C, *spatial) or (N, *spatial, C) with 1 to 3 spatial dims (it has no unbatched input; Dragon aborts)"
        )
    padding = options.get("padding", "VALID")
    if padding not in PADDINGS:
        raise ConfigError(f"padding={padding!r}: Unsupported padding algorithm (Dragon rejects it)", f"use one of {', '.join(PADDINGS)}")
    data_format = options.get("data_format", "NCHW")
    if data_format not in DATA_FORMATS:
        raise ConfigError(f"data_format={data_format!r}: Unsupported data format (Dragon rejects it)", "use NCHW or NHWC")
    if padding != "VALID" and "output_shape" not in options:
        raise ConfigError(f"padding={padding} needs output_shape (Dragon rejects it: Excepted <output_shape> for same padding)")

    kernel, knote = _normalized("kernel_shape", options.get("kernel_shape", 3), rank)
    strides, snote = _normalized("strides", options.get("strides", 1), rank)
    dilations, dnote = _normalized("dilations", options.get("dilations", 1), rank)
    pads_begin, pads_end, pnote = _pads(options.get("pads", 0), rank)
    group = as_int("group", options.get("group", 1))
    for name, values in (("strides", strides), ("dilations", dilations), ("kernel_shape", kernel)):
        if min(values) < 1:
            raise ConfigError(f"{name}={fmt(values)} must be positive (Dragon does not check it and returns garbage)")
    if group < 1:
        raise ConfigError(f"group={group} must be positive (Dragon crashes with a floating point exception)")
    channels_last = data_format == "NHWC"
    if channels_last and group > 1:
        raise ConfigError(f"group={group} with data_format=NHWC: Dragon aborts (GroupConv(NHWC) is not supported)", "use NCHW")
    in_channels = input_shape[-1] if channels_last else input_shape[1]
    if in_channels % group:
        raise ConfigError(
            f"group={group} must divide input channels {in_channels} (Dragon does not check it and returns garbage)",
            "pick a group count that divides the channels",
        )
    out_per_group, weight_perm, wnote = _weight(weight_shape, in_channels, kernel, rank, channels_last)
    out_channels = out_per_group * group
    if bias_shape is not None and math.prod(bias_shape) != out_channels:
        raise ConfigError(
            f"bias has shape {tuple(bias_shape)} ({math.prod(bias_shape)} elements) but there are {out_channels} "
            "output channels (Dragon aborts: Check failed: count == Input(2).count())"
        )

    spatial = input_shape[1:-1] if channels_last else input_shape[2:]
    fulls = [full_length(n, k, s, d) for n, k, s, d in zip(spatial, kernel, strides, dilations)]
    output_padding, warnings, opnote = _output_padding(options.get("output_padding"), rank, quirks)
    if "output_shape" in options:
        crops, dim_notes = _crops_for_shape(options["output_shape"], rank, fulls, output_padding, padding)
    else:
        crops = [(b, e - op) for b, e, op in zip(pads_begin, pads_end, output_padding)]
        dim_notes = [
            (f"padding=VALID, pads begin {b}, end {e}, output_padding {op} -> crop ({b}, {e - op})",)
            for b, e, op in zip(pads_begin, pads_end, output_padding)
        ]
        sizes = [full - lo - hi for full, (lo, hi) in zip(fulls, crops)]
        if min(sizes) < 0:
            raise ConfigError(f"calculated output size {fmt(sizes)} is negative (Dragon aborts: Check failed: d >= 0)", "reduce pads")
    _check_1x1_path(kernel, strides, pads_begin + pads_end, spatial, fulls, crops)
    notes = tuple(n for n in (knote, snote, dnote, pnote, wnote, opnote) if n)
    if "output_shape" in options and "pads" in options:
        notes += ("output_shape given: Dragon ignores pads",)
    config = DeconvConfig(
        kernel=kernel, stride=strides, dilation=dilations, crops=tuple(crops), groups=group,
        in_channels=in_channels, out_channels=out_channels, channels_last=channels_last, weight_perm=weight_perm,
    )
    return Parsed(config, tuple(dim_notes), notes, tuple(warnings))


def _check_1x1_path(kernel, strides, pads, spatial, fulls, crops) -> None:
    """Dragon computes a 1x1 kernel with stride 1 and zero pads as one GEMM straight into the output
    buffer: when output_padding/output_shape make the output differ from the input, it keeps the right
    shape but writes the un-padded result contiguously at the start (silent garbage)."""
    if max(kernel) > 1 or max(strides) > 1 or any(pads):
        return
    sizes = tuple(full - lo - hi for full, (lo, hi) in zip(fulls, crops))
    if sizes != tuple(spatial):
        raise ConfigError(
            f"kernel_shape {fmt(kernel)} with strides 1 and zero pads, output {fmt(sizes)} != input {fmt(spatial)}: "
            "Dragon takes its 1x1 GEMM path, returns that shape but writes the un-padded result contiguously at the "
            "start of the buffer (silent garbage)",
            "drop output_padding/output_shape and pad or crop the result yourself",
        )


def _normalized(name: str, value: object, rank: int) -> tuple[Shape, str | None]:
    """Dragon's _normalize_tuple: int repeated; a short list padded with its last value; a long one cut."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise ConfigError(f"{name}=() is empty (Dragon fails on it)", f"pass an int or {rank} ints")
        values = tuple(as_int(name, v) for v in value)
        if len(values) == rank:
            return values, None
        got = values[:rank] + (values[-1],) * (rank - len(values))
        return got, f"{name}={values} normalised to {got} for {rank}-D (Dragon pads with the last value or truncates)"
    return as_ints(name, value, rank), None


def _pads(value: object, rank: int) -> tuple[Shape, Shape, str | None]:
    """2r values are [begins..., ends...]; anything else is normalised like strides and used on both sides."""
    if isinstance(value, (list, tuple)) and len(value) == 2 * rank:
        values = tuple(as_int("pads", v) for v in value)
        return values[:rank], values[rank:], None
    pads, note = _normalized("pads", value, rank)
    if note:
        note += ", used on both sides"
    return pads, pads, note


def _weight(weight_shape: Shape, in_channels: int, kernel: Shape, rank: int, channels_last: bool):
    """C_out/group from the weight's element count (all Dragon checks), its layout as a permutation."""
    layout = "(C_in, *k, C_out/group)" if channels_last else "(C_in, C_out/group, *k)"
    if len(weight_shape) != rank + 2:
        raise ConfigError(
            f"weight has {len(weight_shape)} dimensions {weight_shape} for a {rank}-D input; deconv needs {layout}",
            "reshape the weight (Dragon itself reads only its element count)",
        )
    weight_kernel = weight_shape[1:-1] if channels_last else weight_shape[2:]
    if weight_kernel != kernel:
        raise ConfigError(
            f"kernel_shape={fmt(kernel)} does not match the weight's kernel {fmt(weight_kernel)} (Dragon aborts on the "
            "element count or reads the weight with the wrong kernel; kernel_shape defaults to 3)",
            f"pass kernel_shape={fmt(weight_kernel)}",
        )
    count, per_out = math.prod(weight_shape), in_channels * math.prod(kernel)
    if count % per_out:
        raise ConfigError(
            f"weight of shape {weight_shape} has {count} elements, not a multiple of C_in * prod(kernel) = {per_out} "
            "(Dragon aborts: Check failed: count == W.count(), or reads a garbage channel count)"
        )
    out_per_group = count // per_out
    want = (in_channels, *kernel, out_per_group) if channels_last else (in_channels, out_per_group, *kernel)
    if weight_shape == want:
        return out_per_group, ((0, rank + 1, *range(1, rank + 1)) if channels_last else None), None
    if channels_last:
        raise ConfigError(
            f"weight of shape {weight_shape} is not (C_in, *k, C_out/group) = {want}; Dragon would read its buffer as "
            f"{want}, which deconv cannot reproduce for NHWC",
            f"reshape the weight to {want}",
        )
    return out_per_group, None, f"Dragon checks only the weight's element count: {weight_shape} is read as {want}"


def _output_padding(value: object, rank: int, quirks: bool) -> tuple[Shape, list[str], str | None]:
    if value is None:
        return (0,) * rank, [], None
    if isinstance(value, (list, tuple)):
        if len(value) != rank:
            raise ConfigError(
                f"output_padding={tuple(value)} has {len(value)} values for a {rank}-D convolution (Dragon aborts: "
                "Check failed: num_output_padding == 0 || num_output_padding == num_axes_)",
                f"pass {rank} values",
            )
        return tuple(as_int("output_padding", v) for v in value), [], None
    op = as_int("output_padding", value)
    if op == 0:
        return (0,) * rank, [], None
    if quirks:
        return (0,) * rank, [], f"--quirks: output_padding={op} (an int) ignored, as {FRAMEWORK} does"
    warning = (
        f"{FRAMEWORK} ignores output_padding={op} given as an int (it documents a sequence); computing it as "
        f"{fmt((op,) * rank) if rank > 1 else [op]} per dim (pass --quirks to ignore it as Dragon does)"
    )
    return (op,) * rank, [warning], None


def _crops_for_shape(value, rank, fulls, output_padding, padding):
    """output_shape O: P = max(0, full - O), split with the larger half first unless SAME_UPPER."""
    if not isinstance(value, (list, tuple)) or len(value) != rank:
        raise ConfigError(
            f"output_shape={value!r} must be a list of exactly {rank} spatial sizes (Dragon aborts: "
            "Check failed: num_output_shape == num_axes_)"
        )
    targets = tuple(as_int("output_shape", v) for v in value)
    mode = "SAME" if padding == "VALID" else padding
    crops, dim_notes = [], []
    for i, (full, op, target) in enumerate(zip(fulls, output_padding, targets)):
        if target < 0:
            raise ConfigError(f"output_shape[{i}]={target} is negative (Dragon aborts: Check failed: d >= 0)")
        if target > full + op:
            raise ConfigError(
                f"output_shape[{i}]={target} is too large: at most {full + op} (full {full} + output_padding {op}; "
                "Dragon aborts: The output shape is incorrect)",
                f"pass output_padding with at least {target - full} in dim {i}" if target > full else None,
            )
        total = max(0, full - target)
        lo, _ = split_total(total, larger_at_end=mode == "SAME_UPPER")
        crops.append((lo, full - lo - target))
        how = f"padding={padding}" + (" (switched to SAME by output_shape)" if padding == "VALID" else "")
        dim_notes.append((how, f"output_shape {target}: P = max(0, {full} - {target}) = {total} -> crop ({lo}, {full - lo - target})"))
    return crops, dim_notes


def express(config: DeconvConfig, input_shape: Shape) -> Expression:
    """Write a canonical config in Dragon's keywords: VALID with 2r pads, output_padding for negative ends."""
    input_shape = tuple(input_shape)
    rank = config.rank
    begins = [lo for lo, _ in config.crops]
    ends = [max(hi, 0) for _, hi in config.crops]
    output_padding = [max(-hi, 0) for _, hi in config.crops]
    if max(config.kernel) == 1 and max(config.stride) == 1:
        # negative end pads instead of output_padding keep Dragon off its defective 1x1 GEMM path
        ends, output_padding = [hi for _, hi in config.crops], [0] * rank
    options: dict = {
        "kernel_shape": list(config.kernel), "strides": list(config.stride), "dilations": list(config.dilation),
        "pads": begins + ends, "group": config.groups,
    }
    if any(output_padding):
        options["output_padding"] = output_padding
    weight_shape, weight, shape = config.weight_shape, "as is", input_shape
    if config.channels_last and config.groups == 1:
        # the config came from a channels-last style: keep the data in place, re-lay only the weight
        options["data_format"] = "NHWC"
        shape = (input_shape[0], *input_shape[2:], input_shape[1]) if config.batched else (*input_shape[1:], input_shape[0])
        weight_shape = (config.in_channels, *config.kernel, config.out_channels)
        weight = "transpose to (C_in, k..., C_out/group)"
    if not config.batched:
        return Expression(
            NAME, options, shape if len(shape) == rank + 2 else (1, *shape), weight_shape, weight, expressible=False,
            crop=tuple((0, 0) for _ in range(rank)),
            reason="Dragon has no unbatched input: add a batch axis of 1 and drop it from the result",
        )
    return Expression(NAME, options, shape, weight_shape, weight)
