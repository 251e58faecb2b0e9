"""Pieces every convention module needs: the Parsed record and option coercion with clear errors."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..core.config import DeconvConfig, Shape
from ..core.errors import ConfigError


@dataclass(frozen=True)
class Parsed:
    """A convention's result: the canonical config plus how each value was derived (kept beside it,
    so that two spellings of one deconvolution compare equal on ``config``)."""

    config: DeconvConfig
    dim_notes: tuple[tuple[str, ...], ...] = ()
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


# The same concept under each framework's name: an unknown keyword from another style is pointed to
# this style's spelling before falling back to the closest-looking name.
SYNONYMS = (
    ("stride", "strides"),
    ("dilation", "dilations"),
    ("padding", "pads", "pad"),
    ("groups", "group"),
    ("kernel_size", "kernel_shape"),
    ("output_size", "output_shape", "input_size"),
    ("in_channels", "in_channel"),
    ("out_channels", "out_channel"),
    ("auto_pad", "pad_mode"),
)


def check_keywords(options: Mapping[str, object], keywords: Mapping[str, str], style: str) -> None:
    """Reject unknown keywords, suggesting this style's name for the concept or the closest known one."""
    for key in options:
        if key in keywords:
            continue
        import difflib  # only on this error path: it is slow to import

        same = [k for group in SYNONYMS if key in group for k in group if k in keywords]
        close = same or difflib.get_close_matches(key, list(keywords), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"{style} takes: {', '.join(sorted(keywords))}"
        raise ConfigError(f"unknown option '{key}' for style {style}", hint)


def as_int(name: str, value: object) -> int:
    """An int option; bools, floats and strings are refused rather than coerced."""
    if isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} must be an integer")
    try:
        return operator.index(value)
    except TypeError:
        raise ConfigError(f"{name}={value!r} must be an integer") from None


def as_ints(name: str, value: object, rank: int, *, lengths: Sequence[int] | None = None, scalar: bool = True) -> Shape:
    """An int or a sequence of ints. An int is repeated ``rank`` times (when ``scalar``);
    a sequence must have one of ``lengths`` (default: exactly ``rank``) values."""
    lengths = tuple(lengths or (rank,))
    if isinstance(value, (list, tuple)):
        if len(value) not in lengths:
            want = " or ".join(str(n) for n in lengths)
            raise ConfigError(f"{name}={_fmt(value)} has {len(value)} values, expected {want}")
        return tuple(as_int(name, v) for v in value)
    if scalar and not isinstance(value, (str, bytes)):
        return (as_int(name, value),) * rank
    want = " or ".join(str(n) for n in lengths)
    raise ConfigError(f"{name}={value!r} must be {'an integer or ' if scalar else ''}a tuple of {want} integers")


def _fmt(value: object) -> str:
    return repr(tuple(value)) if isinstance(value, (list, tuple)) else repr(value)


def fmt(values: Sequence[int]) -> str:
    """How messages quote per-dimension numbers: 2 when every dimension has it, else (1, 2)."""
    return str(values[0]) if len(set(values)) == 1 else str(tuple(values))


def fmt_shape(values: Sequence[int]) -> str:
    """Sizes and kernels are always quoted as tuples: (3, 3)."""
    return str(tuple(values))


def positive(name: str, values: Shape, rule: str) -> Shape:
    if min(values) < 1:
        raise ConfigError(f"{name}={fmt(values)} must be positive ({rule})")
    return values


def check_kernel(name: str, value: object, kernel: Shape, framework: str) -> None:
    """An optional kernel keyword must agree with the weight tensor's spatial dims."""
    given = as_ints(name, value, len(kernel))
    if given != kernel:
        raise ConfigError(
            f"{name}={fmt_shape(given)} does not match the weight's kernel {fmt_shape(kernel)} ({framework} checks this)",
            f"drop {name} or pass {name}={fmt_shape(kernel)}",
        )


def check_equal(name: str, value: object, actual: int, what: str, framework: str) -> None:
    if as_int(name, value) != actual:
        raise ConfigError(f"{name}={value} but {what} is {actual} ({framework} checks this)", f"pass {name}={actual}")


def check_module_args(options: Mapping[str, object], *, in_channels: int, out_channels: int, groups: int, kernel: Shape,
                      bias_shape: Shape | None, framework: str) -> None:
    """The ConvTranspose*d module constructor arguments (torch, OneFlow, MegEngine), checked against the tensors."""
    for key, actual, what in (("in_channels", in_channels, "the input's channel count"),
                              ("out_channels", out_channels, "weight.shape[1] * groups")):
        if key in options:
            if as_int(key, options[key]) % groups:
                raise ConfigError(f"{key}={options[key]} must be divisible by groups={groups} ({framework} rejects it)")
            check_equal(key, options[key], actual, what, framework)
    if "kernel_size" in options:
        check_kernel("kernel_size", options["kernel_size"], kernel, framework)
    if "bias" in options:
        want = options["bias"]
        if not isinstance(want, bool):
            raise ConfigError(f"bias={want!r} must be True or False")
        if want != (bias_shape is not None):
            raise ConfigError(f"bias={want} but {'no' if want else 'a'} bias tensor was given",
                              "pass --bias FILE" if want else "drop --bias or set bias=True")
    mode = options.get("padding_mode", "zeros")
    if mode != "zeros":
        raise ConfigError(f"padding_mode={mode!r}: {framework} transposed convolutions only pad with zeros")


def data_format_of(options: Mapping[str, object], formats: Sequence[str], op: str, framework: str) -> str:
    """The ``data_format`` keyword, one of ``formats`` for this rank (the first is the framework's default)."""
    chosen = options.get("data_format", formats[0])
    if chosen not in formats:
        raise ConfigError(f"data_format={chosen!r}: {op} takes {' or '.join(formats)} ({framework} rejects it)",
                          f"use data_format={formats[0]!r}")
    return str(chosen)


def check_batched(input_shape: Shape, rank: int, op: str, data_format: str, framework: str) -> None:
    """The input has a batch axis: ``rank`` + 2 dimensions (the op has no unbatched form)."""
    if len(input_shape) != rank + 2:
        raise ConfigError(f"input has {len(input_shape)} dimensions {input_shape}; {op} needs {rank + 2} "
                          f"({data_format}: there is no unbatched input; {framework} rejects it)",
                          "add a batch axis of 1" if len(input_shape) == rank + 1 else None)


def check_bias(bias_shape: Shape | None, out_channels: int, *, accept: Sequence[Shape], framework: str) -> None:
    """The bias must have one of the accepted shapes (each a shape with out_channels filled in)."""
    if bias_shape is None:
        return
    if tuple(bias_shape) not in [tuple(s) for s in accept]:
        shapes = " or ".join(str(tuple(s)) for s in accept)
        raise ConfigError(f"bias has shape {tuple(bias_shape)}; {framework} needs {shapes} for {out_channels} output channels")


def check_groups(groups: int, in_channels: int, framework: str) -> None:
    if groups < 1:
        raise ConfigError(f"groups={groups} must be positive ({framework})")
    if in_channels % groups:
        raise ConfigError(
            f"groups={groups} must divide input channels {in_channels} ({framework} rejects it)",
            "pick a group count that divides the channels",
        )


@dataclass(frozen=True)
class Expression:
    """One canonical config written in a style's own keywords (what ``deconv explain`` prints).

    ``options`` parsed by the style with ``input_shape``/``weight_shape`` gives back the same config,
    up to layout, when ``expressible``. When it is not, ``options`` give the nearest config and ``crop``
    says what to do to its output per spatial dim: ``[[lo, hi], ...]`` more to cut from the start/end
    (negative: positions to add, holding only the bias); ``reason`` says why.
    """

    style: str
    options: dict
    input_shape: Shape
    weight_shape: Shape
    weight: str
    expressible: bool = True
    crop: tuple[tuple[int, int], ...] | None = None
    reason: str | None = None


def compact(values: Sequence[int]) -> int | tuple[int, ...]:
    """The shortest spelling of per-dimension values: 2 when every dimension has it, else (1, 2)."""
    return values[0] if len(set(values)) == 1 else tuple(values)


def express_first(style: str, parse, config: DeconvConfig, input_shape: Shape, weight_shape: Shape, weight: str,
                  candidates) -> Expression:
    """The first candidate spelling that parses back to exactly ``config``'s crops; else the first that
    parses at all, with the residual crop to apply to its output.

    ``candidates`` yields option dicts, best first. Verifying each by parsing it is what makes the
    round trip parse(express(config)) == config hold by construction.
    """
    nearest = None
    for options in candidates:
        try:
            got = parse(options, input_shape=input_shape, weight_shape=weight_shape).config
        except ConfigError:
            continue
        residual = tuple((lo - glo, hi - ghi) for (lo, hi), (glo, ghi) in zip(config.crops, got.crops))
        if got.stride != config.stride or got.dilation != config.dilation or got.groups != config.groups:
            continue
        if all(r == (0, 0) for r in residual):
            return Expression(style, options, input_shape, weight_shape, weight)
        # a negative residual adds positions holding only the bias: right only past the full result, where
        # the nearest spelling itself does not crop (else those positions hold data it dropped)
        outside = all((rl >= 0 or gl <= 0) and (rh >= 0 or gh <= 0) for (rl, rh), (gl, gh) in zip(residual, got.crops))
        if nearest is None and outside:
            nearest = (options, residual)
    if nearest is None:
        return Expression(style, {}, input_shape, weight_shape, weight, expressible=False,
                          reason=f"{style} has no spelling for this configuration")
    options, residual = nearest
    return Expression(
        style, options, input_shape, weight_shape, weight, expressible=False, crop=residual,
        reason=f"{style} cannot express crops {tuple(config.crops)}; crop its output by {residual} (negative: add bias-only positions)",
    )
