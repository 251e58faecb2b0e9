"""TensorFlow: ``tf.nn.conv1d_transpose`` / ``conv2d_transpose`` / ``conv3d_transpose``.

Rules, verified on TensorFlow 2.21 CPU (tests/golden/make_tensorflow_goldens.py). The op is the gradient of a
forward convolution, so the caller names the whole ``output_shape`` and it must be one that the forward
convolution (same strides, padding, dilations) maps back to the input. Per dim, kd = dilation*(k-1) + 1 and
full F = (L-1)*s + kd:

    padding   output length O accepted when              crop start lo (output o reads full o + lo)
    'SAME'    ceil(O/s) == L                             max(F - O, 0) // 2 (the forward SAME split)
    'VALID'   O >= kd and floor((O - kd)/s) + 1 == L     0
    pairs     floor((O + lo + hi - kd)/s) + 1 == L       the pair's first value (2-D, channels-last only)

(positions past F are zeros). Filters (k..., out, in), not flipped: W[i, o, k] = filters[k, o, i]. No bias, no
groups, no unbatched input. ``output_shape``: the full shape in ``data_format`` order (2-D also takes the
spatial sizes alone; 1-D refuses them and 3-D aborts). ``strides``/``dilations``: an int, one value, one per spatial dim, or rank+2 values with 1 at the
batch and channel positions.

TensorFlow's x86 CPU build runs these through oneDNN (its default), which computes channels-first formats and
dilations > 1; its plain CPU kernels (TF_ENABLE_ONEDNN_OPTS=0, the non-x86 builds) refuse both. The arithmetic
is valid and the default build computes it: so does deconv, with a note. An output_shape of the wrong length
aborts TensorFlow (a failed CHECK); deconv refuses it with a line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..core.config import DeconvConfig, Shape
from ..core.errors import ConfigError
from ..core.shapes import dilated_kernel, full_length
from ._common import (
    Expression,
    Parsed,
    as_int,
    check_batched,
    check_keywords,
    compact,
    data_format_of,
    express_first,
    fmt,
)

NAME = "tensorflow"
FRAMEWORK = "TensorFlow 2.21"
DTYPES = ("float16", "float32", "float64")
SIZE_KEYWORDS = (("output_shape", "full_size"),)
DATA_FORMATS = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW"), 3: ("NDHWC", "NCDHW")}
KEYWORDS = {
    "output_shape": "ints (required): the full output shape in data_format order, or its spatial sizes",
    "strides": "int or ints (required): 1, rank or rank+2 values (1 at batch and channels)",
    "padding": "'SAME' (default), 'VALID', or 2-D channels-last pairs [[0,0],[top,bottom],[left,right],[0,0]]",
    "data_format": "NWC/NHWC/NDHWC (default) or NCW/NCHW/NCDHW",
    "dilations": "int or ints: 1, rank or rank+2 values (default 1)",
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
        raise ConfigError(f"filters have {len(weight_shape)} dimensions {weight_shape}; {FRAMEWORK} conv1d/2d/3d_transpose "
                          "filters are (k..., out_channels, in_channels) with 1 to 3 spatial dims")
    data_format = data_format_of(options, DATA_FORMATS[rank], f"conv{rank}d_transpose", FRAMEWORK)
    channels_last = data_format == DATA_FORMATS[rank][0]
    check_batched(input_shape, rank, f"conv{rank}d_transpose", data_format, FRAMEWORK)
    for key in ("output_shape", "strides"):
        if key not in options:
            raise ConfigError(f"{key} is required by tf.nn.conv{rank}d_transpose", f"give it with --set {key}=VALUE")
    kernel, out_channels, kernel_in = weight_shape[:rank], weight_shape[rank], weight_shape[rank + 1]
    in_channels = input_shape[-1] if channels_last else input_shape[1]
    if kernel_in != in_channels:
        raise ConfigError(f"the input has {in_channels} channels but the filters {weight_shape} are (k..., out, in) for "
                          f"{kernel_in} input channels ({FRAMEWORK} rejects it)",
                          "TensorFlow filters are (k..., out_channels, in_channels); check data_format")
    if bias_shape is not None:
        raise ConfigError(f"tf.nn.conv{rank}d_transpose takes no bias", "drop --bias (add it after with tf.nn.bias_add)")
    strides = _per_dim("strides", options["strides"], rank, channels_last)
    dilation = _per_dim("dilations", options.get("dilations", 1), rank, channels_last)
    spatial = input_shape[1:-1] if channels_last else input_shape[2:]
    target = _output_shape(options["output_shape"], rank, channels_last, input_shape[0], out_channels)
    pairs = _padding(options.get("padding", "SAME"), rank, channels_last)
    crops, dim_notes = [], []
    for i in range(rank):
        crop, notes = _dim(i, spatial[i], kernel[i], strides[i], dilation[i], target[i], pairs)
        crops.append(crop)
        dim_notes.append(notes)
    notes = ["filters (k..., out, in) read as W[i, o, k] = filters[k, o, i], not flipped"]
    plain = [what for what, used in ((data_format, not channels_last), ("dilations > 1", max(dilation) > 1)) if used]
    if plain:
        notes.append(f"{' and '.join(plain)}: computed by TensorFlow's default (oneDNN) CPU kernels; its plain kernels "
                     "(TF_ENABLE_ONEDNN_OPTS=0, non-x86 builds) refuse it")
    config = DeconvConfig(
        kernel=kernel, stride=strides, dilation=dilation, crops=tuple(crops), groups=1,
        in_channels=in_channels, out_channels=out_channels, channels_last=channels_last,
        weight_perm=(rank + 1, rank, *range(rank)),
    )
    return Parsed(config, tuple(dim_notes), tuple(notes))


def _ints(name: str, value: object) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(as_int(name, v) for v in value)
    return (as_int(name, value),)


def _per_dim(name: str, value: object, rank: int, channels_last: bool) -> Shape:
    """TensorFlow's strides/dilations: one value, one per spatial dim, or rank+2 with 1 at batch and channels."""
    values = _ints(name, value)
    if len(values) not in (1, rank, rank + 2):
        raise ConfigError(f"{name}={fmt(values) if len(values) > 1 else values} should be of length 1, {rank} or {rank + 2} "
                          f"({FRAMEWORK} rejects it)")
    if len(values) == rank + 2:
        outer = (values[0], values[-1]) if channels_last else values[:2]
        if outer != (1, 1):
            raise ConfigError(f"{name}={list(values)}: the batch and channel values must be 1 ({FRAMEWORK}: not yet "
                              "supported in the batch and depth dimensions)")
        values = values[1:-1] if channels_last else values[2:]
    values = values * rank if len(values) == 1 else values
    if min(values) < 1:
        raise ConfigError(f"{name}={fmt(values)} must be positive ({FRAMEWORK} rejects it)")
    return values


def _output_shape(value: object, rank: int, channels_last: bool, batch: int, out_channels: int) -> Shape:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"output_shape={value!r} must be a list of {rank + 2} sizes (or the {rank} spatial ones)")
    values = tuple(as_int("output_shape", v) for v in value)
    layout = ("(N, *spatial, C_out)" if channels_last else "(N, C_out, *spatial)")
    if len(values) == rank == 2:  # the 1-D and 3-D ops fail (3-D aborts the process)
        spatial = values
    elif len(values) == rank + 2:
        n, c = (values[0], values[-1]) if channels_last else values[:2]
        spatial = values[1:-1] if channels_last else values[2:]
        if n != batch:
            raise ConfigError(f"output_shape={list(values)} has batch {n} but the input has {batch} "
                              f"({FRAMEWORK} rejects it)", f"output_shape is {layout}")
        if c != out_channels:
            raise ConfigError(f"output_shape={list(values)} has {c} channels but the filters have {out_channels} "
                              f"output channels ({FRAMEWORK} rejects it)", f"output_shape is {layout}")
    else:
        alone = " or the 2 spatial sizes" if rank == 2 else ""
        raise ConfigError(f"output_shape={list(values)} has {len(values)} values; conv{rank}d_transpose needs {rank + 2} "
                          f"{layout}{alone} ({FRAMEWORK} rejects it or aborts the process)")
    if min(spatial) < 0:
        raise ConfigError(f"output_shape={list(values)} has a negative size")
    return spatial


def _padding(value: object, rank: int, channels_last: bool):
    """'SAME', 'VALID' or the explicit (lo, hi) pairs of the spatial dims."""
    if isinstance(value, str):
        if value not in ("SAME", "VALID"):
            raise ConfigError(f"padding={value!r} must be 'SAME' or 'VALID' (upper case; {FRAMEWORK} rejects it)",
                              "use padding='SAME' or 'VALID'")
        return value
    if rank != 2 or not isinstance(value, (list, tuple)):
        raise ConfigError(f"padding={value!r}: conv{rank}d_transpose takes 'SAME' or 'VALID' only; explicit pairs exist for "
                          f"2-D only ({FRAMEWORK}: Expected string for argument 'padding')")
    if not channels_last:
        raise ConfigError(f"padding={value!r} with data_format='NCHW': {FRAMEWORK} takes explicit pairs with NHWC only",
                          "use data_format='NHWC'")
    if len(value) != 4 or any(not isinstance(p, (list, tuple)) or len(p) != 2 for p in value):
        raise ConfigError(f"padding={value!r} must be 4 pairs [[0,0],[top,bottom],[left,right],[0,0]]")
    pairs = [tuple(as_int("padding", v) for v in p) for p in value]
    if pairs[0] != (0, 0) or pairs[3] != (0, 0):
        raise ConfigError(f"padding={value!r}: the batch and channel pairs must be [0, 0] ({FRAMEWORK} rejects it)")
    if min(min(p) for p in pairs) < 0:
        raise ConfigError(f"padding={value!r} must not be negative ({FRAMEWORK} rejects it)")
    return pairs[1:3]


def _dim(i: int, n: int, k: int, s: int, d: int, out: int, pairs) -> tuple[tuple[int, int], tuple[str, ...]]:
    kd = dilated_kernel(k, d)
    full = full_length(n, k, s, d)
    if pairs == "SAME":
        ok, rule = math.ceil(out / s) == n, f"ceil({out}/{s}) = {math.ceil(out / s)}"
        lo = max(full - out, 0) // 2
        where = f"'SAME': crop start max({full} - {out}, 0)//2 = {lo}"
    elif pairs == "VALID":
        ok = out >= kd and (out - kd) // s + 1 == n
        rule = f"floor(({out} - kd {kd})/{s}) + 1 = {(out - kd) // s + 1}"
        lo, where = 0, "'VALID': crop start 0"
    else:
        p_lo, p_hi = pairs[i]
        ok = out + p_lo + p_hi >= kd and (out + p_lo + p_hi - kd) // s + 1 == n
        rule = f"floor(({out} + {p_lo} + {p_hi} - kd {kd})/{s}) + 1 = {(out + p_lo + p_hi - kd) // s + 1}"
        lo, where = p_lo, f"pairs ({p_lo}, {p_hi}): crop start {p_lo}"
    if not ok:
        raise ConfigError(
            f"output_shape size {out} in spatial dimension {i} does not map back to the input length {n}: {rule}, "
            f"not {n} ({FRAMEWORK} rejects it: Size of out_backprop doesn't match computed)",
            "pick an output size the forward convolution maps to the input (see deconv shape --style tensorflow)")
    crop = (lo, full - lo - out)
    return crop, (f"output size {out}: the forward convolution gives {rule} = input {n}", f"{where} -> crop {crop}")


# ----------------------------------------------------------------------------------------------------- express

def express(config: DeconvConfig, input_shape: Shape) -> Expression:
    """Write a canonical config in TensorFlow's keywords, the data kept in its layout."""
    input_shape = tuple(input_shape)
    rank = config.rank
    weight_shape = (*config.kernel, config.out_channels, config.in_channels)
    weight = f"transpose {(*range(2, rank + 2), 1, 0)} to (k..., out, in)"
    if config.groups != 1:
        return Expression(NAME, {}, input_shape, weight_shape, weight, expressible=False,
                          reason=f"{FRAMEWORK} conv{rank}d_transpose has no groups")
    lead = input_shape[0] if config.batched else 1
    spatial = input_shape[-rank:]
    c_in, c_out = config.in_channels, config.out_channels
    shape = (lead, *spatial, c_in) if config.channels_last else (lead, c_in, *spatial)
    out = tuple(full_length(n, k, s, d) - lo - hi
                for n, k, s, d, (lo, hi) in zip(spatial, config.kernel, config.stride, config.dilation, config.crops))
    if min(out) < 0:
        return Expression(NAME, {}, shape, weight_shape, weight, expressible=False,
                          reason="the output would have a negative size")
    base: dict = {"output_shape": [lead, *out, c_out] if config.channels_last else [lead, c_out, *out],
                  "strides": compact(config.stride)}
    if max(config.dilation) > 1:
        base["dilations"] = compact(config.dilation)
    if not config.channels_last:
        base["data_format"] = DATA_FORMATS[rank][1]
    candidates = [dict(base), dict(base, padding="VALID")]
    if rank == 2 and config.channels_last:
        full = [full_length(n, k, s, d) for n, k, s, d in zip(spatial, config.kernel, config.stride, config.dilation)]
        pads = [[max(lo, 0), max(f - max(lo, 0) - o, 0)] for (lo, _), f, o in zip(config.crops, full, out)]
        candidates.append(dict(base, padding=[[0, 0], *pads, [0, 0]]))
    # the nearest: 'VALID' with the full length always maps back and crops nothing; the crop says the rest
    near = tuple(full_length(n, k, s, d) for n, k, s, d in zip(spatial, config.kernel, config.stride, config.dilation))
    candidates.append(dict(base, padding="VALID",
                           output_shape=[lead, *near, c_out] if config.channels_last else [lead, c_out, *near]))
    e = express_first(NAME, parse, config, shape, weight_shape, weight, candidates)
    if not config.batched:
        return Expression(NAME, e.options, shape, weight_shape, weight, expressible=False,
                          crop=e.crop or tuple((0, 0) for _ in range(rank)),
                          reason=f"{FRAMEWORK} has no unbatched input: add a batch axis of 1 and drop it from the result"
                          + (f"; {e.reason}" if e.reason else ""))
    return e
