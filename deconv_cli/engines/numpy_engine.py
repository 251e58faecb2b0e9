"""The CPU engine: the generic algorithm bound to NumPy, its work items spread over a small thread pool.

NumPy releases the GIL in BLAS calls, copies and ufunc loops, so two threads keep two cores busy in the
gather and scatter passes too, not only inside the GEMMs (OpenBLAS accepts concurrent callers).
``thread_budget`` is the one place that decides item threads x BLAS threads (threadpoolctl, a runtime
dependency), so that no entry point (``deconv run``, the Python API, batch workers) oversubscribes; the
``ort`` path's node runs on ``threads()`` onnxruntime threads instead, with no BLAS in it. ``DECONV_THREADS``
sets the CPUs one call uses (default: the CPUs this process may use, at most 8).

A call leaves nothing its caller can observe: no thread's CPU affinity is touched, NumPy's error state is
set with ``np.errstate`` (per thread, restored on exit), and the BLAS limit is one counted hold
(``_BlasHold``) that concurrent calls share and the last one out restores. After ``os.fork`` the child
starts with no pool, no hold and no cached onnxruntime session (``_after_fork_in_child``): the parent's
threads do not exist there, and waiting on them would hang the child's first call.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import numpy as np

from ..core.config import DeconvConfig, Shape
from . import _common, direct, dispatch, threads, wanted_threads

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

NAME = "numpy"
DEVICE = "cpu"
_pool_executor: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


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


class _BlasHold:
    """One process-wide hold of every BLAS library at one thread, shared by the calls that run at once.

    The BLAS thread count is one setting for the whole process, so per-call save-and-restore is wrong under
    concurrency (two calls restore each other's values, and the process is left at one thread). Here the
    first call in saves what the libraries had and sets one thread, later calls only count themselves in,
    and the last one out puts back what the first saw; the lock makes that sequence atomic. While no call
    runs, the process has exactly the limits its owner set.
    """

    lock = threading.Lock()
    count = 0
    saved: list = []

    @classmethod
    def enter(cls) -> None:
        with cls.lock:
            if cls.count == 0:
                saved = []
                for lib in _Blas.get():
                    before = lib.get_num_threads()
                    if before != 1:
                        _set_threads(lib, 1)
                        saved.append((lib, before))
                cls.saved = saved
            cls.count += 1

    @classmethod
    def exit(cls) -> None:
        with cls.lock:
            cls.count -= 1
            if cls.count == 0:
                cls._restore()

    @classmethod
    def _restore(cls) -> None:
        for lib, before in cls.saved:
            _set_threads(lib, before)
        cls.saved = []


def _set_threads(lib, count: int) -> None:
    """Set a BLAS library's thread count from whichever thread holds ``_BlasHold``. threadpoolctl lets only
    one "controlling" thread change a process-wide pool (OpenBLAS with pthreads) and silently ignores the
    others, so a call from any thread but the first that ever set a limit would run unlimited: the control
    is released before and after (threadpoolctl's public ``clear_controlling_thread``), under the hold's lock.
    """
    release = getattr(type(lib), "clear_controlling_thread", None)
    if release is not None:
        release(force=True)
    lib.set_num_threads(count)
    if release is not None:
        release(force=True)


class thread_budget:  # noqa: N801  (used as a context manager, like threadpoolctl's threadpool_limits)
    """The one place that splits the CPUs between work-item threads and BLAS threads, for one engine call.

    ``threads()`` CPUs in all (``DECONV_THREADS``, else the CPUs this process may run on, and never more than
    its affinity mask); the parallelism is the work items', BLAS runs one thread per caller throughout:
    - several items run on that many threads, this one and a pool (measured on the suite, 2 cores: "2 item threads x
      1 BLAS thread" beat "2 x 2", oversubscribed, BLAS workers spin while the other item copies, and
      "1 x 2", copies single-threaded);
    - a lone item runs inline on one BLAS thread: ``_common.item_budget`` cuts any work above ``MIN_ITEM_BYTES`` into
      two items at least, so a lone item is small, and a small GEMM on two BLAS threads waits on hand-offs
      (measured on 2 shared cores: a 16x144x324 GEMM item 17-48 ms on two BLAS threads, 0.3-1.1 ms on one).
    ``with thread_budget() as parallel_map`` gives the ``parallel_map`` for ``dispatch.deconvolve``.
    Batch workers set ``DECONV_THREADS`` to their share and get the same split.
    """

    __slots__ = ("size",)

    def __init__(self):
        self.size = threads()  # a bad DECONV_THREADS is an error even for tiny work; never more than the CPUs

    def __enter__(self):
        _BlasHold.enter()
        return self.parallel_map

    def __exit__(self, *exc):
        _BlasHold.exit()

    def parallel_map(self, fn, items):
        """``fn`` over ``items`` on ``size`` threads, this one included; results in completion order.

        Each thread pulls the next item from one shared iterator (CPython's list iterator hands each item out
        once), so a call costs size - 1 thread hand-offs whatever the item count: one hand-off per item cost
        g4 and dw twice the time with 0.6 MB items on loaded cores, which the memory cap needs.
        """
        if len(items) < 2 or self.size < 2:
            return [fn(item) for item in items]
        pending = iter(items)
        pool = _pool(self.size - 1)

        def drain():
            with np.errstate(all="ignore"):  # numpy's error state is per thread: set it in each one
                return [fn(item) for item in pending]

        helpers = [pool.submit(drain) for _ in range(min(self.size, len(items)) - 1)]
        try:
            results = drain()
        finally:
            done = [future.result() for future in helpers]  # waits for all; re-raises a helper's error
        return results + [r for part in done for r in part]


def _pool(size: int) -> ThreadPoolExecutor:
    """The shared helper pool, at least ``size`` threads (a larger one is kept: idle threads cost nothing,
    and two callers asking for different sizes must not shut down each other's pool mid-call)."""
    global _pool_executor, _pool_size
    with _pool_lock:
        if _pool_executor is None or _pool_size < size:
            from concurrent.futures import ThreadPoolExecutor  # here: a run that needs no pool saves 2.7 ms of start-up

            old, _pool_executor, _pool_size = _pool_executor, ThreadPoolExecutor(size, thread_name_prefix="deconv"), size
            if old is not None:
                old.shutdown(wait=False)  # its running items finish; new work goes to the new pool
        return _pool_executor


def _after_fork_in_child() -> None:
    """A forked child has only the thread that forked: forget the parent's pool (its threads are gone, and
    work queued to it would wait forever), take fresh locks (another thread may have held one at the fork),
    put back the BLAS limits a call in flight in the parent had set, and drop onnxruntime sessions (their
    thread pools are gone too)."""
    global _pool_executor, _pool_size, _pool_lock
    _pool_executor, _pool_size, _pool_lock = None, 0, threading.Lock()
    _BlasHold.lock = threading.Lock()
    if _BlasHold.count:
        _BlasHold.count = 0
        _BlasHold._restore()
    dispatch.forget_sessions()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def deconvolve(x, w, bias, config: DeconvConfig, out_spatial: Shape, *, path: str | None = None):
    """NaN and Inf propagate as IEEE arithmetic says, and float16 overflows to Inf, without numpy's
    RuntimeWarning text (the job reports NaN/Inf in the tensors in one warning line)."""
    x, w, bias = np.asarray(x), np.asarray(w), None if bias is None else np.asarray(bias)
    if path in (None, "direct", "ort"):  # the problem's key for the runners made once per problem
        key = (config, out_spatial if type(out_spatial) is tuple else tuple(out_spatial), x.shape, x.dtype.char,
               w.shape, w.dtype.char, None if bias is None else bias.dtype.char)
    if path in (None, "direct"):
        # one small GEMM, which OpenBLAS runs on one thread whatever its setting: no pool, no BLAS hold, and
        # the problem's shapes and index worked out once (tiny 4->4 8x8 k3 in a loop: 73 -> 30 -> 17.3 us a
        # call, against 12.3 us for its NumPy calls alone)
        run = direct.inline_direct(*key)
        if run is not None:
            wanted_threads()  # a bad DECONV_THREADS is an error on every path
            if (y := run(x, w, bias)) is not None:
                return y
    if path in (None, "ort"):
        # onnxruntime's node on threads() of its own threads (no BLAS in it, so no budget to hold), the
        # problem's feeds and session worked out once
        run = dispatch.inline_ort(*key, path == "ort")
        if run is not None:
            budget = thread_budget()  # its threads only: no BLAS in the node, so no limit to hold
            return run(x, w, bias, budget.size, budget.parallel_map)
    with thread_budget() as parallel_map, np.errstate(all="ignore"):
        return dispatch.deconvolve(x, w, bias, config, out_spatial, xp=np, path=path, parallel_map=parallel_map)


def runner(config: DeconvConfig, out_spatial: Shape, x, w, bias, path: str):
    """For repeated calls on arrays of these shapes and dtypes on ``path`` (the tile plan's), a function
    ``run(x, w, bias)`` with the per-call work done once, or None where the problem has none. ``run`` returns
    None where this call needs the general path instead (a weight with NaN or Inf, whose path the caller
    decides): the caller then makes the ordinary call. Used by the Python API's prepared problems."""
    key = (config, tuple(out_spatial), x.shape, x.dtype.char, w.shape, w.dtype.char,
           None if bias is None else bias.dtype.char)
    if path == "direct" and (inline := direct.inline_direct(*key)) is not None:
        wanted_threads()  # a bad DECONV_THREADS is an error when the problem is prepared; its calls use one thread
        return inline  # None for a weight whose sum is not finite
    if path == "ort" and (node := dispatch.inline_ort(*key, True)) is not None:
        def run_node(x, w, bias):
            with np.errstate(all="ignore"):
                if not _common.all_finite(w, np):  # the caller's rule for such a weight: scatter
                    return None
            budget = thread_budget()
            return node(x, w, bias, budget.size, budget.parallel_map)
        return run_node
    return None


def to_host(array):
    return array
