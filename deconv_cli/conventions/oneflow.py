"""OneFlow: ``oneflow.nn.functional.conv_transpose{1,2,3}d`` and ``nn.ConvTranspose{1,2,3}d``.

Rules (verified on OneFlow 0.9.0, CPU; docs/CONVENTIONS.md section 3 and tests/golden/oneflow.json):
- PyTorch's rule: crop pair per dim is (padding, padding - output_padding), out = full - 2p + op;
- but nothing bounds output_padding or padding: op >= stride, negative op and negative padding are
  all valid OneFlow results (positions past the full result hold only the bias), and we reproduce them;
- weight (C_in, C_out/groups, *k); bias 1-D (C_out,); input (N, C, *spatial) only (no unbatched input);
- every output dimension must be >= 1 ("Output size is too small").

Rejected although OneFlow runs them, because the result is garbage: groups that do not divide C_in
(a wrong-shaped output), stride or dilation < 1, and a padding tuple longer than the rank (OneFlow
keeps the shape of the first r values but computes different numbers). Mixed dtypes abort the process
and float16 has no CPU kernel: ``DTYPES`` lets the job refuse both before anything runs.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..core.config import DeconvConfig, Shape
from ..core.errors import ConfigError
from ..core.shapes import full_length
from ._common import (
    Expression,
    Parsed,
    as_int,
    as_ints,
    check_bias,
    check_keywords,
    check_module_args,
    fmt,
)

NAME = "oneflow"
FRAMEWORK = "OneFlow 0.9.0"
DTYPES = ("float32", "float64")
DTYPE_NOTES = {"float16": "OneFlow has no CPU kernel for it"}
# keywords that set the output size (deconv shape lists what they reach and solves --target-shape)
SIZE_KEYWORDS = (("output_padding", "offset"),)
KEYWORDS = {
    "stride": "int or tuple: stride of the transposed convolution (default 1)",
    "padding": "int or tuple: crop from both ends of the full result; negative adds zeros (default 0)",
    "output_padding": "int or tuple: extra size at the end of each dim, any integer (default 0; not range-checked)",
    "dilation": "int or tuple: spacing between kernel elements (default 1)",
    "groups": "int: blocked connections from input to output channels (default 1)",
    "in_channels": "int: checked against the input's channels (nn.ConvTranspose*d)",
    "out_channels": "int: checked against the weight (weight.shape[1] * groups)",
    "kernel_size": "int or tuple: checked against the weight's spatial dims",
    "bias": "bool: checked against whether --bias is given",
    "padding_mode": "'zeros' only (OneFlow asserts it)",
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
            f"input has {len(input_shape)} dimensions {input_shape}; OneFlow's conv_transpose needs (N, C, *spatial) "
            "with 1 to 3 spatial dims (it has no unbatched input)"
        )
    if len(weight_shape) != rank + 2:
        raise ConfigError(
            f"weight has {len(weight_shape)} dimensions {weight_shape} for a {rank}-D input "
            f"(OneFlow rejects it: ({len(weight_shape)} vs {rank + 2}))",
            f"OneFlow's weight is (C_in, C_out/groups, *kernel) with {rank} kernel dims",
        )
    in_channels = input_shape[1]
    kernel = weight_shape[2:]

    stride = as_ints("stride", options.get("stride", 1), rank)
    padding = _padding(options.get("padding", 0), rank)
    output_padding = as_ints("output_padding", options.get("output_padding", 0), rank)
    dilation = as_ints("dilation", options.get("dilation", 1), rank)
    groups = as_int("groups", options.get("groups", 1))

    if min(stride) < 1:
        raise ConfigError(f"stride={fmt(stride)} must be positive (OneFlow does not check it and returns a garbage shape)")
    if min(dilation) < 1:
        raise ConfigError(f"dilation={fmt(dilation)} must be positive (OneFlow does not check it and returns a garbage shape)")
    if groups < 1:
        raise ConfigError(f"groups={groups} must be positive (OneFlow rejects it: output size is too small)")
    if in_channels % groups:
        raise ConfigError(
            f"groups={groups} must divide input channels {in_channels} (OneFlow does not check it and returns "
            f"a wrong-shaped result with {weight_shape[1] * groups} channels; nn.ConvTranspose{rank}d asserts)",
            "pick a group count that divides the channels",
        )
    if weight_shape[0] != in_channels:
        raise ConfigError(
            f"weight of shape {weight_shape} expects {weight_shape[0]} input channels, but the input has "
            f"{in_channels} (OneFlow rejects it)",
            "OneFlow's weight is (C_in, C_out/groups, *kernel)",
        )
    out_channels = weight_shape[1] * groups
    check_module_args(options, in_channels=in_channels, out_channels=out_channels, groups=groups, kernel=kernel,
                      bias_shape=bias_shape, framework=FRAMEWORK)
    check_bias(bias_shape, out_channels, accept=[(out_channels,)], framework="OneFlow (a 1-D bias)")

    spatial = input_shape[2:]
    crops = tuple((p, p - op) for p, op in zip(padding, output_padding))
    sizes = tuple(full_length(n, k, s, d) - lo - hi for n, k, s, d, (lo, hi) in zip(spatial, kernel, stride, dilation, crops))
    if min(sizes) < 1:
        raise ConfigError(
            f"calculated output size {fmt(sizes)} is too small (OneFlow rejects it: every output dimension must be >= 1)",
            "reduce padding or raise output_padding",
        )
    dim_notes = tuple(_dim_note(p, op, s, d) for p, op, s, d in zip(padding, output_padding, stride, dilation))
    config = DeconvConfig(
        kernel=kernel, stride=stride, dilation=dilation, crops=crops, groups=groups,
        in_channels=in_channels, out_channels=out_channels,
    )
    return Parsed(config, dim_notes)


def _padding(value: object, rank: int) -> Shape:
    if isinstance(value, (list, tuple)) and len(value) > rank:
        raise ConfigError(
            f"padding={tuple(value)} has {len(value)} values for a {rank}-D convolution (OneFlow keeps the shape "
            f"of the first {rank} but computes different values: silent garbage)",
            f"pass {rank} values",
        )
    return as_ints("padding", value, rank)


def _dim_note(p: int, op: int, s: int, d: int) -> tuple[str, ...]:
    note = f"padding={p}, output_padding={op} -> crop ({p}, {p - op})"
    extra = []
    if op >= s and op >= d or op < 0:
        extra.append(f"output_padding {op} is outside PyTorch's range; OneFlow accepts it (positions past full are bias only)")
    if p < 0:
        extra.append(f"negative padding {p}: {-p} bias-only positions at each end")
    return (note, *extra)



def express(config: DeconvConfig, input_shape: Shape) -> Expression:
    """Write a canonical config in OneFlow's keywords: padding = lo, output_padding = lo - hi (any sign)."""
    input_shape = tuple(input_shape)
    padding = tuple(lo for lo, _ in config.crops)
    output_padding = tuple(lo - hi for lo, hi in config.crops)
    options = {
        "stride": config.stride, "padding": padding, "output_padding": output_padding,
        "dilation": config.dilation, "groups": config.groups,
    }
    if not config.batched:
        return Expression(
            NAME, options, input_shape if len(input_shape) == config.rank + 2 else (1, *input_shape),
            config.weight_shape, "as is", expressible=False,
            crop=tuple((0, 0) for _ in config.crops),
            reason="OneFlow has no unbatched input: add a batch axis of 1 and drop it from the result",
        )
    return Expression(NAME, options, input_shape, config.weight_shape, "as is")
