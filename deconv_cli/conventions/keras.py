"""Keras 3: ``keras.layers.Conv{1,2,3}DTranspose`` (and ``keras.ops.conv_transpose``, same keywords).

Rules, verified on Keras 3.15.1 with the TensorFlow 2.21 backend on CPU (tests/golden/make_keras_goldens.py),
per dim with kd = dilation*(k-1) + 1 and full F = (L-1)*s + kd:

    output_padding None:  'valid' O = L*s + max(kd - s, 0)      'same' O = L*s
    output_padding op:    O = (L-1)*s + kd - 2*pad + op,        pad = kd//2 ('same'), 0 ('valid')
    crop start lo:        'same' max(F - O, 0) // 2 (TensorFlow's split), 'valid' 0; hi = F - lo - O

(an O past F gets zeros at the end). Layouts: input per ``data_format`` (default channels_last
(N, *spatial, C)); kernel (k..., filters, C_in), not flipped: W[i, o, k] = kernel[k, o, i]; bias (filters,).
No groups, no unbatched input.

TensorFlow's x86 CPU build runs these through oneDNN (its default), which computes channels_first, dilation_rate
> 1 and empty outputs; its plain CPU kernels (TF_ENABLE_ONEDNN_OPTS=0, and the non-x86 builds) refuse those
three. The arithmetic is valid and the default build computes it: so does deconv, with a note.

Rejected as Keras rejects them: output_padding >= strides, strides > 1 together with dilation_rate > 1,
non-positive strides/dilation_rate/kernel_size/filters, a negative output_padding, a padding other than
'valid'/'same' (case-insensitive; a tuple passes the constructor and fails at call time), a kernel that
does not fit the input channels, filters or kernel_size.

One defect of the release, handled per the bug policy: padding='same' with an even dilated kernel and
output_padding=0 gives out = (L-1)*s, which TensorFlow's 'SAME' gradient refuses (it needs ceil(out/s) == L:
AbortedError "could not create a primitive" with oneDNN, InvalidArgumentError without), unless the output is empty. By default deconv computes the documented length
and crop (a symmetric crop of kd//2) and warns; ``quirks=True`` refuses it as the release does.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..core.config import DeconvConfig, Shape
from ..core.errors import ConfigError
from ..core.shapes import dilated_kernel, full_length
from ._common import Expression, Parsed, as_int, as_ints, check_keywords, compact, express_first, fmt, fmt_shape

NAME = "keras"
FRAMEWORK = "Keras 3.15"
DTYPES = ("float16", "float32", "float64")
SIZE_KEYWORDS = (("output_padding", "offset"),)
PADDINGS = ("valid", "same")
DATA_FORMATS = ("channels_last", "channels_first")
KEYWORDS = {
    "strides": "int or tuple: stride per spatial axis (default 1; > 1 excludes dilation_rate > 1)",
    "padding": "'valid' (default) or 'same', case-insensitive",
    "output_padding": "int or tuple: extra output size, < strides (default None: the padding's own length)",
    "dilation_rate": "int or tuple: spacing between kernel elements (default 1)",
    "data_format": "'channels_last' (default: (N, *spatial, C)) or 'channels_first' ((N, C, *spatial))",
    "filters": "int: checked against the kernel's filters axis (kernel (k..., filters, C_in))",
    "kernel_size": "int or tuple: checked against the kernel's spatial dims",
    "use_bias": "bool: checked against whether --bias is given",
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
        raise ConfigError(f"kernel has {len(weight_shape)} dimensions {weight_shape}; {FRAMEWORK} Conv1D/2D/3DTranspose "
                          "kernels are (k..., filters, C_in) with 1 to 3 spatial dims")
    channels_last = _data_format(options.get("data_format"))
    if len(input_shape) != rank + 2:
        layout = "(N, *spatial, C)" if channels_last else "(N, C, *spatial)"
        raise ConfigError(
            f"input has {len(input_shape)} dimensions {input_shape} but the {rank}-D kernel {weight_shape} needs "
            f"{rank + 2}: {layout} ({FRAMEWORK} Conv{rank}DTranspose has no unbatched input and rejects it)",
            "add a batch axis of 1" if len(input_shape) == rank + 1 else None)
    kernel, filters, kernel_in = weight_shape[:rank], weight_shape[rank], weight_shape[rank + 1]
    in_channels = input_shape[-1] if channels_last else input_shape[1]
    strides = _positive("strides", options.get("strides", 1), rank)
    dilation = _positive("dilation_rate", options.get("dilation_rate", 1), rank)
    _check_layer_args(options, rank, kernel, filters)
    op = None
    if options.get("output_padding") is not None:
        op = as_ints("output_padding", options["output_padding"], rank)
        if min(op) < 0:
            raise ConfigError(f"output_padding={fmt(op)} must not be negative ({FRAMEWORK} rejects it)")
        for i, (o, s) in enumerate(zip(op, strides)):
            if o >= s:
                raise ConfigError(f"output_padding={fmt(op)} must be strictly less than strides={fmt(strides)} "
                                  f"in every dimension (dimension {i}: {o} >= {s}; {FRAMEWORK} rejects it)")
    if max(strides) > 1 and max(dilation) > 1:
        raise ConfigError(f"strides={fmt(strides)} > 1 together with dilation_rate={fmt(dilation)} > 1 is not "
                          f"supported ({FRAMEWORK} rejects it)", "use strides 1 or dilation_rate 1")
    padding = _padding(options.get("padding", "valid"))
    if kernel_in != in_channels:
        raise ConfigError(
            f"the input has {in_channels} channels but the kernel {weight_shape} is (k..., filters, C_in) for C_in "
            f"{kernel_in} ({FRAMEWORK} rejects it: weight shape not compatible)",
            "Keras kernels are (k..., filters, C_in); check data_format" if channels_last else None)
    _check_bias(options, bias_shape, filters)

    spatial = input_shape[1:-1] if channels_last else input_shape[2:]
    crops, dim_notes, warnings = [], [], []
    for i in range(rank):
        crop, notes, defect = _dim(spatial[i], kernel[i], strides[i], dilation[i], padding, None if op is None else op[i])
        crops.append(crop)
        dim_notes.append(notes)
        if defect:
            warnings.append(f"dimension {i}: {defect}")
    if warnings:
        if quirks:
            raise ConfigError(f"{FRAMEWORK} (TensorFlow backend) fails: " + "; ".join(warnings) +
                              " (TensorFlow's 'SAME' gradient needs ceil(out/strides) == input length; "
                              "AbortedError: could not create a primitive)",
                              "pass output_padding=1 or an odd kernel, or drop --quirks for the documented result")
        warnings = [f"{FRAMEWORK} on TensorFlow fails for padding='same' with an even dilated kernel and "
                    f"output_padding 0 ({'; '.join(warnings)}); computing the documented result "
                    "(pass --quirks to refuse it as the release does)"]
    config = DeconvConfig(
        kernel=kernel, stride=strides, dilation=dilation, crops=tuple(crops), groups=1,
        in_channels=in_channels, out_channels=filters, channels_last=channels_last,
        weight_perm=(rank + 1, rank, *range(rank)),
    )
    notes = ["kernel (k..., filters, C_in) read as W[i, o, k] = kernel[k, o, i], not flipped"]
    plain = [what for what, used in (("channels_first", not channels_last), ("dilation_rate > 1", max(dilation) > 1))
             if used]
    if plain:
        notes.append(f"{' and '.join(plain)}: computed by TensorFlow's default (oneDNN) CPU kernels; its plain kernels "
                     "(TF_ENABLE_ONEDNN_OPTS=0, non-x86 builds) refuse it")
    return Parsed(config, tuple(dim_notes), tuple(notes), tuple(warnings))


def _data_format(value: object) -> bool:
    """True for channels_last; Keras lower-cases the string and None means its default, channels_last."""
    if value is None:
        return True
    text = str(value).lower()
    if text not in DATA_FORMATS:
        raise ConfigError(f"data_format={value!r} must be one of 'channels_first', 'channels_last' ({FRAMEWORK} rejects "
                          "it)", "use data_format='channels_last' for (N, *spatial, C)")
    return text == "channels_last"


def _padding(value: object) -> str:
    if isinstance(value, (list, tuple)):
        raise ConfigError(f"padding={tuple(value)}: explicit padding pairs fail in {FRAMEWORK} transposed convolutions "
                          "(the TensorFlow backend calls padding.upper())", "use padding='valid' or 'same'")
    text = str(value).lower()
    if text not in PADDINGS:
        raise ConfigError(f"padding={value!r} must be 'valid' or 'same' ({FRAMEWORK} rejects it)",
                          "use padding='valid' or 'same'")
    return text


def _positive(name: str, value: object, rank: int) -> Shape:
    values = as_ints(name, value, rank)
    if min(values) < 1:
        raise ConfigError(f"{name}={fmt(values)} must be positive ({FRAMEWORK} rejects it)")
    return values


def _check_layer_args(options, rank, kernel, filters) -> None:
    if "filters" in options:
        given = as_int("filters", options["filters"])
        if given < 1:
            raise ConfigError(f"filters={given} must be positive ({FRAMEWORK} rejects it)")
        if given != filters:
            raise ConfigError(f"filters={given} but the kernel has {filters} filters (axis -2 of (k..., filters, C_in); "
                              f"{FRAMEWORK} rejects it)", f"pass filters={filters}")
    if "kernel_size" in options:
        given = _positive("kernel_size", options["kernel_size"], rank)
        if given != kernel:
            raise ConfigError(f"kernel_size={fmt_shape(given)} does not match the kernel's {fmt_shape(kernel)} "
                              f"({FRAMEWORK} rejects it)", f"pass kernel_size={fmt_shape(kernel)}")


def _check_bias(options, bias_shape, filters) -> None:
    if "use_bias" in options:
        want = options["use_bias"]
        if not isinstance(want, bool):
            raise ConfigError(f"use_bias={want!r} must be True or False")
        if want != (bias_shape is not None):
            raise ConfigError(f"use_bias={want} but {'no' if want else 'a'} bias tensor was given",
                              "pass --bias FILE" if want else "drop --bias or set use_bias=True")
    if bias_shape is not None and tuple(bias_shape) != (filters,):
        raise ConfigError(f"bias has shape {tuple(bias_shape)}; {FRAMEWORK} needs ({filters},) for {filters} filters")


def _dim(n: int, k: int, s: int, d: int, padding: str, op: int | None):
    """(crop, derivation notes, defect or None) of one spatial dimension."""
    kd = dilated_kernel(k, d)
    full = full_length(n, k, s, d)
    if op is None:
        out = n * s + (max(kd - s, 0) if padding == "valid" else 0)
        how = (f"padding='valid', no output_padding: out = {n}*{s} + max(kd {kd} - {s}, 0) = {out}" if padding == "valid"
               else f"padding='same', no output_padding: out = {n}*{s} = {out}")
    else:
        pad = kd // 2 if padding == "same" else 0
        out = full - 2 * pad + op
        how = (f"padding={padding!r}, output_padding {op}: out = ({n}-1)*{s} + {kd} - 2*{pad} + {op} = {out}"
               + (f" (kd = {kd}, pad = kd//2 = {pad})" if padding == "same" else f" (kd = {kd})"))
    lo = max(full - out, 0) // 2 if padding == "same" else 0
    crop = (lo, full - lo - out)
    where = (f"crop start max({full} - {out}, 0)//2 = {lo} (TensorFlow's split)" if padding == "same"
             else "crop start 0")
    notes = (how, f"{where} -> crop {crop}")
    defect = None
    if padding == "same" and op == 0 and kd % 2 == 0 and out > 0:
        defect = f"padding='same', kd={kd} (even), output_padding 0 -> out {out}"
    return crop, notes, defect


# ----------------------------------------------------------------------------------------------------- express

def express(config: DeconvConfig, input_shape: Shape) -> Expression:
    """Write a canonical config in Keras keywords: padding 'same'/'valid' and output_padding, the data kept in
    its layout (data_format='channels_first' for a channels-first config)."""
    input_shape = tuple(input_shape)
    rank = config.rank
    weight_shape = (*config.kernel, config.out_channels, config.in_channels)
    weight = f"transpose {(*range(2, rank + 2), 1, 0)} to (k..., filters, C_in)"
    if config.groups != 1:
        return Expression(NAME, {}, input_shape, weight_shape, weight, expressible=False,
                          reason=f"{FRAMEWORK} Conv{rank}DTranspose has no groups")
    if max(config.stride) > 1 and max(config.dilation) > 1:
        return Expression(NAME, {}, input_shape, weight_shape, weight, expressible=False,
                          reason=f"{FRAMEWORK} does not support strides > 1 together with dilation_rate > 1")
    lead = input_shape[:1] if config.batched else (1,)
    spatial = input_shape[-rank:]
    channels = config.in_channels
    shape = (*lead, *spatial, channels) if config.channels_last else (*lead, channels, *spatial)
    base: dict = {}
    if max(config.stride) > 1:
        base["strides"] = compact(config.stride)
    if max(config.dilation) > 1:
        base["dilation_rate"] = compact(config.dilation)
    if not config.channels_last:
        base["data_format"] = "channels_first"
    e = express_first(NAME, parse, config, shape, weight_shape, weight, _candidates(config, spatial, base))
    if not config.batched:
        crop = e.crop or tuple((0, 0) for _ in range(rank))
        return Expression(NAME, e.options, shape, weight_shape, weight, expressible=False, crop=crop,
                          reason=f"{FRAMEWORK} has no unbatched input: add a batch axis of 1 and drop it from the result"
                          + (f"; {e.reason}" if e.reason else ""))
    return e


def _candidates(config: DeconvConfig, spatial: Shape, base: dict):
    """'valid'/'same' with the output_padding that matches each dimension's crop best, then without one."""
    for padding in PADDINGS:
        ops = []
        for i, n in enumerate(spatial):
            k, s, d = config.kernel[i], config.stride[i], config.dilation[i]
            want = config.crops[i]
            found = [o for o in range(s) if _dim(n, k, s, d, padding, o)[0] == want]
            ops.append(found[0] if found else 0)
        options = dict(base, **({"padding": padding} if padding != "valid" else {}))
        defect = any(_dim(n, config.kernel[i], config.stride[i], config.dilation[i], padding, o)[2]
                     for i, (n, o) in enumerate(zip(spatial, ops)))
        yield options
        if not defect:  # a spelling the release fails on is no use to paste
            yield dict(options, output_padding=compact(ops))
