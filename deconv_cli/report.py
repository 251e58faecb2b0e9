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


class BatchProgress:
    """A progress bar for ``deconv batch`` on a terminal (rich): jobs done/total, failures, elapsed, ETA.

    ``log`` prints a line above the bar (or plainly when there is no bar).
    """

    def __init__(self, stream: TextIO, *, show: bool):
        self._stream, self._show, self._bar, self.failures = stream, show, None, 0

    def start(self, total: int) -> None:
        if not (self._show and _fancy(self._stream)) or total == 0:
            return
        import rich.progress as rp
        from rich.console import Console

        self._bar = rp.Progress(
            rp.TextColumn("batch"), rp.BarColumn(), rp.MofNCompleteColumn(), rp.TextColumn("{task.fields[failures]} failed"),
            rp.TimeElapsedColumn(), rp.TextColumn("ETA"), rp.TimeRemainingColumn(), console=Console(file=self._stream),
            transient=True,
        )
        self._task = self._bar.add_task("batch", total=total, failures=0)
        self._bar.start()

    def advance(self, status: str) -> None:
        if status in ("failed", "mismatch"):
            self.failures += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1, failures=self.failures)

    def log(self, line: str) -> None:
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
        else:
            self._stream.write(line + "\n")
            self._stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
