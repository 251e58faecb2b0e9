"""Hostile values on the run and shape paths (issue 7): NaN/Inf, absurd sizes, memory budget, empty batches,
bad DECONV_* settings. Each answer is a result or one line with the right exit code, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import reference_deconv

from deconv_cli import derive, tensor_io
from deconv_cli.cli import cli
from deconv_cli.conventions import plan as solve
from deconv_cli.core.errors import ConfigError
from deconv_cli.engines import numpy_engine
from deconv_cli.execution.job import memory_budget


def invoke(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input)


@pytest.fixture
def files(tmp_path, rng, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("x.npy", rng.standard_normal((2, 4, 6, 6)).astype(np.float32))
    np.save("w.npy", rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    return tmp_path


# --- NaN and Inf ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("stride, padding, tap", [(1, 0, (0, 0)), (2, 0, (0, 0)), (2, 1, (2, 1)), (3, 1, (1, 2))])
def test_a_nan_tap_reaches_only_what_real_input_reaches(files, rng, stride, padding, tap):
    """Zero padding is never multiplied by the weight: the NaN count is the definition's (72 here, where
    the phase path gave 128 at stride 1 and 98 at stride 2)."""
    x = np.load("x.npy")
    w = np.load("w.npy")
    w[1, 2][tap] = np.nan
    np.save("wnan.npy", w)
    result = invoke("run", "x.npy", "wnan.npy", "--set", f"stride={stride}", "--set", f"padding={padding}", "-o", "y.npy", "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr == ("Warning: the weight holds 1 NaN and 0 Inf values; they spread to every output element "
                             "they reach, as in the frameworks\n")
    y = np.load("y.npy")
    want = reference_deconv(x, w, None, stride=(stride,) * 2, dilation=(1, 1), crops=((padding, padding),) * 2, groups=1)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    if (stride, padding) in ((1, 0), (2, 0)):
        assert np.isnan(y).sum() == 72  # 2 samples x 36 input positions, each reaching one output via the tap


def test_an_inf_tap_on_every_path_agrees_with_the_definition(rng):
    from deconv_cli.core.config import DeconvConfig

    x = rng.standard_normal((1, 2, 4, 5))
    w = rng.standard_normal((2, 2, 3, 2))
    w[0, 1, 2, 0] = -np.inf
    config = DeconvConfig((3, 2), (1, 2), (1, 1), ((1, 0), (0, -1)), 1, 2, 2)
    want = reference_deconv(x, w, None, stride=(1, 2), dilation=(1, 1), crops=config.crops, groups=1)
    assert np.isinf(want).sum() == 20 and not np.isnan(want).any()  # the phase path made 10 of them NaN
    out = tuple(want.shape[2:])
    for path in (None, "scatter"):
        got = numpy_engine.deconvolve(x, w, None, config, out, path=path)
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


def test_non_finite_tensors_get_one_warning_and_no_numpy_text(files, rng):
    """A real process: numpy's RuntimeWarning text would reach stderr there (pytest does not catch it)."""
    x = np.load("x.npy").astype(np.float16)
    x[0, 0, 0, 0], x[1, 2, 3, 3], x[1, 1, 1, 1] = np.nan, np.inf, -np.inf
    x[0, 3, 2, 2] = 60000  # float16 output overflows to Inf
    np.save("x16.npy", x)
    w = np.load("w.npy").astype(np.float16)
    w[0, 0, 0, 0] = np.nan
    np.save("w16.npy", w)
    np.save("b16.npy", np.array([np.inf, 0, 0], dtype=np.float16))
    proc = subprocess.run([sys.executable, "-m", "deconv_cli", "run", "x16.npy", "w16.npy", "--bias", "b16.npy",
                           "--set", "stride=2", "-o", "y.npy", "-q"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stderr == ("Warning: the input holds 1 NaN and 2 Inf values, the weight holds 1 NaN and 0 Inf values, "
                           "the bias holds 0 NaN and 1 Inf values; they spread to every output element they reach, "
                           "as in the frameworks\n")
    assert np.load("y.npy").dtype == np.float16


def test_non_finite_input_is_counted_while_streaming(files, monkeypatch):
    x = np.load("x.npy")
    x[1, 0, 0, 0] = np.nan
    np.save("x.npy", x)
    monkeypatch.setenv("DECONV_MEMORY_BUDGET", "2K")
    result = invoke("run", "x.npy", "w.npy", "-o", "y.npy", "-q", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["timings"]["chunks"] == 2
    line = "the input holds 1 NaN and 0 Inf values; they spread to every output element they reach, as in the frameworks"
    assert record["warnings"][-1] == line
    assert result.stderr.splitlines()[-1] == f"Warning: {line}"


@pytest.mark.parametrize("budget", [None, "2K"])  # in memory, and streamed tile by tile
def test_float16_overflow_to_inf_is_one_warning(tmp_path, monkeypatch, budget):
    monkeypatch.chdir(tmp_path)
    np.save("x.npy", np.full((2, 4, 6, 6), 200, np.float16))
    np.save("w.npy", np.full((4, 3, 3, 3), 200, np.float16))  # 4 taps x 4 channels x 40000 > 65504
    if budget:
        monkeypatch.setenv("DECONV_MEMORY_BUDGET", budget)
    result = invoke("run", "x.npy", "w.npy", "-o", "y.npy", "-q")
    assert result.exit_code == 0, result.output
    y = np.load("y.npy")
    inf = int(np.isinf(y).sum())
    assert inf > 0 and not np.isnan(y).any()
    assert result.stderr.splitlines()[-1] == (f"Warning: the float16 output holds {inf} Inf and 0 NaN values from finite tensors: sums "
                             "beyond float16's range (65504) overflow, as in the frameworks; --cast float32 computes "
                             "and writes float32")
    assert "overflow" not in invoke("run", "x.npy", "w.npy", "-o", "z.npy", "-q", "--cast", "float32").stderr


# --- shape answers at once for any size -----------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("--set", "stride=1000000"),
    ("--set", "dilation=1000000"),
    ("--set", f"stride={10**30}"),
    ("--set", f"dilation=(1, {10**30})"),
    ("--style", "onnx", "--set", "strides=(1000000, 3)"),
    ("--style", "dragon", "--set", "strides=1000000", "--set", "output_padding=5"),
    ("--style", "mindspore", "--set", "stride=1000000", "--set", "input_size=(1, 3, 5000003, 5000003)"),
])
def test_shape_with_a_huge_stride_or_dilation_answers_at_once(args):
    start = time.perf_counter()
    result = invoke("shape", "--input-shape", "1,4,6,6", "--weight-shape", "4,3,3,3", *args, "--json")
    assert time.perf_counter() - start < 1.0
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert len(result.stdout) < 10_000  # long runs of reachable sizes are written "first..last"
    first = record["reachable"][0]
    assert first and all(len(sizes) <= 64 for sizes in first.values())


def test_huge_stride_reachable_sizes_are_the_whole_valid_interval():
    record = derive((1, 4, 6, 6), (4, 3, 3, 3), stride=(1000000, 2))
    found = solve.reachable(record)
    assert solve.ranges(found[0]["output_padding"]) == "5000003..6000002"
    assert found[0]["output_padding"][5000010] == 7
    assert found[1] == {"output_padding": {13: 0, 14: 1}, "output_size": {13: 13, 14: 14}}
    assert solve.reachable_json(found)[0] == {"output_padding": {"5000003..6000002": "0..999999"},
                                              "output_size": {"5000003..6000002": "5000003..6000002"}}
    solved = solve.solve(record, (5999999, 14))
    assert dict(solved.options)["output_padding"] == (999996, 1)


@pytest.mark.parametrize("style, options", [
    ("torch", {"stride": (7, 3), "padding": 2}),
    ("torch", {"stride": 2, "dilation": (9, 1)}),
    ("onnx", {"strides": (8, 2), "auto_pad": "SAME_UPPER"}),
    ("onnx", {"strides": (5, 6), "pads": (1, 2, 3, 0)}),
    ("dragon", {"strides": (6, 3), "pads": (1, 1, 1, 1)}),
    ("mindspore", {"stride": (5, 4), "pad_mode": "valid", "input_size": (1, 3, 30, 21)}),
    ("mindspore", {"stride": (5, 4), "pad_mode": "same", "input_size": (1, 3, 30, 20)}),
    ("megengine", {"stride": (7, 5), "padding": 1}),
    ("oneflow", {"stride": 9, "dilation": (1, 11)}),
])
def test_bisection_finds_exactly_what_probing_every_value_finds(style, options, monkeypatch):
    """Past EXHAUSTIVE candidates the ends are bisected: the same sizes and values as one parse each."""
    record = derive((1, 4, 6, 5), (4, 3, 3, 3), style=style, **options)
    every = solve.reachable(record)
    monkeypatch.setattr(solve, "EXHAUSTIVE", 4)
    bisected = solve.reachable(record)
    assert bisected == every
    assert all(sizes for dim in every for sizes in dim.values())


# --- threads and environment settings --------------------------------------------------------------------


def test_thread_count_never_exceeds_the_cpus(monkeypatch):
    cpus = len(os.sched_getaffinity(0))
    for value, want in (("1000", cpus), ("1", 1), (str(10**40), cpus), (" 2 ", min(2, cpus))):
        monkeypatch.setenv("DECONV_THREADS", value)
        assert numpy_engine.threads() == want


@pytest.mark.parametrize("variable, value, line", [
    ("DECONV_THREADS", "2.0", "Error: DECONV_THREADS='2.0' is not a positive whole number. Write e.g. DECONV_THREADS=2."),
    ("DECONV_THREADS", "-1", "Error: DECONV_THREADS='-1' is not a positive whole number. Write e.g. DECONV_THREADS=2."),
    ("DECONV_MEMORY_BUDGET", "abc", "Error: DECONV_MEMORY_BUDGET='abc' is not a size. Write e.g. 512M or 4G."),
    ("DECONV_MEMORY_BUDGET", "0", "Error: DECONV_MEMORY_BUDGET='0' is not a positive size. Write e.g. 512M or 4G."),
    ("DECONV_MEMORY_BUDGET", "-5", "Error: DECONV_MEMORY_BUDGET='-5' is not a positive size. Write e.g. 512M or 4G."),
    ("DECONV_MEMORY_BUDGET", "-1G", "Error: DECONV_MEMORY_BUDGET='-1G' is not a positive size. Write e.g. 512M or 4G."),
    ("DECONV_MEMORY_BUDGET", "0.1", "Error: DECONV_MEMORY_BUDGET='0.1' is not a positive size. Write e.g. 512M or 4G."),
    ("DECONV_MEMORY_BUDGET", "inf", "Error: DECONV_MEMORY_BUDGET='inf' is not a size. Write e.g. 512M or 4G."),
    ("DECONV_MEMORY_BUDGET", "1e999", "Error: DECONV_MEMORY_BUDGET='1e999' is not a size. Write e.g. 512M or 4G."),
])
def test_bad_settings_exit_2_and_echo_what_was_written(files, monkeypatch, variable, value, line):
    monkeypatch.setenv(variable, value)
    result = invoke("run", "x.npy", "w.npy", "-o", "y.npy")
    assert (result.exit_code, result.stderr) == (2, line + "\n")
    assert not (files / "y.npy").exists()


@pytest.mark.parametrize("text, size", [("512M", 512 << 20), ("1.5G", 3 << 29), ("4g", 4 << 30), ("2GiB", 2 << 30),
                                        ("100MB", 100 << 20), (" 1024 ", 1024), ("1e3K", 1000 << 10)])
def test_memory_budget_spellings(monkeypatch, text, size):
    monkeypatch.setenv("DECONV_MEMORY_BUDGET", text)
    assert memory_budget() == size


# --- the memory budget is checked before anything is read ------------------------------------------------


def _no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("data was read before the memory check")

    monkeypatch.setattr(tensor_io, "load", refuse)
    monkeypatch.setattr(tensor_io, "open_slices", refuse)


def test_an_output_beyond_the_budget_is_refused_up_front(files, monkeypatch):
    monkeypatch.setenv("DECONV_MEMORY_BUDGET", "100M")
    _no_loading(monkeypatch)
    start = time.perf_counter()
    result = invoke("run", "x.npy", "w.npy", "--set", "stride=2000", "-o", "y.npz", "-q")  # .npy would stream tiles
    assert time.perf_counter() - start < 2
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: input + output need 2.2 GiB (output (2, 3, 10003, 10003) float32), more than the memory budget "
        "100.0 MiB (DECONV_MEMORY_BUDGET); .npz cannot be written in parts. Write the output to .npy, .h5, .zarr (they "
        "stream tile by tile), or raise DECONV_MEMORY_BUDGET to 2291M if the machine has that memory.\n"
    )
    assert sorted(os.listdir(files)) == ["w.npy", "x.npy"]


def test_an_output_no_machine_holds_is_one_line(files):
    result = invoke("run", "x.npy", "w.npy", "--set", f"stride={10**30}", "-o", "y.npy", "-q")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: input + output need ")
    assert result.stderr.endswith(". Make the output smaller (stride, dilation, padding, output size): no machine "
                                  "holds that.\n")


def test_a_batch_that_cannot_stream_says_which_formats_do(files, monkeypatch):
    np.savez("xw.npz", x=np.load("x.npy"), w=np.load("w.npy"))
    monkeypatch.setenv("DECONV_MEMORY_BUDGET", "1K")  # the .npz input alone (1.1 KiB) is over it
    _no_loading(monkeypatch)
    result = invoke("run", "xw.npz:x", "xw.npz:w", "-o", "y.npy", "-q")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: the input needs 1.1 KiB, more than the memory budget 1.0 KiB (DECONV_MEMORY_BUDGET), and .npz cannot "
        "be read in parts. Save the input as .npy, .h5, .zarr, .safetensors, or raise DECONV_MEMORY_BUDGET to 3K if "
        "the machine has that memory.\n"
    )
    assert not (files / "y.npy").exists()


# --- empty batches, empty weights, negative sizes ---------------------------------------------------------


def test_an_empty_batch_gives_an_empty_output(files):
    np.save("x0.npy", np.zeros((0, 4, 6, 6), np.float32))
    result = invoke("run", "x0.npy", "w.npy", "--set", "stride=2", "-o", "y.npy", "-q")
    assert (result.exit_code, result.stderr) == (0, "")
    y = np.load("y.npy")
    assert y.shape == (0, 3, 13, 13) and y.dtype == np.float32


def test_an_empty_batch_on_stdin_and_in_hdf5(files):
    import io

    import h5py

    buffer = io.BytesIO()
    np.save(buffer, np.zeros((0, 4, 6, 6), np.float64))
    np.save("w64.npy", np.load("w.npy").astype(np.float64))
    result = invoke("run", "-", "w64.npy", "-o", "y.npy", "-q", input=buffer.getvalue())
    assert (result.exit_code, result.stderr) == (0, "")
    assert np.load("y.npy").shape == (0, 3, 8, 8)
    with h5py.File("x.h5", "w") as f:
        f.create_dataset("x", shape=(0, 4, 6, 6), dtype="float32")
    result = invoke("run", "x.h5:/x", "w.npy", "-o", "y.h5:/y", "-q")
    assert (result.exit_code, result.stderr) == (0, "")
    with h5py.File("y.h5", "r") as f:
        assert f["y"].shape == (0, 3, 8, 8)


def test_a_zero_size_weight_axis_is_a_configuration_error(files):
    np.save("w0.npy", np.zeros((4, 0, 3, 3), np.float32))
    result = invoke("run", "x.npy", "w0.npy", "-o", "y.npy")
    assert result.exit_code == 2
    assert result.stderr == ("Error: the weight has shape (4, 0, 3, 3), with a zero-size axis. Every weight axis "
                             "(channels, kernel) needs at least one element.\n")
    assert not (files / "y.npy").exists()


@pytest.mark.parametrize("option, text, role", [("--input-shape", "-1,4,6,6", "input"),
                                                ("--weight-shape", "4,3,-3,3", "weight")])
def test_negative_sizes_in_shapes_are_refused(option, text, role):
    shapes = {"--input-shape": "1,4,6,6", "--weight-shape": "4,3,3,3", option: text}
    result = invoke("shape", *[v for item in shapes.items() for v in item])
    assert result.exit_code == 2
    assert result.stderr == f"Error: the {role} shape ({text.replace(',', ', ')}) has a negative size. Sizes are counts: 0 or more.\n"
    assert result.stdout == ""


def test_non_integer_sizes_are_refused_by_the_api():
    with pytest.raises(ConfigError, match=r"the input shape \(True, 4, 6, 6\) holds True, not a whole number"):
        derive((True, 4, 6, 6), (4, 3, 3, 3))


# --- wild integers anywhere: a result or one line -------------------------------------------------------

WILD = st.one_of(st.integers(-3, 12), st.sampled_from([0, 1, 2**31, 2**63, 10**6, 10**30, -(10**30)]))
KEYS = ("stride", "padding", "output_padding", "dilation", "groups", "output_size")


def _value(draw_tuple, value):
    return repr(tuple(value)) if draw_tuple else repr(value[0])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(["shape", "run"]),
       sets=st.dictionaries(st.sampled_from(KEYS), st.tuples(st.booleans(), st.lists(WILD, min_size=2, max_size=2)),
                            max_size=3))
def test_wild_integers_give_a_result_or_one_line(files, monkeypatch, command, sets):
    monkeypatch.setenv("DECONV_MEMORY_BUDGET", "64M")
    args = [f"{key}={_value(as_tuple, value)}" for key, (as_tuple, value) in sets.items()]
    options = [v for a in args for v in ("--set", a)]
    if command == "run":
        result = invoke("run", "x.npy", "w.npy", *options, "-o", "y.npy", "--force", "-q")
    else:
        result = invoke("shape", "--input-shape", "2,4,6,6", "--weight-shape", "4,3,3,3", *options)
    assert result.exit_code in (0, 1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if result.exit_code:
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    [leftover] = [n for n in os.listdir(files) if n.startswith(".deconv-")] or [None]
    assert leftover is None


NONFINITE_CASES = {  # (config, input spatial): problems whose rules pick each path
    "ort": (((3, 3), (2, 2), (2, 2), ((2, 1), (2, 1)), 1, 64, 32), (32, 32)),  # dil2
    "depthwise": (((4, 4), (2, 2), (1, 1), ((1, 1), (1, 1)), 64, 64, 64), (32, 32)),  # dw
    "scatter": (((2, 2), (2, 2), (1, 1), ((0, 0), (0, 0)), 1, 16, 8), (20, 20)),  # k2s2
    "phase": (((3, 3), (2, 2), (1, 1), ((1, 0), (1, 0)), 1, 8, 64), (40, 40)),  # widening
}


@pytest.mark.parametrize("chosen", sorted(NONFINITE_CASES))
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_nonfinite_tap_on_the_chosen_path_reaches_what_the_definition_says(chosen, value, rng, monkeypatch):
    """Scatter, onnxruntime's kernel and the depthwise kernel multiply real input only, so they keep their
    NaN or Inf weight and skip the check; a path that multiplies the padding (phase here) hands such a weight
    to scatter. Either way the NaN and Inf positions are the definition's."""
    from deconv_cli.core.config import DeconvConfig
    from deconv_cli.engines import _common, dispatch, scatter

    args, spatial = NONFINITE_CASES[chosen]
    config = DeconvConfig(*args)
    if chosen == "ort" and not dispatch.ort_installed() or chosen == "depthwise" and not dispatch.numba_installed():
        pytest.skip(f"{chosen} is not installed")
    x = rng.standard_normal((8, config.in_channels, *spatial)).astype(np.float32)
    w = rng.standard_normal(config.weight_shape).astype(np.float32)
    w[0, 0, 0, 0] = value  # the first tap: with padding, it reaches past the output's first row and column
    out = tuple((n - 1) * s + d * (k - 1) + 1 - lo - hi for n, k, s, d, (lo, hi)
                in zip(spatial, config.kernel, config.stride, config.dilation, config.crops))
    assert dispatch.choose_path(config, out, 8, spatial) == chosen
    if chosen == "scatter":
        want = reference_deconv(x.astype(np.float64), w.astype(np.float64), None, stride=config.stride,
                                dilation=config.dilation, crops=config.crops, groups=config.groups)
    else:  # scatter in float64 as the oracle (checked against the definition above and in the scatter case)
        want = numpy_engine.deconvolve(x.astype(np.float64), w.astype(np.float64), None, config, out, path="scatter")
    checked, real = [], _common.all_finite
    monkeypatch.setattr(_common, "all_finite", lambda a, xp: checked.append(a.shape) or real(a, xp))
    ran, scatter_items = [], scatter.items
    monkeypatch.setattr(scatter, "items", lambda *a: ran.append("scatter") or scatter_items(*a))
    got = numpy_engine.deconvolve(x, w, None, config, out)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-4)
    assert (checked == []) == (chosen != "phase")
    assert ran == (["scatter"] if chosen in ("phase", "scatter") else [])


def test_a_full_length_past_int64_positions_is_one_line_not_an_overflow(files):
    """torch padding 2**63 with dilation 2**63 is a 6-long output whose full result is 2**64 long: the engines'
    int64 positions would overflow (hypothesis found the traceback), so the run refuses it in one line; the
    shape alone is still derived."""
    args = ["--set", "padding=(9223372036854775808,0)", "--set", "dilation=(9223372036854775808,1)"]
    result = invoke("run", "x.npy", "w.npy", *args, "-o", "y.npy", "-q")
    assert result.exit_code == 2 and "reach 2**62, past the 64-bit positions" in result.stderr
    assert result.stderr.count("\n") == 1 and not os.path.exists("y.npy")
    shaped = invoke("shape", "--input-shape", "2,4,6,6", "--weight-shape", "4,3,3,3", *args)
    assert shaped.exit_code == 0, shaped.output
