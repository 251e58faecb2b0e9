"""Flax: ``flax.linen.ConvTranspose`` (the module's keywords; kernel and bias as its params hold them).

Verified on flax 0.12.8 over jax/jaxlib 0.10.2 on CPU (tests/golden/make_flax_goldens.py). The module calls
``lax.conv_transpose(x, kernel, strides, padding, rhs_dilation=kernel_dilation, transpose_kernel=...)`` with
channels-last dimension numbers, then adds the bias; the padding arithmetic is lax's (conventions/_lax.py):
per dim with kd = dilation*(k-1) + 1 and the full result F = (L-1)*s + kd,

    'SAME'                 out = L*s, crop start 0 if s >= kd else (kd - s)//2
    'VALID'                out = (L-1)*s + max(kd, s), crop start 0
    int p / (lo, hi) pairs pads of the stride-dilated input (not PyTorch's padding): crop (kd-1 - lo, kd-1 - hi)
    other strings          stride 1 only: the forward convolution's 'same'/'same_lower'/'valid'

``padding=p`` is (p, p) in every dim; a sequence has one entry per dim, each an int p (= (p, p)) or a pair.

Layouts: input ``(*batch, *spatial, C_in)`` where the rank is ``len(kernel_size)``: no batch axis is an unbatched
input, one is a batch; the kernel is ``(*kernel_size, C_in, features)``, the forward convolution's kernel, read
reversed: W[i, o, t] = kernel[K-1-t, i, o]; with ``transpose_kernel=True`` it is ``(*kernel_size, features, C_in)``
and W[i, o, t] = kernel[t, o, i]. Bias ``(features,)``. No groups.

Refused where the canonical config cannot say it: more than one batch axis (Flax flattens them; reshape to one),
and ``padding='CIRCULAR'``, which wraps the 'VALID' result around with period L*s (a sum, not a crop).
Flax promotes mixed dtypes (a float16 input with float32 params gives float32); deconv computes in one dtype,
so such files need ``--cast`` to the promoted dtype, which is the dtype Flax returns.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..core.config import DeconvConfig, Shape
from ..core.errors import ConfigError
from . import _lax
from ._common import Expression, Parsed, as_int, as_ints, check_keywords, compact, express_first, fmt, fmt_shape

NAME = "flax"
FRAMEWORK = "Flax 0.12"
LAX = "Flax 0.12 on JAX 0.10"  # what the padding rules' messages name
DTYPES = ("float16", "float32", "float64")
PROMOTES_DTYPES = True  # float16 input + float32 params -> float32: plan.check_dtypes points to --cast float32
KEYWORDS = {
    "features": "int: checked against the kernel's features axis (default: read from the kernel)",
    "kernel_size": "int (1-D) or tuple: checked against the kernel's spatial dims, whose count is the conv rank",
    "strides": "int or tuple: stride per spatial axis (default None = 1)",
    "padding": "'SAME' (default), 'VALID', an int, or per dim ints/(low, high) pairs padding the stride-dilated "
               "input (lax's rule); other strings only at stride 1",
    "kernel_dilation": "int or tuple: spacing between kernel elements (default None = 1)",
    "use_bias": "bool: checked against whether --bias is given (default True when a bias is given)",
    "transpose_kernel": "bool: False (default) kernel (*k, C_in, features), read reversed; "
                        "True (*k, features, C_in), as is",
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
    input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
    transpose = _bool("transpose_kernel", options.get("transpose_kernel", False))
    rank = len(weight_shape) - 2
    if rank not in (1, 2, 3):
        raise ConfigError(f"kernel has {len(weight_shape)} dimensions {weight_shape}; {FRAMEWORK} ConvTranspose kernels "
                          f"are (*kernel_size, {_axes(transpose)}) with 1 to 3 spatial dims")
    kernel = weight_shape[:rank]
    if "kernel_size" in options:
        _check_kernel_size(options["kernel_size"], kernel, weight_shape, transpose)
    batch_dims = len(input_shape) - (rank + 1)
    if batch_dims < 0:
        raise ConfigError(f"input has {len(input_shape)} dimensions {input_shape} but a {rank}-D ConvTranspose needs "
                          f"at least {rank + 1}: (*batch, *spatial, C) ({FRAMEWORK} fails an assertion)",
                          "the rank comes from kernel_size: check the kernel")
    if batch_dims > 1:
        raise ConfigError(f"input {input_shape} has {batch_dims} batch axes before the {rank}-D (*spatial, C); "
                          f"{FRAMEWORK} flattens them into one, deconv takes one batch axis or none",
                          f"reshape the input to {(-1, *input_shape[batch_dims:])} and the output back")
    c_in = input_shape[-1]
    features, kernel_in = (weight_shape[rank], weight_shape[rank + 1]) if transpose else \
        (weight_shape[rank + 1], weight_shape[rank])
    if "features" in options:
        given = as_int("features", options["features"])
        if given != features:
            raise ConfigError(f"features={given} but the kernel {weight_shape} (*kernel_size, {_axes(transpose)}) has "
                              f"{features} ({FRAMEWORK} rejects the kernel param's shape)", f"pass features={features}")
    if kernel_in != c_in:
        expected = (*kernel, *((features, c_in) if transpose else (c_in, features)))
        raise ConfigError(f"the input has {c_in} channels but the kernel {weight_shape} is (*kernel_size, "
                          f"{_axes(transpose)}) for C_in {kernel_in} ({FRAMEWORK} rejects it: kernel param expected "
                          f"{expected})", f"pass transpose_kernel={not transpose}" if features == c_in else None)
    strides = _positive("strides", options.get("strides"), rank)
    dilation = _positive("kernel_dilation", options.get("kernel_dilation"), rank)
    _check_bias(options, bias_shape, features)
    padding = _padding(options.get("padding", "SAME"), rank)
    spatial = input_shape[batch_dims:-1]
    crops, dim_notes = _lax.crops(padding, spatial, kernel, strides, dilation, consistent=False, framework=LAX)
    config = DeconvConfig(
        kernel=kernel, stride=strides, dilation=dilation, crops=crops, groups=1, in_channels=c_in,
        out_channels=features, batched=batch_dims == 1, channels_last=True,
        weight_perm=(rank + 1, rank, *range(rank)) if transpose else (rank, rank + 1, *range(rank)),
        flip=not transpose,
    )
    notes = [("transpose_kernel=True: kernel (*kernel_size, features, C_in) read as W[i, o, t] = kernel[t, o, i]"
              if transpose else "transpose_kernel=False: kernel (*kernel_size, C_in, features) is the forward "
              "convolution's, read reversed: W[i, o, t] = kernel[K-1-t, i, o]"),
             f"rank {rank} from kernel_size; {'one batch axis' if batch_dims else 'no batch axis: unbatched'}"]
    return Parsed(config, dim_notes, tuple(notes))


def _axes(transpose: bool) -> str:
    return "features, C_in" if transpose else "C_in, features"


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} must be True or False")
    return value


def _check_kernel_size(value: object, kernel: Shape, weight_shape: Shape, transpose: bool) -> None:
    """An int is a 1-D kernel (Flax's rule), a sequence one size per dim; the kernel param must have that shape."""
    given = (as_int("kernel_size", value),) if not isinstance(value, (list, tuple)) else \
        tuple(as_int("kernel_size", v) for v in value)
    if given != kernel:
        said = f"{value!r} (an int is a 1-D kernel)" if isinstance(value, int) else fmt_shape(given)
        raise ConfigError(f"kernel_size={said} does not match the kernel {weight_shape} "
                          f"(*kernel_size, {_axes(transpose)}) ({FRAMEWORK} rejects the kernel param's shape)",
                          f"pass kernel_size={fmt_shape(kernel)}")


def _positive(name: str, value: object, rank: int) -> Shape:
    """None is 1; an int is broadcast; a sequence must have one value per dim (lax's verifier refuses others)."""
    if value is None:
        return (1,) * rank
    if isinstance(value, (list, tuple)) and len(value) != rank:
        raise ConfigError(f"{name}={tuple(value)} has {len(value)} values for a {rank}-D convolution ({FRAMEWORK} "
                          "fails to lower it: verifier errors)", f"give one value per dimension ({rank}) or one int")
    values = as_ints(name, value, rank)
    if min(values) < 1:
        raise ConfigError(f"{name}={fmt(values)} must be positive ({FRAMEWORK}: All dilations must be positive)")
    return values


def _check_bias(options, bias_shape, features) -> None:
    if "use_bias" in options:
        want = _bool("use_bias", options["use_bias"])
        if want and bias_shape is None:
            raise ConfigError(f"use_bias=True but no bias tensor was given ({FRAMEWORK}: could not find parameter "
                              "named \"bias\")", "pass --bias FILE or set use_bias=False")
        if not want and bias_shape is not None:
            raise ConfigError(f"use_bias=False but a bias tensor was given ({FRAMEWORK} would ignore it silently)",
                              "drop --bias or set use_bias=True")
    if bias_shape is not None and tuple(bias_shape) != (features,):
        raise ConfigError(f"bias has shape {tuple(bias_shape)}; {FRAMEWORK} needs ({features},) for {features} "
                          "features (it rejects the bias param's shape)")


def _padding(value: object, rank: int):
    """Flax's canonicalize_padding: a string passes through, an int is (p, p) everywhere, a sequence has one int
    or pair per dim. Lists stand for tuples (Flax freezes a module's list attributes into tuples)."""
    if isinstance(value, str):
        if value == "CIRCULAR":
            raise ConfigError(f"padding='CIRCULAR' wraps {FRAMEWORK}'s 'VALID' result around with period L*strides "
                              "(out[j] sums y[j + m*L*s]), which is not a crop; deconv does not compute it",
                              "compute padding='VALID' and fold the result periodically")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return ((value, value),) * rank
    if isinstance(value, (list, tuple)) and len(value) == rank:
        pairs = []
        for p in value:
            if isinstance(p, int) and not isinstance(p, bool):
                pairs.append((p, p))
            elif isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                      for v in p):
                pairs.append(tuple(p))
            else:
                break
        if len(pairs) == rank:
            return tuple(pairs)
    raise ConfigError(f"padding={value!r} is not a padding {FRAMEWORK} takes for a {rank}-D ConvTranspose: a string, "
                      f"an int, or per dimension ({rank}) one int or (low, high) pair ({FRAMEWORK}: Invalid padding format)",
                      "use 'SAME', 'VALID', an int or one (low, high) pair per dim")


# ----------------------------------------------------------------------------------------------------- express

def express(config: DeconvConfig, input_shape: Shape) -> Expression:
    """Write a canonical config as ConvTranspose keywords with transpose_kernel=True (the canonical weight needs
    only a permutation): 'SAME' or 'VALID' where they give the crops, else explicit (low, high) pairs."""
    rank = config.rank
    batch, channels, *spatial = tuple(input_shape)
    shape = ((batch,) if config.batched else ()) + (*spatial, channels)
    weight_shape = (*config.kernel, config.out_channels, config.in_channels)
    weight = f"transpose {(*range(2, rank + 2), 1, 0)} to (*kernel_size, features, C_in), transpose_kernel=True"
    if config.groups != 1:
        return Expression(NAME, {}, shape, weight_shape, weight, expressible=False,
                          reason=f"{FRAMEWORK} ConvTranspose has no groups")
    base: dict = {"features": config.out_channels, "kernel_size": tuple(config.kernel)}
    if max(config.stride) > 1:
        base["strides"] = compact(config.stride)
    if max(config.dilation) > 1:
        base["kernel_dilation"] = compact(config.dilation)
    base["transpose_kernel"] = True
    pairs = tuple(_lax.pairs_for(c, k, d, consistent=False) for c, k, d in zip(config.crops, config.kernel,
                                                                                config.dilation))
    explicit = (pairs[0][0] if len({p for pair in pairs for p in pair}) == 1
                else tuple(p[0] if p[0] == p[1] else p for p in pairs))
    candidates = [dict(base, padding="SAME"), dict(base, padding="VALID"), dict(base, padding=explicit)]
    return express_first(NAME, parse, config, shape, weight_shape, weight, candidates)
