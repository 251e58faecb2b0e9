"""The CPU engine: the generic algorithm bound to NumPy, its work items spread over a small thread pool.

NumPy releases the GIL in BLAS calls, copies and ufunc loops, so two threads keep two cores busy in the
gather and scatter passes too, not only inside the GEMMs (OpenBLAS accepts concurrent callers).
While the items run, BLAS is held to one thread per caller when threadpoolctl is installed: measured on
the suite (2 cores), "2 item threads x 1 BLAS thread" beat "2 x 2" (oversubscribed, BLAS workers spin
while the other item copies) and "1 x 2" (copies single-threaded) on the GEMM-bound configurations.
``DECONV_THREADS`` sets the pool size (default: the CPUs this process may use, at most 8; never more than
those CPUs).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from ..config import DeconvConfig, Shape
from ..errors import ConfigError
from . import _generic

NAME = "numpy"
DEVICE = "cpu"
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_controller = None


def cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def threads() -> int:
    """Worker threads for independent work items: DECONV_THREADS, never more than the CPUs (more only
    oversubscribe them, and OpenBLAS crashes with hundreds of concurrent callers); default min(CPUs, 8)."""
    env = os.environ.get("DECONV_THREADS", "").strip()
    if env:
        digits = env.lstrip("0")
        if not (env.isascii() and env.isdigit()) or not digits:
            raise ConfigError(f"DECONV_THREADS={env!r} is not a positive whole number", "write e.g. DECONV_THREADS=2")
        return min(int(digits) if len(digits) < 10 else 1 << 30, cpus())
    return min(8, cpus())


def _blas_limiter():
    """A context manager that holds BLAS to one thread (threadpoolctl), or None if it is not installed."""
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _controller = False
        else:
            _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas") if _controller else None


def _parallel_map(fn, items):
    global _pool, _pool_size
    size = threads()
    if size < 2:
        return [fn(item) for item in items]
    if _pool is None or _pool_size != size:
        _pool, _pool_size = ThreadPoolExecutor(size, thread_name_prefix="deconv"), size
    limiter = _blas_limiter()
    quiet = partial(_quietly, fn)  # numpy's error state is per thread: set it in each worker
    if limiter is None:
        return list(_pool.map(quiet, items))
    with limiter:
        return list(_pool.map(quiet, items))


def _quietly(fn, item):
    with np.errstate(all="ignore"):
        return fn(item)


def deconvolve(x, w, bias, config: DeconvConfig, out_spatial: Shape, *, path: str | None = None):
    """NaN and Inf propagate as IEEE arithmetic says, and float16 overflows to Inf, without numpy's
    RuntimeWarning text (the job reports NaN/Inf in the tensors in one warning line)."""
    threads()  # a bad DECONV_THREADS is an error even for work too small to be split
    with np.errstate(all="ignore"):
        return _generic.deconvolve(
            np.asarray(x), np.asarray(w), None if bias is None else np.asarray(bias), config, out_spatial,
            xp=np, path=path, parallel_map=_parallel_map,
        )


def to_host(array):
    return array
