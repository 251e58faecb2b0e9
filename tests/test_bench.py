"""deconv bench on the cheapest suite configuration (no peers): the record's shape, the memory probe
subprocess, and the unknown-name error. Timings themselves are make bench's business, not a test's."""

from __future__ import annotations

import json

from click.testing import CliRunner

from deconv_cli import bench
from deconv_cli.cli import cli

TINY = "tiny_4to4_8x8_k3"


def test_bench_json_record():
    result = CliRunner().invoke(cli, ["bench", "--only", TINY, "--no-peers", "--no-memory", "--repeat", "1", "--paths", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    (row,) = record["rows"]
    assert row["name"] == TINY and row["path"] in ("phase", "scatter")
    assert row["ours_ms"] > 0 and set(row["paths_ms"]) == {"phase", "scatter"}
    assert row["torch_ms"] is None and record["summary"]["compared"] == 0
    assert record["startup"]["deconv_shape_s"] > record["startup"]["python_pass_s"] > 0


def test_memory_probe_runs_in_a_fresh_process():
    probe = bench.memory(TINY, "cpu", 1)
    assert probe["tensors"] == bench._by_name(TINY).nbytes() and probe["peak_above_baseline"] >= 0


def test_unknown_configuration_is_one_line_before_any_output():
    result = CliRunner().invoke(cli, ["bench", "--only", "nope", "--no-peers"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("Error: no benchmark configuration named 'nope'. Known: unet3d_64to32_32c_k2s2, ")
