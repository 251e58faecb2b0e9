"""MindSpore: ``ops.Conv3DTranspose`` (3-D input) and ``ops.Conv2DTranspose`` (2-D input, with ``input_size``).

Rules, verified on MindSpore 2.10 CPU (docs/CONVENTIONS.md section 1, re-checked by make_mindspore_goldens.py).
Per dimension, full = (n-1)*s + dk with dk = d*(k-1) + 1:

    Conv3DTranspose 'pad', pad (h, t), op   crop (h, t - op)
    Conv3DTranspose 'valid'                 crop (0, min(0, dk - s))     -> max(full, n*s): zero tail if s > dk
    Conv3DTranspose 'same'                  T = dk - s; crop (floor(max(T, 0)/2), T - lo)   -> n*s
    Conv2DTranspose, input_size H           crop (top, full - top - H); H is accepted when a forward Conv2D of
                                            the result gives back n: trunc((H + top + bottom - dk)/s) + 1 == n
                                            ('valid': top = bottom = 0), 'same': ceil(H/s) == n with
                                            top = floor(max(0, (n-1)*s + dk - H)/2)

Decisions where MindSpore is odd:
- output_padding (3-D): documented and checked in Python as [0, max(stride, dilation)); the CPU kernel fails for
  stride <= op < dilation (oneDNN "could not create a primitive descriptor"). That is a CPU defect: we compute the
  documented (torch-like) result and warn; ``quirks=True`` rejects as the CPU does.
- Things MindSpore accepts but ignores (Conv2DTranspose kernel_size that disagrees with the weight, the N/C entries of
  4-tuple stride/dilation, pad_list under 'valid'/'same') are rejected when they disagree with what is computed.
  ``in_channel``/``out_channel`` are not checked against the tensors by MindSpore either: they only feed the group
  range check, and so here (a note says when they differ from the tensors).
- Lists are taken where MindSpore insists on tuples (``pad=[1, 1, 0, 0, 1, 1]``).
- The ops take no bias: a (C_out,) bias is added after, as ``nn.Conv*dTranspose(has_bias=True)`` does.
- Conv3DTranspose's stride-product checks read the padded (1, 1, sd, sh, sw) at the wrong indices, so what they
  really enforce is depth stride <= 256 (257 is rejected; docs/CONVENTIONS.md section 1 says they never fire).
- Output size 0 is allowed (MindSpore returns an empty tensor); negative sizes are rejected.
- 1-D (``nn.Conv1dTranspose``) is out of scope; float64 is rejected (TypeError in MindSpore).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..core.config import DeconvConfig, Shape
from ..core.errors import ConfigError
from ..core.shapes import dilated_kernel, full_length
from ._common import Expression, Parsed, as_int, as_ints, check_bias, check_keywords, compact, express_first, fmt

NAME = "mindspore"
FRAMEWORK = "MindSpore 2.10"
DTYPES = ("float16", "float32")
DTYPE_NOTES = {"float64": "MindSpore raises TypeError"}
PAD_MODES = ("valid", "same", "pad")
ONEDNN = "could not create a primitive descriptor"
SIZE_KEYWORDS = (("output_padding", "offset"), ("input_size", "full_size"))
KEYWORDS = {
    "pad_mode": "'valid' (default), 'same' or 'pad' (case-insensitive; Conv2DTranspose: write 'pad' in lowercase)",
    "pad": "int, 6-tuple (d_head, d_tail, top, bottom, left, right) for 3-D or 4-tuple (top, bottom, left, right) for 2-D",
    "pad_list": "Conv2DTranspose: 4-tuple (top, bottom, left, right) replacing pad under 'pad'; (-1, -1, -1, -1): none",
    "stride": "int or tuple of 3 (3-D) / 2 or 4 (2-D): stride (default 1; depth stride <= 256)",
    "dilation": "int or tuple: dilation (default 1); Conv3DTranspose needs depth dilation 1",
    "group": "int: groups, 1 <= group <= out_channel, dividing the channels (default 1)",
    "output_padding": "Conv3DTranspose: int or 3-tuple, only with 'pad', in [0, max(stride, dilation))",
    "data_format": "'NCDHW' (3-D) or 'NCHW' (2-D); NHWC is GPU-only in MindSpore",
    "input_size": "Conv2DTranspose: the result's shape (N, C_out, H, W); required for 2-D",
    "in_channel": "Conv3DTranspose: int >= 1 (MindSpore does not check it against the input)",
    "out_channel": "int >= 1: 3-D result channels / 2-D dout channels (only the group range check uses it)",
    "kernel_size": "int or tuple: checked against the weight's spatial dims",
    "mode": "int: must be 1",
}
ONLY_3D = ("in_channel", "output_padding")
ONLY_2D = ("input_size", "pad_list")


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
    if rank not in (2, 3):
        raise ConfigError(
            f"input has {len(input_shape)} dimensions {input_shape}; the mindspore style covers ops.Conv2DTranspose "
            "(N, C, H, W) and ops.Conv3DTranspose (N, C, D, H, W): no unbatched input, and 1-D "
            "(nn.Conv1dTranspose) is out of scope",
            "for 1-D, add a unit H axis: input (N, C, 1, L), weight (C_in, C_out/group, 1, k)",
        )
    op_name = "Conv3DTranspose" if rank == 3 else "Conv2DTranspose"
    for key in ONLY_2D if rank == 3 else ONLY_3D:
        if key in options:
            other = "Conv2DTranspose (4-D input)" if rank == 3 else "Conv3DTranspose (5-D input)"
            hint = "use pad_mode='pad' with pad, and input_size for the extra rows" if key == "output_padding" else None
            raise ConfigError(f"{key} is an ops.{other} argument; ops.{op_name} does not take it", hint)
    if len(weight_shape) != rank + 2:
        raise ConfigError(
            f"weight has {len(weight_shape)} dimensions {weight_shape}; ops.{op_name} needs "
            f"(C_in, C_out/group, {'kd, kh, kw' if rank == 3 else 'kh, kw'})"
        )
    if as_int("mode", options.get("mode", 1)) != 1:
        raise ConfigError(f"mode={options['mode']} must be 1 ({FRAMEWORK} ops.{op_name} rejects it)")
    fmt_want = "NCDHW" if rank == 3 else "NCHW"
    data_format = options.get("data_format", fmt_want)
    if data_format != fmt_want:
        gpu = " (NHWC is GPU-only in MindSpore)" if data_format in ("NHWC", "NDHWC") else ""
        raise ConfigError(f"data_format={data_format!r}: ops.{op_name} on CPU takes only '{fmt_want}'{gpu}")
    pad_mode_raw = options.get("pad_mode", "valid")
    if not isinstance(pad_mode_raw, str) or pad_mode_raw.lower() not in PAD_MODES:
        raise ConfigError(f"pad_mode={pad_mode_raw!r}: the 'pad_mode' must be one of 'valid', 'same', 'pad' ({FRAMEWORK})")

    kernel = weight_shape[2:]
    if "kernel_size" in options:
        given = as_ints("kernel_size", options["kernel_size"], rank)
        if given != kernel:
            checks = "rejects it" if rank == 3 else "would silently use the weight's kernel"
            raise ConfigError(
                f"kernel_size={fmt(given)} does not match the weight's kernel {fmt(kernel)} ({FRAMEWORK} {checks})",
                f"drop kernel_size or pass kernel_size={fmt(kernel)}",
            )
    for key in ("in_channel", "out_channel"):
        if key in options and as_int(key, options[key]) < 1:
            raise ConfigError(f"{key}={options[key]} must be a positive integer ({FRAMEWORK} rejects it)")
    group = as_int("group", options.get("group", 1))
    if group < 1:
        raise ConfigError(f"group={group} must be a positive integer ({FRAMEWORK} rejects it)")
    in_channels = input_shape[1]
    if weight_shape[0] != in_channels:
        raise ConfigError(
            f"weight {weight_shape} has {weight_shape[0]} input channels but the input has {in_channels} "
            f"(ops.{op_name} rejects it: the filter's batch must equal the input's channel)",
            "MindSpore's weight is (C_in, C_out/group, k...)",
        )
    out_channels = weight_shape[1] * group
    if in_channels % group:
        raise ConfigError(
            f"group={group} does not divide the input's {in_channels} channels ({FRAMEWORK} CPU fails: {ONEDNN})",
            "pick a group that divides the channels",
        )
    check_bias(bias_shape, out_channels, accept=[(out_channels,)], framework="the mindspore style (a 1-D bias)")
    notes = []
    if bias_shape is not None:
        notes.append("MindSpore's ops take no bias: the (C_out,) bias is added to every output position afterwards, "
                     "as nn.Conv*dTranspose(has_bias=True) does")
    args = (options, input_shape, kernel, group, in_channels, out_channels, quirks)
    crops, dim_notes, more_notes, warnings, stride, dilation = (_parse_3d if rank == 3 else _parse_2d)(*args)
    config = DeconvConfig(
        kernel=kernel, stride=stride, dilation=dilation, crops=crops, groups=group,
        in_channels=in_channels, out_channels=out_channels,
    )
    return Parsed(config, dim_notes, tuple(notes + more_notes), tuple(warnings))


def _parse_3d(options, input_shape, kernel, group, in_channels, out_channels, quirks):
    spatial = input_shape[2:]
    stride = _positive("stride", as_ints("stride", options.get("stride", 1), 3), "Conv3DTranspose")
    dilation = _positive("dilation", as_ints("dilation", options.get("dilation", 1), 3), "Conv3DTranspose")
    if dilation[0] != 1:
        raise ConfigError(f"dilation={fmt(dilation)}: the depth of parameter 'dilation' must be 1 (ops.Conv3DTranspose rejects it)",
                          f"use dilation=(1, {dilation[1]}, {dilation[2]})")
    if stride[0] > 256:
        raise ConfigError(f"stride={fmt(stride)}: the depth stride must be in [1, 256] (ops.Conv3DTranspose rejects it)")
    if math.prod(kernel) > 343:
        raise ConfigError(f"kernel {fmt(kernel)} has {math.prod(kernel)} taps; the product of kernel_size must be in "
                          "[1, 343] (ops.Conv3DTranspose rejects it)")
    out_channel = as_int("out_channel", options.get("out_channel", out_channels))
    if group > out_channel or out_channel % group:
        raise ConfigError(f"group={group} must be in [1, {out_channel}] and divide out_channel={out_channel} "
                          "(ops.Conv3DTranspose rejects it)")
    notes = _unchecked_notes(options, {"in_channel": in_channels, "out_channel": out_channels})
    pad_mode = str(options.get("pad_mode", "valid")).lower()
    pad = as_ints("pad", options.get("pad", 0), 6, lengths=(6,))
    op = as_ints("output_padding", options.get("output_padding", 0), 3)
    if pad_mode != "pad" and any(pad):
        raise ConfigError(f"pad={fmt(pad)}: the 'pad' must be zero when 'pad_mode' is not \"pad\" (ops.Conv3DTranspose rejects it)",
                          "set pad_mode='pad'")
    if min(pad) < 0:
        raise ConfigError(f"pad={fmt(pad)} must not be negative (ops.Conv3DTranspose rejects it)")
    if min(op) < 0:
        raise ConfigError(f"output_padding={fmt(op)} must not be negative (ops.Conv3DTranspose rejects it)")
    if pad_mode != "pad" and any(op):
        raise ConfigError(f"output_padding={fmt(op)} must be zero when 'pad_mode' is not \"pad\" (ops.Conv3DTranspose rejects it)",
                          "set pad_mode='pad'")
    warnings = []
    for i, axis in enumerate("dhw"):
        if op[i] >= max(stride[i], dilation[i]):
            raise ConfigError(
                f"output_padding={fmt(op)}: output_padding_{axis} must be in [0, max(stride_{axis}, dilation_{axis})) = "
                f"[0, {max(stride[i], dilation[i])}) (ops.Conv3DTranspose rejects it)")
        if op[i] >= stride[i]:
            cpu = (f"{FRAMEWORK} CPU fails for output_padding_{axis}={op[i]} >= stride_{axis}={stride[i]} "
                   f"(documented range [0, max(stride, dilation)) = [0, {dilation[i]}); oneDNN: {ONEDNN})")
            if quirks:
                raise ConfigError(cpu, "use output_padding < stride, or drop --quirks for the documented result")
            warnings.append(cpu + "; computing the documented result (pass --quirks to reject as the CPU does)")
    crops, dim_notes = [], []
    for i in range(3):
        n, s, dk = spatial[i], stride[i], dilated_kernel(kernel[i], dilation[i])
        full = full_length(n, kernel[i], s, dilation[i])
        if pad_mode == "pad":
            head, tail = pad[2 * i], pad[2 * i + 1]
            crop, note = (head, tail - op[i]), f"pad head {head}, tail {tail}, output_padding {op[i]}"
        elif pad_mode == "valid":
            crop = (0, min(0, dk - s))
            note = "'valid': out = max(full, n*s)" + (f", {s - dk} zero rows at the end (stride > dilated kernel)" if s > dk else "")
        else:
            total = dk - s
            lo = max(total, 0) // 2
            crop = (lo, total - lo)
            note = f"'same': out = n*s = {n * s}, T = dk - s = {total}" + (
                f", head {lo}, tail {total - lo}" if total >= 0 else f", {-total} zero rows at the end")
        out = full - crop[0] - crop[1]
        if out < 0:
            raise ConfigError(
                f"output size {out} in dimension {'DHW'[i]} ({full} - {crop[0]} - {crop[1]}) is negative "
                f"(ops.Conv3DTranspose fails: Resize failed for kernel)", "reduce pad")
        crops.append(crop)
        dim_notes.append((f"{note} -> crop {crop}",) + (("output size 0: MindSpore returns an empty tensor",) if out == 0 else ()))
    return tuple(crops), tuple(dim_notes), notes, warnings, stride, dilation


def _parse_2d(options, input_shape, kernel, group, in_channels, out_channels, quirks):
    spatial = input_shape[2:]
    stride = _two_or_four("stride", options.get("stride", 1))
    dilation = _two_or_four("dilation", options.get("dilation", 1))
    pad_mode_raw = options.get("pad_mode", "valid")
    pad_mode = pad_mode_raw.lower()
    pad = as_ints("pad", options.get("pad", 0), 4, lengths=(4,))
    if pad_mode_raw != "pad" and any(pad):
        trap = (f" (the check compares the raw string: write pad_mode='pad', not {pad_mode_raw!r})"
                if pad_mode == "pad" else "")
        raise ConfigError(f"pad={fmt(pad)}: the 'pad' must be zero when 'pad_mode' is not \"pad\"{trap} "
                          "(ops.Conv2DTranspose rejects it)", "set pad_mode='pad'")
    if min(pad) < 0:
        raise ConfigError(f"pad={fmt(pad)} must not be negative (ops.Conv2DTranspose rejects it)")
    notes = _unchecked_notes(options, {"out_channel": in_channels})
    if "input_size" not in options:
        raise ConfigError("ops.Conv2DTranspose needs input_size, the result's shape (N, C_out, H, W)",
                          f"pass input_size={_size_hint(input_shape, kernel, stride, dilation, pad, pad_mode, out_channels)}")
    size = as_ints("input_size", options["input_size"], 4, lengths=(4,), scalar=False)
    if size[0] != input_shape[0] or size[1] != out_channels:
        raise ConfigError(
            f"input_size={fmt(size)} must be (N, C_out, H, W) = ({input_shape[0]}, {out_channels}, H, W) for dout "
            f"{input_shape} and weight channels {out_channels // group} x group {group} ({FRAMEWORK} CPU fails: {ONEDNN})")
    pads = [(pad[0], pad[1]), (pad[2], pad[3])]
    if "pad_list" in options:
        pads = _apply_pad_list(options["pad_list"], pads, pad_mode, spatial, kernel, stride, dilation, size[2:], notes)
    crops, dim_notes = [], []
    for i in range(2):
        n, k, s, d, target = spatial[i], kernel[i], stride[i], dilation[i], size[2 + i]
        full, dk = full_length(n, k, s, d), dilated_kernel(k, d)
        accepted = _accepted_sizes(n, dk, s, pads[i], pad_mode)
        if not accepted:
            raise ConfigError(
                f"pad {pads[i]} in dimension {'HW'[i]} is larger than the full result {full}: no input_size fits "
                f"({FRAMEWORK} CPU fails: {ONEDNN})", "reduce pad")
        if target not in accepted:
            raise ConfigError(
                f"input_size {'HW'[i]}={target} does not fit dout's {n}: with pad_mode='{pad_mode}' a forward Conv2D of the "
                f"result must give back {n}, so {'HW'[i]} must be in [{accepted[0]}, {accepted[-1]}] "
                f"({FRAMEWORK} CPU fails: {ONEDNN})",
                f"pass input_size=({size[0]}, {size[1]}, ...) with {'HW'[i]} in [{accepted[0]}, {accepted[-1]}]")
        if pad_mode == "same":
            lo = max(0, (n - 1) * s + dk - target) // 2
            note = f"'same': top = floor(max(0, (n-1)*s + dk - {target})/2) = {lo}"
        else:
            lo = pads[i][0]
            note = f"'{pad_mode}': pad {pads[i][0]}, {pads[i][1]}; input_size {target} in [{accepted[0]}, {accepted[-1]}]"
        crop = (lo, full - lo - target)
        crops.append(crop)
        dim_notes.append((f"{note} -> crop {crop}",) + (("output size 0: MindSpore returns an empty tensor",) if target == 0 else ()))
    return tuple(crops), tuple(dim_notes), notes, [], stride, dilation


def _accepted_sizes(n, dk, s, pads, pad_mode) -> range:
    """Result lengths H for which MindSpore's forward-conv check gives back n: the H in
    [max(0, base - s), base + s) with trunc((H + top + bottom - dk) / s) == n - 1 (C division truncates
    to zero), as one range computed in integers (a stride of 10**6 or 10**30 costs nothing)."""
    if pad_mode == "same":
        return range((n - 1) * s + 1, n * s + 1)
    top, bottom = pads if pad_mode == "pad" else (0, 0)
    base = (n - 1) * s + dk - top - bottom
    q = n - 1  # the m = H + top + bottom - dk with trunc(m / s) == q
    m_lo, m_hi = (q * s, (q + 1) * s - 1) if q > 0 else (-(s - 1), s - 1) if q == 0 else ((q - 1) * s + 1, q * s)
    shift = dk - top - bottom
    return range(max(0, base - s, m_lo + shift), min(base + s - 1, m_hi + shift) + 1)


def _apply_pad_list(value, pads, pad_mode, spatial, kernel, stride, dilation, sizes, notes):
    """pad_list (top, bottom, left, right): all -1 means none; under 'pad' four pads replace pad (verified on CPU);
    under 'valid'/'same' MindSpore ignores it, so it must agree with the pads those modes compute. Mixing -1 with
    pads is refused (MindSpore's CPU result for it was not consistent)."""
    plist = as_ints("pad_list", value, 4, lengths=(4,), scalar=False)
    if any(v < -1 for v in plist):
        raise ConfigError(f"pad_list={fmt(plist)}: each element must be >= 0 or -1 (ops.Conv2DTranspose rejects it)")
    if plist == (-1,) * 4:
        return pads
    if -1 in plist:
        raise ConfigError(f"pad_list={fmt(plist)} mixes -1 with pads ({FRAMEWORK} CPU fails or ignores it: {ONEDNN})",
                          "give all four pads, or pad_list=(-1, -1, -1, -1)")
    mode_pads = []
    for i in range(2):
        if pad_mode == "same":
            total = max(0, (spatial[i] - 1) * stride[i] + dilated_kernel(kernel[i], dilation[i]) - sizes[i])
            mode_pads += [total // 2, total - total // 2]
        else:
            mode_pads += list(pads[i]) if pad_mode == "pad" else [0, 0]
    if pad_mode == "pad":
        notes.append(f"pad_list={fmt(plist)} replaces pad")
        return [(plist[0], plist[1]), (plist[2], plist[3])]
    if plist != tuple(mode_pads):
        raise ConfigError(
            f"pad_list={fmt(plist)} disagrees with the pads pad_mode='{pad_mode}' computes {tuple(mode_pads)} "
            f"({FRAMEWORK} CPU would silently ignore it)", "drop pad_list, or use pad_mode='pad'")
    return pads


def _two_or_four(name: str, value: object) -> Shape:
    values = as_ints(name, value, 2, lengths=(2, 4))
    if min(values) < 1:
        raise ConfigError(f"{name}={fmt(values)} must be positive (ops.Conv2DTranspose rejects it)")
    if len(values) == 4:
        if values[:2] != (1, 1):
            raise ConfigError(f"{name}={fmt(values)}: the N and C entries of a 4-tuple must be 1 "
                              f"({FRAMEWORK} would silently ignore them)", f"use {name}={fmt(values[2:])}")
        values = values[2:]
    return values


def _positive(name, values, op_name):
    if min(values) < 1:
        raise ConfigError(f"{name}={fmt(values)} must be positive (ops.{op_name} rejects it)")
    return values


def _unchecked_notes(options, actual):
    return [f"{key}={options[key]} differs from the tensors' {value}; MindSpore does not check it (it only feeds the "
            "group range check)" for key, value in actual.items() if key in options and as_int(key, options[key]) != value]


def _size_hint(input_shape, kernel, stride, dilation, pad, pad_mode, out_channels) -> str:
    pads = [(pad[0], pad[1]), (pad[2], pad[3])]
    hw = [_accepted_sizes(n, dilated_kernel(k, d), s, p, pad_mode)[:1] or [0]
          for n, k, s, d, p in zip(input_shape[2:], kernel, stride, dilation, pads)]
    return str((input_shape[0], out_channels, hw[0][0], hw[1][0]))


# ----------------------------------------------------------------------------------------------------- express

def express(config: DeconvConfig, input_shape: Shape) -> Expression:
    """Write a canonical config as ops.Conv3DTranspose / ops.Conv2DTranspose keywords ('pad' mode)."""
    input_shape = tuple(input_shape)
    if config.rank == 1:
        embedded = DeconvConfig(
            kernel=(1, *config.kernel), stride=(1, *config.stride), dilation=(1, *config.dilation),
            crops=((0, 0), *config.crops), groups=config.groups, in_channels=config.in_channels,
            out_channels=config.out_channels)
        shape2d = (input_shape[0], input_shape[1], 1, input_shape[2])
        e = express(embedded, shape2d)
        return Expression(NAME, e.options, e.input_shape, e.weight_shape, "reshape to (C_in, C_out/g, 1, k)",
                          expressible=False, crop=e.crop or ((0, 0), (0, 0)),
                          reason="the mindspore style has no 1-D: this is the 2-D form with a unit H axis")
    base: dict = {"stride": compact(config.stride), "dilation": compact(config.dilation)}
    if config.groups != 1:
        base["group"] = config.groups
    fulls = [full_length(n, k, s, d) for n, k, s, d in zip(input_shape[2:], config.kernel, config.stride, config.dilation)]

    def spell(pads, ops_):
        options = dict(base, pad_mode="pad", pad=tuple(p for pair in pads for p in pair))
        if config.rank == 3:
            return dict(options, output_padding=compact(ops_)) if any(ops_) else options
        sizes = [f - h - t + op for f, (h, t), op in zip(fulls, pads, ops_)]
        return dict(options, input_size=(input_shape[0], config.out_channels, *sizes))

    # exact: pads (lo, max(hi, 0)), the extra rows (output_padding / input_size) -hi when hi < 0
    pads = [(max(lo, 0), max(hi, 0)) for lo, hi in config.crops]
    ops_ = [min(t - hi, s - 1) for (_, t), (_, hi), s in zip(pads, config.crops, config.stride)]
    zero = [(0, 0)] * config.rank
    candidates = [spell(pads, ops_), spell(pads, [0] * config.rank), spell(zero, ops_), spell(zero, [0] * config.rank)]
    return express_first(NAME, parse, config, input_shape, config.weight_shape, "as is: (C_in, C_out/g, k...)",
                         candidates)
