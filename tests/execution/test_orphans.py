"""Worker processes follow their parent: a `deconv batch` killed by any signal, SIGKILL included, leaves
no worker running and no temporary file, and `--resume` then finishes the batch (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_batch import DECONV, leftovers, write_jsonl

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")


def parent_and_state(pid: int) -> tuple[int, str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (name) "
    return int(fields[1]), fields[0]


def descendants(pid: int) -> set[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := parent_and_state(int(entry))) is not None:
            parents[int(entry)] = found[0]
    family, grown = set(), {pid}
    while grown:
        family |= grown
        grown = {child for child, parent in parents.items() if parent in grown} - family
    return family - {pid}


def running(pids: set[int]) -> set[int]:
    """Those still running (a zombie that nobody reaps has exited)."""
    return {pid for pid in pids if (found := parent_and_state(pid)) is not None and found[1] != "Z"}


def wait_until(condition, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture
def streamed_batch(tmp_path, rng):
    """Two copies (whole/, killed/) of 4 jobs of about half a second each that stream their outputs tile by
    tile (a small memory budget), so that a running job holds a temporary file the whole time."""
    x = rng.standard_normal((6, 128, 48, 48)).astype(np.float32)
    w = rng.standard_normal((128, 128, 9, 9)).astype(np.float32)
    for name in ("whole", "killed"):
        (tmp_path / name / "out").mkdir(parents=True)
        np.save(tmp_path / name / "x.npy", x)
        np.save(tmp_path / name / "w.npy", w)
        write_jsonl(tmp_path / name / "jobs.jsonl", [
            {"input": "x.npy", "weight": "w.npy", "output": f"out/y{i}.npy", "set": {"padding": i}} for i in range(4)])
    env = {**os.environ, "DECONV_MEMORY_BUDGET": "8M"}
    return tmp_path / "whole", tmp_path / "killed", env


def batch(args, folder: Path, env) -> subprocess.Popen:
    return subprocess.Popen([*DECONV, "batch", "jobs.jsonl", "--jobs", "2", "-q", *args], cwd=folder, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_mid_batch(folder: Path, env, signum: int) -> None:
    """Start the batch, send ``signum`` while its workers write, check that they and their files are gone."""
    parent = batch([], folder, env)
    try:
        busy = wait_until(lambda: len(descendants(parent.pid)) >= 2 and leftovers(folder / "out"), 120)
        assert busy, "the workers never started writing"
        workers = descendants(parent.pid)
        parent.send_signal(signum)
        parent.wait(30)
        assert wait_until(lambda: not running(workers), 10), f"still running 10 s after the parent died: {running(workers)}"
        assert leftovers(folder) == []
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in running(descendants(parent.pid)):
            os.kill(pid, signal.SIGKILL)
        parent.wait()
    assert len(list((folder / "out").glob("y*.npy"))) < 4  # it was killed mid-batch


def test_a_batch_killed_by_sigkill_leaves_no_worker_and_no_temporary_file_and_resume_finishes_it(streamed_batch):
    whole, killed, env = streamed_batch
    kill_mid_batch(killed, env, signal.SIGKILL)
    resumed = batch(["--resume"], killed, env)
    assert resumed.wait(300) == 0, resumed.stderr.read()
    uninterrupted = batch([], whole, env)
    assert uninterrupted.wait(300) == 0, uninterrupted.stderr.read()
    for i in range(4):
        assert (killed / f"out/y{i}.npy").read_bytes() == (whole / f"out/y{i}.npy").read_bytes()
    assert leftovers(killed) == []


def test_a_batch_killed_by_sigterm_leaves_no_worker_and_no_temporary_file(streamed_batch):
    kill_mid_batch(streamed_batch[1], streamed_batch[2], signal.SIGTERM)


FOLLOW = """
import os, sys, time
from deconv_cli.execution import executors
if sys.argv[1] == "watch":
    executors._parent_death_signal = lambda signum: False  # the portable path: a thread watches the pid
executors.exit_with_parent({parent}, interval=0.05)
time.sleep(30)
"""


@pytest.mark.parametrize("how", ["prctl", "watch"])
def test_a_worker_whose_parent_is_already_gone_exits_at_once(how):
    # a pid that is not this process's parent stands for a parent that died before the worker could ask
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", FOLLOW.format(parent=os.getpid() + 10**6), how], timeout=60)
    assert done.returncode == -signal.SIGTERM
    assert time.monotonic() - start < 20


def test_a_worker_keeps_running_while_its_parent_lives():
    done = subprocess.run([sys.executable, "-c", FOLLOW.replace("time.sleep(30)", "time.sleep(0.5)")
                           .format(parent="os.getppid()"), "watch"], timeout=60)
    assert done.returncode == 0
