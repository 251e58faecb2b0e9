"""A library call leaves nothing its caller can observe, from one thread or several, and survives a fork.

Real threads and real forks: the BLAS thread count is read with threadpoolctl at the moment each GEMM runs,
the caller's CPU affinity by a watcher thread while the calls run, and a forked child's first call must
finish within a timeout (a hang fails the test).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from deconv_cli.core.config import DeconvConfig
from deconv_cli.engines import dispatch, numpy_engine

CPUS = len(os.sched_getaffinity(0))
PACKAGE = Path(__file__).resolve().parents[2] / "deconv_cli"


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def _phase_problem(rng, channels=16, spatial=24):
    """A parallel-sized phase-path problem (stride 2: four phases, several items each)."""
    config = DeconvConfig(kernel=(4, 4), stride=(2, 2), dilation=(1, 1), crops=((1, 1), (1, 1)), groups=1,
                          in_channels=channels, out_channels=channels)
    x = rng.standard_normal((4, channels, spatial, spatial)).astype(np.float32)
    w = rng.standard_normal(config.weight_shape).astype(np.float32)
    b = rng.standard_normal(channels).astype(np.float32)
    return config, x, w, b, (2 * spatial,) * 2


def _call(problem, path="phase"):
    config, x, w, b, out = problem
    return numpy_engine.deconvolve(x, w, b, config, out, path=path)


def _failing_call(problem):
    """A call that raises inside the engine, with the BLAS held: a weight of the wrong size."""
    config, x, w, b, out = problem
    with pytest.raises(ValueError):
        numpy_engine.deconvolve(x, w[:, :1], b, config, out, path="phase")


def test_the_package_uses_no_private_numpy_state_and_sets_no_affinity():
    pattern = re.compile(r"sched_setaffinity|_FP_STATE|numpy\.core\._|np\.core\._|_multiarray_umath|numpy\._core")
    hits = [f"{path}:{n}" for path in PACKAGE.rglob("*.py")
            for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []


@pytest.mark.parametrize("threads", [1, 4])
def test_calls_that_succeed_or_raise_leave_the_callers_state_as_it_was(threads, rng, monkeypatch):
    """From the main thread and from 4 threads at once: affinity, NumPy's error state and the BLAS thread
    count (set by the caller to 3 here) are what the caller had, and a watcher sees the callers' affinity
    unchanged while the calls run."""
    monkeypatch.setenv("DECONV_THREADS", str(CPUS))
    problem = _phase_problem(rng)
    mask = os.sched_getaffinity(0)
    errors = []
    with threadpool_limits(limits=3, user_api="blas"):
        before = _blas_threads()
        callers, stop, seen = [], threading.Event(), set()

        def work():
            callers.append(threading.get_native_id())
            old = np.seterr(over="raise", invalid="warn")  # the caller's own choice
            try:
                for _ in range(6):
                    _call(problem)
                    _failing_call(problem)
                    if np.geterr()["over"] != "raise" or np.geterr()["invalid"] != "warn":
                        errors.append(np.geterr())
                    if os.sched_getaffinity(0) != mask:
                        errors.append("affinity")
            finally:
                np.seterr(**old)

        def watch():
            while not stop.is_set():
                for tid in list(callers):
                    try:
                        seen.add(frozenset(os.sched_getaffinity(tid)))
                    except OSError:  # a caller that has finished
                        pass

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            if threads == 1:
                work()
            else:
                pool = [threading.Thread(target=work) for _ in range(threads)]
                for t in pool:
                    t.start()
                for t in pool:
                    t.join()
        finally:
            stop.set()
            watcher.join()
        assert _blas_threads() == before == [3] * len(before)
    assert errors == []
    assert seen <= {frozenset(mask)}


@pytest.mark.skipif(CPUS < 2, reason="needs two CPUs")
def test_concurrent_calls_run_every_gemm_on_one_blas_thread_and_give_the_single_thread_bytes(rng, monkeypatch):
    """Four threads calling at once: no call restores the BLAS limit while another still runs (every GEMM of
    every call sees one BLAS thread), and each result is the bytes of the same call made alone."""
    monkeypatch.setenv("DECONV_THREADS", "2")
    problems = [_phase_problem(np.random.default_rng(seed), channels=8 + 4 * seed) for seed in range(4)]
    paths = ["phase", "scatter", "shift", "direct"]
    want = [_call(p, path) for p, path in zip(problems, paths)]
    counts, real = [], np.matmul

    def spy(*args, **kwargs):
        counts.append(tuple(_blas_threads()))
        return real(*args, **kwargs)

    monkeypatch.setattr(np, "matmul", spy)
    got, failures = {}, []

    def work(i):
        try:
            for _ in range(8):
                y = _call(problems[i], paths[i])
                if not np.array_equal(y, want[i]):
                    failures.append(i)
            got[i] = y
        except Exception as exc:  # reported below, with the thread's index
            failures.append((i, exc))

    pool = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert failures == [] and sorted(got) == [0, 1, 2, 3]
    assert counts and set(counts) == {(1,) * len(_blas_threads())}


_FORK_SCRIPT = """
import os, sys, numpy as np
from deconv_cli.core.config import DeconvConfig
from deconv_cli.engines import dispatch, numpy_engine

path, how = sys.argv[1], sys.argv[2]
os.environ["DECONV_THREADS"] = "2"
depthwise = path == "depthwise"
c = 32
config = DeconvConfig(kernel=(4, 4), stride=(2, 2), dilation=(1, 1), crops=((1, 1), (1, 1)),
                      groups=c if depthwise else 1, in_channels=c, out_channels=c)
rng = np.random.default_rng(0)
x = rng.standard_normal((8, c, 32, 32)).astype(np.float32)
w = rng.standard_normal(config.weight_shape).astype(np.float32)
b = rng.standard_normal(c).astype(np.float32)

def call():
    return numpy_engine.deconvolve(x, w, b, config, (64, 64), path=path)

want = call()  # a real parallel call in the parent: the pool's threads (or onnxruntime's) now exist
want = call()
import time
time.sleep(0.5)  # the pools' threads now wait on their condition variables, as in an idle parent
if how == "fork":
    pid = os.fork()
    if pid == 0:
        ok = np.array_equal(call(), want) and np.array_equal(call(), want)
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
import multiprocessing

def child(_):
    return np.array_equal(call(), want)

with multiprocessing.get_context("fork").Pool(2) as pool:
    results = pool.map(child, range(4))
print(results)
sys.exit(0 if all(results) else 3)
"""


@pytest.mark.parametrize("how", ["fork", "multiprocessing"])
@pytest.mark.parametrize("path", ["phase", "scatter", "ort", "depthwise"])
def test_a_forked_child_after_a_parallel_call_does_not_hang(path, how, tmp_path):
    if path == "ort" and not dispatch.ort_installed():
        pytest.skip("onnxruntime is not installed")
    if path == "depthwise" and not dispatch.numba_installed():
        pytest.skip("numba is not installed")
    script = tmp_path / "fork_after_call.py"
    script.write_text(textwrap.dedent(_FORK_SCRIPT))
    proc = subprocess.Popen([sys.executable, str(script), path, how], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the script and its forked children: their own process group
        proc.communicate()
        pytest.fail(f"the forked child's first {path} call hung")
    assert proc.returncode == 0, err[-2000:]

