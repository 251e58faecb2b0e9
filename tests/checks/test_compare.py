"""compare.py and `deconv compare` / `deconv run --expect`: the statistics, the default tolerances against every
golden, streaming in bounded memory, and the command line (exit codes, whole lines, JSON, files)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_goldens import GOLDEN, _cases, _options

import deconv_cli
from deconv_cli.checks.compare import Stats, blocks, compare_refs, default_tolerances
from deconv_cli.cli import cli
from deconv_cli.core.errors import ConfigError

ROOT = Path(__file__).parent.parent.parent


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


# ---------------------------------------------------------------- statistics


def test_rule_nan_inf_and_counts():
    a = np.array([1.0, 2.0, np.nan, np.nan, np.inf, np.inf, -np.inf, 5.0, 0.0], dtype=np.float32)
    e = np.array([1.0, 2.5, np.nan, 3.0, np.inf, -np.inf, 7.0, 5.0004, 1e-5], dtype=np.float32)
    c = compare_refs(a, e, atol=1e-4, rtol=1e-4, top=10)
    # mismatches: 2.0 vs 2.5; nan vs 3; inf vs -inf; -inf vs 7. Not: nan==nan, inf==inf, 5 vs 5.0004 (4e-4 <=
    # 1e-4 + 1e-4*5.0004), 0 vs 1e-5
    assert c.mismatches == 4 and c.total == 9 and not c.match
    assert c.nan == {"actual": 2, "expected": 1} and c.inf == {"actual": 3, "expected": 2}
    assert c.max_abs == pytest.approx(0.5)
    assert c.max_rel == pytest.approx(1.0)  # 0 vs 1e-5
    # over the 4 elements finite on both sides with expected != 0: 0, 0.2, 0.0004/5.0004, 1
    assert c.mean_rel == pytest.approx((0.5 / 2.5 + 0.0004 / 5.0004 + 1.0) / 4, rel=1e-3)
    assert [w.index for w in c.worst[:3]] == [(3,), (5,), (6,)]  # one-sided NaN/Inf first, by index
    assert [w.abs for w in c.worst[:3]] == [None, None, None]
    assert c.worst[3].index == (1,) and c.worst[3].abs == pytest.approx(0.5)
    record = c.as_dict()
    assert record["worst"][0] == {"index": [3], "actual": "nan", "expected": 3.0, "abs": None}
    assert record["worst"][1]["actual"] == "inf" and record["worst"][1]["expected"] == "-inf"
    json.dumps(record, allow_nan=False)  # valid JSON: no NaN/Infinity literals


def test_design_json_fields():
    c = compare_refs(np.zeros((2, 3)), np.ones((2, 3)), top=2)
    record = c.as_dict()
    for key in ("match", "shape", "max_abs", "max_rel", "mean_abs", "mismatches", "total", "nan", "inf", "atol",
                "rtol", "worst"):
        assert key in record
    assert record["match"] is False and record["shape"] == [2, 3] and record["total"] == 6
    assert record["worst"] == [{"index": [0, 0], "actual": 0.0, "expected": 1.0, "abs": 1.0},
                               {"index": [0, 1], "actual": 0.0, "expected": 1.0, "abs": 1.0}]


@pytest.mark.parametrize("budget", [96, 96 * 7, 96 * 40, 96 * 10_000])
def test_blocks_give_the_same_answer_as_one_pass(rng, tmp_path, budget):
    a = rng.standard_normal((3, 4, 5, 6))
    e = a + rng.standard_normal(a.shape) * 1e-3
    e[2, 3, 4, 5] += 10
    e[0, 1, 2, 3] = np.nan
    whole = compare_refs(a, e, top=4, budget=10**9, atol=1e-2).as_dict()
    means = whole.pop("mean_abs"), whole.pop("mean_rel")
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "e.npy", e)
    for got in (compare_refs(a, e, top=4, budget=budget, atol=1e-2), compare_refs(str(tmp_path / "a.npy"),
                                                                         str(tmp_path / "e.npy"), top=4, budget=budget, atol=1e-2)):
        record = got.as_dict()
        got = record.pop("mean_abs"), record.pop("mean_rel")
        assert got == pytest.approx(means, rel=1e-12)  # summation order differs
        assert record == whole
    assert whole["worst"][0]["index"] == [0, 1, 2, 3] and whole["worst"][1]["index"] == [2, 3, 4, 5]
    assert whole["mismatches"] == 2 and whole["nan"] == {"actual": 0, "expected": 1}


def test_blocks_cover_every_element_once():
    shape = (2, 3, 4, 5)
    for elements in (1, 3, 7, 20, 60, 1000):
        seen = np.zeros(shape, dtype=int)
        for index in blocks(shape, elements):
            seen[index] += 1
            assert seen[index].size <= max(elements, shape[-1])
        assert (seen == 1).all()


def test_median_is_within_the_histogram_resolution(rng):
    a = rng.standard_normal(10001)
    e = a + rng.lognormal(-8, 2, a.size)
    got = compare_refs(a, e, budget=96 * 1000).median_abs
    exact = float(np.median(np.abs(a - e)))
    assert abs(math.log10(got) - math.log10(exact)) <= 1 / 64


def test_stats_update_accepts_offsets():
    stats = Stats(atol=0, rtol=0, top=1)
    stats.update(np.zeros((1, 2)), np.array([[0.0, 3.0]]), (4, 0))
    assert stats.worst[0].index == (4, 1)


def test_default_tolerances_take_the_looser_dtype():
    assert default_tolerances("float32") == (1e-4, 1e-4)
    assert default_tolerances("float16", "float32") == (1e-2, 1e-2)
    assert default_tolerances("float64") == (1e-9, 1e-9)
    assert default_tolerances("int32", "int64") == (0.0, 0.0)


def test_complex_and_negative_tolerances_are_usage_errors():
    with pytest.raises(ConfigError):
        compare_refs(np.zeros(2, np.complex64), np.zeros(2, np.complex64))
    with pytest.raises(ConfigError):
        compare_refs(np.zeros(2), np.zeros(2), rtol=-1)


# ---------------------------------------------------------------- default tolerances against the goldens


def _golden_ok_cases():
    for param in _cases():
        framework, case = param.values
        if case["expect"] == "ok":
            yield pytest.param(framework, case, id=param.id)


def _golden(framework, case):
    with np.load(GOLDEN / f"{framework}.npz") as arrays:
        x, w, y = (arrays[f"{case['name']}__{k}"] for k in "xwy")
        b = arrays.get(f"{case['name']}__b")
    options = _options(case)
    quirks = bool(case.get("quirks", False))
    record = deconv_cli.derive(x.shape, w.shape, style=case["style"], bias_shape=None if b is None else b.shape,
                               quirks=quirks, **options)
    run = lambda weight: deconv_cli.deconvolve(x, weight, b, style=case["style"], quirks=quirks, **options)  # noqa: E731
    return record.config, w, y, run


@pytest.mark.parametrize("framework, case", list(_golden_ok_cases()))
def test_defaults_pass_every_golden_and_fail_each_mistake(framework, case):
    config, w, y, run = _golden(framework, case)
    assert compare_refs(run(w), y).match, "a correct result must pass the default tolerances"
    mistakes = {}
    spatial = [a for a in config.input_axes()[2]]
    if y.shape[spatial[-1]] > 1:
        mistakes["shift"] = np.roll(run(w), 1, axis=spatial[-1])
    plain = config.weight_perm is None and w.ndim == config.rank + 2
    if plain and max(config.kernel) > 1:
        mistakes["flip"] = run(np.ascontiguousarray(np.flip(w, axis=tuple(range(2, w.ndim)))))
    if plain and config.in_channels == config.out_channels:
        g, c = config.groups, config.in_channels // config.groups
        mistakes["swap"] = run(np.ascontiguousarray(w.reshape(g, c, c, *config.kernel).swapaxes(1, 2).reshape(w.shape)))
    for name, wrong in mistakes.items():
        if np.array_equal(wrong, run(w)):
            continue  # the mistake changes nothing here (a symmetric kernel, a constant row)
        assert not compare_refs(wrong, y).match, f"a {name} must fail the default tolerances"


def test_each_mistake_is_exercised_on_many_goldens():
    """The loop above skips a mistake only where it is a no-op: make sure that is rare."""
    counts = {"flip": 0, "swap": 0}
    for param in _golden_ok_cases():
        config, w, _, _ = _golden(*param.values)
        plain = config.weight_perm is None and w.ndim == config.rank + 2
        counts["flip"] += plain and max(config.kernel) > 1
        counts["swap"] += plain and config.in_channels == config.out_channels
    assert counts["flip"] >= 200 and counts["swap"] >= 100


# ---------------------------------------------------------------- bounded memory


def test_compare_streams_files_ten_times_the_budget(tmp_path):
    """Two 64 MB .npy files, a 4 MB budget: the child's peak RSS grows far less than one file."""
    n = 16 << 20  # float32 elements: 64 MiB per file
    for name, seed in (("a.npy", 0), ("e.npy", 1)):
        mm = np.lib.format.open_memmap(tmp_path / name, mode="w+", dtype=np.float32, shape=(4, n // 4))
        for i in range(4):
            mm[i] = np.random.default_rng(seed + i).standard_normal(n // 4, dtype=np.float32)
        mm.flush()
        del mm
    child = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from deconv_cli.checks.compare import compare_refs
        def hwm():
            for line in open('/proc/self/status'):
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
        compare_refs(np.zeros(3), np.zeros(3))
        before = hwm()
        result = compare_refs({str(tmp_path / 'a.npy')!r}, {str(tmp_path / 'e.npy')!r})
        print(json.dumps({{"before": before, "after": hwm(), "total": result.total, "match": result.match}}))
    """)
    env = dict(os.environ, DECONV_MEMORY_BUDGET="4M")
    out = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True, check=True)
    record = json.loads(out.stdout)
    assert record["total"] == n and record["match"] is False
    grown = record["after"] - record["before"]
    assert grown < 24 << 20, f"peak RSS grew by {grown >> 20} MiB comparing two 64 MiB files with a 4 MiB budget"


def test_compare_streams_rows_larger_than_the_budget(tmp_path, rng):
    """One batch row bigger than a block: blocks split the next axes; same answer as in memory."""
    a = rng.standard_normal((1, 3, 50, 40)).astype(np.float32)
    e = a.copy()
    e[0, 2, 49, 39] += 1
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "e.npy", e)
    got = compare_refs(str(tmp_path / "a.npy"), str(tmp_path / "e.npy"), budget=96 * 100)
    assert got.mismatches == 1 and got.worst[0].index == (0, 2, 49, 39)
    import h5py

    with h5py.File(tmp_path / "e.h5", "w") as f:
        f.create_dataset("e", data=e)
    np.save(tmp_path / "f.npy", np.asfortranarray(a))
    for actual, expected in (("a.npy", "e.h5:/e"), ("f.npy", "e.h5"), ("e.h5", "f.npy")):
        got = compare_refs(str(tmp_path / actual), str(tmp_path / expected), budget=96 * 100, top=1)
        assert (got.total, got.mismatches, got.worst[0].index) == (6000, 1, (0, 2, 49, 39))


def test_zero_d_and_empty_tensors(tmp_path):
    np.save(tmp_path / "s.npy", np.float32(1.5))
    np.save(tmp_path / "t.npy", np.float32(1.5001))
    got = compare_refs(str(tmp_path / "s.npy"), str(tmp_path / "t.npy"))
    assert (got.shape, got.total, got.match) == ((), 1, True)
    got = compare_refs(np.zeros((0, 3)), np.zeros((0, 3)))
    assert (got.total, got.match, got.max_abs, got.median_abs) == (0, True, 0.0, None)


# ---------------------------------------------------------------- the command line


@pytest.fixture
def pair(tmp_path, rng):
    a = rng.standard_normal((2, 3, 4)).astype(np.float32)
    e = a.copy()
    e[1, 2, 3] += 0.5
    e[0, 1, 2] += 0.25
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "e.npy", e)
    np.savez(tmp_path / "both.npz", a=a, e=e.astype(np.float64))
    import h5py

    with h5py.File(tmp_path / "e.h5", "w") as f:
        f.create_dataset("/g/e", data=e)
    os.chdir(tmp_path)
    return a, e


def test_compare_cli_mismatch_report(pair):
    a, e = pair
    result = invoke("compare", "a.npy", "e.npy", "--top", "2")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "MISMATCH: 2 of 24 elements (8.333%) differ by more than atol 0.0001 + rtol 0.0001 * |expected|"
    assert lines[1] == "  shape (2, 3, 4); actual float32, expected float32"
    assert lines[3] == "  NaN: actual 0, expected 0; Inf: actual 0, expected 0"
    assert lines[4] == "  worst 2:"
    assert lines[5].split() == ["index", "actual", "expected", "abs"]
    assert lines[6].split()[:3] == ["(1,", "2,", "3)"] and lines[6].split()[-1] == "0.5"
    assert lines[7].split()[:3] == ["(0,", "1,", "2)"] and lines[7].split()[-1] == "0.25"
    assert result.stderr == ""


def test_compare_cli_match_and_json_on_every_format(pair):
    result = invoke("compare", "both.npz:a", "e.h5:/g/e", "--json", "--atol", "0.6")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["match"] is True and record["mismatches"] == 0 and record["atol"] == 0.6
    assert record["rtol"] == 1e-4 and record["shape"] == [2, 3, 4] and record["total"] == 24
    assert record["dtype"] == {"actual": "float32", "expected": "float32"}
    assert record["max_abs"] == pytest.approx(0.5) and record["worst"][0]["index"] == [1, 2, 3]
    result = invoke("compare", "a.npy", "both.npz:e", "--json")  # float32 vs float64: float32's defaults
    assert result.exit_code == 1 and json.loads(result.stdout)["mismatches"] == 2


def test_compare_cli_shape_mismatch_is_one_line(pair, tmp_path):
    np.save(tmp_path / "s.npy", np.zeros((2, 3)))
    result = invoke("compare", "a.npy", "s.npy")
    assert result.exit_code == 1
    assert result.stderr == "Error: shapes differ: actual (2, 3, 4) vs expected (2, 3).\n"
    assert result.stdout == ""


def test_compare_cli_usage_errors_exit_2(pair):
    result = invoke("compare", "a.npy", "e.npy", "--rtol", "-1")
    assert result.exit_code == 2
    assert result.stderr == "Error: --rtol -1.0 must be a finite number >= 0. Write e.g. --rtol 1e-4.\n"
    assert invoke("compare", "a.npy").exit_code == 2
    missing = invoke("compare", "a.npy", "nope.npy")
    assert missing.exit_code == 1 and missing.stderr == "Error: nope.npy: no such file. Check the path.\n"


def test_compare_reads_one_side_from_stdin(pair, tmp_path):
    with open(tmp_path / "e.npy", "rb") as f:
        result = CliRunner().invoke(cli, ["compare", "a.npy", "-", "--json"], input=f.read())
    assert result.exit_code == 1 and json.loads(result.stdout)["mismatches"] == 2
    both = invoke("compare", "-", "-")
    assert both.exit_code == 2
    assert both.stderr == "Error: only one tensor can come from stdin ('-'). Save the other to a file.\n"


def test_compare_help_documents_the_defaults():
    text = invoke("compare", "--help").stdout
    flat = " ".join(text.split())
    assert "float16 (1e-2, 1e-2), float32 (1e-4, 1e-4), float64 (1e-9, 1e-9)" in flat
    assert "|actual - expected| > atol + rtol * |expected|" in flat


# ---------------------------------------------------------------- run --expect


@pytest.fixture
def layer(tmp_path, rng):
    x = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    y = deconv_cli.deconvolve(x, w, stride=2, padding=1)
    for name, array in dict(x=x, w=w, y=y).items():
        np.save(tmp_path / f"{name}.npy", array)
    os.chdir(tmp_path)
    return x, w, y


def test_run_expect_match_without_output(layer, tmp_path):
    result = invoke("run", "x.npy", "w.npy", "--set", "stride=2", "--set", "padding=1", "--expect", "y.npy")
    assert result.exit_code == 0, result.output
    assert "MATCH: all 594 elements within atol 0.0001 + rtol 0.0001 * |expected|" in result.stderr.splitlines()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npy", "x.npy", "y.npy"]


def test_run_expect_mismatch_json_and_output(layer, tmp_path):
    result = invoke("run", "x.npy", "w.npy", "--set", "stride=2", "--set", "padding=1", "--set", "dilation=1",
                    "--expect", "y.npy", "--rtol", "0", "--atol", "0", "-o", "out.npy", "--json", "-q")
    assert result.exit_code in (0, 1)
    record = json.loads(result.stdout)
    assert record["compare"]["atol"] == 0 and record["compare"]["total"] == 594
    assert result.exit_code == (0 if record["compare"]["match"] else 1)
    np.save(tmp_path / "flipped.npy", np.ascontiguousarray(layer[1][:, :, ::-1, ::-1]))
    result = invoke("run", "x.npy", "flipped.npy", "--set", "stride=2", "--set", "padding=1", "--expect", "y.npy",
                    "-o", "wrong.npy", "--json", "-q")
    assert result.exit_code == 1
    record = json.loads(result.stdout)
    assert record["compare"]["match"] is False and record["compare"]["mismatches"] > 0
    assert set(record) >= {"output_shape", "dtype", "device", "engine", "timings", "compare"}
    assert (tmp_path / "wrong.npy").exists()  # what the keywords mean is written either way


def test_run_expect_shape_mismatch_before_computing(layer, tmp_path):
    result = invoke("run", "x.npy", "w.npy", "--set", "stride=2", "--expect", "y.npy", "-o", "out.npy", "-q")
    assert result.exit_code == 1
    assert result.stderr == ("Error: shapes differ: actual (2, 3, 11, 13) vs expected (2, 3, 9, 11). "
                             "Check the options with deconv detect INPUT WEIGHT EXPECTED.\n")
    assert not (tmp_path / "out.npy").exists()


def test_run_needs_output_or_expect_and_tolerances_need_expect(layer):
    result = invoke("run", "x.npy", "w.npy")
    assert result.exit_code == 2
    assert result.stderr == "Error: no output given. Pass --output OUT (or --expect REF to only compare).\n"
    result = invoke("run", "x.npy", "w.npy", "-o", "o.npy", "--atol", "1")
    assert result.exit_code == 2
    assert result.stderr == "Error: --atol and --rtol need --expect REF. Add --expect or drop them.\n"


def test_run_expect_streamed_output(layer, tmp_path):
    """A job streamed through disk (budget exceeded) compares the written file with REF."""
    env = dict(os.environ, DECONV_MEMORY_BUDGET="2K")  # one sample (1.6 KiB) per slice
    out = subprocess.run([sys.executable, "-m", "deconv_cli", "run", "x.npy", "w.npy", "--set", "stride=2",
                          "--set", "padding=1", "-o", "out.npy", "--expect", "y.npy", "--json", "-q"],
                         env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["timings"]["chunks"] == 2 and record["compare"]["match"] is True


def test_readme_checking_examples_run(tmp_path):
    """The README block for compare / run --expect / detect runs as written (on PyTorch's recorded tensors)."""
    section = (ROOT / "README.md").read_text().split("## Checking results against a framework", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    out = subprocess.run(["bash", "-e", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "MATCH: all 660 elements within atol 0.0001 + rtol 0.0001 * |expected|" in out.stderr
    assert out.stdout.splitlines()[0] == "MATCH: all 660 elements within atol 0.0001 + rtol 0.0001 * |expected|"
    assert json.loads((tmp_path / "report.json").read_text())["rtol"] == 1e-6
    assert "   deconv run samples/torch_ported.npz:x samples/torch_ported.npz:w " \
           "--bias samples/torch_ported.npz:b --style torch --set stride=2 --set padding=1 " \
           "--set 'output_padding=(1,0)' --expect samples/torch_ported.npz:y" in out.stdout.splitlines()
