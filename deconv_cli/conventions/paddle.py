"""PaddlePaddle: ``paddle.nn.Conv1DTranspose`` / ``Conv2DTranspose`` / ``Conv3DTranspose`` and the forward
call's ``output_size``.

Rules, verified on PaddlePaddle 3.3.1 CPU (tests/golden/make_paddle_goldens.py). Per dim, input length L,
kernel k, stride s, dilation d, full F = (L-1)*s + d*(k-1) + 1; the padding form gives the crop (lo, hi):

    int p, or nd ints [p0, p1, ..]      (p, p)
    2*nd ints [b0, a0, b1, a1, ..]      (b, a)         (1-D: [b, a]; 2-D: [top, bottom, left, right])
    nd+2 pairs, batch/channel [0, 0]    (b, a)         in data_format's axis order
    'valid'                             (0, 0)
    'same' (any case)                   the forward SAME on the input: tot = max((ceil(L/s) - 1)*s + k - L, 0),
                                        (tot//2, tot - tot//2): out = (L-1)*s + k - tot

then ``output_padding`` op adds op positions at the end (hi - op, 0 <= op < stride), or the forward
call's ``output_size`` O picks the length, infer <= O < infer + stride (hi = F - lo - O). Weight
(C_in, C_out/groups, *k) in every data_format (canonical, not flipped); bias (C_out,); input (N, C, *spatial)
or channels-last (NLC, NHWC, NDHWC); no unbatched input.

Where the release departs from its documentation or accepts nonsense, docs/DESIGN.md's policy decides:

- 'same' with dilation > 1: Paddle replaces the dilation by 1 for the whole computation, values included
  (its UpdatePaddingAndDilation); the documentation says neither, and its output formula keeps the dilation.
  By default deconv keeps the dilation and applies the same rule to the dilated kernel d*(k-1)+1, with a
  warning; ``quirks=True`` computes what the release computes (dilation 1).
- output_padding in [stride, max(stride, dilation)): the shape check (the PyTorch rule the error message
  states) passes and the CPU kernel then fails. The documented meaning, op extra positions at the end, is
  computed with a warning; ``quirks=True`` refuses it as the release does.
- output_size together with output_padding: the 2-D/3-D layers drop output_padding (the documented length is
  output_size either way), so deconv computes output_size and warns that output_padding was ignored; the 1-D
  layer refuses the pair unless output_padding is the int 0 (Paddle's own check, kept).
- out_channels not divisible by groups: Paddle does not check it and silently builds out_channels//groups
  weight columns (5 with groups 2 gives 4 channels). Nonsense accepted, so refused by default (exit 2, saying
  what Paddle would do); ``quirks=True`` computes the release's out_channels//groups*groups channels, and
  refuses a bias, as Paddle's broadcast then fails.
- dilation 0: accepted by Paddle (every kernel tap lands on one position, the taps summed). Refused: the
  canonical config has no zero dilation, and the same result is kernel size 1 with the weight summed over
  that axis, which the message says.
- a negative output length: Paddle does not check it; the call fails (PreconditionNotMet), or, where every
  spatial dim is negative in 2-D, returns a tensor of shape (N, C, -1, -1) that segfaults the process when
  read. deconv refuses it with a line. A zero length is an empty output, as in Paddle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..core.config import DeconvConfig, Shape
from ..core.errors import ConfigError
from ..core.shapes import full_length
from ._common import (
    Expression,
    Parsed,
    as_int,
    as_ints,
    check_batched,
    check_keywords,
    compact,
    data_format_of,
    express_first,
    fmt,
    fmt_shape,
)

NAME = "paddle"
FRAMEWORK = "Paddle 3.3.1"
DTYPES = ("float32", "float64")
DTYPE_NOTES = {"float16": "its CPU kernel conv{1,2,3}d_transpose is not registered for float16 (NotFound)"}
SIZE_KEYWORDS = (("output_padding", "offset"), ("output_size", "size"))
DATA_FORMATS = {1: ("NCL", "NLC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}
KEYWORDS = {
    "stride": "int or ints: stride per spatial dim (default 1)",
    "padding": "int, nd ints, 2*nd ints [before, after, ...], nd+2 pairs, 'same' or 'valid' (default 0)",
    "output_padding": "int or ints: extra positions at the end, < stride (default 0)",
    "dilation": "int or ints: spacing between kernel elements (default 1)",
    "groups": "int: blocked connections from input to output channels (default 1)",
    "data_format": "NCL/NCHW/NCDHW (default) or NLC/NHWC/NDHWC",
    "output_size": "int or ints: the forward call's spatial output size, infer <= size < infer + stride",
    "in_channels": "int: checked against the input's channels and weight.shape[0]",
    "out_channels": "int: checked against the weight (weight.shape[1] * groups)",
    "kernel_size": "int or ints: checked against the weight's spatial dims",
    "bias_attr": "False (no bias) or None/True: checked against whether --bias is given",
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
    rank = len(weight_shape) - 2
    if rank not in (1, 2, 3):
        raise ConfigError(f"weight has {len(weight_shape)} dimensions {weight_shape}; {FRAMEWORK} Conv1D/2D/3DTranspose "
                          "weights are (C_in, C_out/groups, *kernel) with 1 to 3 kernel dims")
    data_format = data_format_of(options, DATA_FORMATS[rank], f"Conv{rank}DTranspose", FRAMEWORK)
    channels_last = data_format == DATA_FORMATS[rank][1]
    check_batched(input_shape, rank, f"Conv{rank}DTranspose", data_format, FRAMEWORK)
    in_channels = input_shape[-1] if channels_last else input_shape[1]
    kernel = weight_shape[2:]
    stride = as_ints("stride", options.get("stride", 1), rank)
    dilation = as_ints("dilation", options.get("dilation", 1), rank)
    groups = as_int("groups", options.get("groups", 1))
    if min(stride) < 1:
        raise ConfigError(f"stride={fmt(stride)} must be positive ({FRAMEWORK} rejects it: The stride of Op(Conv) "
                          "should be larger than 0)")
    if min(dilation) < 0:
        raise ConfigError(f"dilation={fmt(dilation)} must be positive ({FRAMEWORK} rejects it)")
    if min(dilation) == 0:
        raise ConfigError(f"dilation={fmt(dilation)}: {FRAMEWORK} accepts dilation 0 and sums every kernel tap onto one "
                          "position; deconv refuses it", "sum the weight over that kernel axis and use kernel size 1")
    out_channels, warnings = _channels(options, in_channels, weight_shape, groups, bias_shape, quirks)
    padding = _padding(options.get("padding", 0), rank, channels_last)
    spatial = input_shape[1:-1] if channels_last else input_shape[2:]
    dilation, padding_notes, same_warning = _resolve_same(padding, spatial, kernel, stride, dilation, quirks)
    warnings += same_warning
    lo_hi = padding if padding_notes is None else [c for c, _ in padding_notes]
    infer = [full_length(n, k, s, d) - lo - hi for n, k, s, d, (lo, hi) in zip(spatial, kernel, stride, dilation, lo_hi)]
    extra, size_notes, size_warnings = _extra(options, rank, stride, dilation, infer, quirks)
    warnings += size_warnings
    crops = tuple((lo, hi - e) for (lo, hi), e in zip(lo_hi, extra))
    sizes = [n + e for n, e in zip(infer, extra)]
    if min(sizes) < 0:
        raise ConfigError(f"the output size {fmt_shape(sizes)} is negative ({FRAMEWORK} does not check it: the call fails "
                          "(PreconditionNotMet) or returns a tensor of negative shape that crashes the process when "
                          "read)", "reduce padding")
    dim_notes = []
    for i in range(rank):
        how = (padding_notes[i][1] if padding_notes is not None
               else f"padding ({lo_hi[i][0]}, {lo_hi[i][1]}) -> infer = {infer[i] + lo_hi[i][0] + lo_hi[i][1]} - "
               f"{lo_hi[i][0]} - {lo_hi[i][1]} = {infer[i]}")
        dim_notes.append((how, f"{size_notes[i]} -> crop {crops[i]}"))
    config = DeconvConfig(
        kernel=kernel, stride=stride, dilation=dilation, crops=crops, groups=groups,
        in_channels=in_channels, out_channels=out_channels, channels_last=channels_last,
    )
    notes = (f"weight (C_in, C_out/groups, *kernel) as is, for {data_format} too",)
    return Parsed(config, tuple(dim_notes), notes, tuple(warnings))


def _channels(options, in_channels, weight_shape, groups, bias_shape, quirks) -> tuple[int, list[str]]:
    """out_channels (weight.shape[1] * groups), the layer's channel keywords checked as Paddle checks them."""
    if groups < 1:
        raise ConfigError(f"groups={groups} must be positive ({FRAMEWORK} rejects it: "
                          f"{'integer division or modulo by zero' if groups == 0 else 'negative groups'})")
    if in_channels % groups:
        raise ConfigError(f"groups={groups} must divide input channels {in_channels} ({FRAMEWORK} rejects it: the channel "
                          "of input must be divisible by groups)", "pick a group count that divides the channels")
    if weight_shape[0] != in_channels:
        raise ConfigError(f"the input has {in_channels} channels but the weight {weight_shape} is (C_in, C_out/groups, "
                          f"*kernel) for {weight_shape[0]} ({FRAMEWORK} rejects it: the number of input channels should "
                          "be equal to filter channels)", "check data_format")
    if "in_channels" in options and as_int("in_channels", options["in_channels"]) != in_channels:
        raise ConfigError(f"in_channels={options['in_channels']} but the input and weight have {in_channels} channels "
                          f"({FRAMEWORK} rejects it)", f"pass in_channels={in_channels}")
    if "kernel_size" in options:
        given = as_ints("kernel_size", options["kernel_size"], len(weight_shape) - 2)
        if given != weight_shape[2:]:
            raise ConfigError(f"kernel_size={fmt_shape(given)} does not match the weight's kernel "
                              f"{fmt_shape(weight_shape[2:])} ({FRAMEWORK} rejects it: Variable Shape not match)",
                              f"pass kernel_size={fmt_shape(weight_shape[2:])}")
    out_channels = weight_shape[1] * groups
    warnings: list[str] = []
    if "out_channels" in options:
        given = as_int("out_channels", options["out_channels"])
        if given // groups != weight_shape[1]:
            raise ConfigError(f"out_channels={given} with groups={groups} needs a weight of {given // groups} output "
                              f"columns, the weight {weight_shape} has {weight_shape[1]} ({FRAMEWORK} rejects it: "
                              "Variable Shape not match)", f"pass out_channels={out_channels}")
        if given % groups:
            if not quirks:
                raise ConfigError(f"out_channels={given} is not divisible by groups={groups}: {FRAMEWORK} does not check "
                                  f"it and silently outputs {out_channels} channels (out_channels//groups*groups)",
                                  f"pass out_channels={out_channels}, or --quirks for the release's {out_channels} channels")
            if bias_shape is not None:
                raise ConfigError(f"out_channels={given} with groups={groups} and a bias: {FRAMEWORK} makes a bias of "
                                  f"{given} for {out_channels} output channels and fails at the add (Broadcast "
                                  "dimension mismatch)", f"pass out_channels={out_channels}")
            warnings.append(f"out_channels={given} is not divisible by groups={groups}; computing the {out_channels} "
                            f"channels {FRAMEWORK} outputs (--quirks)")
    want = options.get("bias_attr", None)
    if want is not None and not isinstance(want, bool):
        raise ConfigError(f"bias_attr={want!r}: deconv takes False (no bias) or None/True (the --bias tensor)")
    if want is False and bias_shape is not None:
        raise ConfigError("bias_attr=False but a bias tensor was given", "drop --bias or drop bias_attr=False")
    if bias_shape is not None and tuple(bias_shape) != (out_channels,):
        raise ConfigError(f"bias has shape {tuple(bias_shape)}; {FRAMEWORK} needs ({out_channels},) for {out_channels} "
                          "output channels")
    return out_channels, warnings


def _padding(value: object, rank: int, channels_last: bool):
    """'same', 'valid' or the (lo, hi) pairs of the spatial dims, from each of Paddle's padding forms."""
    if isinstance(value, str):
        if value.lower() not in ("same", "valid"):
            raise ConfigError(f"padding={value!r}: Unknown padding, it can only be 'SAME' or 'VALID' "
                              f"({FRAMEWORK} rejects it)", "use 'same', 'valid' or explicit sizes")
        return value.lower()
    if isinstance(value, (list, tuple)) and value and all(isinstance(p, (list, tuple)) for p in value):
        if len(value) != rank + 2 or any(len(p) != 2 for p in value):
            raise ConfigError(f"padding={_show(value)} must be {rank + 2} pairs [before, after], batch and channel "
                              f"included ({FRAMEWORK} rejects it)")
        pairs = [tuple(as_int("padding", v) for v in p) for p in value]
        outer = (pairs[0], pairs[-1]) if channels_last else (pairs[0], pairs[1])
        if outer != ((0, 0), (0, 0)):
            raise ConfigError(f"padding={_show(value)}: non-zero padding in the batch or channel dimensions is not "
                              f"supported ({FRAMEWORK} rejects it)")
        pairs = pairs[1:-1] if channels_last else pairs[2:]
    elif isinstance(value, (list, tuple)):
        flat = tuple(as_int("padding", v) for v in value)
        if len(flat) == rank:
            pairs = [(p, p) for p in flat]
        elif len(flat) == 2 * rank:
            pairs = [(flat[2 * i], flat[2 * i + 1]) for i in range(rank)]
        else:
            raise ConfigError(f"padding={_show(value)} has {len(flat)} values; Conv{rank}DTranspose takes {rank} "
                              f"(per dim) or {2 * rank} (before, after per dim) ({FRAMEWORK} rejects it: In valid padding)")
    else:
        pairs = [(as_int("padding", value),) * 2] * rank
    if min(min(p) for p in pairs) < 0:
        raise ConfigError(f"padding={_show(value)}: all values must be >= 0 ({FRAMEWORK} rejects it: Invalid padding)")
    return pairs


def _show(value: object) -> str:
    return str(value).replace("(", "[").replace(")", "]") if isinstance(value, (list, tuple)) else repr(value)


def _resolve_same(padding, spatial, kernel, stride, dilation, quirks):
    """(dilation, [(crop pair, note)] or None, warnings) for 'same'/'valid'; explicit pairs pass through."""
    rank = len(spatial)
    if padding == "valid":
        return dilation, [((0, 0), f"padding='valid' -> (0, 0), infer = full {full_length(n, k, s, d)}")
                          for n, k, s, d in zip(spatial, kernel, stride, dilation)], []
    if padding != "same":
        return dilation, None, []
    warnings = []
    if max(dilation) > 1:
        if quirks:
            warnings.append(f"padding='same' with dilation={fmt(dilation)}: computing the release's dilation 1 (--quirks)")
            dilation = (1,) * rank
        else:
            warnings.append(f"{FRAMEWORK} replaces dilation={fmt(dilation)} by 1 for padding='same' (undocumented); "
                            "computing the documented dilation with 'same' on the dilated kernel "
                            "(pass --quirks for the release's result)")
    resolved = []
    for n, k, s, d in zip(spatial, kernel, stride, dilation):
        kd = d * (k - 1) + 1
        blocks = math.ceil(n / s)
        total = max((blocks - 1) * s + kd - n, 0)
        lo, hi = total // 2, total - total // 2
        out = (n - 1) * s + kd - total
        kd_text = f"k {k}" if d == 1 else f"kd {kd}"
        resolved.append(((lo, hi), f"padding='same': total = max((ceil({n}/{s}) - 1)*{s} + {kd_text} - {n}, 0) = {total}, "
                                   f"(lo, hi) = ({lo}, {hi}), infer = ({n}-1)*{s} + {kd} - {total} = {out}"))
    return dilation, resolved, warnings


def _extra(options, rank, stride, dilation, infer, quirks):
    """Per dim: positions past infer (from output_padding or output_size), notes and warnings."""
    warnings: list[str] = []
    given_op = "output_padding" in options
    op = as_ints("output_padding", options.get("output_padding", 0), rank)
    if min(op) < 0:
        raise ConfigError(f"output_padding={fmt(op)} must not be negative ({FRAMEWORK} rejects it)")
    if options.get("output_size") is not None:
        raw = options["output_size"]
        if rank == 1 and given_op and not (type(options["output_padding"]) is int and options["output_padding"] == 0):
            raise ConfigError(f"output_padding={_show(options['output_padding'])} together with output_size: "
                              f"Conv1DTranspose refuses both (output_padding option is mutually exclusive with "
                              f"output_size; {FRAMEWORK} rejects it)", "drop output_padding")
        if isinstance(raw, (list, tuple)) and len(raw) != rank:
            raise ConfigError(f"output_size={_show(raw)}: the output_size's length must be {rank} ({FRAMEWORK} rejects it)")
        sizes = as_ints("output_size", raw, rank)
        for i, (n, base, s) in enumerate(zip(sizes, infer, stride)):
            if n < base:
                raise ConfigError(f"output_size={fmt(sizes)} should not be less than the inferred output size "
                                  f"{fmt_shape(infer)} (dimension {i}: {n} < {base}; {FRAMEWORK} rejects it)")
            if n >= base + s:
                raise ConfigError(f"output_size={fmt(sizes)} should be less than the inferred size + stride "
                                  f"{fmt_shape([b + t for b, t in zip(infer, stride)])} (dimension {i}: {n} >= "
                                  f"{base} + {s}; {FRAMEWORK} rejects it)")
        if given_op and max(op) > 0:
            warnings.append(f"Conv{rank}DTranspose ignores output_padding={fmt(op)} when output_size is given "
                            f"(undocumented); computing output_size={fmt(sizes)}")
        return ([n - b for n, b in zip(sizes, infer)],
                [f"output_size {n}: {b} <= {n} < {b} + {s}, {n - b} more at the end"
                 for n, b, s in zip(sizes, infer, stride)], warnings)
    for i, (o, s, d) in enumerate(zip(op, stride, dilation)):
        if rank == 1 and o > s:
            raise ConfigError(f"output_padding={o} should not be greater than stride={s} ({FRAMEWORK} Conv1DTranspose "
                              "rejects it)")
        if o >= max(s, d):
            raise ConfigError(f"output_padding={fmt(op)} should be less than either stride={fmt(stride)} or "
                              f"dilation={fmt(dilation)} (dimension {i}: {o}; {FRAMEWORK} rejects it)")
        if o >= s:
            if quirks:
                raise ConfigError(f"output_padding={fmt(op)} >= stride={fmt(stride)} in dimension {i}: {FRAMEWORK}'s "
                                  "shape check passes it (< dilation) and its CPU kernel then fails (Output_height and "
                                  "padding are inconsistent)", "drop --quirks for the documented result")
            warnings.append(f"output_padding={fmt(op)} >= stride={fmt(stride)} (dimension {i}) fails in {FRAMEWORK}'s CPU "
                            "kernel though its shape check (< stride or dilation) passes; computing the documented result "
                            "(pass --quirks to refuse it as the release does)")
    return list(op), [f"output_padding {o}: {o} more at the end" for o in op], warnings


# ----------------------------------------------------------------------------------------------------- express

DEFAULTS = {"stride": 1, "dilation": 1, "groups": 1, "padding": 0, "output_padding": 0}


def express(config: DeconvConfig, input_shape: Shape) -> Expression:
    """Paddle keywords for a canonical config: padding (lo, hi) pairs, output_padding for what hi lacks, the data
    kept in its layout (data_format NLC/NHWC/NDHWC for channels-last)."""
    input_shape = tuple(input_shape)
    rank = config.rank
    weight = "as is: (C_in, C_out/groups, *kernel)"
    lead = input_shape[0] if config.batched else 1
    spatial = input_shape[-rank:]
    shape = (lead, *spatial, config.in_channels) if config.channels_last else (lead, config.in_channels, *spatial)
    base = {"stride": compact(config.stride), "dilation": compact(config.dilation), "groups": config.groups}
    base = {k: v for k, v in base.items() if v != DEFAULTS[k]}
    if config.channels_last:
        base["data_format"] = DATA_FORMATS[rank][1]
    e = express_first(NAME, parse, config, shape, config.weight_shape, weight, _candidates(config, base))
    if not config.batched:
        return Expression(NAME, e.options, shape, config.weight_shape, weight, expressible=False,
                          crop=e.crop or tuple((0, 0) for _ in range(rank)),
                          reason=f"{FRAMEWORK} has no unbatched input: add a batch axis of 1 and drop it from the result"
                          + (f"; {e.reason}" if e.reason else ""))
    return e


def _padding_spelling(pairs):
    if all(lo == hi for lo, hi in pairs):
        return compact([lo for lo, _ in pairs])
    return [v for pair in pairs for v in pair]


def _candidates(config: DeconvConfig, base: dict):
    """Exact spellings first (pairs, then pairs with output_padding for a negative hi), then the nearest ones."""
    rank = config.rank
    # PyTorch's spelling where it fits: padding lo, output_padding lo - hi (< stride)
    if all(0 <= lo - hi < s and hi >= 0 for (lo, hi), s in zip(config.crops, config.stride)):
        options = dict(base)
        if any(lo for lo, _ in config.crops):
            options["padding"] = compact([lo for lo, _ in config.crops])
        if any(lo - hi for lo, hi in config.crops):
            options["output_padding"] = compact([lo - hi for lo, hi in config.crops])
        yield options
    pads = [(max(lo, 0), max(hi, 0)) for lo, hi in config.crops]
    ops = [min(max(-hi, 0), s - 1) for (_, hi), s in zip(config.crops, config.stride)]
    for pairs, op in ((pads, ops), (pads, [0] * rank), ([(0, 0)] * rank, [0] * rank)):
        options = dict(base)
        if any(p != (0, 0) for p in pairs):
            options["padding"] = _padding_spelling(pairs)
        if max(op) > 0:
            options["output_padding"] = compact(op)
        yield options
