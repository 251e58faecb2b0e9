"""Which output sizes a style can reach, and which option value gives each (``deconv shape``).

Rather than restating every framework's size rules, this probes the style's own parser: each
convention lists its size keywords (``SIZE_KEYWORDS``: output_padding-like offsets, output_shape-like
spatial sizes, or input_size-like full shapes) and every candidate value is parsed, so what is reported
reachable is exactly what the style accepts, validation included.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import conventions
from .config import Shape
from .errors import ConfigError, DeconvError
from .shapes import Derivation, axis_names


def _candidates(kind: str, axis: int, record: Derivation):
    """(value for the keyword, the size it aims at or None) for one dimension."""
    config, rank = record.config, record.config.rank
    span = 2 * max(config.stride[axis], config.dilation[axis])
    if kind == "offset":
        for v in range(span + 1):
            yield tuple(v if a == axis else 0 for a in range(rank))
        return
    base = list(record.output_spatial)
    for size in range(max(1, base[axis] - 8 * span), base[axis] + span + 1):
        sizes = tuple(size if a == axis else base[a] for a in range(rank))
        if kind == "size":
            yield sizes
        else:  # "full_size": (N, C_out, *spatial)
            yield (record.output_shape[0], config.out_channels, *sizes)


def _probe(style: str, options: Mapping, input_shape: Shape, weight_shape: Shape, bias_shape, quirks) -> Derivation | None:
    from .job import plan

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
        lead = 2 if kind == "full_size" else 0
        for axis in range(record.config.rank):
            for value in _candidates(kind, axis, record):
                probe = _probe(record.style, {**base, keyword: value}, record.input_shape, record.weight_shape,
                               bias_shape, quirks)
                if probe is not None:
                    sizes = found[axis].setdefault(keyword, {})
                    sizes.setdefault(probe.output_spatial[axis], value[lead + axis])
    return found


def ranges(sizes: dict[int, int]) -> str:
    """{9: 0, 10: 1, 12: 3} -> '9..10, 12': runs of consecutive sizes."""
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
            per_axis = [[c for c in _candidates(kind, a, record)] for a in range(rank)]
            options = {**base, keyword: (0,) * rank}
            start = _probe(record.style, options, record.input_shape, record.weight_shape, bias_shape, quirks)
            if start is None:
                continue
            found = [next((c[a] for c in per_axis[a] if start.output_spatial[a] + c[a] == target[a]), None)
                     for a in range(rank)]
            if None in found:
                continue
            value = tuple(found)
        elif kind == "size":
            value = target
        else:
            value = (record.output_shape[0], record.config.out_channels, *target)
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
