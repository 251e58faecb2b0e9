"""JAX: ``jax.lax.conv_transpose(lhs, rhs, strides, padding, rhs_dilation, dimension_numbers, transpose_kernel,
use_consistent_padding)``.

Verified on jax/jaxlib 0.10.2 CPU (tests/golden/make_jax_goldens.py). The padding arithmetic is lax's
(conventions/_lax.py): per dim with kd = dilation*(k-1) + 1 and the full result F = (L-1)*s + kd,

    'SAME'                    out = L*s, crop start 0 if s >= kd else (kd - s)//2
    'VALID'                   out = (L-1)*s + max(kd, s), crop start 0
    (lo, hi) pairs            pads of the stride-dilated input (not PyTorch's padding): crop (kd-1 - lo, kd-1 - hi)
    use_consistent_padding    the pairs are PyTorch's padding: crop (lo, hi)
    other strings             stride 1 only: the forward convolution's 'same'/'same_lower'/'valid'

Layouts come from ``dimension_numbers`` (lhs, rhs, out spec strings; default channels-last: 'NHC'/'HIO'/'NHC',
'NHWC'/'HWIO'/'NHWC', 'NHWDC'/'HWDIO'/'NHWDC'). ``strides``, ``padding`` and ``rhs_dilation`` follow the rhs
spec's spatial characters, in its order. With ``transpose_kernel=False`` the rhs is the forward convolution's
kernel: its I axis is the input's channels, and it is read reversed: W[i, o, t] = rhs[o, i, K-1-t] in (O, I, ...)
order. With True its O axis is the input's channels, its I axis the output's, read as it lies.
No bias, no groups, no unbatched input; ``strides`` is required and a sequence, as JAX has it.

deconv takes any rhs spec; the lhs and out specs must be one layout with the batch first and the channels
second or last (a tensor laid out otherwise needs a transpose first). A list pair is read as a tuple pair (lists
stand for tuples in deconv's manifests), where JAX 0.10 refuses list pairs with use_consistent_padding.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..core.config import DeconvConfig, Shape
from ..core.errors import ConfigError
from . import _lax
from ._common import Expression, Parsed, as_int, check_keywords, express_first, fmt

NAME = "jax"
FRAMEWORK = "JAX 0.10"
DTYPES = ("float16", "float32", "float64")
DEFAULT_SPECS = {1: ("NHC", "HIO", "NHC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NHWDC", "HWDIO", "NHWDC")}
SPATIAL = {1: "H", 2: "HW", 3: "DHW"}  # the spatial characters express writes
KEYWORDS = {
    "strides": "ints (required): stride per spatial dim, in the rhs spec's spatial order",
    "padding": "(required) 'SAME', 'VALID', one (low, high) pair per spatial dim padding the stride-dilated input, "
               "or 'same'/'same_lower'/'valid' at stride 1",
    "rhs_dilation": "ints: kernel dilation per spatial dim (default None = 1)",
    "dimension_numbers": "(lhs, rhs, out) specs, e.g. ('NCHW', 'OIHW', 'NCHW'); default channels-last "
                         "('NHWC', 'HWIO', 'NHWC')",
    "transpose_kernel": "bool: False (default) rhs is the forward convolution's kernel, I = input channels, read "
                        "reversed; True: O = input channels, as is",
    "use_consistent_padding": "bool: pairs crop the full result as PyTorch's padding does (default False)",
}


def parse(
    options: Mapping[str, object],
    *,
    input_shape: Shape,
    weight_shape: Shape,
    bias_shape: Shape | None = None,
    quirks: bool = False,
) -> Parsed:
    del quirks  # no known defect of the release to reproduce
    check_keywords(options, KEYWORDS, NAME)
    for key in ("strides", "padding"):
        if key not in options:
            raise ConfigError(f"{key} is required by lax.conv_transpose ({FRAMEWORK}: missing required argument "
                              f"'{key}')", f"give it with --set {key}=...")
    if bias_shape is not None:
        raise ConfigError("lax.conv_transpose takes no bias", "drop --bias (add the bias to its result)")
    input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
    rank = len(weight_shape) - 2
    if rank not in (1, 2, 3):
        raise ConfigError(f"rhs has {len(weight_shape)} dimensions {weight_shape}; deconv takes 1 to 3 spatial dims")
    if len(input_shape) != len(weight_shape):
        raise ConfigError(f"lhs has {len(input_shape)} dimensions {input_shape} and rhs {len(weight_shape)} "
                          f"{weight_shape}: lax.conv_transpose needs one rank, with a batch axis ({FRAMEWORK} fails an "
                          "assertion)", "add a batch axis of 1" if len(input_shape) == rank + 1 else None)
    transpose = _bool("transpose_kernel", options.get("transpose_kernel", False))
    consistent = _bool("use_consistent_padding", options.get("use_consistent_padding", False))
    lhs, rhs = _specs(options.get("dimension_numbers"), rank)
    spatial_rhs = [c for c in rhs if c not in "OI"]
    spatial_lhs = [c for c in lhs if c not in "NC"]
    c_in = input_shape[lhs.index("C")]
    in_axis, out_axis = (rhs.index("O"), rhs.index("I")) if transpose else (rhs.index("I"), rhs.index("O"))
    if weight_shape[in_axis] != c_in:
        raise ConfigError(f"the lhs has {c_in} channels but the rhs {weight_shape} ({rhs}) has {weight_shape[in_axis]} "
                          f"on its {rhs[in_axis]} axis, the input channels with transpose_kernel={transpose} ({FRAMEWORK}: "
                          "lhs feature dimension size must equal the rhs input feature dimension size)",
                          f"pass transpose_kernel={not transpose}" if weight_shape[out_axis] == c_in else None)
    order = [spatial_rhs.index(c) for c in spatial_lhs]  # the lhs's j-th spatial dim is the rhs's order[j]-th
    strides = _reorder(_positive("strides", options["strides"], rank, required=True), order)
    dilation = _reorder(_positive("rhs_dilation", options.get("rhs_dilation"), rank), order)
    padding = _padding(options["padding"], rank)
    if not isinstance(padding, str):
        padding = _reorder(padding, order)
    kernel = tuple(weight_shape[rhs.index(c)] for c in spatial_lhs)
    spatial = tuple(input_shape[lhs.index(c)] for c in spatial_lhs)
    crops, dim_notes = _lax.crops(padding, spatial, kernel, strides, dilation, consistent=consistent,
                                  framework=FRAMEWORK)
    perm = (in_axis, out_axis, *(rhs.index(c) for c in spatial_lhs))
    config = DeconvConfig(
        kernel=kernel, stride=strides, dilation=dilation, crops=crops, groups=1, in_channels=c_in,
        out_channels=weight_shape[out_axis], channels_last=lhs[-1] == "C",
        weight_perm=None if perm == tuple(range(rank + 2)) else perm, flip=not transpose,
    )
    notes = [f"dimension_numbers ({lhs!r}, {rhs!r}, {lhs!r}); strides, padding and rhs_dilation in the rhs's "
             f"spatial order {''.join(spatial_rhs)}",
             f"transpose_kernel=True: rhs {rhs} with {rhs[in_axis]} = C_in read as it lies" if transpose else
             f"transpose_kernel=False: the rhs is the forward convolution's kernel ({rhs[in_axis]} = C_in), read "
             "reversed: W[i, o, t] = rhs[..., K-1-t]"]
    return Parsed(config, dim_notes, tuple(notes))


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} must be True or False")
    return value


def _specs(value: object, rank: int) -> tuple[str, str]:
    """(lhs, rhs) spec strings; the out spec must be the lhs's (deconv writes the input's layout)."""
    if value is None:
        return DEFAULT_SPECS[rank][0], DEFAULT_SPECS[rank][1]
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(isinstance(v, str) for v in value):
        got = len(value) if isinstance(value, (list, tuple)) else type(value).__name__
        raise ConfigError(f"dimension_numbers={value!r} must be 3 spec strings (lhs, rhs, out) ({FRAMEWORK}: convolution "
                          f"dimension_numbers list/tuple must be length 3, got {got})", "e.g. ('NCHW', 'OIHW', 'NCHW')")
    lhs, rhs, out = value
    for spec, role, fixed in ((lhs, "lhs", "NC"), (rhs, "rhs", "OI"), (out, "out", "NC")):
        if len(spec) != rank + 2 or len(set(spec)) != len(spec) or not set(fixed) <= set(spec):
            raise ConfigError(f"dimension_numbers {role} spec {spec!r} must name {fixed[0]}, {fixed[1]} and {rank} "
                              f"spatial characters once each for this {rank}-D rhs ({FRAMEWORK} rejects it)")
    spatial = [{c for c in spec if c not in fixed} for spec, fixed in ((lhs, "NC"), (rhs, "OI"), (out, "NC"))]
    if not spatial[0] == spatial[1] == spatial[2]:
        raise ConfigError(f"dimension_numbers={tuple(value)!r}: the specs name different spatial characters ({FRAMEWORK}: "
                          "elements must each have the same set of spatial characters)")
    if out != lhs:
        raise ConfigError(f"dimension_numbers out spec {out!r} differs from the lhs spec {lhs!r}: deconv writes the "
                          "output in the input's layout", f"use out spec {lhs!r} and transpose the result")
    if lhs[0] != "N" or "C" not in (lhs[1], lhs[-1]):
        like = " or ".join(repr("N" + c) for c in ("C" + SPATIAL[rank], SPATIAL[rank] + "C"))
        raise ConfigError(f"dimension_numbers lhs spec {lhs!r}: deconv takes the batch first and the channels second "
                          f"or last (like {like})", "transpose the input to such a layout and the spec with it")
    return lhs, rhs


def _positive(name: str, value: object, rank: int, required: bool = False) -> Shape:
    if value is None and not required:
        return (1,) * rank
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name}={value!r} must be a sequence of {rank} ints ({FRAMEWORK}: "
                          f"object of type '{type(value).__name__}' has no len())",
                          f"write one value per spatial dim, e.g. {name}={(value,) * rank}")
    if len(value) != rank:
        raise ConfigError(f"{name}={tuple(value)} has {len(value)} values for a {rank}-D convolution ({FRAMEWORK} fails "
                          "to lower it: verifier errors)", f"give {rank} values")
    values = tuple(as_int(name, v) for v in value)
    if min(values) < 1:
        raise ConfigError(f"{name}={fmt(values)} must be positive ({FRAMEWORK}: All dilations must be positive)")
    return values


def _padding(value: object, rank: int):
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        pairs = tuple((as_int("padding", p[0]), as_int("padding", p[1])) for p in value)
        if len(pairs) != rank:
            raise ConfigError(f"padding={value!r} has {len(pairs)} pairs for a {rank}-D convolution ({FRAMEWORK}: Wrong "
                              "number of explicit pads for convolution)", f"give {rank} (low, high) pairs")
        return pairs
    raise ConfigError(f"padding={value!r} must be a string or one (low, high) pair per spatial dim ({FRAMEWORK}: "
                      "padding argument should be a string or a sequence of (low, high) pairs)",
                      "e.g. padding='SAME' or padding=((1, 1),)" if rank == 1 else "e.g. padding='SAME'")


def _reorder(values, order):
    return tuple(values[i] for i in order)


# ----------------------------------------------------------------------------------------------------- express

def express(config: DeconvConfig, input_shape: Shape) -> Expression:
    """Write a canonical config as lax.conv_transpose keywords: the rhs spec 'OI...' with transpose_kernel=True
    takes the canonical weight (C_in, C_out, *k) as it lies; 'SAME' or 'VALID' where they give the crops, else
    lax's pairs, else PyTorch's (use_consistent_padding)."""
    rank = config.rank
    batch, channels, *spatial = tuple(input_shape)
    letters = SPATIAL[rank]
    lhs = "N" + letters + "C" if config.channels_last else "NC" + letters
    shape = (batch, *spatial, channels) if config.channels_last else (batch, channels, *spatial)
    weight_shape = config.weight_shape
    weight = "as it lies, (C_in, C_out, *k): rhs spec 'OI...' with transpose_kernel=True"
    if config.groups != 1:
        return Expression(NAME, {}, shape, weight_shape, weight, expressible=False,
                          reason="lax.conv_transpose has no groups")
    base: dict = {"strides": tuple(config.stride)}
    if max(config.dilation) > 1:
        base["rhs_dilation"] = tuple(config.dilation)
    base["dimension_numbers"] = (lhs, "OI" + letters, lhs)
    base["transpose_kernel"] = True
    lax_pairs = tuple(_lax.pairs_for(c, k, d, consistent=False) for c, k, d in zip(config.crops, config.kernel,
                                                                                    config.dilation))
    candidates = [dict(base, padding="SAME"), dict(base, padding="VALID"), dict(base, padding=lax_pairs),
                  dict(base, padding=tuple(config.crops), use_consistent_padding=True)]
    e = express_first(NAME, parse, config, shape, weight_shape, weight, candidates)
    if not config.batched:
        return Expression(NAME, e.options, shape, weight_shape, weight, expressible=False,
                          crop=e.crop or tuple((0, 0) for _ in range(rank)),
                          reason="lax.conv_transpose has no unbatched input: add a batch axis of 1 and drop it from "
                          "the result" + (f"; {e.reason}" if e.reason else ""))
    return e
