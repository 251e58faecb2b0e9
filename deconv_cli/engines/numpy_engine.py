"""The CPU engine: the generic algorithm bound to NumPy, its work items spread over a small thread pool.

NumPy releases the GIL in BLAS calls, copies and ufunc loops, so two threads keep two cores busy in the
gather and scatter passes too, not only inside the GEMMs (OpenBLAS accepts concurrent callers).
``thread_budget`` is the one place that decides item threads x BLAS threads (threadpoolctl, a runtime
dependency), so that no entry point (``deconv run``, the Python API, batch workers) oversubscribes.
``DECONV_THREADS`` sets the CPUs one call uses (default: the CPUs this process may use, at most 8).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

from ..config import DeconvConfig, Shape
from ..errors import DeconvError
from . import _generic

NAME = "numpy"
DEVICE = "cpu"
_pool_executor: ThreadPoolExecutor | None = None
_pool_size = 0


def threads() -> int:
    """Worker threads for independent work items."""
    env = os.environ.get("DECONV_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise DeconvError(f"DECONV_THREADS={env!r} is not a positive whole number", "write e.g. DECONV_THREADS=2")
        return int(env)
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except AttributeError:  # not on Linux
        return max(1, min(8, os.cpu_count() or 1))


def _cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. under taskset or a container's cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class _Blas:
    """The BLAS libraries loaded in this process (threadpoolctl), their thread counts read and set directly.

    threadpoolctl's own ``limit`` context re-reads every library's state each time (tens of microseconds);
    these are two ctypes calls per library, cheap enough for every engine call (tiny: about 2 us).
    """

    libraries: list | None = None

    @classmethod
    def get(cls) -> list:
        if cls.libraries is None:
            from threadpoolctl import ThreadpoolController

            cls.libraries = ThreadpoolController().select(user_api="blas").lib_controllers
        return cls.libraries


@contextmanager
def blas_threads(count: int):
    """Hold every BLAS library to ``count`` threads for the block, then put back what was there."""
    changed = []
    for lib in _Blas.get():
        before = lib.get_num_threads()
        if before != count:
            lib.set_num_threads(count)
            changed.append((lib, before))
    try:
        yield
    finally:
        for lib, before in changed:
            lib.set_num_threads(before)


@contextmanager
def thread_budget():
    """The one place that splits the CPUs between work-item threads and BLAS threads, for one engine call.

    ``threads()`` CPUs in all (``DECONV_THREADS``, else the CPUs this process may run on): work that runs as
    one item gets them as BLAS threads; several items run on a pool of that many threads with BLAS held to
    one thread per caller (measured on the suite, 2 cores: "2 item threads x 1 BLAS thread" beat "2 x 2",
    oversubscribed, BLAS workers spin while the other item copies, and "1 x 2", copies single-threaded).
    Yields the ``parallel_map`` for ``_generic.deconvolve``. Batch workers set ``DECONV_THREADS`` to their
    share and get the same split.
    """
    size = min(threads(), _cpus())

    def parallel_map(fn, items):
        if size < 2:
            return [fn(item) for item in items]
        with blas_threads(1):
            return list(_pool(size).map(fn, items))

    with blas_threads(size):
        yield parallel_map


def _pool(size: int) -> ThreadPoolExecutor:
    global _pool_executor, _pool_size
    if _pool_executor is None or _pool_size != size:
        if _pool_executor is not None:
            _pool_executor.shutdown(wait=False)
        _pool_executor, _pool_size = ThreadPoolExecutor(size, thread_name_prefix="deconv"), size
    return _pool_executor


def deconvolve(x, w, bias, config: DeconvConfig, out_spatial: Shape, *, path: str | None = None):
    with thread_budget() as parallel_map:  # a bad DECONV_THREADS is an error even for work too small to split
        return _generic.deconvolve(
            np.asarray(x), np.asarray(w), None if bias is None else np.asarray(bias), config, out_spatial,
            xp=np, path=path, parallel_map=parallel_map,
        )


def to_host(array):
    return array
