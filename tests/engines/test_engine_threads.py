"""The engine's one thread budget: work-item threads x BLAS threads never exceed DECONV_THREADS or the CPUs.

A spy on numpy.matmul reads the BLAS thread count (threadpoolctl) at the moment each GEMM runs.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from deconv_cli.core.config import DeconvConfig
from deconv_cli.core.errors import ConfigError
from deconv_cli.engines import _common, direct, dispatch, numpy_engine

CPUS = len(os.sched_getaffinity(0))


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def _run_with_spy(monkeypatch, threads: str, budget: int | None = None, stride: int = 2):
    """One phase-path call (stride 2: four phases, four items at least; stride 1: one item); returns the BLAS thread counts seen by each GEMM and the thread names."""
    seen = []
    real = np.matmul

    def spy(*args, **kwargs):
        seen.append((tuple(_blas_threads()), threading.current_thread().name))
        return real(*args, **kwargs)

    monkeypatch.setattr(np, "matmul", spy)
    monkeypatch.setenv("DECONV_THREADS", threads)
    if budget is not None:
        monkeypatch.setattr(_common, "COLUMN_BUDGET_BYTES", budget)
        monkeypatch.setattr(_common, "MIN_ITEM_BYTES", 1)
    config = DeconvConfig(kernel=(3, 3), stride=(stride, stride), dilation=(1, 1), crops=((1, 1), (1, 1)), groups=1,
                          in_channels=4, out_channels=4)
    x = np.ones((2, 4, 6, 6), dtype=np.float32)
    w = np.ones(config.weight_shape, dtype=np.float32)
    numpy_engine.deconvolve(x, w, None, config, ((6 - 1) * stride + 3 - 2,) * 2, path="phase")
    return seen


def test_the_blas_hold_is_counted_and_the_last_one_out_restores():
    before = _blas_threads()
    with numpy_engine.thread_budget():
        assert _blas_threads() == [1] * len(before)
        with numpy_engine.thread_budget():
            assert _blas_threads() == [1] * len(before)
        assert _blas_threads() == [1] * len(before)  # the outer call still runs: still held
    assert _blas_threads() == before


def test_one_thread_means_one_blas_thread_everywhere(monkeypatch):
    before = _blas_threads()
    seen = _run_with_spy(monkeypatch, "1", budget=1)  # many items, run one after another
    assert len(seen) > 1 and {counts for counts, _ in seen} == {(1,) * len(before)}
    assert _blas_threads() == before


@pytest.mark.skipif(CPUS < 2, reason="needs two CPUs in the affinity mask")
def test_parallel_items_get_one_blas_thread_each(monkeypatch):
    seen = _run_with_spy(monkeypatch, "2", budget=1)
    assert len(seen) > 1 and all(counts == (1,) * len(counts) for counts, _ in seen)
    assert any(name.startswith("deconv") for _, name in seen)  # a pool thread took some


def test_a_lone_item_runs_inline_on_one_blas_thread(monkeypatch):
    (only,) = _run_with_spy(monkeypatch, "2", stride=1)
    assert only == ((1,) * len(only[0]), threading.current_thread().name)


def test_threads_are_bounded_by_the_affinity_mask(monkeypatch):
    """DECONV_THREADS above the CPUs this process may use does not oversubscribe them."""
    monkeypatch.setenv("DECONV_THREADS", str(CPUS + 3))
    with numpy_engine.thread_budget() as parallel_map:
        def busy(_):  # long enough that every pool thread takes some
            time.sleep(0.005)
            return threading.current_thread().name

        names = parallel_map(busy, range(32))
        assert _blas_threads() == [1] * len(_blas_threads())
    assert len(set(names)) <= CPUS


def test_parallel_map_runs_every_item_once_and_raises_an_items_error(monkeypatch):
    monkeypatch.setenv("DECONV_THREADS", "2")
    with numpy_engine.thread_budget() as parallel_map:
        assert sorted(parallel_map(lambda i: i * i, list(range(200)))) == [i * i for i in range(200)]
    seen = []

    def fails_at_7(i):
        time.sleep(0.001)
        seen.append(i)
        if i == 7:
            raise ValueError("item 7")
        return i

    with pytest.raises(ValueError, match="item 7"), numpy_engine.thread_budget() as parallel_map:
        parallel_map(fails_at_7, list(range(40)))
    assert 7 in seen and len(seen) == len(set(seen))


def _direct_config(channels: int) -> DeconvConfig:
    return DeconvConfig(kernel=(3, 3), stride=(1, 1), dilation=(1, 1), crops=((0, 0), (0, 0)), groups=1,
                        in_channels=channels, out_channels=channels)


def test_a_small_direct_problem_runs_as_it_stands_and_a_larger_one_on_the_budget(monkeypatch):
    """One GEMM of at most 2^18 multiply-adds (OpenBLAS keeps it on one thread) skips the budget; above that,
    the direct path's GEMM runs with BLAS held to one thread like every other item."""
    seen = []
    real = np.matmul

    def spy(*args, **kwargs):
        seen.append(tuple(_blas_threads()))
        return real(*args, **kwargs)

    monkeypatch.setattr(np, "matmul", spy)
    monkeypatch.setenv("DECONV_THREADS", "2")
    before = _blas_threads()
    for channels, inline in ((4, True), (24, False)):  # 3 600 columns x 4 rows; 21 600 x 24 = 518 400
        config = _direct_config(channels)
        assert direct.runs_inline(config, (10, 10), 1) is inline
        assert dispatch.choose_path(config, (10, 10), 1, (8, 8)) == "direct"
        seen.clear()
        x = np.ones((1, channels, 8, 8), dtype=np.float32)
        y = numpy_engine.deconvolve(x, np.ones(config.weight_shape, dtype=np.float32), None, config, (10, 10))
        assert y[0, 0, 4, 4] == 9 * channels
        assert seen == [tuple(before) if inline else (1,) * len(before)]
    assert _blas_threads() == before


def test_a_bad_deconv_threads_is_an_error_for_the_smallest_problem_too(monkeypatch):
    """The value as set now, and a bad one is an error with the value as written."""
    from deconv_cli.core.errors import ConfigError

    config = _direct_config(1)
    x, w = np.ones((1, 1, 2, 2), np.float32), np.ones(config.weight_shape, np.float32)
    monkeypatch.setenv("DECONV_THREADS", "two")
    with pytest.raises(ConfigError, match="DECONV_THREADS='two'"):
        numpy_engine.deconvolve(x, w, None, config, (4, 4))
    monkeypatch.setenv("DECONV_THREADS", "1")
    assert numpy_engine.deconvolve(x, w, None, config, (4, 4))[0, 0, 2, 2] == 4 and numpy_engine.threads() == 1
    monkeypatch.setenv("DECONV_THREADS", " 0 ")
    with pytest.raises(ConfigError, match="DECONV_THREADS=' 0 '|DECONV_THREADS='0'"):
        numpy_engine.threads()
    monkeypatch.delenv("DECONV_THREADS")
    assert numpy_engine.threads() == min(8, len(os.sched_getaffinity(0)))


def _tiny_problem(rng, dtype=np.float32, bias=True):
    config = _direct_config(4)
    x = rng.standard_normal((2, 4, 8, 8)).astype(dtype)
    w = rng.standard_normal(config.weight_shape).astype(dtype)
    b = rng.standard_normal(4).astype(dtype) if bias else None
    return config, x, w, b


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_the_inline_direct_runner_gives_the_general_paths_bytes(dtype, bias, rng, monkeypatch):
    """The per-problem runner that small direct problems take (``inline_direct``) returns exactly what the
    general direct path returns, in every dtype, with and without a bias, and with a bias of another dtype."""
    config, x, w, b = _tiny_problem(rng, dtype, bias)
    key = (config, (10, 10), x.shape, x.dtype.char, w.shape, w.dtype.char, None if b is None else b.dtype.char)
    run = direct.inline_direct(*key)
    assert run is not None
    calls = []
    monkeypatch.setattr(direct, "inline_direct", lambda *a: calls.append(a) or run)
    got = numpy_engine.deconvolve(x, w, b, config, (10, 10))
    assert calls == [key]
    with np.errstate(all="ignore"):
        want = dispatch.deconvolve(x, w, b, config, (10, 10), xp=np, path="direct")
    assert got.dtype == want.dtype == dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    if b is not None:  # a float64 bias on float32 work is cast first, as the general path casts it
        b64 = b.astype(np.float64)
        with np.errstate(all="ignore"):
            want = dispatch.deconvolve(x, w, b64, config, (10, 10), xp=np, path="direct")
        np.testing.assert_array_equal(numpy_engine.deconvolve(x, w, b64, config, (10, 10)), want)


def test_the_inline_runner_leaves_a_nan_weight_and_other_layouts_to_the_general_path(rng):
    """A weight whose sum is not finite makes the runner step aside (None): the general path then checks
    exactly and takes scatter, which keeps positions no input reaches at the bias. Layouts that need moving
    and empty problems get no runner."""
    config, x, w, b = _tiny_problem(rng)
    run = direct.inline_direct(config, (10, 10), x.shape, x.dtype, w.shape, w.dtype, b.dtype)
    w_nan = w.copy()
    w_nan[0, 0, 2, 2] = np.nan  # the last tap: output (0, 0) is reached by tap (0, 0) only
    with np.errstate(all="ignore"):  # (the engine calls it quietly)
        assert run(x, w_nan, b) is None
    got = numpy_engine.deconvolve(x, w_nan, b, config, (10, 10))
    np.testing.assert_array_equal(got[:, :, 0, 0], (x[:, :, 0, 0] @ w[:, :, 0, 0]) + b)  # not NaN
    assert np.isnan(got[:, 0, 9, 9]).all()
    big = np.full_like(w, np.finfo(np.float32).max)  # a finite weight whose sum overflows: general path, same result
    with np.errstate(all="ignore"):
        assert run(x, big, b) is None
        np.testing.assert_array_equal(numpy_engine.deconvolve(x, big, b, config, (10, 10)),
                                      dispatch.deconvolve(x, big, b, config, (10, 10), xp=np, path="direct"))
    last = DeconvConfig(kernel=config.kernel, stride=config.stride, dilation=config.dilation, crops=config.crops,
                        groups=1, in_channels=4, out_channels=4, channels_last=True)
    assert direct.inline_direct(last, (10, 10), (2, 8, 8, 4), x.dtype, w.shape, w.dtype, None) is None
    assert direct.inline_direct(config, (10, 10), (0, 4, 8, 8), x.dtype, w.shape, w.dtype, None) is None
    assert direct.inline_direct(_direct_config(24), (10, 10), (1, 24, 8, 8), x.dtype, (24, 24, 3, 3), w.dtype, None) is None


def test_the_inline_runner_is_quiet_on_overflow(rng):
    """Overflow inside the small GEMM gives Inf without a NumPy RuntimeWarning (the job reports Inf itself)."""
    import warnings

    config, x, w, b = _tiny_problem(rng)
    x[...] = 1e30
    w[...] = 1e30
    w[0, 0, 0, 0] = -1e30  # the sum stays finite (it is float32: 1e30 * 143 is well inside its range)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = numpy_engine.deconvolve(x, w, b, config, (10, 10))
    assert np.isinf(y).any()


def _ort_problem(rng, batched=True, crops=((1, 1), (1, 1)), **layout):
    """A problem the rules give onnxruntime's kernel (dil2-like: 64->32, k3 s2 d2, 16 M multiply-adds)."""
    config = DeconvConfig(kernel=(3, 3), stride=(2, 2), dilation=(2, 2), crops=crops, groups=1, in_channels=64,
                          out_channels=32, batched=batched, **layout)
    x = rng.standard_normal((8, 64, 32, 32) if batched else (64, 32, 32)).astype(np.float32)
    w = (rng.standard_normal(config.weight_shape) * 0.1).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    out = tuple(31 * 2 + 4 + 1 - lo - hi for lo, hi in crops)
    return config, x, w, b, out


@pytest.mark.skipif(not dispatch.ort_installed(), reason="onnxruntime is not installed")
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_the_inline_ort_runner_gives_the_general_paths_bytes_without_the_thread_budget(batched, bias, rng, monkeypatch):
    """A problem that takes onnxruntime's kernel runs through a runner built once per problem
    (``inline_ort``), outside the thread budget, and returns the general ort path's bytes."""
    config, x, w, b, out = _ort_problem(rng, batched)
    b = b if bias else None
    # one sample is below the rules' onnxruntime threshold: the path is asked for by name there
    assert (dispatch.choose_path(config, out, 8, (32, 32)) == "ort") if batched else \
        (dispatch.choose_path(config, out, 1, (32, 32)) != "ort")
    path = None if batched else "ort"
    key = (config, out, x.shape, "f", w.shape, "f", "f" if bias else None, not batched)
    run = dispatch.inline_ort(*key)
    assert run is not None
    calls, budgets = [], []
    monkeypatch.setattr(dispatch, "inline_ort", lambda *a: calls.append(a) or run)
    monkeypatch.setattr(numpy_engine.thread_budget, "__enter__", lambda self: budgets.append(self))
    got = numpy_engine.deconvolve(x, w, b, config, out, path=path)
    assert calls == [key] and not budgets
    monkeypatch.undo()
    with np.errstate(all="ignore"):
        want = dispatch.deconvolve(x, w, b, config, out, xp=np, path="ort")
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    monkeypatch.setenv("DECONV_THREADS", "two")  # still validated on this path
    with pytest.raises(ConfigError, match="DECONV_THREADS"):
        numpy_engine.deconvolve(x, w, b, config, out, path=path)


@pytest.mark.skipif(not dispatch.ort_installed(), reason="onnxruntime is not installed")
def test_the_inline_ort_runner_is_only_for_what_the_node_can_take_as_it_lies(rng):
    """Other dtypes, channels last, a weight permutation, a negative crop and problems the rules give another
    path get no runner (the general path handles them); byte-swapped float32 is converted, not misread."""
    config, x, w, b, out = _ort_problem(rng)

    def key(cfg=config, x_shape=x.shape, dtype="f", w_dtype="f", b_dtype="f", forced=False, spatial=out):
        return dispatch.inline_ort(cfg, spatial, x_shape, dtype, w.shape, w_dtype, b_dtype, forced)

    assert key() is not None
    assert key(dtype="d") is None and key(w_dtype="e") is None and key(b_dtype="d") is None
    replace = dataclasses.replace
    assert key(cfg=replace(config, channels_last=True), x_shape=(8, 32, 32, 64)) is None
    assert key(cfg=replace(config, weight_perm=(0, 1, 2, 3))) is None
    negative = replace(config, crops=((-1, 1), (1, 1)))
    assert key(cfg=negative, spatial=(67, 65)) is None and key(cfg=negative, spatial=(67, 65), forced=True) is None
    assert key(x_shape=(0, 64, 32, 32)) is None
    small = replace(config, in_channels=4, out_channels=4)  # below onnxruntime's work threshold: another path
    assert dispatch.inline_ort(small, out, (8, 4, 32, 32), "f", small.weight_shape, "f", None, False) is None
    assert dispatch.inline_ort(small, out, (8, 4, 32, 32), "f", small.weight_shape, "f", None, True) is not None
    swapped = x.astype(x.dtype.newbyteorder())  # same values, big-endian bytes: dtype char "f" too
    assert swapped.dtype.char == "f"
    np.testing.assert_array_equal(numpy_engine.deconvolve(swapped, w, b, config, out),
                                  numpy_engine.deconvolve(x, w, b, config, out))
