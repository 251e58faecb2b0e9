"""The engine's one thread budget: work-item threads x BLAS threads never exceed DECONV_THREADS or the CPUs.

A spy on numpy.matmul reads the BLAS thread count (threadpoolctl) at the moment each GEMM runs.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from deconv_cli.config import DeconvConfig
from deconv_cli.engines import _generic, numpy_engine

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
        monkeypatch.setattr(_generic, "COLUMN_BUDGET_BYTES", budget)
        monkeypatch.setattr(_generic, "MIN_ITEM_BYTES", 1)
    config = DeconvConfig(kernel=(3, 3), stride=(stride, stride), dilation=(1, 1), crops=((1, 1), (1, 1)), groups=1,
                          in_channels=4, out_channels=4)
    x = np.ones((2, 4, 6, 6), dtype=np.float32)
    w = np.ones(config.weight_shape, dtype=np.float32)
    numpy_engine.deconvolve(x, w, None, config, ((6 - 1) * stride + 3 - 2,) * 2, path="phase")
    return seen


def test_blas_threads_is_held_for_the_block_and_put_back():
    before = _blas_threads()
    with numpy_engine.blas_threads(1):
        assert _blas_threads() == [1] * len(before)
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
        assert _generic.runs_inline(config, (10, 10), 1) is inline
        assert _generic.choose_path(config, (10, 10), 1, (8, 8)) == "direct"
        seen.clear()
        x = np.ones((1, channels, 8, 8), dtype=np.float32)
        y = numpy_engine.deconvolve(x, np.ones(config.weight_shape, dtype=np.float32), None, config, (10, 10))
        assert y[0, 0, 4, 4] == 9 * channels
        assert seen == [tuple(before) if inline else (1,) * len(before)]
    assert _blas_threads() == before


def test_a_bad_deconv_threads_is_an_error_for_the_smallest_problem_too(monkeypatch):
    from deconv_cli.errors import ConfigError

    monkeypatch.setenv("DECONV_THREADS", "two")
    config = _direct_config(1)
    with pytest.raises(ConfigError, match="DECONV_THREADS='two'"):
        numpy_engine.deconvolve(np.ones((1, 1, 2, 2), np.float32), np.ones(config.weight_shape, np.float32), None,
                                config, (4, 4))
