"""Rendering: the same lines everywhere; on a terminal folded to its width and coloured, NO_COLOR keeps the
layout and drops the colour, a pipe gets every logical line whole."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys

import pytest

from deconv_cli import derive
from deconv_cli.render import report

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


RECORD = derive((1, 4, 5, 5), (4, 2, 3, 3), style="torch", stride=2, padding=1, output_padding=1)
RECORDS = [
    RECORD,
    derive((32, 16, 10, 32, 32), (16, 3, 4, 6, 2), style="mindspore", in_channel=16, out_channel=3,
           kernel_size=(4, 6, 2)),
    derive((1, 1, 2), (1, 1, 1), style="onnx", strides=4, auto_pad="SAME_UPPER"),
    derive((1, 4, 5, 5), (4, 2, 3, 3), style="onnx", strides=[2, 2], output_shape=[10, 12], auto_pad="SAME_LOWER"),
]


def render(record, width: int) -> str:
    out = io.StringIO()
    console = report.make_console(out, width=width, force_terminal=True)
    report.print_warnings(record.warnings, out, console)
    report.print_derivation(record, out, console)
    report.print_reachable([{"output_padding": {9: 0, 10: 1}}] * record.config.rank, out, console)
    report.emit([report.sizes_line({"input": 400, "weight": 288, "bias": None, "output": 1 << 33}, "float32", True)],
                out, console)
    report.print_paste("options to paste:", record.options, out, console)
    return out.getvalue()


def piped(record) -> str:
    out = io.StringIO()
    report.print_warnings(record.warnings, out)
    report.print_derivation(record, out)
    report.print_reachable([{"output_padding": {9: 0, 10: 1}}] * record.config.rank, out)
    report.emit([report.sizes_line({"input": 400, "weight": 288, "bias": None, "output": 1 << 33}, "float32", True)], out)
    report.print_paste("options to paste:", record.options, out)
    return out.getvalue()


@pytest.mark.parametrize("width", [100, 80, 60, 40])
@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.style + str(r.config.rank))
def test_terminal_lines_fit_the_width_and_lose_nothing(record, width, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    coloured = render(record, width)
    plain = ANSI.sub("", coloured)
    assert "\x1b[" in coloured  # there is colour to remove
    for line in plain.splitlines():
        assert len(line) <= width, line
        assert "…" not in line
    # folding only adds line breaks, indentation and the shell's ' \' continuations
    squeeze = lambda text: re.sub(r"\s+", "", text.replace(" \\\n", " "))  # noqa: E731
    assert squeeze(plain) == squeeze(piped(record))


@pytest.mark.parametrize("width", [80, 60, 40])
def test_no_color_drops_only_the_colour(width, monkeypatch):
    for record in RECORDS:
        monkeypatch.delenv("NO_COLOR", raising=False)
        coloured = render(record, width)
        monkeypatch.setenv("NO_COLOR", "1")
        assert render(record, width) == ANSI.sub("", coloured)


def test_pipes_get_whole_lines_with_axis_names(monkeypatch):
    out = io.StringIO()
    report.print_derivation(RECORD, out)
    assert out.getvalue().splitlines() == [
        "torch: input (1, 4, 5, 5) weight (4, 2, 3, 3) -> output (1, 2, 10, 10)",
        "  H: full = (5-1)*2 + 1*(3-1) + 1 = 11; padding=1, output_padding=1 -> crop (1, 0); out = 11 - 1 - 0 = 10",
        "  W: full = (5-1)*2 + 1*(3-1) + 1 = 11; padding=1, output_padding=1 -> crop (1, 0); out = 11 - 1 - 0 = 10",
    ]


def test_a_terminal_at_60_columns_gets_the_folded_form(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.setenv("NO_COLOR", "1")
    out = Terminal()
    report.print_derivation(RECORD, out)
    assert out.getvalue().splitlines() == [
        "torch: input (1, 4, 5, 5) weight (4, 2, 3, 3)",
        "    -> output (1, 2, 10, 10)",
        "  H: full = (5-1)*2 + 1*(3-1) + 1 = 11;",
        "      padding=1, output_padding=1 -> crop (1, 0);",
        "      out = 11 - 1 - 0 = 10",
        "  W: full = (5-1)*2 + 1*(3-1) + 1 = 11;",
        "      padding=1, output_padding=1 -> crop (1, 0);",
        "      out = 11 - 1 - 0 = 10",
    ]


@pytest.mark.parametrize("width", [80, 40, 32])
def test_folded_paste_lines_give_bash_the_same_words(width):
    words = ("--set", "stride=(2,1,1)", "--set", "padding=[0,4,2]", "--set", "auto_pad=SAME_UPPER",
             "--set", "kernel_size=(4,6,2)", "--set", "output_padding=1")
    lines = report.fold(report.Shell(words), width)
    assert len(lines) > 1 and all(len(line) <= width for line in lines)
    echoed = subprocess.run(["bash", "-c", "printf '%s\\n' " + "\n".join(lines)], capture_output=True, text=True, check=True)
    assert tuple(echoed.stdout.splitlines()) == words


def test_deconv_shape_on_a_real_terminal(tmp_path):
    """Through a pseudo-terminal: 60 columns, and NO_COLOR=1 gives the same text without escapes."""
    deconv = os.path.join(os.path.dirname(sys.executable), "deconv")
    argv = [deconv, "shape", "--style", "mindspore", "--input-shape", "32,16,10,32,32", "--weight-shape", "16,3,4,6,2",
            "--set", "in_channel=16", "--set", "out_channel=3", "--set", "kernel_size=(4,6,2)"]

    def on_tty(**env) -> str:
        leader, follower = pty.openpty()
        environ = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        proc = subprocess.Popen(argv, stdout=follower, stderr=follower, env={**environ, "TERM": "xterm", "COLUMNS": "60", **env})
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        assert proc.wait() == 0
        return b"".join(chunks).decode().replace("\r\n", "\n")

    coloured, no_color = on_tty(), on_tty(NO_COLOR="1")
    assert "\x1b[" in coloured and "\x1b[" not in no_color
    assert no_color == ANSI.sub("", coloured)
    lines = no_color.splitlines()
    assert lines[:2] == ["mindspore: input (32, 16, 10, 32, 32)", "    weight (16, 3, 4, 6, 2) -> output (32, 3, 13, 37, 33)"]
    assert max(len(line) for line in lines) <= 60
    assert any(line.startswith("  D: full = (10-1)*1 + 1*(4-1) + 1 = 13;") for line in lines)
