"""MegEngine: ``functional.nn.conv_transpose{2,3}d`` and ``module.ConvTranspose{2,3}d``.

Rules, verified on MegEngine 1.13 CPU (docs/CONVENTIONS.md section 2, re-checked by make_megengine_goldens.py):
- crop pair per dim (padding, padding - output_padding), output_padding < stride (dilation does not relax it);
- weight (C_in, C_out, k...) for groups=1 and, mandatory for groups>1, (groups, C_in/g, C_out/g, k...): the same
  memory order as the canonical (C_in, C_out/g, k...), so a plain reshape converts it;
- bias (1, C_out, 1, ...) (the module's parameter); a (C_out,) bias is taken too (the functional would refuse it);
- no 1-D, no unbatched input; stride 0 kills MegEngine with SIGFPE, so it is refused here.

Three 1.13 defects in the Python wrapper, handled per the bug policy (documented result + one warning; with
``quirks=True`` the released behaviour):
1. conv_transpose2d tests ``output_pad_h != 0 or output_pad_h != 0``: output_padding (0, w) is silently ignored.
   quirks: reproduced (output as if output_padding were (0, 0)).
2. with output_padding != 0 the output shape is computed from weight.shape[1:] as (C_out, k...), wrong for the
   grouped 6-D/5-D weight: groups>1 with output_padding fails. quirks: ConfigError.
3. with output_padding != 0 the functional indexes the raw stride (2-D), padding and dilation with [0]: an int
   (including the int defaults) raises TypeError. quirks: ConfigError (the modules convert to tuples first).
float64 is refused: MegEngine silently computes and returns float32 (cast to float32 to get its result).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from ..core.config import DeconvConfig, Shape
from ..core.errors import ConfigError
from ..core.shapes import full_length
from ._common import (
    Expression,
    Parsed,
    as_int,
    as_ints,
    check_keywords,
    check_module_args,
    express_first,
    fmt,
)

NAME = "megengine"
FRAMEWORK = "MegEngine 1.13"
DTYPES = ("float16", "float32")
DTYPE_NOTES = {"float64": "MegEngine silently computes and returns float32"}
MODULE_ARGS = ("in_channels", "out_channels", "kernel_size", "bias")
SIZE_KEYWORDS = (("output_padding", "offset"),)
KEYWORDS = {
    "stride": "int or tuple: stride (default 1); write tuples when output_padding is set (1.13 defect)",
    "padding": "int or tuple: zeros added on both sides, cropped from the output (default 0)",
    "output_padding": "int or tuple: extra size at the end of each axis, < stride (default 0)",
    "dilation": "int or tuple: spacing between kernel elements (default 1)",
    "groups": "int: groups; > 1 needs the weight as (groups, C_in/g, C_out/g, k...) (default 1)",
    "in_channels": "int: checked against the input's channels",
    "out_channels": "int: checked against the weight's output channels",
    "kernel_size": "int or tuple: checked against the weight's spatial dims",
    "bias": "bool: checked against whether --bias is given",
    "padding_mode": "'zeros' only",
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
    if rank not in (2, 3):
        raise ConfigError(
            f"input has {len(input_shape)} dimensions {input_shape}; {FRAMEWORK} conv_transpose2d/3d need (N, C, H, W) "
            "or (N, C, D, H, W): there is no 1-D transposed convolution and no unbatched input (MegEngine rejects it)",
            "add a batch axis of 1",
        )
    groups = as_int("groups", options.get("groups", 1))
    if groups < 1:
        raise ConfigError(f"groups={groups} must be positive ({FRAMEWORK} rejects it)")
    kernel, in_channels, out_channels = _weight(weight_shape, rank, groups, input_shape)
    values = {}
    for name, default in (("stride", 1), ("padding", 0), ("output_padding", 0), ("dilation", 1)):
        raw = options.get(name, default)
        if isinstance(raw, (list, tuple)) and len(raw) != rank:
            what = "uses only the first" if len(raw) > rank else "fails with IndexError for fewer than"
            raise ConfigError(f"{name}={tuple(raw)} has {len(raw)} values for a {rank}-D convolution "
                              f"({FRAMEWORK} {what} {rank})", f"give {rank} values")
        values[name] = as_ints(name, raw, rank)
    stride, padding, op, dilation = (values[k] for k in ("stride", "padding", "output_padding", "dilation"))
    if min(stride) < 1:
        raise ConfigError(f"stride={fmt(stride)} must be positive ({FRAMEWORK} " +
                          ("dies with SIGFPE, a division by zero" if 0 in stride else "rejects it") + ")")
    if min(dilation) < 1:
        raise ConfigError(f"dilation={fmt(dilation)} must be positive ({FRAMEWORK} rejects it)")
    if min(padding) < 0:
        raise ConfigError(f"padding={fmt(padding)} must not be negative ({FRAMEWORK} rejects it)")
    if min(op) < 0:
        raise ConfigError(f"output_padding={fmt(op)} must not be negative ({FRAMEWORK} rejects it)")
    check_module_args(options, in_channels=in_channels, out_channels=out_channels, groups=groups, kernel=kernel,
                      bias_shape=bias_shape, framework=FRAMEWORK)
    notes = []
    if bias_shape is not None:
        want = (1, out_channels) + (1,) * rank
        if tuple(bias_shape) not in (want, (out_channels,)):
            raise ConfigError(f"bias has shape {tuple(bias_shape)}; {FRAMEWORK} needs {want} (or (C_out,) here) "
                              f"for {out_channels} output channels")
        if tuple(bias_shape) == (out_channels,):
            notes.append(f"bias {tuple(bias_shape)} taken as {want} (MegEngine's functional needs the broadcastable shape)")

    effective, warnings = _output_padding(options, rank, stride, op, groups, quirks)
    crops, dim_notes = [], []
    for i in range(rank):
        full = full_length(input_shape[2 + i], kernel[i], stride[i], dilation[i])
        if full <= 2 * padding[i]:
            raise ConfigError(
                f"calculated output size {full - 2 * padding[i] + effective[i]} in dimension {i} is too small: "
                f"full {full} <= 2*padding {2 * padding[i]} ({FRAMEWORK} rejects it: assertion `i > pad * 2' failed)",
                "reduce padding")
        crop = (padding[i], padding[i] - effective[i])
        crops.append(crop)
        dim_notes.append((f"padding={padding[i]}, output_padding={effective[i]} -> crop {crop}",))
    config = DeconvConfig(
        kernel=kernel, stride=stride, dilation=dilation, crops=tuple(crops), groups=groups,
        in_channels=in_channels, out_channels=out_channels,
    )
    return Parsed(config, tuple(dim_notes), tuple(notes), tuple(warnings))


def _weight(weight_shape, rank, groups, input_shape):
    """(kernel, C_in, C_out) from MegEngine's weight: (C_in, C_out, k...) or (groups, C_in/g, C_out/g, k...)."""
    want = rank + (2 if groups == 1 else 3)
    layout = "(C_in, C_out, k...)" if groups == 1 else "(groups, C_in/groups, C_out/groups, k...)"
    if len(weight_shape) != want:
        raise ConfigError(
            f"weight has {len(weight_shape)} dimensions {weight_shape}; with groups={groups} {FRAMEWORK} needs {layout} "
            f"({want} dimensions; it fails: assertion `filter.ndim == img_ndim + {want - rank}')",
            "reshape the weight to (groups, C_in/groups, C_out/groups, k...)" if groups > 1 else None,
        )
    if groups == 1:
        in_channels, out_channels, kernel = weight_shape[0], weight_shape[1], weight_shape[2:]
    else:
        if weight_shape[0] != groups:
            raise ConfigError(
                f"groups={groups} but the weight {weight_shape} has {weight_shape[0]} groups in its first dimension "
                f"({FRAMEWORK} would silently use {weight_shape[0]} groups)",
                f"pass groups={weight_shape[0]} or reshape the weight")
        in_channels, out_channels = groups * weight_shape[1], groups * weight_shape[2]
        kernel = weight_shape[3:]
    if input_shape[1] != in_channels:
        raise ConfigError(
            f"the input has {input_shape[1]} channels but the weight {weight_shape} expects {in_channels} "
            f"({FRAMEWORK} rejects it: assertion `cflt.ocpg * cflt.group == diff[1]' failed)",
            f"MegEngine's weight is {layout}")
    return tuple(kernel), in_channels, out_channels



def _output_padding(options, rank, stride, op, groups, quirks):
    """The output_padding actually applied, and the warnings, per the bug policy (see the module docstring)."""
    ignored = rank == 2 and op[0] == 0 and op[1] != 0
    taken = (0, 0) if ignored else op  # what MegEngine 1.13 applies
    warnings: list[str] = []
    checked = op if not quirks else (taken if any(taken) else ())
    for i, (o, s) in enumerate(zip(checked, stride)):
        if o >= s:
            raise ConfigError(f"output_padding={fmt(op)}: output_padding[{i}] should be less than stride[{i}] = {s} "
                              f"({FRAMEWORK} rejects it; dilation does not relax this)")
    if ignored:
        msg = (f"{FRAMEWORK} conv_transpose2d ignores output_padding[1]={op[1]} when output_padding[0] is 0 "
               f"(it tests output_pad_h twice): the width comes out {op[1]} shorter than documented")
        if quirks:
            return taken, []
        warnings.append(msg + "; computing the documented result (pass --quirks for MegEngine's)")
    failures = []
    if any(taken):
        if groups > 1:
            failures.append(f"groups={groups} with output_padding fails in {FRAMEWORK} (the output shape is computed "
                            "from the grouped weight's wrong dims)")
        module = any(k in options for k in MODULE_ARGS)  # the modules convert ints to tuples first
        raw = [] if module else [k for k in (("stride",) if rank == 2 else ()) + ("padding", "dilation")
                                 if not isinstance(options.get(k, 0), (list, tuple))]
        if raw:
            failures.append(f"{FRAMEWORK} conv_transpose{rank}d with output_padding indexes {', '.join(raw)} with [0]: "
                            f"an int (also the default) raises TypeError 'int' object is not subscriptable")
    if failures and quirks:
        hint = "pass tuples, e.g. padding=(0, 0)" if not groups > 1 else "drop output_padding or use groups=1"
        raise ConfigError("; ".join(failures), hint + ", or drop --quirks for the documented result")
    warnings += [f + "; computing the documented result (pass --quirks to reject as MegEngine does)" for f in failures]
    return op, warnings


# ----------------------------------------------------------------------------------------------------- express

def express(config: DeconvConfig, input_shape: Shape) -> Expression:
    """Write a canonical config in MegEngine's keywords (tuples, to dodge the 1.13 int defect)."""
    input_shape = tuple(input_shape)
    g = config.groups
    if g == 1:
        weight, weight_shape = "as is: (C_in, C_out, k...)", config.weight_shape
    else:
        weight = "reshape to (g, C_in/g, C_out/g, k...)"
        weight_shape = (g, config.in_channels // g, config.out_channels // g, *config.kernel)
    if config.rank == 1:
        return Expression(NAME, {}, input_shape, weight_shape, weight, expressible=False,
                          reason="MegEngine has no 1-D transposed convolution")
    # tuples throughout: MegEngine 1.13 raises TypeError for int stride/padding/dilation with output_padding
    base: dict = {"stride": tuple(config.stride), "dilation": tuple(config.dilation)}
    if g != 1:
        base["groups"] = g

    def spell(padding, ops_):
        options = dict(base, padding=tuple(padding))
        return dict(options, output_padding=tuple(ops_)) if any(ops_) else options

    padding = [lo for lo, _ in config.crops]
    ops_ = [lo - hi for lo, hi in config.crops]
    defects = []
    if any(ops_) and g > 1:
        defects.append(f"{FRAMEWORK} fails for groups>1 with output_padding")
    if config.rank == 2 and ops_[0] == 0 and ops_[1]:
        defects.append(f"{FRAMEWORK} conv_transpose2d ignores output_padding (0, w)")
    near = [max(0, min(lo, hi)) for lo, hi in config.crops]
    candidates = [] if defects else [spell(padding, ops_)]
    candidates += [spell(near, [0] * config.rank), spell([0] * config.rank, [0] * config.rank)]
    e = express_first(NAME, parse, config, input_shape, weight_shape, weight, candidates)
    if defects and not e.expressible and e.crop is not None:
        e = replace(e, reason="; ".join(defects) + f": the nearest call it runs correctly, then crop by {e.crop}")
    return e
