"""The one run loop (tiling.run_tiles) as `run` uses it over the memory budget: `--expect` without an output
compares tile by tile and writes nothing; a streamed run reports each tile to a progress callback, which the
command line draws as a bar on a terminal only."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from click.testing import CliRunner
from processes import on_a_terminal

from deconv_cli.cli import cli
from deconv_cli.execution.job import Job, run_job

BUDGET = "32K"  # far below these tensors' 92 KiB: several tiles


def invoke(*argv):
    return CliRunner().invoke(cli, list(argv), catch_exceptions=False)


@pytest.fixture
def folder(tmp_path, rng, monkeypatch):
    x = rng.standard_normal((4, 8, 16, 16)).astype(np.float32)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    for name, array in dict(x=x, w=w, b=b).items():
        np.save(tmp_path / f"{name}.npy", array)
    monkeypatch.chdir(tmp_path)
    return tmp_path


RUN = ["run", "x.npy", "w.npy", "--bias", "b.npy", "--set", "stride=2", "--set", "padding=1"]


def test_expect_alone_over_the_budget_compares_tile_by_tile_and_writes_nothing(folder, monkeypatch):
    assert invoke(*RUN, "-o", "ref.npy", "-q").exit_code == 0  # in memory
    ref = np.load(folder / "ref.npy")
    bad = ref.copy()
    bad[1, 2, 30, 4] += 1.0
    bad[3, 0, 0, 0] = np.nan
    np.save(folder / "bad.npy", bad)
    monkeypatch.setenv("DECONV_MEMORY_BUDGET", BUDGET)
    assert invoke(*RUN, "-o", "streamed.npy", "-q").exit_code == 0  # the same tiles, written
    before = sorted(os.listdir(folder))

    result = invoke(*RUN, "--expect", "ref.npy", "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["timings"]["chunks"] > 2  # streamed, not refused ("cannot be written in parts")
    assert record["compare"]["match"] and record["compare"]["total"] == ref.size
    assert record["timings"]["save_s"] == 0.0 and record["timings"]["compare_s"] > 0  # compared, not saved
    assert sorted(os.listdir(folder)) == before  # nothing written, no temporary left

    result = invoke(*RUN, "--expect", "bad.npy", "--json")
    assert result.exit_code == 1
    got = json.loads(result.stdout)["compare"]
    want = json.loads(invoke("compare", "streamed.npy", "bad.npy", "--json").stdout)
    for key in ("match", "shape", "mismatches", "total", "max_abs", "max_rel", "nan", "inf", "atol", "rtol"):
        assert got[key] == want[key], key
    assert got["mean_abs"] == pytest.approx(want["mean_abs"], rel=1e-9)
    assert [w["index"] for w in got["worst"]] == [w["index"] for w in want["worst"]]
    assert {tuple(w["index"]) for w in got["worst"][:2]} == {(3, 0, 0, 0), (1, 2, 30, 4)}
    assert got["mismatches"] == 2
    assert sorted(os.listdir(folder)) == before


def test_expect_alone_over_the_budget_needs_a_reference_read_in_parts(folder, monkeypatch):
    assert invoke(*RUN, "-o", "ref.npz:y", "-q").exit_code == 0
    monkeypatch.setenv("DECONV_MEMORY_BUDGET", BUDGET)
    result = invoke(*RUN, "--expect", "ref.npz:y", "-q")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: input + output need 92.1 KiB (output (4, 4, 31, 31) float32), more than the memory budget 32.0 KiB "
        "(DECONV_MEMORY_BUDGET); the output is compared with --expect tile by tile, and .npz cannot be read in parts. "
        "Save the reference as .npy, .h5, .zarr, .safetensors, or raise DECONV_MEMORY_BUDGET to 93K if the machine "
        "has that memory.\n"
    )


def test_expect_alone_in_memory_is_unchanged(folder):
    assert invoke(*RUN, "-o", "ref.npy", "-q").exit_code == 0
    result = invoke(*RUN, "--expect", "ref.npy", "--json")
    assert result.exit_code == 0
    record = json.loads(result.stdout)
    assert "chunks" not in record["timings"] and record["compare"]["max_abs"] == 0.0


def test_the_loop_reports_each_tile_to_the_progress_callback(folder, monkeypatch):
    options = {"stride": 2, "padding": 1}
    calls = []
    monkeypatch.setenv("DECONV_MEMORY_BUDGET", BUDGET)
    result = run_job(Job("x.npy", "w.npy", "y.npy", options=options), progress=lambda *a: calls.append(a))
    n = result.timings["chunks"]
    assert n > 2 and calls == [(i, n) for i in range(1, n + 1)]
    calls.clear()
    run_job(Job("x.npy", "w.npy", None, options=options, expect="y.npy"), progress=lambda *a: calls.append(a))
    assert calls == [(i, n) for i in range(1, n + 1)]  # comparing tile by tile
    calls.clear()
    monkeypatch.delenv("DECONV_MEMORY_BUDGET")
    run_job(Job("x.npy", "w.npy", "y2.npy", options=options), progress=lambda *a: calls.append(a))
    assert calls == []  # in memory: no tiles to follow


def _on_a_terminal(argv, cwd) -> str:
    """Run the command with stderr on a pseudo-terminal; what it drew there."""
    code, drawn = on_a_terminal(argv, cwd, {"DECONV_MEMORY_BUDGET": BUDGET})
    assert code == 0, drawn
    return drawn


def test_a_streamed_run_draws_a_tile_bar_on_a_terminal_and_not_with_quiet(folder):
    drawn = _on_a_terminal(RUN[:] + ["-o", "y.npy"], folder)
    done = re.findall(r"tiles.*?(\d+)/(\d+)", drawn)
    assert done and done[-1][0] == done[-1][1] and int(done[-1][1]) > 2, drawn
    quiet = _on_a_terminal(RUN[:] + ["-o", "y2.npy", "-q"], folder)
    assert "tiles" not in quiet and "/" not in quiet


def test_a_streamed_run_draws_no_bar_when_stderr_is_not_a_terminal(folder, monkeypatch):
    monkeypatch.setenv("DECONV_MEMORY_BUDGET", BUDGET)
    result = invoke(*RUN, "-o", "y.npy")
    assert result.exit_code == 0 and "tiles" not in result.stderr
