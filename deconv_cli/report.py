"""Rendering for people (rich on a terminal, plain text when piped or NO_COLOR) and for machines (JSON).

The only module that imports rich, and only when it draws a table on a terminal.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TextIO

from .shapes import Derivation
from .tensor_io import ArrayInfo


def _fancy(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def _shape(shape) -> str:
    return str(tuple(shape))


def headline(d: Derivation) -> str:
    return f"{d.style}: input {_shape(d.input_shape)} weight {_shape(d.weight_shape)} -> output {_shape(d.output_shape)}"


def derivation_lines(d: Derivation) -> list[str]:
    """Plain text: one line per spatial dimension with the formulas and the option notes."""
    lines = []
    for dim in d.dims:
        how = "; ".join(dim.notes) or f"crop {dim.crop}"
        lines.append(f"  dim {dim.axis}: {dim.full_formula}; {how}; {dim.out_formula}")
    lines += [f"  note: {n}" for n in d.notes]
    return lines


def print_derivation(d: Derivation, stream: TextIO) -> None:
    if not _fancy(stream):
        stream.write("\n".join([headline(d), *derivation_lines(d)]) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=headline(d), title_justify="left")
    for column in ("dim", "in", "k", "s", "d", "full", "crop (lo, hi)", "out", "how"):
        table.add_column(column, justify="right" if column not in ("how", "crop (lo, hi)") else "left")
    for dim in d.dims:
        table.add_row(
            str(dim.axis), str(dim.size_in), str(dim.kernel), str(dim.stride), str(dim.dilation),
            str(dim.full), str(dim.crop), str(dim.size_out), "\n".join((*dim.notes, dim.out_formula)),
        )
    console = Console(file=stream)
    console.print(table)
    for note in d.notes:
        console.print(f"note: {note}")


def print_reachable(reachable, stream: TextIO) -> None:
    """One line per dimension: which sizes each size option reaches."""
    from .solve import ranges

    for axis, per_keyword in enumerate(reachable):
        text = "; ".join(f"{ranges(sizes)} with {keyword}" for keyword, sizes in per_keyword.items())
        stream.write(f"  dim {axis} reachable: {text or 'only this size'}\n")


def print_explanation(explanation, stream: TextIO) -> None:
    e = explanation.expression
    verdict = "expressible" if e.expressible else "not expressible exactly"
    lines = [f"{explanation.source} -> {e.style}: {verdict}", f"  {explanation.command()}"]
    if explanation.output_shape is not None:
        lines.append(f"  output: {_shape(explanation.output_shape)}")
    if explanation.input:
        lines.append(f"  input: {explanation.input}")
    lines.append(f"  weight: {explanation.weight}")
    if not e.expressible:
        lines.append(f"  {e.reason}")
    stream.write("\n".join(lines) + "\n")


def print_all_styles(explanations, stream: TextIO) -> None:
    stream.write("all styles:\n")
    width = max(len(e.expression.style) for e in explanations)
    for e in explanations:
        shape = _shape(e.output_shape) if e.output_shape is not None else "-"
        note = "" if e.expression.expressible else f"  (not expressible: crop {e.expression.crop} more)"
        stream.write(f"  {e.expression.style:<{width}}  {shape:<20} {' '.join(e.set) or '(defaults)'}{note}\n")


def print_warnings(warnings, stream: TextIO) -> None:
    for warning in warnings:
        stream.write(f"Warning: {warning}\n")


def print_info(path: str, infos: list[ArrayInfo], stream: TextIO) -> None:
    for info in infos:
        stream.write(f"{path}\t{info.name}\t{_shape(info.shape)}\t{info.dtype}\n")


def print_json(record, stream: TextIO | None = None) -> None:
    (stream or sys.stdout).write(json.dumps(record) + "\n")


def comparison_lines(c) -> list[str]:
    """A ``compare.Comparison`` for people: the verdict line, the statistics, the worst elements."""
    rule = f"atol {c.atol:g} + rtol {c.rtol:g} * |expected|"
    if c.match:
        lines = [f"MATCH: all {c.total} elements within {rule}"]
    else:
        lines = [f"MISMATCH: {c.mismatches} of {c.total} elements ({100 * c.fraction:.4g}%) differ by more than {rule}"]
    median = "-" if c.median_abs is None else f"~{c.median_abs:.3g}"
    lines += [
        f"  shape {_shape(c.shape)}; actual {c.dtypes[0]}, expected {c.dtypes[1]}",
        f"  abs error: max {c.max_abs:.6g}, mean {c.mean_abs:.6g}, median {median}; "
        f"rel error: max {c.max_rel:.6g}, mean {c.mean_rel:.6g}",
        f"  NaN: actual {c.nan['actual']}, expected {c.nan['expected']}; "
        f"Inf: actual {c.inf['actual']}, expected {c.inf['expected']}",
    ]
    if c.worst:
        rows = [(str(tuple(w.index)), f"{w.actual:.8g}", f"{w.expected:.8g}", "-" if w.abs is None else f"{w.abs:.6g}")
                for w in c.worst]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(("index", "actual", "expected", "abs"))]
        lines.append(f"  worst {len(rows)}:")
        for row in [("index", "actual", "expected", "abs"), *rows]:
            lines.append("    " + "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    return lines


def print_comparison(c, stream: TextIO) -> None:
    stream.write("\n".join(comparison_lines(c)) + "\n")


def print_detection(d, stream: TextIO) -> None:
    """``deconv detect``: the matching configurations best first; for each, the weight re-save (when the
    reading is not "as saved") once, then one ready-to-paste ``deconv run`` line per style."""
    head = f"{d.tried} candidates tried, {d.checked_full} computed in full, {d.seconds:.2f} s"
    if d.limited:
        head += "; stopped at --limit, raise it to search further"
    if not d.matches:
        stream.write(f"no match ({head})\n")
        stream.write("  not searched: a bias (pass --bias if the framework added one), channels-last layouts, negative "
                     "paddings, stride > 16, dilation > 4\n")
        return
    groups: list[tuple[tuple, list]] = []
    for m in d.matches:
        lines = m.command.splitlines()
        key = (m.weight, m.max_abs, tuple(lines[:-1]))
        if not groups or groups[-1][0] != key:
            groups.append((key, []))
        groups[-1][1].append((m.style, lines[-1]))
    noun = "configuration" if len(groups) == 1 else "configurations"
    stream.write(f"{len(groups)} matching {noun}, best first ({head}):\n")
    for number, ((weight, max_abs, recipe), runs) in enumerate(groups, 1):
        stream.write(f"{number}. weight {weight}, max abs error {max_abs:.3g}: {', '.join(s for s, _ in runs)}\n")
        for line in (*recipe, *(line for _, line in runs)):
            stream.write(f"   {line}\n")
