"""PyTorch: ``torch.nn.functional.conv_transpose{1,2,3}d`` and ``nn.ConvTranspose{1,2,3}d``.

Rules (verified on PyTorch 2.13, docs/CONVENTIONS.md section 5):
- crop pair per dim is (padding, padding - output_padding): out = full - 2p + op;
- output_padding must be smaller than either stride or dilation, per dimension;
- ``output_size`` (the module's forward argument) picks op = size - (full - 2p), allowed in
  [full - 2p, full - 2p + stride - 1]; spatial sizes or the full (N, C, *spatial) shape;
- weight (C_in, C_out/groups, *k); bias 1-D (C_out,); input (N, C, *spatial) or unbatched (C, *spatial).
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
    check_groups,
    check_keywords,
    check_module_args,
    compact,
    express_first,
    fmt,
    fmt_shape,
)

NAME = "torch"
FRAMEWORK = "PyTorch 2.13"
DTYPES = ("float16", "float32", "float64")
# keywords that set the output size (deconv shape lists what they reach and solves --target-shape)
SIZE_KEYWORDS = (("output_padding", "offset"), ("output_size", "size"))
KEYWORDS = {
    "stride": "int or tuple: stride of the transposed convolution (default 1)",
    "padding": "int or tuple: dilation*(kernel-1)-padding zeros are added to both sides (default 0)",
    "output_padding": "int or tuple: extra size on one side of the output, < stride or < dilation (default 0)",
    "dilation": "int or tuple: spacing between kernel elements (default 1)",
    "groups": "int: blocked connections from input to output channels (default 1)",
    "output_size": "tuple: target spatial (or full) output size, as nn.ConvTranspose*d.forward takes it",
    "in_channels": "int: checked against the input's channels",
    "out_channels": "int: checked against the weight (weight.shape[1] * groups)",
    "kernel_size": "int or tuple: checked against the weight's spatial dims",
    "bias": "bool: checked against whether --bias is given",
    "padding_mode": "'zeros' only (as for every PyTorch transposed convolution)",
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
    rank = len(weight_shape) - 2
    if rank not in (1, 2, 3):
        raise ConfigError(
            f"weight has {len(weight_shape)} dimensions {tuple(weight_shape)}; PyTorch needs (C_in, C_out/groups, *kernel) "
            "with 1 to 3 kernel dims"
        )
    if len(input_shape) not in (rank + 1, rank + 2):
        raise ConfigError(
            f"input has {len(input_shape)} dimensions {tuple(input_shape)}; conv_transpose{rank}d expects "
            f"{rank + 1}-D (unbatched) or {rank + 2}-D (batched) input"
        )
    batched = len(input_shape) == rank + 2
    in_channels = input_shape[1 if batched else 0]
    kernel = tuple(weight_shape[2:])

    stride = as_ints("stride", options.get("stride", 1), rank)
    padding = as_ints("padding", options.get("padding", 0), rank)
    output_padding = as_ints("output_padding", options.get("output_padding", 0), rank)
    dilation = as_ints("dilation", options.get("dilation", 1), rank)
    groups = as_int("groups", options.get("groups", 1))

    if min(stride) < 1:
        raise ConfigError(f"stride={fmt(stride)}: non-positive stride is not supported (PyTorch rejects it)")
    if min(dilation) < 1:
        raise ConfigError(f"dilation={fmt(dilation)}: dilation should be greater than zero (PyTorch rejects it)")
    if min(padding) < 0:
        raise ConfigError(f"padding={fmt(padding)}: negative padding is not supported (PyTorch rejects it)")
    if min(output_padding) < 0:
        raise ConfigError(f"output_padding={fmt(output_padding)} must not be negative")
    check_groups(groups, weight_shape[0], FRAMEWORK)
    if weight_shape[0] != in_channels:
        raise ConfigError(
            f"weight of shape {tuple(weight_shape)} expects {weight_shape[0]} input channels, but the input has "
            f"{in_channels} (PyTorch rejects it)",
            "PyTorch's weight is (C_in, C_out/groups, *kernel)",
        )
    out_channels = weight_shape[1] * groups
    check_module_args(options, in_channels=in_channels, out_channels=out_channels, groups=groups, kernel=kernel,
                      bias_shape=bias_shape, framework=FRAMEWORK)
    check_bias(bias_shape, out_channels, accept=[(out_channels,)], framework="PyTorch (a 1-D bias)")

    spatial = tuple(input_shape[-rank:])
    notes: list[tuple[str, ...]] = []
    if "output_size" in options:
        output_padding = _output_padding_from_size(options["output_size"], spatial, kernel, stride, padding, dilation, batched)
        notes = [(f"output_size -> output_padding {op}",) for op in output_padding]
    for i in range(rank):
        if output_padding[i] >= stride[i] and output_padding[i] >= dilation[i]:
            raise ConfigError(
                f"output_padding={fmt(output_padding)} must be smaller than either stride {fmt(stride)} or "
                f"dilation {fmt(dilation)} in every dimension (PyTorch rejects it)"
            )
    crops = tuple((p, p - op) for p, op in zip(padding, output_padding))
    sizes = [full_length(n, k, s, d) - lo - hi for n, k, s, d, (lo, hi) in zip(spatial, kernel, stride, dilation, crops)]
    if min(sizes) < 1:
        raise ConfigError(
            f"calculated output size {fmt_shape(sizes)} is too small (PyTorch needs every output dimension >= 1)",
            "reduce padding",
        )
    dim_notes = tuple(
        (f"padding={p}, output_padding={op} -> crop ({p}, {p - op})", *(notes[i] if notes else ()))
        for i, (p, op) in enumerate(zip(padding, output_padding))
    )
    config = DeconvConfig(
        kernel=kernel, stride=stride, dilation=dilation, crops=crops, groups=groups,
        in_channels=in_channels, out_channels=out_channels, batched=batched,
    )
    return Parsed(config, dim_notes)



def _output_padding_from_size(value, spatial, kernel, stride, padding, dilation, batched) -> Shape:
    """nn.ConvTranspose*d.forward(output_size=...): output_padding = size - min, min <= size < min + stride."""
    rank = len(spatial)
    lead = rank + (2 if batched else 1)
    sizes = as_ints("output_size", value, rank, lengths=(rank, lead), scalar=False)[-rank:]
    low = [full_length(n, k, s, d) - 2 * p for n, k, s, d, p in zip(spatial, kernel, stride, dilation, padding)]
    high = [lo + s - 1 for lo, s in zip(low, stride)]
    if any(not lo <= n <= hi for n, lo, hi in zip(sizes, low, high)):
        raise ConfigError(
            f"requested an output size of {fmt_shape(sizes)}, but valid sizes range from {fmt_shape(low)} to {fmt_shape(high)} "
            "(PyTorch rejects it)"
        )
    return tuple(n - lo for n, lo in zip(sizes, low))


def express(config: DeconvConfig, input_shape: Shape) -> Expression:
    """torch keywords for a canonical config: padding p = lo, output_padding = lo - hi."""
    rank = config.rank
    base = {"stride": compact(config.stride), "dilation": compact(config.dilation), "groups": config.groups}

    def spell(padding, output_padding):
        options = dict(base, padding=compact(padding), output_padding=compact(output_padding))
        return {k: v for k, v in options.items() if v != DEFAULTS[k]}

    exact = spell([lo for lo, _ in config.crops], [lo - hi for lo, hi in config.crops])
    near_p = [max(lo, 0) for lo, _ in config.crops]
    near_op = [min(max(p - hi, 0), max(s, d) - 1) for p, (_, hi), s, d in zip(near_p, config.crops, config.stride, config.dilation)]
    shape = tuple(input_shape) if config.batched or len(input_shape) == rank + 1 else tuple(input_shape)
    return express_first(NAME, parse, config, shape, config.weight_shape, "as is: (C_in, C_out/groups, *kernel)",
                         [exact, spell(near_p, near_op), spell(near_p, [0] * rank), spell([0] * rank, [0] * rank)])


DEFAULTS = {"stride": 1, "dilation": 1, "groups": 1, "padding": 0, "output_padding": 0}
