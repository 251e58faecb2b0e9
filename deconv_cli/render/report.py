"""Rendering for people and for machines (JSON).

People get the same lines everywhere: on a terminal they are folded to its width (breaking after
'; ' first, continuation lines indented) and coloured through rich; NO_COLOR drops the colour and
keeps the layout; a pipe gets each logical line unfolded, so that scripts can grep them. Lines to
paste into a shell (``Shell``) fold with ' \\' continuations. The only module that imports rich.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from ..core.shapes import Derivation

if TYPE_CHECKING:
    from ..tensor_io import ArrayInfo


def _fancy(stream: TextIO) -> bool:
    """A terminal: lines are folded to its width and coloured (NO_COLOR drops the colour, never the layout)."""
    return stream.isatty() and os.environ.get("TERM") != "dumb"


def make_console(stream: TextIO, *, width: int | None = None, force_terminal: bool | None = None):
    """The rich console for a terminal stream; NO_COLOR (https://no-color.org) turns every style off."""
    from rich.console import Console

    return Console(file=stream, width=width, force_terminal=force_terminal, highlight=False,
                   color_system=None if "NO_COLOR" in os.environ else "auto")


@dataclass(frozen=True)
class Shell:
    """A line to paste into a shell: folded with ' \\' continuations, never inside a quoted word."""

    words: tuple[str, ...]
    indent: int = 2

    def __str__(self) -> str:
        import shlex  # json and shlex load only where used: a tiny `deconv run -q` prints neither

        return " " * self.indent + shlex.join(self.words)


_PROTECTED = re.compile(r"(?:-> )?(?:\w+ )?\([^()]*\)|\[[^\[\]]*\]")
# what gets a colour on a terminal (the text is the same without colour)
_STYLES = (
    (re.compile(r"^Warning:"), "bold yellow"),
    (re.compile(r"^ *[DHWL]( reachable)?:"), "bold cyan"),
    (re.compile(r"-> output \([^)]*\)"), "bold green"),
    (re.compile(r"= -?\d+$"), "green"),
    (re.compile(r"^ *note:"), "magenta"),
)


def fold(line: str | Shell, width: int | None) -> list[str]:
    """One logical line as physical lines of at most ``width`` characters (None: no folding).

    Text breaks after '; ' first, then at spaces outside parentheses; continuation lines are indented
    four more spaces. A Shell line breaks between words and ends each folded part with ' \\'.
    """
    text = str(line)
    if width is None or len(text) <= width:
        return [text]
    lead = len(text) - len(text.lstrip(" "))
    cont = " " * min(lead + 4, max(width // 3, 1))
    if isinstance(line, Shell):
        import shlex

        words = [shlex.quote(w) for w in line.words]
        units = []  # an option stays on the line of its value
        for word in words:
            if units and units[-1].startswith("-") and " " not in units[-1] and not word.startswith("-"):
                units[-1] += " " + word
            else:
                units.append(word)
        # a pair too long for a line of its own breaks after the option
        units = [part for unit in units
                 for part in (unit.split(" ", 1) if len(cont) + len(unit) + 2 > width else [unit])]
        out, current = [], " " * line.indent
        for unit in units:
            if current.strip() and len(current) + 1 + len(unit) + 2 > width:
                out.append(current + " \\")
                current = cont + unit
            else:
                current += (" " if current.strip() else "") + unit
        return out + [current]
    import textwrap

    protect = _PROTECTED.sub(lambda m: m.group(0).replace(" ", "\xa0"), text[lead:])
    chunks = protect.split("; ")
    lines, current = [], " " * lead + chunks[0]
    for chunk in chunks[1:]:
        if len(current) + 2 + len(chunk) <= width:
            current += "; " + chunk
        else:
            lines.append(current + ";")
            current = cont + chunk
    lines.append(current)
    out = []
    for physical in lines:
        if len(physical) <= width:
            out.append(physical)
            continue
        first = physical[: len(physical) - len(physical.lstrip(" "))]
        out += textwrap.wrap(physical.lstrip(" "), width, initial_indent=first, subsequent_indent=cont,
                             break_on_hyphens=False, break_long_words=True)
    return [o.replace("\xa0", " ") for o in out]


def terminal_width(stream: TextIO) -> int | None:
    """The width to fold ``stream``'s lines to: its terminal's (COLUMNS first), None for a pipe or a file."""
    if not _fancy(stream):
        return None
    import shutil

    return shutil.get_terminal_size().columns


def fold_columns(line: str, widths, width: int | None, indent: int = 4) -> list[str]:
    """A fixed-width table row (cells of ``widths`` characters, one space apart; anything after the last cell
    is one more cell) as physical lines of at most ``width`` characters, broken between whole cells, the
    continuation lines indented. Rows of one table break at the same cells, so their columns stay aligned
    under a header folded alike. None (a pipe): the row as it is."""
    if width is None or len(line) <= width:
        return [line]
    cells, start = [], 0
    for cell_width in widths:
        cells.append(line[start:start + cell_width])
        start += cell_width + 1
    if line[start - 1:].strip():
        cells.append(line[start - 1:].strip())
    out, current = [], cells[0]
    for cell in cells[1:]:
        if len(current) + 1 + len(cell) > width and current.strip():
            out.append(current.rstrip())
            current = " " * indent + cell
        else:
            current += " " + cell
    return out + [current.rstrip()]


def emit(lines, stream: TextIO, console=None) -> None:
    """Write logical lines: as they are to a pipe; folded to the width (and coloured) on a terminal."""
    if console is None and not _fancy(stream):
        stream.write("".join(f"{line}\n" for line in lines))
        return
    from rich.text import Text

    console = console or make_console(stream)
    for line in lines:
        for physical in fold(line, console.width):
            text = Text(physical)
            for pattern, style in _STYLES:
                text.highlight_regex(pattern, style)
            console.print(text, soft_wrap=True)


def _shape(shape) -> str:
    return str(tuple(shape))


def headline(d: Derivation) -> str:
    return f"{d.style}: input {_shape(d.input_shape)} weight {_shape(d.weight_shape)} -> output {_shape(d.output_shape)}"


def derivation_lines(d: Derivation) -> list[str]:
    """One line per spatial axis (named as the layout does: D, H, W; L for 1-D) with the formulas and notes."""
    lines = []
    for dim in d.dims:
        how = "; ".join(dim.notes) or f"crop {dim.crop}"
        lines.append(f"  {dim.name}: {dim.full_formula}; {how}; {dim.out_formula}")
    lines += [f"  note: {n}" for n in d.notes]
    return lines


def print_derivation(d: Derivation, stream: TextIO, console=None) -> None:
    emit([headline(d), *derivation_lines(d)], stream, console)


def sizes_line(nbytes: dict, dtype: str, assumed: bool = False) -> str:
    """'  bytes (float32): input 1.0 MiB (1048576), weight ...': each tensor's size, exact in parentheses."""
    from ..core.budget import human_bytes

    parts = [f"{role} {human_bytes(n)}" + (f" ({n:,})" if n >= 1024 else "") for role, n in nbytes.items() if n is not None]
    return f"  bytes ({dtype}{', assumed: pass --cast to change' if assumed else ''}): {', '.join(parts)}"


def print_reachable(reachable, stream: TextIO, console=None) -> None:
    """One line per spatial axis: which sizes each size option reaches."""
    from ..conventions.plan import ranges
    from ..core.shapes import axis_names

    names = axis_names(len(reachable))
    lines = []
    for axis, per_keyword in enumerate(reachable):
        text = "; ".join(f"{ranges(sizes)} with {keyword}" for keyword, sizes in per_keyword.items())
        lines.append(f"  {names[axis]} reachable: {text or 'only this size'}")
    emit(lines, stream, console)


def set_words(options) -> tuple[str, ...]:
    """``--set KEY=VALUE`` words for options (a mapping or (key, value) pairs), each value as --set parses it."""
    from .explain import set_item

    items = options.items() if hasattr(options, "items") else options
    return tuple(w for key, value in items for w in ("--set", set_item(key, value)))


def print_paste(label: str, options, stream: TextIO, console=None) -> None:
    """A label, then the options as a --set line that pastes into bash as it is."""
    emit([label, Shell(set_words(options))], stream, console)


def print_explanation(explanation, stream: TextIO) -> None:
    e = explanation.expression
    verdict = "expressible" if e.expressible else "not expressible exactly"
    lines = [f"{explanation.source} -> {e.style}: {verdict}", Shell(tuple(explanation.command_words()))]
    if explanation.output_shape is not None:
        lines.append(f"  output: {_shape(explanation.output_shape)}")
    if explanation.input:
        lines.append(f"  input: {explanation.input}")
    lines.append(f"  weight: {explanation.weight}")
    if not e.expressible:
        lines.append(f"  {e.reason}")
    if e.options:
        lines += [f"{e.style} options to paste:", Shell(set_words(e.options))]
    emit(lines, stream)


def print_all_styles(explanations, stream: TextIO) -> None:
    lines = ["all styles:"]
    width = max(len(e.expression.style) for e in explanations)
    for e in explanations:
        shape = _shape(e.output_shape) if e.output_shape is not None else "-"
        note = "" if e.expression.expressible else f"  (not expressible: crop {e.expression.crop} more)"
        lines.append(f"  {e.expression.style:<{width}}  {shape:<20} {' '.join(e.set) or '(defaults)'}{note}")
    emit(lines, stream)


def print_warnings(warnings, stream: TextIO, console=None) -> None:
    emit([f"Warning: {warning}" for warning in warnings], stream, console)


def print_info(path: str, infos: list[ArrayInfo], stream: TextIO) -> None:
    for info in infos:
        stream.write(f"{path}\t{info.name}\t{_shape(info.shape)}\t{info.dtype}\n")


def print_json(record, stream: TextIO | None = None) -> None:
    import json

    (stream or sys.stdout).write(json.dumps(record) + "\n")


class BatchProgress:
    """A progress bar for ``deconv batch`` on a terminal (rich): jobs done/total, failures, elapsed, ETA.

    ``log`` prints a line above the bar (or plainly when there is no bar).
    """

    def __init__(self, stream: TextIO, *, show: bool):
        self._stream, self._show, self._bar = stream, show, None
        self.counts = {"failed": 0, "mismatch": 0}  # counted as the summary line counts them

    def _tally(self) -> str:
        return f"{self.counts['failed']} failed, {self.counts['mismatch']} mismatched"

    def start(self, total: int) -> None:
        if not (self._show and _fancy(self._stream)) or total == 0:
            return
        import rich.progress as rp
        from rich.console import Console

        self._bar = rp.Progress(
            rp.TextColumn("batch"), rp.BarColumn(), rp.MofNCompleteColumn(), rp.TextColumn("{task.fields[tally]}"),
            rp.TimeElapsedColumn(), rp.TextColumn("ETA"), rp.TimeRemainingColumn(), console=Console(file=self._stream),
            transient=True,
        )
        self._task = self._bar.add_task("batch", total=total, tally=self._tally())
        self._bar.start()

    def advance(self, status: str) -> None:
        if status in self.counts:
            self.counts[status] += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1, tally=self._tally())

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


class TileProgress:
    """A progress bar over a run's tiles on a terminal (rich): tiles done/total, elapsed, ETA. Silent when the
    stream is not a terminal or ``show`` is off; the run loop calls it as ``progress(done, total)``. ``label``
    names the units (detect's search counts weight readings)."""

    def __init__(self, stream: TextIO, *, show: bool, label: str = "tiles"):
        self._stream, self._show, self._bar, self._label = stream, show, None, label

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            if not (self._show and _fancy(self._stream)):
                return
            import rich.progress as rp
            from rich.console import Console

            self._bar = rp.Progress(
                rp.TextColumn(self._label), rp.BarColumn(), rp.MofNCompleteColumn(), rp.TimeElapsedColumn(),
                rp.TextColumn("ETA"), rp.TimeRemainingColumn(), console=Console(file=self._stream), transient=True,
            )
            self._task = self._bar.add_task(self._label, total=total)
            self._bar.start()
        self._bar.update(self._task, completed=done, total=total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *_) -> None:
        self.close()


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
        layouts = "" if d.channels_last else "channels-last input and output (pass --channels-last), "
        stream.write(f"  not searched: a bias (pass --bias if the framework added one), {layouts}negative "
                     "paddings, stride > 16, dilation > 4\n")
        return
    groups: list[tuple[tuple, list]] = []
    for m in d.matches:
        lines = m.command.splitlines()
        reading = m.weight if m.layout == "channels first" else f"{m.layout}, {m.weight}"
        key = (reading, m.max_abs, tuple(lines[:-1]))
        if not groups or groups[-1][0] != key:
            groups.append((key, []))
        groups[-1][1].append((m.style, lines[-1]))
    noun = "configuration" if len(groups) == 1 else "configurations"
    stream.write(f"{len(groups)} matching {noun}, best first ({head}):\n")
    for number, ((weight, max_abs, recipe), runs) in enumerate(groups, 1):
        stream.write(f"{number}. weight {weight}, max abs error {max_abs:.3g}: {', '.join(s for s, _ in runs)}\n")
        for line in (*recipe, *(line for _, line in runs)):
            stream.write(f"   {line}\n")
