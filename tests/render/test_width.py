"""Width (issue 26, item 8): long `Error:` lines and the `deconv bench` table fold to a terminal's width, and
stay whole lines in a pipe (scripts grep them)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from deconv_cli.bench import suite as bench
from deconv_cli.render.report import fold_columns

ROWS = [
    bench.Row("unet3d_dec_64to32_16x32x32_k2s2", "gemm", 12.345, 98.7, 0.456, 13.2, 15.9, peak_mem_mb=120.5,
              tensors_mb=96.0),
    bench.Row("tiny_4to4_8x8_k3", "direct", 0.0123, 1.5, 0.01),  # no peers, no memory: "-" cells
    bench.Row("dcgan_g_512to256_8x8_k4s2", "gemm", 3.21, 150.0, 0.7, 3.0, 2.5, paths_ms={"gemm": 3.21, "direct": 9.9}),
]


@pytest.mark.parametrize("width", [40, 60, 80, 100])
def test_the_bench_table_folds_between_whole_cells_and_stays_aligned(width):
    header = fold_columns(bench.HEADER, bench.COLUMNS, width)
    assert len(bench.HEADER) > 100 and len(header) > 1 and all(len(line) <= width for line in header)
    for row in ROWS:
        text = bench.format_row(row)
        lines = fold_columns(text, bench.COLUMNS, width)
        assert all(len(line) <= width for line in lines), lines
        assert " ".join(" ".join(lines).split()) == " ".join(text.split())  # nothing lost, no cell cut
        assert all(line.startswith("    ") for line in lines[1:])
        # every character stays inside its cell's columns: the table folded with each cell filled by a letter
        marker = fold_columns(" ".join(chr(65 + i) * w for i, w in enumerate(bench.COLUMNS)), bench.COLUMNS, width)
        for folded in (header, lines if not row.paths_ms else lines[:len(marker) - 1]):
            for line, cells in zip(folded, marker):
                assert all(cells[c:c + 1].isalpha() for c, char in enumerate(line) if char != " "), (line, cells)


def test_a_pipe_gets_whole_rows():
    text = bench.format_row(ROWS[0])
    assert fold_columns(text, bench.COLUMNS, None) == [text]
    assert fold_columns(text, bench.COLUMNS, 200) == [text]


def test_bench_report_folds_its_table_to_the_width_it_is_given(monkeypatch):
    def fake_suite(device, threads, repeat, only, paths, peers, memory, progress, min_time):
        for row in ROWS:
            progress(row)
        return {"rows": ROWS, "blas": [], "threads": 2, "peak_gflops": 100.0}

    monkeypatch.setattr(bench, "run_suite", fake_suite)
    monkeypatch.setattr(bench, "startup", lambda: {"deconv_shape_s": 0.1, "python_pass_s": 0.02,
                                                    "deconv_run_tiny_s": 0.12, "python_import_numpy_s": 0.08})
    monkeypatch.setattr(bench, "call_overhead", lambda: None)
    monkeypatch.setattr(bench, "blas_line", lambda result: "BLAS: test")
    printed: list[str] = []
    bench.report(echo=printed.append, width=80)
    table = "\n".join(printed[:1 + len(ROWS)]).splitlines()
    assert max(len(line) for line in table) <= 80
    assert table[0].startswith("configuration") and any(line.startswith("    ") for line in table)
    wide: list[str] = []
    bench.report(echo=wide.append, width=None)
    assert wide[0] == bench.HEADER and wide[1] == bench.format_row(ROWS[0])


def _stderr_on_a_terminal(args, columns: int) -> str:
    """Run deconv with its stderr on a pseudo-terminal COLUMNS wide; what it printed there."""
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(COLUMNS=str(columns), TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-m", "deconv_cli", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the pty closes when the process ends
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(leader)
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_a_long_error_line_folds_on_a_terminal_and_stays_whole_in_a_pipe(tmp_path):
    missing = str(tmp_path / ("a_rather_long_folder_name_" * 2) / "missing_input.npy")
    args = ["run", missing, missing, "-o", str(tmp_path / "y.npy")]
    piped = subprocess.run([sys.executable, "-m", "deconv_cli", *args], capture_output=True, text=True, timeout=60)
    assert piped.returncode == 1 and len(piped.stderr.splitlines()) == 1 and piped.stderr.startswith("Error: ")
    assert len(piped.stderr) > 60
    shown = _stderr_on_a_terminal(args, 60)
    lines = shown.splitlines()
    assert len(lines) > 1 and all(len(line) <= 60 for line in lines), lines
    assert lines[0].startswith("Error: ") and all(line.startswith("    ") for line in lines[1:])
    assert "".join(line.strip() for line in lines).replace(" ", "") == piped.stderr.strip().replace(" ", "")
