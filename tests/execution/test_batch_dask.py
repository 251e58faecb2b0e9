"""`deconv batch --scheduler`: the same jobs on a real Dask cluster (a scheduler and two worker processes on
127.0.0.1, started here and always stopped), with the same records, files and exit codes as a local run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_batch import jobs, leftovers, summary, write_jsonl

from deconv_cli.cli import cli

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed: pip install -e '.[dask]'")


def _dask(*args: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=subprocess.DEVNULL, stderr=log.open("w"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The scheduler's address; two single-thread workers without nannies, all bound to 127.0.0.1."""
    folder = tmp_path_factory.mktemp("dask")
    info = folder / "scheduler.json"
    processes = [_dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(info),
                       log=folder / "scheduler.log")]
    try:
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert info.exists(), (folder / "scheduler.log").read_text()
        for n in range(2):
            processes.append(_dask("worker", "--scheduler-file", str(info), "--host", "127.0.0.1", "--nthreads", "1",
                                   "--no-nanny", "--no-dashboard", "--name", f"w{n}", log=folder / f"worker{n}.log"))
        address = json.loads(info.read_text())["address"]
        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        stop(processes[1:])  # the workers first: a worker closing while its scheduler is gone waits for it
        stop(processes[:1])


def stop(processes: list[subprocess.Popen], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL for whatever still runs after ``grace`` seconds (a Dask process may sit out
    its connect timeouts while closing)."""
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def two_folders(tmp_path, rng):
    """The same tensors and manifest in local/ and dask/ (one job fails: a missing input)."""
    manifest = jobs(6, set={"stride": 2, "padding": 1})
    manifest[4]["input"] = "missing.npy"
    tensors = {"w.npy": rng.standard_normal((8, 4, 3, 3)).astype(np.float32)}
    tensors.update({f"x{i}.npy": rng.standard_normal((2, 8, 6, 6)).astype(np.float32) for i in range(6)})
    for name in ("local", "dask"):
        (tmp_path / name / "out").mkdir(parents=True)
        for file, array in tensors.items():
            np.save(tmp_path / name / file, array)
        write_jsonl(tmp_path / name / "jobs.jsonl", manifest)
    return tmp_path / "local", tmp_path / "dask"


def invoke(*args):
    return CliRunner().invoke(cli, ["batch", *args])


def test_a_dask_run_equals_a_local_run(cluster, two_folders):
    local, remote = two_folders
    here = invoke(str(local / "jobs.jsonl"), "-j", "1", "--json")
    there = invoke(str(remote / "jobs.jsonl"), "--scheduler", cluster, "--json")
    assert (here.exit_code, there.exit_code) == (1, 1)
    strip = lambda r: {k: v for k, v in r.items() if k != "timings"}  # noqa: E731
    mine = sorted((strip(json.loads(line)) for line in here.stdout.splitlines()), key=lambda r: r["id"])
    theirs = sorted((strip(json.loads(line)) for line in there.stdout.splitlines()), key=lambda r: r["id"])
    assert [r["status"] for r in theirs] == ["ok", "ok", "ok", "ok", "failed", "ok"]
    assert theirs == mine  # errors name files as the manifest does, wherever it lies
    assert summary(there.stderr) == (5, 1, 0, 0)
    assert there.stderr.splitlines()[0] == "job 5 (line 5) failed: missing.npy: no such file. Check the path."
    names = sorted(p.name for p in (local / "out").iterdir())
    assert names == sorted(p.name for p in (remote / "out").iterdir()) == ["y0.npy", "y1.npy", "y2.npy", "y3.npy", "y5.npy"]
    for name in names:
        np.testing.assert_allclose(np.load(remote / "out" / name), np.load(local / "out" / name), rtol=1e-6, atol=1e-6)
    assert leftovers(remote) == []
    # two single-thread workers on this machine share its CPUs: jobs x threads <= CPUs
    from deconv_cli.execution.executors import _set_threads, cpus

    with distributed.Client(cluster, timeout=30) as client:
        assert set(client.run(_set_threads, 99).values()) == {max(1, cpus() // 2)}  # set by the run; 99 is ignored
    # resume through the cluster: only the failed job runs again
    again = invoke(str(remote / "jobs.jsonl"), "--scheduler", cluster, "--resume", "--json")
    assert again.exit_code == 1
    assert summary(again.stderr) == (0, 1, 0, 5)


def test_an_unreachable_scheduler_is_one_line(tmp_path, monkeypatch):
    from deconv_cli.execution import executors

    monkeypatch.setattr(executors, "CONNECT_TIMEOUT_S", 0.5)  # a refused connection is retried until then
    write_jsonl(tmp_path / "jobs.jsonl", [{"input": "x.npy", "weight": "w.npy", "output": "y.npy"}])
    result = invoke(str(tmp_path / "jobs.jsonl"), "--scheduler", "tcp://127.0.0.1:9")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: cannot reach the Dask scheduler at tcp://127.0.0.1:9 (OSError). "
        "Start one with `dask scheduler` and `dask worker ADDRESS`, or check the address.\n"
    )


def test_the_stop_helper_kills_a_process_that_ignores_sigterm():
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, sys, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); print(flush=True); time.sleep(60)"], stdout=subprocess.PIPE)
    stubborn.stdout.readline()  # SIGTERM is ignored from here on
    start = time.monotonic()
    stop([stubborn], grace=0.5)
    assert time.monotonic() - start < 5
    assert stubborn.returncode == -9
