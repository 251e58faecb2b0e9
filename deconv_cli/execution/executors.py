"""Where tasks run: in this process, in a pool of local worker processes, or on a Dask cluster.

One small interface serves ``deconv batch`` (one task per job) and any other command that fans work out
(tiles of one big tensor): ``submit(fn, *args)`` a top-level, picklable function, iterate ``completed()``
to get every task back once, in completion order. ``cancel()`` (a first Ctrl-C, a first failure) drops the
tasks not started and lets the running ones finish: their results still come out of ``completed()``.
``terminate()`` (a second Ctrl-C) stops the running ones too. A task returns a small plain value (a dict),
never an array.

    with open_executor(jobs=4) as executor:          # or scheduler="tcp://10.0.0.5:8786"
        for n in items:
            executor.submit(work, n)
        for done in executor.completed():
            print(done.task, done.value, done.error)

Threads: local workers split the CPUs, so that ``jobs x threads`` never exceeds them; Dask workers split each
machine's CPUs between all the task threads of the workers on it. Each worker sets the
engine's ``DECONV_THREADS`` (unless the user set it) and holds BLAS to the same count (threadpoolctl when
installed, else the BLAS libraries' own environment variables, set before numpy is imported), then imports
numpy and the engine once and keeps them. Workers ignore SIGINT (a terminal's Ctrl-C reaches the whole
process group; the parent decides); ``terminate()`` sends SIGTERM, which a busy worker turns into
KeyboardInterrupt inside the task, so its ``finally`` blocks (temporary files) run before it exits. A
worker gets the same SIGTERM when its parent dies, however it dies (``exit_with_parent``), so a killed batch
leaves no worker behind. The in-process executor defers a first SIGINT until the running task is done.
``dask``/``distributed`` are imported only by :class:`DaskExecutor`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..core.errors import ConfigError, DeconvError
from ..engines import cpus

_BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


@dataclass(frozen=True)
class Done:
    """One finished task: its number (the order of ``submit``), what it returned, or what it raised."""

    task: int
    value: object = None
    error: BaseException | None = None


def split_threads(jobs: int | None) -> tuple[int, int]:
    """(worker processes, engine threads per worker) with ``jobs x threads <= CPUs``.

    ``jobs=None`` takes one worker per CPU. A ``DECONV_THREADS`` set by the user wins for the threads.
    """
    available = cpus()
    jobs = available if jobs is None else jobs
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs} must be at least 1", "write e.g. --jobs 4")
    user = os.environ.get("DECONV_THREADS", "").strip()
    threads = int(user) if user.isdigit() and int(user) > 0 else max(1, available // jobs)
    return jobs, threads


class Executor:
    """Base interface; see the module docstring."""

    kind = "abstract"
    workers = 1

    def submit(self, fn: Callable, *args) -> int:
        raise NotImplementedError

    def completed(self) -> Iterator[Done]:
        raise NotImplementedError

    def cancel(self) -> None:
        """Drop the tasks not started; the running ones finish and still come out of ``completed()``."""

    def terminate(self) -> None:
        """Stop everything now, running tasks included (their ``finally`` blocks run where possible)."""
        self.cancel()

    def close(self) -> None:
        """Release the workers."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            self.terminate()
        self.close()


class SerialExecutor(Executor):
    """Runs each task in this process, in submission order, when ``completed()`` reaches it."""

    kind = "serial"

    def __init__(self):
        self._pending: list[tuple[int, Callable, tuple]] = []
        self._count = 0

    def submit(self, fn: Callable, *args) -> int:
        self._pending.append((self._count, fn, args))
        self._count += 1
        return self._count - 1

    def completed(self) -> Iterator[Done]:
        while self._pending:
            task, fn, args = self._pending.pop(0)
            with DeferredInterrupt() as interrupt:
                try:
                    done = Done(task, fn(*args))
                except Exception as error:  # a task's failure is its own result
                    done = Done(task, error=error)
            yield done
            if interrupt.pending:
                raise KeyboardInterrupt

    def cancel(self) -> None:
        self._pending.clear()


class DeferredInterrupt:
    """A first SIGINT (Ctrl-C) only sets ``pending`` (and calls ``on_first``); a second one interrupts.

    Installed only in the main thread, and only over Python's default handler (an outer one wins).
    """

    def __init__(self, on_first: Callable[[], None] | None = None):
        self.pending = False
        self._on_first = on_first
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True
        if self._on_first is not None:
            self._on_first()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# ---------------------------------------------------------------- local worker processes

_busy = False  # in a worker: whether a task is running (SIGTERM then unwinds it instead of exiting)


def _on_sigterm(signum, frame) -> None:
    if _busy:
        raise KeyboardInterrupt  # unwinds the task through its finally blocks; _call then exits
    os._exit(128 + signum)


def _init_worker(threads: int, parent: int) -> None:
    """Runs once in each worker: thread limits, signals, and the imports every task needs."""
    if not os.environ.get("DECONV_THREADS", "").strip():
        os.environ["DECONV_THREADS"] = str(threads)
    for name in _BLAS_ENV:  # effective only if numpy is not imported yet (spawned workers)
        os.environ[name] = str(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the whole process group: the parent decides
    signal.signal(signal.SIGTERM, _on_sigterm)
    exit_with_parent(parent)
    _limit_blas(threads)
    from ..engines import numpy_engine  # noqa: F401  (imported once, kept for every task)


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def exit_with_parent(parent: int, interval: float = 0.5) -> None:
    """Get SIGTERM when process ``parent`` dies, whatever kills it (SIGKILL and the out-of-memory killer
    included): a worker's pipes to a dead parent never close while its sibling workers hold their ends, so
    it would otherwise sleep forever. The SIGTERM handler set before this call decides how to exit (a
    worker unwinds its task, removing its temporary files). Linux: the kernel's parent-death signal, then a
    check for a parent that died before it was set; elsewhere, a thread that watches the parent's pid."""
    if _parent_death_signal(signal.SIGTERM):
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
        return
    threading.Thread(target=_watch_parent, args=(parent, interval), name="deconv-parent-watch", daemon=True).start()


def _parent_death_signal(signum: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    return prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0


def _watch_parent(parent: int, interval: float) -> None:
    import time

    while os.getppid() == parent:
        time.sleep(interval)
    os.kill(os.getpid(), signal.SIGTERM)


def _limit_blas(threads: int) -> None:
    """Hold BLAS to ``threads`` in this whole process. Without it each BLAS call may start a thread per CPU,
    and idle OpenBLAS threads spin: two 1-thread Dask workers on 2 CPUs ran 15x slower."""
    import numpy  # noqa: F401  (loads the BLAS library that threadpoolctl then finds)

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=threads, user_api="blas")


def _call(fn: Callable, args: tuple):
    global _busy
    _busy = True
    try:
        return fn(*args)
    except KeyboardInterrupt:  # SIGTERM from cancel(): the task's finally blocks have run
        os._exit(128 + signal.SIGTERM)
    finally:
        _busy = False


class _RecordingContext:
    """A multiprocessing context that keeps the processes it makes: the pool's own list is private."""

    def __init__(self, context):
        self._context = context
        self.processes: list = []

    def Process(self, *args, **kwargs):  # noqa: N802  (the context's own name)
        process = self._context.Process(*args, **kwargs)
        self.processes.append(process)
        return process

    def __getattr__(self, name: str):
        return getattr(self._context, name)


class WorkerDied(DeconvError):
    """A task's worker process died under it (killed by a signal, or by the system for memory) twice."""


class ProcessExecutor(Executor):
    """A pool of ``jobs`` local worker processes, each with ``threads`` engine threads.

    Tasks wait here and go to the pool a few at a time (twice the workers), so cancelling is dropping
    the ones still here: the pool never holds a cancelled future. A worker that dies (SIGKILL, the
    out-of-memory killer) breaks the whole pool, and every task running in it comes back broken: a new
    pool starts and those tasks run once more; a task whose worker dies a second time comes back as
    ``WorkerDied``. Such a second try runs alone, so a task that kills its worker every time takes no
    other task with it. The workers exit when the thread
    that made this executor ends (Linux's parent-death signal follows the thread): use it from one thread.
    """

    kind = "processes"

    def __init__(self, jobs: int | None = None):
        import queue
        from collections import deque

        self.workers, self.threads = split_threads(jobs)
        self._pool = self._start()
        self._waiting: deque = deque()
        self._running: dict = {}  # future -> (task, fn, args, the pool it went to)
        self._strikes: dict[int, int] = {}  # task -> how many times its worker died under it
        self._alone = False  # whether the task running now is one whose worker died (nothing runs beside it)
        self._lost: list[Done] = []
        self._finished: queue.SimpleQueue = queue.SimpleQueue()  # futures, as they finish
        self._count = 0

    def _start(self):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # fork is the quickest start; it is only safe while this process runs a single thread
        method = "fork" if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods() else "spawn"
        self._context = _RecordingContext(multiprocessing.get_context(method))
        pool = ProcessPoolExecutor(
            self.workers, mp_context=self._context, initializer=_init_worker, initargs=(self.threads, os.getpid()),
        )
        pool.submit(int)  # starts every worker now, while this process may still fork safely
        return pool

    def _restart(self, broken) -> None:
        """A new pool in place of ``broken`` (once per break: the tasks that come back broken share it)."""
        if self._pool is broken:
            broken.shutdown(wait=False, cancel_futures=True)
            self._pool = self._start()

    def submit(self, fn: Callable, *args) -> int:
        self._waiting.append((self._count, fn, args))
        self._count += 1
        self._feed()
        return self._count - 1

    def _feed(self) -> None:
        from concurrent.futures.process import BrokenProcessPool

        while self._waiting and len(self._running) < 2 * self.workers:
            if self._running and (self._strikes.get(self._waiting[0][0]) or self._alone):
                return  # a task whose worker died runs alone: if it kills this one too, it takes no other along
            task, fn, args = self._waiting.popleft()
            self._alone = bool(self._strikes.get(task))
            try:
                future = self._pool.submit(_call, fn, args)
            except BrokenProcessPool:  # a worker died since the last task came back: the others will say which
                self._restart(self._pool)
                future = self._pool.submit(_call, fn, args)
            except RuntimeError as error:  # shut down (a second Ctrl-C)
                self._lost.append(Done(task, error=error))
                continue
            self._running[future] = (task, fn, args, self._pool)
            future.add_done_callback(self._finished.put)

    def completed(self) -> Iterator[Done]:
        from concurrent.futures.process import BrokenProcessPool

        while self._running or self._lost or self._waiting:
            if self._lost:
                yield self._lost.pop(0)
                continue
            if not self._running:
                self._feed()
                continue
            future = self._finished.get()
            task, fn, args, pool = self._running.pop(future)
            error = future.exception()
            if isinstance(error, BrokenProcessPool):
                self._restart(pool)
                self._strikes[task] = self._strikes.get(task, 0) + 1
                if self._strikes[task] < 2:
                    self._waiting.appendleft((task, fn, args))  # run it once more, in the new pool
                    self._feed()
                    continue
                error = WorkerDied("its worker process died twice (killed by a signal, or out of memory)",
                                   "run it alone, with fewer jobs at once (--jobs) or a lower DECONV_MEMORY_BUDGET")
                self._feed()
                yield Done(task, error=error)
                continue
            self._feed()
            yield Done(task, None if error else future.result(), error)

    def cancel(self) -> None:
        self._waiting.clear()

    def terminate(self) -> None:
        processes = list(self._context.processes)
        self.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: a running task unwinds (temporary files removed), then exits
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
        self._running.clear()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


# ---------------------------------------------------------------- Dask distributed


def _set_threads(threads: int) -> int:
    """On a Dask worker: the engine threads each of its tasks may use (a DECONV_THREADS set there wins)."""
    if not os.environ.get("DECONV_THREADS", "").strip():
        os.environ["DECONV_THREADS"] = str(threads)
        _limit_blas(threads)
    return int(os.environ["DECONV_THREADS"])


def _dask_call(fn: Callable, args: tuple):
    """On a Dask worker that joined after the split: its CPUs over its task threads, then run."""
    if not os.environ.get("DECONV_THREADS", "").strip():
        try:
            from distributed import get_worker

            nthreads = get_worker().state.nthreads
        except (ImportError, ValueError, AttributeError):
            nthreads = 1
        _set_threads(max(1, cpus() // max(1, nthreads)))
    return fn(*args)


CONNECT_TIMEOUT_S = 6.0  # how long a Dask scheduler may take to answer before the run fails


def _probe(address: str, timeout: float) -> None:
    """Fail at once (OSError) where nothing listens at a TCP scheduler address (the Dask client would retry for
    its whole timeout first), and within ``timeout`` (TimeoutError) where something listens but says nothing
    (the client would wait forever): a Dask scheduler speaks first, its handshake. Other protocols are left
    to the client."""
    import socket

    from distributed.comm import parse_address, parse_host_port

    scheme, location = parse_address(address)
    if scheme != "tcp":
        return
    with socket.create_connection(parse_host_port(location, default_port=8786), timeout=timeout) as probe:
        try:
            if not probe.recv(1):
                raise ConnectionResetError("closed without a word")
        except TimeoutError:
            raise TimeoutError(f"nothing answered within {timeout:g} s") from None


class DaskExecutor(Executor):
    """Tasks on a Dask distributed cluster at ``address`` (``tcp://host:port``). Workers must see the same paths."""

    kind = "dask"

    def __init__(self, address: str, *, timeout: float | None = None):
        try:
            import distributed
        except ImportError:
            raise ConfigError(
                "--scheduler needs Dask distributed, which is not installed", "pip install 'deconv-cli[dask]'"
            ) from None
        self._distributed = distributed
        try:
            timeout = CONNECT_TIMEOUT_S if timeout is None else timeout
            _probe(address, timeout / 2)
            self._client = distributed.Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            kind = "OSError" if isinstance(exc, OSError) and not isinstance(exc, TimeoutError) else exc.__class__.__name__
            raise DeconvError(
                f"cannot reach the Dask scheduler at {address} ({kind})",
                "start one with `dask scheduler` and `dask worker ADDRESS`, or check the address",
            ) from None
        self.workers = max(1, sum(self._client.nthreads().values()))
        self._split_threads()
        self._futures: dict = {}
        self._count = 0
        self._token = os.urandom(6).hex()

    def _split_threads(self) -> None:
        """Per machine: its CPUs over all the task threads of the workers on it (two workers on one
        2-CPU machine, one thread each: one engine thread per task)."""
        from collections import Counter

        workers = self._client.scheduler_info()["workers"]
        available = self._client.run(cpus)
        per_host = Counter()
        for info in workers.values():
            per_host[info["host"]] += info["nthreads"]
        for address, info in workers.items():
            threads = max(1, available.get(address, 1) // max(1, per_host[info["host"]]))
            self._client.run(_set_threads, threads, workers=[address])

    def submit(self, fn: Callable, *args) -> int:
        # pure=False and a unique key: two jobs with equal arguments are still two side-effecting tasks
        key = f"deconv-{self._token}-{self._count}"
        future = self._client.submit(_dask_call, fn, args, pure=False, key=key, retries=0)
        self._futures[future.key] = (self._count, future)
        self._count += 1
        return self._count - 1

    def completed(self) -> Iterator[Done]:
        futures = [future for _, future in self._futures.values()]
        for future in self._distributed.as_completed(futures, loop=self._client.loop):
            task, _ = self._futures.pop(future.key)
            if future.status == "cancelled":
                continue
            if future.status == "error":
                yield Done(task, error=future.exception())
            else:
                yield Done(task, future.result())

    def cancel(self) -> None:
        futures = [future for _, future in self._futures.values()]
        if futures:
            self._client.cancel(futures)
        self._futures.clear()

    def close(self) -> None:
        self._client.close()


def open_executor(*, jobs: int | None = None, scheduler: str | None = None) -> Executor:
    """A Dask executor for ``scheduler``, else in-process for one job, else a local process pool."""
    if scheduler:
        return DaskExecutor(scheduler)
    workers, _ = split_threads(jobs)
    return SerialExecutor() if workers == 1 else ProcessExecutor(workers)
