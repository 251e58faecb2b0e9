"""Which output sizes a style can reach, and which option value gives each (``deconv shape``).

Rather than restating every framework's size rules, this probes the style's own parser: each
convention lists its size keywords (``SIZE_KEYWORDS``: output_padding-like offsets, output_shape-like
spatial sizes, or input_size-like full shapes) and every candidate value is parsed, so what is reported
reachable is exactly what the style accepts, validation included. Past ``EXHAUSTIVE`` candidates (huge
strides or dilations) the ends of the valid interval are found by bisection instead of one parse each.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from dataclasses import replace

from .. import conventions
from ..core.config import FLOAT_DTYPES, Shape
from ..core.errors import ConfigError, DeconvError
from ..core.shapes import Derivation, axis_names, derive

# Up to this many candidate values per keyword and dimension are each parsed (about 30 us apiece); beyond
# that (a stride or dilation in the hundreds and up) the reachable values are found by bisection, so that
# ``deconv shape`` answers at once for any stride (10**6, 10**30).
EXHAUSTIVE = 512
# A run of more reachable sizes than this is written "first..last" in JSON instead of one entry per size.
JSON_LISTED = 4096


def _space(kind: str, axis: int, record: Derivation) -> tuple[int, Callable[[int], tuple]]:
    """One keyword's candidate values on one dimension: (how many, the i-th value). The value on the
    probed dimension grows by one per index: offsets 0..2*max(s, d); sizes from 8 spans below the
    record's size to one span above it."""
    config, rank = record.config, record.config.rank
    span = 2 * max(config.stride[axis], config.dilation[axis])
    if kind == "offset":
        return span + 1, lambda i: tuple(i if a == axis else 0 for a in range(rank))
    base = list(record.output_spatial)
    first = max(1, base[axis] - 8 * span)

    def value(i: int) -> tuple:
        sizes = tuple(first + i if a == axis else base[a] for a in range(rank))
        return sizes if kind == "size" else _full_shape(record, sizes)

    return base[axis] + span + 1 - first, value


def _full_shape(record: Derivation, sizes: tuple) -> tuple:
    """A full output shape with these spatial sizes, in the record's layout (TensorFlow's NHWC output_shape)."""
    batch, channels = record.output_shape[0], record.config.out_channels
    return (batch, *sizes, channels) if record.config.channels_last else (batch, channels, *sizes)


class SizeRun(Mapping):
    """{size: value} for every size in [first, last] with value ``size + shift``: a long run of reachable
    sizes kept as its two ends. It compares equal to the dict it stands for."""

    def __init__(self, first: int, last: int, shift: int):
        self.first, self.last, self.shift = first, last, shift

    def __getitem__(self, size):
        if isinstance(size, int) and self.first <= size <= self.last:
            return size + self.shift
        raise KeyError(size)

    def __iter__(self):
        return iter(range(self.first, self.last + 1))

    def __len__(self) -> int:
        return self.count  # raises OverflowError past sys.maxsize: use .count

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    def __repr__(self) -> str:
        return f"SizeRun({self.first}..{self.last}, shift={self.shift})"


def _bisect(count: int, value: Callable[[int], tuple], start: int, size_of, position: int) -> SizeRun | None:
    """The reachable sizes of a long candidate list by bisection from an index ``start`` that is valid.

    Every style's size rules are bounds (output_padding < stride, min <= output_size <= max), so the valid
    values are one interval and the size moves one for one with the value. That is checked at the ends and
    at interior points; None (the caller falls back to a bounded window) where it does not hold.
    """
    def edge(good: int, bad: int) -> int:  # the last valid index going from good towards bad
        while abs(bad - good) > 1:
            mid = (good + bad) // 2
            good, bad = (mid, bad) if size_of(value(mid)) is not None else (good, mid)
        return good

    first = 0 if size_of(value(0)) is not None else edge(start, 0)
    last = count - 1 if size_of(value(count - 1)) is not None else edge(start, count - 1)
    shift = value(first)[position] - size_of(value(first))
    for i in {last, start, *(first + (last - first) * k // 8 for k in range(1, 8))}:
        size = size_of(value(i))
        if size is None or value(i)[position] - size != shift:
            return None
    return SizeRun(value(first)[position] - shift, value(last)[position] - shift, shift)


def _probe(style: str, options: Mapping, input_shape: Shape, weight_shape: Shape, bias_shape, quirks) -> Derivation | None:
    try:
        return plan(style, options, input_shape, weight_shape, bias_shape, quirks=quirks)
    except DeconvError:
        return None


Reachable = list[dict[str, dict[int, int]]]


def reachable(record: Derivation, bias_shape: Shape | None = None, *, quirks: bool = False) -> Reachable:
    """Per spatial dimension: {size keyword: {output size: that keyword's value on this dimension}}.

    Other dimensions keep the record's sizes (or offset 0) while one dimension is probed. The bias
    shape and quirks default to the record's own.
    """
    bias_shape = record.bias_shape if bias_shape is None else bias_shape
    quirks = quirks or record.quirks
    module = conventions.get(record.style)
    keywords = dict(getattr(module, "SIZE_KEYWORDS", ()))
    base = {k: v for k, v in record.options if k not in keywords}
    found: Reachable = [{} for _ in range(record.config.rank)]
    for keyword, kind in keywords.items():
        lead = (1 if record.config.channels_last else 2) if kind == "full_size" else 0
        for axis in range(record.config.rank):
            def size_of(value, keyword=keyword, axis=axis):
                probe = _probe(record.style, {**base, keyword: value}, record.input_shape, record.weight_shape,
                               bias_shape, quirks)
                return None if probe is None else probe.output_spatial[axis]

            count, value = _space(kind, axis, record)
            start = 0 if kind == "offset" else max(0, min(count - 1, record.output_spatial[axis] - value(0)[lead + axis]))
            if count > EXHAUSTIVE and size_of(value(start)) is not None:
                run = _bisect(count, value, start, size_of, lead + axis)
                if run is not None:
                    found[axis][keyword] = run if run.count > EXHAUSTIVE else dict(run.items())
                    continue
            # every candidate (or, past EXHAUSTIVE, the window of them around the record's own size)
            low = max(0, min(start - EXHAUSTIVE // 2, count - EXHAUSTIVE))
            for i in range(low, min(count, low + EXHAUSTIVE)):
                size = size_of(value(i))
                if size is not None:
                    found[axis].setdefault(keyword, {}).setdefault(size, value(i)[lead + axis])
    return found


def ranges(sizes: Mapping[int, int]) -> str:
    """{9: 0, 10: 1, 12: 3} -> '9..10, 12': runs of consecutive sizes."""
    if isinstance(sizes, SizeRun):
        return f"{sizes.first}..{sizes.last}"
    runs, keys = [], sorted(sizes)
    for size in keys:
        if runs and size == runs[-1][1] + 1:
            runs[-1][1] = size
        else:
            runs.append([size, size])
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in runs)


def solve(record: Derivation, target: Shape, bias_shape: Shape | None = None, *, quirks: bool = False) -> Derivation:
    """The record's options with a size keyword set so that the spatial output is ``target``."""
    bias_shape = record.bias_shape if bias_shape is None else bias_shape
    quirks = quirks or record.quirks
    module = conventions.get(record.style)
    keywords = dict(getattr(module, "SIZE_KEYWORDS", ()))
    target = tuple(target)
    rank = record.config.rank
    if len(target) != rank:
        raise ConfigError(f"--target-shape has {len(target)} sizes for a {rank}-D deconvolution", f"give {rank} spatial sizes")
    if record.output_spatial == target:
        return record
    base = {k: v for k, v in record.options if k not in keywords}
    for keyword, kind in keywords.items():
        if kind == "offset":
            options = {**base, keyword: (0,) * rank}
            start = _probe(record.style, options, record.input_shape, record.weight_shape, bias_shape, quirks)
            if start is None:
                continue
            # the candidates are 0..count-1: the one that adds what is missing, if it is among them
            spans = [_space(kind, a, record)[0] for a in range(rank)]
            found = [t - s if 0 <= t - s < n else None for t, s, n in zip(target, start.output_spatial, spans)]
            if None in found:
                continue
            value = tuple(found)
        elif kind == "size":
            value = target
        else:
            value = _full_shape(record, target)
        solved = _probe(record.style, {**base, keyword: value}, record.input_shape, record.weight_shape, bias_shape, quirks)
        if solved is not None and solved.output_spatial == target:
            return solved
    found = reachable(record, bias_shape, quirks=quirks)
    names = axis_names(rank)
    reach = "; ".join(
        f"{names[a]}: " + (", ".join(f"{ranges(sizes)} with {kw}" for kw, sizes in per_kw.items()) or "none")
        for a, per_kw in enumerate(found)
    )
    raise ConfigError(
        f"no value of {' or '.join(keywords) or 'no size option'} gives spatial output {target} in style {record.style} (reachable: {reach})",
        "change stride, padding or kernel, or pick a reachable size",
    )


def reachable_json(found: Reachable) -> list[dict[str, dict[str, int | str]]]:
    """``reachable`` for JSON: {"size": value}, or {"first..last": "value..value"} for a run longer than JSON_LISTED."""
    def one(sizes):
        if isinstance(sizes, SizeRun) and sizes.count > JSON_LISTED:
            return {f"{sizes.first}..{sizes.last}": f"{sizes[sizes.first]}..{sizes[sizes.last]}"}
        return {str(k): v for k, v in sizes.items()}

    return [{kw: one(sizes) for kw, sizes in dim.items()} for dim in found]


# ---------------------------------------------------------------- planning: style keywords + shapes -> Derivation


def plan(
    style: str,
    options: Mapping[str, object],
    input_shape: Shape,
    weight_shape: Shape,
    bias_shape: Shape | None = None,
    *,
    quirks: bool = False,
    dtypes: Mapping[str, str] | None = None,
    cast: str | None = None,
) -> Derivation:
    """Parse a style's options against the shapes and derive the output. Reads no data.

    ``cast``: every tensor is cast to this dtype before anything else (``--cast``); the derivation says so.
    Cached: a batch repeats the same options and shapes over many jobs. The key is the options' repr,
    so ``[2, 2]`` and ``(2, 2)`` stay distinct spellings (the record shows the user's own).
    """
    spelled = repr(tuple(options.items()))
    if "..." in spelled:  # an elided repr (a large array) could stand for other values: not keyed
        return _plan_uncached(style, options, input_shape, weight_shape, bias_shape, quirks, dtypes, cast)
    key = (
        style, spelled, tuple(input_shape), tuple(weight_shape),
        None if bias_shape is None else tuple(bias_shape), quirks, None if not dtypes else tuple(dtypes.items()), cast,
    )
    derivation = _PLANS.get(key)
    if derivation is None:
        derivation = _plan_uncached(style, options, input_shape, weight_shape, bias_shape, quirks, dtypes, cast)
        if len(_PLANS) >= 512:
            _PLANS.clear()
        _PLANS[key] = derivation
    return derivation


_PLANS: dict[tuple, Derivation] = {}  # plan() results by canonical key; Derivations are frozen


def _plan_uncached(style, options, input_shape, weight_shape, bias_shape, quirks, dtypes, cast) -> Derivation:
    """``plan`` without the cache (the same arguments, all given)."""
    convention = conventions.get(style)
    input_shape, weight_shape = check_shape("input", input_shape), check_shape("weight", weight_shape)
    bias_shape = None if bias_shape is None else check_shape("bias", bias_shape)
    if 0 in weight_shape:
        raise ConfigError(f"the weight has shape {_shape(weight_shape)}, with a zero-size axis",
                          "every weight axis (channels, kernel) needs at least one element")
    notes: tuple[str, ...] = ()
    if cast is not None:
        if cast not in FLOAT_DTYPES:
            raise ConfigError(f"--cast {cast}: deconv computes in {', '.join(FLOAT_DTYPES)}", "pass --cast float32")
        changes = ", ".join(f"{role} {dtype} -> {cast}" if dtype != cast else f"{role} {dtype}" for role, dtype in (dtypes or {}).items())
        notes = (f"--cast {cast}: all tensors are cast to {cast} before planning" + (f" ({changes})" if changes else ""),)
        dtypes = dict.fromkeys(dtypes or ("input",), cast)
    dtype_warnings: tuple[str, ...] = ()
    if dtypes:
        check_dtypes(dtypes, convention)
        warning = getattr(convention, "DTYPE_WARNINGS", {}).get(next(iter(dtypes.values())))
        dtype_warnings = (warning,) if warning else ()
    parsed = convention.parse(
        options, input_shape=input_shape, weight_shape=weight_shape, bias_shape=bias_shape, quirks=quirks
    )
    derivation = derive(
        parsed.config, input_shape, dim_notes=parsed.dim_notes, notes=parsed.notes + notes,
        warnings=parsed.warnings + dtype_warnings, style=style, options=tuple(options.items()),
        weight_shape=weight_shape, bias_shape=bias_shape, quirks=quirks,
    )
    return replace(derivation, reachable_json=_reachable_json)


def _reachable_json(record: Derivation) -> list:
    return reachable_json(reachable(record))


def check_shape(role: str, shape) -> Shape:
    """A tensor shape as a tuple of whole numbers >= 0 (bools, floats and negative sizes refused)."""
    shape = tuple(shape)
    for size in shape:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral):
            raise ConfigError(f"the {role} shape {shape!r} holds {size!r}, not a whole number")
        if size < 0:
            raise ConfigError(f"the {role} shape {_shape(shape)} has a negative size", "sizes are counts: 0 or more")
    return tuple(int(size) for size in shape)


def check_dtypes(dtypes: Mapping[str, str], convention) -> None:
    """All tensors share one floating dtype that the style's framework computes in."""
    for role, dtype in dtypes.items():
        if dtype not in FLOAT_DTYPES:
            raise ConfigError(f"{role} has dtype {dtype}; deconv computes in float16, float32 or float64", f"cast the {role} to float32")
    if len(set(dtypes.values())) > 1:
        found = ", ".join(f"{role} {dtype}" for role, dtype in dtypes.items())
        if getattr(convention, "PROMOTES_DTYPES", False):  # the framework computes in the widest: so can --cast
            wide = max(dtypes.values(), key=FLOAT_DTYPES.index)
            raise ConfigError(f"mixed dtypes ({found}); {convention.FRAMEWORK} promotes them to {wide}, deconv computes "
                              "in one dtype", f"cast to the promoted dtype (deconv run --cast {wide}) for "
                              f"{convention.FRAMEWORK}'s {wide} result")
        raise ConfigError(f"mixed dtypes ({found}); {convention.FRAMEWORK} requires one dtype", "cast all tensors to the same dtype (deconv run --cast float32)")
    dtype = next(iter(dtypes.values()))
    if dtype not in convention.DTYPES:
        # DTYPE_NOTES: what the framework really does with that dtype (an abort, a silent downcast)
        what = getattr(convention, "DTYPE_NOTES", {}).get(dtype, "")
        raise ConfigError(
            f"{convention.FRAMEWORK} does not compute in {dtype} (it takes {', '.join(convention.DTYPES)})"
            + (f": {what}" if what else ""),
            f"cast the tensors to {convention.DTYPES[-1] if dtype == 'float64' else 'float32'}",
        )


def _shape(shape) -> str:
    return "(" + ", ".join(str(v) for v in shape) + ")"
