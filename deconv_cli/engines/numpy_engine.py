"""The CPU engine: the generic algorithm bound to NumPy, its work items spread over a small thread pool.

NumPy releases the GIL in BLAS calls, copies and ufunc loops, so two threads keep two cores busy in the
gather and scatter passes too, not only inside the GEMMs (OpenBLAS accepts concurrent callers).
``thread_budget`` is the one place that decides item threads x BLAS threads (threadpoolctl, a runtime
dependency), so that no entry point (``deconv run``, the Python API, batch workers) oversubscribes; the
``ort`` path's node runs on ``threads()`` onnxruntime threads instead, with no BLAS in it. ``_Placement`` keeps
a parallel call's threads on distinct CPUs. ``DECONV_THREADS`` sets the CPUs one call uses (default: the CPUs
this process may use, at most 8).
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..core.config import DeconvConfig, Shape
from ..core.errors import ConfigError
from . import _generic, cpus

NAME = "numpy"
DEVICE = "cpu"
try:  # NumPy 2 keeps its floating-point error state in a context variable: set directly, it costs two C calls
    from numpy._core.umath import _extobj_contextvar as _FP_STATE
    from numpy._core.umath import _make_extobj

    _QUIET = _make_extobj(all="ignore")
except (ImportError, TypeError):  # NumPy 1.x: np.errstate
    _FP_STATE = None
_pool_executor: ThreadPoolExecutor | None = None
_pool_size = 0


def threads() -> int:
    """Worker threads for independent work items: DECONV_THREADS, never more than the CPUs (more only
    oversubscribe them, and OpenBLAS crashes with hundreds of concurrent callers); default min(CPUs, 8)."""
    wanted = _wanted_threads(_threads_env())
    return min(wanted, cpus())  # the mask, read each call (about 1 us)


# CPython's store behind os.environ (bytes keys on POSIX), which os.environ's own methods keep current
_ENV_DATA = getattr(os.environ, "_data", None) if os.name == "posix" else None


def _threads_env() -> str | bytes:
    """DECONV_THREADS as set ("" when unset): one lookup in os.environ's store where CPython keeps it, else
    os.environ.get, whose Python methods a call after an idle pause runs cold (tiny: about 20 us of 240)."""
    if _ENV_DATA is not None:
        return _ENV_DATA.get(b"DECONV_THREADS", b"")
    return os.environ.get("DECONV_THREADS", "")


@functools.lru_cache(maxsize=8)
def _wanted_threads(env: str | bytes) -> int:
    """DECONV_THREADS as written (8 when unset), parsed once per value; a bad value is a ConfigError."""
    env = (os.fsdecode(env) if isinstance(env, bytes) else env).strip()
    if not env:
        return 8
    digits = env.lstrip("0")
    if not (env.isascii() and env.isdigit()) or not digits:
        raise ConfigError(f"DECONV_THREADS={env!r} is not a positive whole number", "write e.g. DECONV_THREADS=2")
    return int(digits) if len(digits) < 10 else 1 << 30


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


class blas_threads:  # noqa: N801  (used as a context manager, like threadpoolctl's threadpool_limits)
    """Hold every BLAS library to ``count`` threads for the block, then put back what was there.

    A plain class rather than a generator context: it runs on every engine call (about 1 us).
    """

    __slots__ = ("count", "changed")

    def __init__(self, count: int):
        self.count, self.changed = count, []

    def __enter__(self):
        for lib in _Blas.get():
            before = lib.get_num_threads()
            if before != self.count:
                lib.set_num_threads(self.count)
                self.changed.append((lib, before))
        return self

    def __exit__(self, *exc):
        for lib, before in self.changed:
            lib.set_num_threads(before)
        self.changed = []


class thread_budget(blas_threads):  # noqa: N801
    """The one place that splits the CPUs between work-item threads and BLAS threads, for one engine call.

    ``threads()`` CPUs in all (``DECONV_THREADS``, else the CPUs this process may run on, and never more than
    its affinity mask); the parallelism is the work items', BLAS runs one thread per caller throughout:
    - several items run on that many threads, this one and a pool (measured on the suite, 2 cores: "2 item threads x
      1 BLAS thread" beat "2 x 2", oversubscribed, BLAS workers spin while the other item copies, and
      "1 x 2", copies single-threaded);
    - a lone item runs inline on one BLAS thread: ``_generic`` cuts any work above ``MIN_ITEM_BYTES`` into
      two items at least, so a lone item is small, and a small GEMM on two BLAS threads waits on hand-offs
      (measured on 2 shared cores: a 16x144x324 GEMM item 17-48 ms on two BLAS threads, 0.3-1.1 ms on one).
    ``with thread_budget() as parallel_map`` gives the ``parallel_map`` for ``_generic.deconvolve``.
    Batch workers set ``DECONV_THREADS`` to their share and get the same split.
    """

    __slots__ = ("size",)

    def __init__(self):
        self.size = threads()  # a bad DECONV_THREADS is an error even for tiny work; never more than the CPUs
        super().__init__(1)

    def __enter__(self):
        super().__enter__()
        return self.parallel_map

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

        placed = _Placement.begin(self.size)
        try:
            helpers = [pool.submit(drain) for _ in range(min(self.size, len(items)) - 1)]
            try:
                results = drain()
            finally:
                done = [future.result() for future in helpers]  # waits for all; re-raises a helper's error
        finally:
            if placed is not None:
                placed.end()
        return results + [r for part in done for r in part]


def _pool(size: int) -> ThreadPoolExecutor:
    global _pool_executor, _pool_size
    if _pool_executor is None or _pool_size != size:
        if _pool_executor is not None:
            _pool_executor.shutdown(wait=False)
        _helper_ids.clear()
        _pool_executor, _pool_size = ThreadPoolExecutor(size, thread_name_prefix="deconv",
                                                        initializer=_register_helper), size
    return _pool_executor


_helper_ids: list[int] = []  # the pool threads' kernel thread ids (``_Placement``)


def _register_helper() -> None:
    _helper_ids.append(threading.get_native_id())


@functools.lru_cache(maxsize=1)
def _current_cpu():
    """libc's ``sched_getcpu`` (the CPU the calling thread runs on), or None where there is none or no
    ``os.sched_setaffinity`` (not Linux)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        import ctypes

        getcpu = ctypes.CDLL(None).sched_getcpu
    except (OSError, AttributeError):
        return None
    getcpu.restype, getcpu.argtypes = ctypes.c_int, []
    return getcpu


class _Placement:
    """For one parallel call: the calling thread kept on the CPU it runs on, the pool's threads on the
    others of its mask; every mask put back at the end.

    Why: on a KVM guest (this machine, 2 vCPUs) the guest scheduler treats an idle vCPU that the host has
    descheduled as busy, and places a woken thread on its waker's CPU. After an idle pause the helper was
    woken onto the caller's CPU (starting 0.6-4 ms late), and every GIL hand-off between the two threads
    is another wake-up that can stack them again, so two threads' work ran as one. Measured after 100 ms
    pauses, interleaved with the onnxruntime peer, ms, free / helpers placed / helpers and caller placed:
    U-Net 128->64 k2s2 11.9 / 11.8 / 8.6; fcn 30.4 / 27.5 / 21.5; dcgan 512->256 47.4 / 40.5 / 37.5; U-Net
    k3s2 61.5 / 62.8 / 58.3; dw 4.0 / 4.0 / 4.1 (20 GEMMs per thread: 8.6-9.7 free, 4.8 back to back). Where
    the scheduler already spreads the threads this changes nothing. A call runs its items from one shared
    iterator, so a thread whose CPU is taken by another process delays the call by one item at most.

    Only a call that is to use every CPU of its mask is placed (``deconv run``, the Python API and the bench
    on up to 8 CPUs): where it has a share of them (batch workers with ``DECONV_THREADS`` below the CPUs),
    another process's caller may be pinned to the same CPU, so it runs free. Only one call at a time is
    placed (threads calling the engine concurrently share the pool and run free), and any refusal (a
    sandbox) leaves every thread as it was."""

    _lock = threading.Lock()
    __slots__ = ("mask",)

    def __init__(self, mask):
        self.mask = mask

    @classmethod
    def begin(cls, threads: int):
        getcpu = _current_cpu()
        if getcpu is None or not _helper_ids or not cls._lock.acquire(blocking=False):
            return None
        try:
            mask = os.sched_getaffinity(0)
        except OSError:
            mask = set()
        cpu = getcpu()
        if cpu not in mask or len(mask) < 2 or len(mask) != threads:
            cls._lock.release()
            return None
        for tid in _helper_ids:
            _set_affinity(tid, mask - {cpu})
        _set_affinity(0, {cpu})
        return cls(mask)

    def end(self) -> None:
        try:
            for tid in (0, *_helper_ids):
                _set_affinity(tid, self.mask)
        finally:
            type(self)._lock.release()


def _set_affinity(tid: int, mask) -> None:
    try:
        os.sched_setaffinity(tid, mask)
    except OSError:  # a sandbox that refuses it, or a pool thread that has exited
        pass


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
        # call, against 12.3 us for its NumPy calls alone; after an idle pause, as in the bench: 0.39 -> 0.25 ms)
        run = _generic.inline_direct(*key)
        if run is not None:
            _wanted_threads(_threads_env())  # a bad DECONV_THREADS is an error here too
            if _FP_STATE is None:
                with np.errstate(all="ignore"):
                    y = run(x, w, bias)
            else:  # np.errstate(all="ignore") without its Python, which a call after an idle pause runs cold
                token = _FP_STATE.set(_QUIET)
                try:
                    y = run(x, w, bias)
                finally:
                    _FP_STATE.reset(token)
            if y is not None:
                return y
    if path in (None, "ort"):
        # onnxruntime's node on threads() of its own threads (no BLAS in it, so no budget to hold), the
        # problem's feeds and session worked out once (dil2 after an idle pause: 0.62 ms of Python around the
        # node through the general path, 0.15 through this runner, against the peer's identical node)
        run = _generic.inline_ort(*key, path == "ort")
        if run is not None:
            return run(x, w, bias, threads())
    budget = thread_budget()
    with budget as parallel_map, np.errstate(all="ignore"):
        return _generic.deconvolve(x, w, bias, config, out_spatial, xp=np, path=path, parallel_map=parallel_map,
                                   threads=budget.size)


def to_host(array):
    return array
