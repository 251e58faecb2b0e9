"""The Python API: the reusable ``Deconvolution``, the planning cache behind ``deconvolve``, array-likes."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import deconv_cli
from deconv_cli.conventions import plan as conventions_plan
from deconv_cli.execution import tiling


def _tensors(rng, shape=(2, 4, 8, 8), cout=6, k=3, dtype=np.float32):
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((shape[1], cout, k, k)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    return x, w, b


@pytest.fixture
def counted(monkeypatch):
    """How many times the keywords were parsed (conventions.plan) and the tiles planned (tiling.plan_for)."""
    calls = {"plan": 0, "plan_for": 0}
    real_plan, real_plan_for = conventions_plan._plan_uncached, tiling.plan_for

    def plan(*a, **k):
        calls["plan"] += 1
        return real_plan(*a, **k)

    def plan_for(*a, **k):
        calls["plan_for"] += 1
        return real_plan_for(*a, **k)

    monkeypatch.setattr(conventions_plan, "_plan_uncached", plan)
    monkeypatch.setattr(tiling, "plan_for", plan_for)
    conventions_plan._PLANS.clear()
    deconv_cli._PREPARED.clear()
    return calls


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_the_operation_gives_deconvolves_bytes_for_every_input_shape(dtype, rng):
    x, w, b = _tensors(rng, dtype=dtype)
    op = deconv_cli.Deconvolution(w, b, style="torch", stride=2, padding=1, output_padding=1)
    for shape in ((2, 4, 8, 8), (1, 4, 5, 7), (2, 4, 8, 8)):
        xi = rng.standard_normal(shape).astype(dtype)
        want = deconv_cli.deconvolve(xi, w, b, style="torch", stride=2, padding=1, output_padding=1)
        got = op(xi)
        assert got.dtype == want.dtype == dtype
        np.testing.assert_array_equal(got, want)
    assert op.derive((1, 4, 5, 7)).output_shape == (1, 6, 10, 14)


def test_the_operation_takes_another_styles_keywords(rng):
    x, w, b = _tensors(rng)
    op = deconv_cli.Deconvolution(w, b, style="onnx", strides=(2, 2), auto_pad="SAME_UPPER")
    np.testing.assert_array_equal(op(x), deconv_cli.deconvolve(x, w, b, style="onnx", strides=(2, 2),
                                                               auto_pad="SAME_UPPER"))
    assert "style='onnx'" in repr(op)


def test_the_operation_plans_once_per_input_shape(rng, counted):
    x, w, b = _tensors(rng)
    op = deconv_cli.Deconvolution(w, b, style="torch", stride=2)
    for _ in range(5):
        op(x)
    assert counted == {"plan": 1, "plan_for": 1}
    op(x[:1])
    assert counted == {"plan": 2, "plan_for": 2}


def test_repeated_deconvolve_calls_skip_parsing_and_planning(rng, counted):
    x, w, b = _tensors(rng)
    first = deconv_cli.deconvolve(x, w, b, style="torch", stride=2, padding=1)
    for _ in range(5):
        np.testing.assert_array_equal(deconv_cli.deconvolve(x, w, b, style="torch", stride=2, padding=1), first)
    assert counted == {"plan": 1, "plan_for": 1}
    # any change of keyword, spelling, shape or dtype is another problem
    deconv_cli.deconvolve(x, w, b, style="torch", stride=2, padding=0)
    deconv_cli.deconvolve(x, w, b, style="torch", stride=(2, 2), padding=1)
    deconv_cli.deconvolve(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), style="torch", stride=2,
                          padding=1)
    deconv_cli.deconvolve(x[:1], w, b, style="torch", stride=2, padding=1)
    deconv_cli.deconvolve(x, w, None, style="torch", stride=2, padding=1)
    assert counted["plan_for"] == 6


def test_the_planning_cache_is_bounded_and_keys_by_spelling(rng, counted):
    _, w, _ = _tensors(rng)
    for n in range(1, 300):
        deconv_cli.deconvolve(np.zeros((n, 4, 2, 2), np.float32), w)
    assert len(deconv_cli._PREPARED) == 256
    x = np.ones((1, 4, 3, 3), np.float32)
    before, parsed = counted["plan_for"], counted["plan"]
    big = np.zeros(2000, dtype=np.int64)  # a keyword whose repr is elided ("...") cannot be keyed: never cached
    for _ in range(2):
        with pytest.raises(deconv_cli.ConfigError):
            deconv_cli.deconvolve(x, w, style="torch", output_padding=big)
    assert counted["plan"] == parsed + 2 and len(deconv_cli._PREPARED) == 256
    for value in (2, 2.0, True):  # equal values of other types are other problems (and 2.0 and True are refused)
        try:
            deconv_cli.deconvolve(x, w, style="torch", stride=value)
        except deconv_cli.ConfigError:
            assert value is not 2  # noqa: F632
    assert counted["plan_for"] == before + 1


def test_a_weight_changed_in_place_changes_the_next_result(rng):
    x, w, b = _tensors(rng)
    op = deconv_cli.Deconvolution(w, b)
    before = op(x)
    w *= 2
    np.testing.assert_array_equal(op(x), deconv_cli.deconvolve(x, w, b))
    assert not np.array_equal(op(x), before)


def test_an_unknown_style_is_refused_when_the_operation_is_made(rng):
    _, w, _ = _tensors(rng)
    with pytest.raises(deconv_cli.ConfigError, match="unknown style 'torchh'"):
        deconv_cli.Deconvolution(w, style="torchh")


def test_four_threads_calling_one_operation_get_the_single_thread_bytes(rng):
    x, w, b = _tensors(rng, shape=(4, 16, 24, 24), cout=16, k=4)
    op = deconv_cli.Deconvolution(w, b, stride=2, padding=1)
    want, bad = op(x), []

    def work():
        for _ in range(5):
            if not np.array_equal(op(x), want):
                bad.append(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []


def test_array_likes_are_taken_as_numpy_asarray_takes_them(rng):
    x, w, b = _tensors(rng, dtype=np.float64)
    want = deconv_cli.deconvolve(x, w, b, stride=2)
    np.testing.assert_array_equal(deconv_cli.deconvolve(x.tolist(), w.tolist(), b.tolist(), stride=2), want)
    np.testing.assert_array_equal(deconv_cli.Deconvolution(w.tolist(), b.tolist(), stride=2)(x.tolist()), want)
    ones = deconv_cli.deconvolve([[[1.0, 2.0]]], [[[1.0, 1.0]]])  # (N, C, L) = (1, 1, 2), kernel 2
    np.testing.assert_array_equal(ones, [[[1.0, 3.0, 2.0]]])


@pytest.mark.parametrize("bad, says", [
    ([[[1.0, 2.0]], [[1.0]]], "numpy.asarray cannot make an array of this list"),
    ("not a tensor", "a str of <U12 values is not a tensor of numbers"),
    ([[[None, 1.0]]], "a list of object values is not a tensor of numbers"),
    ([[["a", "b"]]], "is not a tensor of numbers"),
])
def test_what_numpy_cannot_make_a_tensor_of_is_one_config_error(bad, says):
    with pytest.raises(deconv_cli.ConfigError, match=says) as info:
        deconv_cli.deconvolve(bad, [[[1.0, 1.0]]])
    assert "\n" not in str(info.value) and info.value.__cause__ is None
    with pytest.raises(deconv_cli.ConfigError, match=says.replace("input", "weight")):
        deconv_cli.Deconvolution(bad)


@pytest.mark.parametrize("size", ["direct", "ort"])
@pytest.mark.parametrize("value", [1.0, np.nan, np.inf])
def test_the_prepared_runner_gives_the_tile_calls_bytes_for_any_weight(size, value, rng):
    """The engine's per-problem runner that a prepared problem binds (the direct and onnxruntime paths) steps
    aside for a weight with NaN or Inf, so the result is always compute_in_memory's, bit for bit."""
    from deconv_cli.engines import dispatch, numpy_engine

    if size == "ort" and not dispatch.ort_installed():
        pytest.skip("onnxruntime is not installed")
    shape, cout, options = ((1, 4, 8, 8), 4, {}) if size == "direct" else \
        ((8, 64, 32, 32), 32, {"stride": 2, "padding": 2, "output_padding": 1, "dilation": 2})
    x, w, b = _tensors(rng, shape, cout)
    w[0, 0, 1, 1] *= value
    op = deconv_cli.Deconvolution(w, b, **options)
    record = op.derive(x.shape)
    tile_plan = tiling.plan_for(record, "float32")
    assert tiling.path_for(tile_plan) == size
    want = tiling.compute_in_memory(numpy_engine, x, w, b, tile_plan)
    for _ in range(2):
        np.testing.assert_array_equal(op(x), want)
        np.testing.assert_array_equal(deconv_cli.deconvolve(x, w, b, **options), want)


def test_a_single_tile_that_reads_part_of_the_input_gets_its_window(rng):
    """A crop larger than the kernel's reach leaves input rows no output reads: the one tile reads a window,
    and the prepared problem must hand it that window, not the whole input (as compute_in_memory does)."""
    from deconv_cli.engines import numpy_engine

    x, w, _ = _tensors(rng, (1, 2, 6, 6), 2)
    options = {"stride": 2, "padding": (3, 2)}
    record = deconv_cli.derive(x.shape, w.shape, style="megengine", **options)
    tile_plan = tiling.plan_for(record, "float32")
    assert len(tile_plan) == 1 and next(iter(tile_plan)).input_shape != x.shape
    want = tiling.compute_in_memory(numpy_engine, x, w, None, tile_plan)
    for _ in range(2):
        np.testing.assert_array_equal(deconv_cli.deconvolve(x, w, style="megengine", **options), want)
        np.testing.assert_array_equal(deconv_cli.Deconvolution(w, style="megengine", **options)(x), want)


def test_a_bad_deconv_threads_is_an_error_when_a_small_problem_is_prepared(rng, monkeypatch):
    """The prepared direct runner uses one thread and reads no setting per call, but a bad DECONV_THREADS is
    still refused: when the problem is prepared, by both ``deconvolve`` and ``Deconvolution``, whose cache
    then holds nothing for it; a good value afterwards runs it."""
    x, w, b = _tensors(rng, (1, 4, 8, 8), 4)
    deconv_cli._PREPARED.clear()
    monkeypatch.setenv("DECONV_THREADS", "two")
    with pytest.raises(deconv_cli.ConfigError, match="DECONV_THREADS='two'"):
        deconv_cli.deconvolve(x, w, b)
    op = deconv_cli.Deconvolution(w, b)
    with pytest.raises(deconv_cli.ConfigError, match="DECONV_THREADS='two'"):
        op(x)
    assert not deconv_cli._PREPARED and not op._plans
    monkeypatch.setenv("DECONV_THREADS", "1")
    np.testing.assert_array_equal(op(x), deconv_cli.deconvolve(x, w, b))
