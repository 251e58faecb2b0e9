"""Rendering: a rich table on a terminal, plain lines when piped or with NO_COLOR."""

from __future__ import annotations

import io

from deconv_cli import derive, report


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


RECORD = derive((1, 4, 5, 5), (4, 2, 3, 3), style="torch", stride=2, padding=1, output_padding=1)


def test_terminal_gets_a_table(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    out = Terminal()
    report.print_derivation(RECORD, out)
    text = out.getvalue()
    assert "torch: input (1, 4, 5, 5) weight (4, 2, 3, 3) -> output (1, 2, 10, 10)" in text
    assert "crop (lo, hi)" in text and "out = 11 - 1 - 0 = 10" in text
    assert "─" in text or "━" in text  # box drawing: it is a table


def test_no_color_and_pipes_get_plain_lines(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    out = Terminal()
    report.print_derivation(RECORD, out)
    assert out.getvalue().splitlines() == [
        "torch: input (1, 4, 5, 5) weight (4, 2, 3, 3) -> output (1, 2, 10, 10)",
        "  dim 0: full = (5-1)*2 + 1*(3-1) + 1 = 11; padding=1, output_padding=1 -> crop (1, 0); out = 11 - 1 - 0 = 10",
        "  dim 1: full = (5-1)*2 + 1*(3-1) + 1 = 11; padding=1, output_padding=1 -> crop (1, 0); out = 11 - 1 - 0 = 10",
    ]
    monkeypatch.delenv("NO_COLOR")
    piped = io.StringIO()
    report.print_derivation(RECORD, piped)
    assert piped.getvalue() == out.getvalue()
