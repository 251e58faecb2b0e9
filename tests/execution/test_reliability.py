"""Nothing lost on the newer surfaces (issue 20): manifests as spreadsheets and editors save them, damaged
journals, hostile manifest lines, two batches at once, Zarr stores written one array at a time, containers
written by two runs at once, and runs killed (SIGKILL) while writing. Real files and real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_batch import DECONV, jobs, leftovers, medium_jobs, summary, write_jsonl

from deconv_cli.cli import cli


def batch(*args, input=None):
    return CliRunner().invoke(cli, ["batch", *args], input=input)


@pytest.fixture
def folder(tmp_path, rng, monkeypatch):
    """w.npy (8, 4, 3, 3), x0..x5.npy (1, 8, 6, 6), an empty out/, and the working directory there."""
    np.save(tmp_path / "w.npy", rng.standard_normal((8, 4, 3, 3)).astype(np.float32))
    for i in range(6):
        np.save(tmp_path / f"x{i}.npy", rng.standard_normal((1, 8, 6, 6)).astype(np.float32))
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------- manifests as they are saved


@pytest.mark.parametrize("name, newline, bom", [
    ("jobs.csv", b"\r\n", True), ("jobs.csv", b"\n", True), ("jobs.csv", b"\r\n", False),
    ("jobs.jsonl", b"\r\n", True), ("jobs.jsonl", b"\n", True), ("jobs.jsonl", b"\r\n", False),
])
def test_manifests_with_a_byte_order_mark_and_crlf_or_lf_are_read(folder, name, newline, bom):
    rows = jobs(3, set={"stride": 2})
    if name.endswith(".csv"):
        lines = ["input,weight,output,set"] + [f"{r['input']},{r['weight']},{r['output']},stride=2" for r in rows]
    else:
        lines = [json.dumps(r) for r in rows]
    (folder / name).write_bytes((b"\xef\xbb\xbf" if bom else b"") + newline.join(s.encode() for s in lines) + newline)
    result = batch(name, "-j", "1", "--json")
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [2, 3, 4] if name.endswith(".csv") else [1, 2, 3]
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["y0.npy", "y1.npy", "y2.npy"]


def test_a_jsonl_manifest_with_a_byte_order_mark_on_stdin_is_read(folder):
    text = "\ufeff" + "".join(json.dumps(r) + "\r\n" for r in jobs(2))
    result = batch("-", "-j", "1", input=text.encode())
    assert result.exit_code == 0, result.stderr
    assert summary(result.stderr) == (2, 0, 0, 0)


def test_a_manifest_that_is_not_utf8_names_the_line(folder):
    (folder / "jobs.jsonl").write_bytes(json.dumps(jobs(1)[0]).encode() + b'\n{"input": "x\xff.npy"}\n')
    result = batch("jobs.jsonl")
    assert result.exit_code == 2
    assert result.stderr == "Error: manifest jobs.jsonl, line 2: not UTF-8 text (byte 0xff). Save the manifest as UTF-8.\n"


@pytest.mark.parametrize("depth", [5000, 17])
def test_a_deeply_nested_manifest_line_is_one_line_naming_it(folder, depth):
    nested = '{"input": ' * depth + '"x0.npy"' + "}" * depth
    (folder / "jobs.jsonl").write_text(json.dumps(jobs(1)[0]) + "\n" + nested + "\n")
    result = batch("jobs.jsonl")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        'Error: line 2: JSON nested more than 16 levels deep. Write one flat object per line, e.g. '
        '{"input": "x.npy", "weight": "w.npy", "output": "y.npy"}.']
    assert list((folder / "out").iterdir()) == []


# ---------------------------------------------------------------- the journal


def test_a_damaged_journal_skips_each_unreadable_line_with_a_warning_and_reruns_its_jobs(folder):
    write_jsonl(folder / "jobs.jsonl", jobs(4))
    assert batch("jobs.jsonl", "-j", "1").exit_code == 0
    journal = folder / "jobs.jsonl.journal"
    lines = journal.read_bytes().split(b"\n")[:-1]
    assert len(lines) == 8  # 4 start, 4 done
    done = [n for n, line in enumerate(lines) if b'"done"' in line]
    # job of the 1st done line: non-UTF-8 bytes (another locale's path, a disk error); the last one: torn
    first_id, last_id = json.loads(lines[done[0]])["id"], json.loads(lines[done[-1]])["id"]
    lines[done[0]] = lines[done[0]].replace(b'"status"', b'"\xe9\xff": 1, "status"')
    journal.write_bytes(b"\n".join(lines[:-1]) + b"\n" + lines[-1][: len(lines[-1]) // 2])
    result = batch("jobs.jsonl", "-j", "1", "--resume", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[:2] == [
        f"Warning: journal {journal}, line {done[0] + 1} cannot be read (skipped): its job runs again",
        f"Warning: journal {journal}, line 8 cannot be read (skipped): its job runs again",
    ]
    records = {json.loads(line)["id"]: json.loads(line)["status"] for line in result.stdout.splitlines()}
    assert records == {i: "ok" if i in (first_id, last_id) else "skipped" for i in range(1, 5)}
    # the torn line was ended before appending: this run's records are all readable
    again = batch("jobs.jsonl", "-j", "1", "--resume")
    assert again.exit_code == 0 and summary(again.stderr) == (0, 0, 0, 4)
    assert again.stderr.count("Warning:") == 2


def test_two_batches_on_one_manifest_never_write_an_output_twice(tmp_path, rng):
    medium_jobs(tmp_path, rng, 30)
    first = subprocess.Popen([*DECONV, "batch", "jobs.jsonl", "--jobs", "2"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    journal = tmp_path / "jobs.jsonl.journal"
    deadline = time.monotonic() + 60
    while not (journal.exists() and journal.stat().st_size) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    second = subprocess.run([*DECONV, "batch", "jobs.jsonl", "--jobs", "2", "--force"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 1
    assert second.stderr == (f"Error: another deconv batch is running with the journal {journal}. Wait for it to finish "
                             "(then --resume), or give this run its own --shard or --journal.\n")
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    assert sorted(r["id"] for r in records if r["event"] == "done") == list(range(1, 31))  # each job once
    assert leftovers(tmp_path) == []
    resumed = subprocess.run([*DECONV, "batch", "jobs.jsonl", "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert summary(resumed.stderr) == (0, 0, 0, 30)


# ---------------------------------------------------------------- Zarr stores: one array at a time


def run(*args, cwd, env=None, timeout=120):
    return subprocess.run([*DECONV, *map(str, args)], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)


def hooked(body: str, *args, cwd, target: str, env=None) -> subprocess.Popen:
    """A real deconv process in which a call of ``target`` (module.function) runs ``body`` first."""
    from processes import hooked as hooked_process

    return hooked_process(body, *args, cwd=cwd, target=target, env=env)


def wait_for(path: Path, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.fixture
def store(tmp_path, rng):
    """st.zarr (v3) holding /keep, /grp/z and the input /x; w.npy; what x (*) w gives, stride 1 and 2."""
    import zarr

    x = rng.standard_normal((1, 2, 8, 8)).astype(np.float32)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    group = zarr.open_group(str(tmp_path / "st.zarr"), mode="w", zarr_format=3)
    group.create_array("keep", shape=(3,), dtype="f4")[...] = [1, 2, 3]
    group.create_group("grp").create_array("z", shape=(2,), dtype="i8")[...] = [7, 8]
    group.create_array("x", shape=x.shape, dtype=x.dtype, chunks=(1, 1, 4, 4))[...] = x
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    for stride in (1, 2):
        assert run("run", "x.npy", "w.npy", "--set", f"stride={stride}", "-o", f"want{stride}.npy", "-q", cwd=tmp_path).returncode == 0
    return tmp_path


def zarr_contents(path: Path) -> dict:
    import zarr

    group = zarr.open_group(str(path), mode="r")
    return {name: np.asarray(array[...]).tobytes() for name, array in group.members(max_depth=None) if hasattr(array, "shape")}


@pytest.mark.parametrize("budget", [None, "1000"])  # in memory, streamed tile by tile
def test_writing_one_array_into_a_zarr_store_keeps_every_other_array_and_group(store, budget):
    env = {"DECONV_MEMORY_BUDGET": budget} if budget else None
    before = zarr_contents(store / "st.zarr")
    assert set(before) == {"keep", "grp/z", "x"}
    result = run("run", "st.zarr:/x", "w.npy", "-o", "st.zarr:/y", "-q", cwd=store, env=env)  # input from the same store
    assert result.returncode == 0, result.stderr
    after = zarr_contents(store / "st.zarr")
    assert {k: after[k] for k in before} == before
    assert after["y"] == np.load(store / "want1.npy").tobytes()
    # the name is taken now: refused without --force, and nothing changes
    result = run("run", "st.zarr:/x", "w.npy", "-o", "st.zarr:/y", "-q", cwd=store, env=env)
    assert (result.returncode, result.stderr) == (1, "Error: st.zarr already holds an array '/y'. Pass --force to replace it.\n")
    assert zarr_contents(store / "st.zarr") == after
    # --force replaces that array alone; a new path makes its groups
    for args in (["-o", "st.zarr:/y", "--force"], ["-o", "st.zarr:/new/deep/y"]):
        result = run("run", "st.zarr:/x", "w.npy", "--set", "stride=2", *args, "-q", cwd=store, env=env)
        assert result.returncode == 0, result.stderr
    final = zarr_contents(store / "st.zarr")
    assert {k: final[k] for k in before} == before
    assert final["y"] == final["new/deep/y"] == np.load(store / "want2.npy").tobytes()
    assert sorted(os.listdir(store)) == ["st.zarr", "w.npy", "want1.npy", "want2.npy", "x.npy"]  # no temporary, no lock


def test_zarr_outputs_never_replace_a_group_or_a_folder_that_is_not_a_store(store):
    (store / "notes.zarr").mkdir()
    (store / "notes.zarr" / "mine.txt").write_text("keep me")
    cases = [
        ("st.zarr:/grp", "Error: st.zarr:/grp is a group of arrays, not an array. Name an array inside it.\n"),
        ("st.zarr", "Error: st.zarr is a group of arrays, not an array. Name an array inside it, e.g. st.zarr:/y.\n"),
        ("st.zarr:/keep/y", "Error: st.zarr:/keep is an array, so it cannot hold /keep/y. Choose another name.\n"),
        ("notes.zarr:/y", "Error: notes.zarr is a folder but not a Zarr store. Choose another --output.\n"),
    ]
    before = zarr_contents(store / "st.zarr")
    for output, line in cases:
        result = run("run", "x.npy", "w.npy", "-o", output, "--force", "-q", cwd=store)
        assert (result.returncode, result.stderr) == (1, line)
    assert zarr_contents(store / "st.zarr") == before
    assert (store / "notes.zarr" / "mine.txt").read_text() == "keep me"


def test_an_array_written_into_a_v2_store_is_a_v2_array_the_store_lists(store):
    import zarr

    group = zarr.open_group(str(store / "v2.zarr"), mode="w", zarr_format=2)
    group.create_array("keep", shape=(2,), dtype="f4")[...] = [5, 6]
    result = run("run", "x.npy", "w.npy", "-o", "v2.zarr:/out/y", "-q", cwd=store)
    assert result.returncode == 0, result.stderr
    contents = zarr_contents(store / "v2.zarr")
    assert contents == {"keep": np.array([5, 6], np.float32).tobytes(), "out/y": np.load(store / "want1.npy").tobytes()}
    assert zarr.open_array(str(store / "v2.zarr"), path="out/y", mode="r").metadata.zarr_format == 2


@pytest.mark.parametrize("version", [2, 3])
def test_a_store_with_consolidated_metadata_lists_the_new_array(store, version):
    import warnings

    import zarr

    group = zarr.open_group(str(store / "c.zarr"), mode="w", zarr_format=version)
    group.create_array("keep", shape=(2,), dtype="f4")[...] = [5, 6]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(store / "c.zarr"))
    result = run("run", "x.npy", "w.npy", "-o", "c.zarr:/out/y", "-q", cwd=store)
    assert (result.returncode, result.stderr) == (0, "")
    listed = run("info", "c.zarr", cwd=store)
    assert (listed.returncode, listed.stderr) == (0, "")
    assert [line.split("\t")[1] for line in listed.stdout.splitlines()] == ["/keep", "/out/y"]


# ---------------------------------------------------------------- containers: two writers, killed writers


def container(folder: Path, kind: str) -> Path:
    """``c<kind>`` holding 'keep' and 'y' (zeros), the arrays a run into it must never lose."""
    path = folder / f"c{kind}"
    keep, old = np.arange(6, dtype=np.float32), np.zeros((1, 3, 8, 8), np.float32)  # y's shape, stride 1
    if kind == ".npz":
        np.savez(path, keep=keep, y=old)
    elif kind == ".h5":
        import h5py

        with h5py.File(path, "w") as f:
            f["keep"], f["y"] = keep, old
    else:
        import zarr

        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        group.create_array("keep", shape=keep.shape, dtype=keep.dtype)[...] = keep
        group.create_array("y", shape=old.shape, dtype=old.dtype)[...] = old
    return path


def contents(path: Path) -> dict:
    from deconv_cli import tensor_io

    ref = tensor_io.parse_ref(str(path))
    return {info.name.strip("/"): tensor_io.load(tensor_io.Ref(ref.path, info.name)).tobytes() for info in tensor_io.describe(ref)}


def clean_folder(folder: Path) -> list[str]:
    """What a write left beside the tensors: temporary files, lock files."""
    return sorted(n for n in os.listdir(folder) if n.startswith("."))


@pytest.mark.parametrize("kind", [".npz", ".h5", ".zarr"])
def test_two_runs_adding_different_arrays_to_one_container_at_once_both_keep_theirs(store, kind):
    path = container(store, kind)
    # the first run stops for 3 s after its checks, holding the container; the second starts meanwhile
    first = hooked('open("started", "w").close()\ntime.sleep(3)', "run", "x.npy", "w.npy", "-o", f"{path.name}:a", "-q",
                   cwd=store, target="deconv_cli.tensor_io.temp_file")
    wait_for(store / "started", first)
    second = run("run", "x.npy", "w.npy", "--set", "stride=2", "-o", f"{path.name}:b", "-q", cwd=store)
    out, err = first.communicate(timeout=60)
    assert (first.returncode, second.returncode) == (0, 0), err.decode() + second.stderr
    found = contents(path)
    assert sorted(found) == ["a", "b", "keep", "y"]
    assert found["a"] == np.load(store / "want1.npy").tobytes() and found["b"] == np.load(store / "want2.npy").tobytes()
    assert found["keep"] == np.arange(6, dtype=np.float32).tobytes()
    assert clean_folder(store) == []


# Where a run writing 'y' into an existing container is killed: computing (nothing written yet), streaming
# into the temporary file, about to commit, and (Zarr) just after the swap, before the old array is removed.
ENGINE = "deconv_cli.engines.numpy_engine.deconvolve"
KILL_POINTS = {  # (target, streamed): streamed runs are killed in the engine's call for their second tile
    ".npz": [(ENGINE, False), ("deconv_cli.tensor_io.commit", False)],
    ".h5": [(ENGINE, False), (ENGINE, True), ("deconv_cli.tensor_io.commit", False)],
    ".zarr": [(ENGINE, False), (ENGINE, True), ("deconv_cli.tensor_io.zarr.move_folder", False), ("shutil.rmtree", False)],
}


@pytest.mark.parametrize("kind, target, streamed",
                         [(kind, *point) for kind, points in KILL_POINTS.items() for point in points])
def test_a_run_killed_while_writing_into_a_container_leaves_it_old_or_new_and_the_next_run_cleans_up(store, kind, target,
                                                                                                   streamed):
    path = container(store, kind)
    old = contents(path)
    env = {"DECONV_MEMORY_BUDGET": "1000"} if streamed else None
    body = 'open("started", "w").close()\ntime.sleep(60)'
    if streamed:  # the second tile: the temporary file holds part of the output
        body = 'if os.path.exists("tile"):\n    open("started", "w").close()\n    time.sleep(60)\nopen("tile", "w").close()'
    proc = hooked(body, "run", "x.npy", "w.npy", "-o", f"{path.name}:y", "--force", "-q", cwd=store, target=target, env=env)
    wait_for(store / "started", proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    found = contents(path)
    new = np.load(store / "want1.npy").tobytes()
    assert found == {**old, "y": new} if target == "shutil.rmtree" else found == old
    # the next run into the same folder removes what the killed one left (its pid is dead)
    result = run("run", "x.npy", "w.npy", "-o", f"{path.name}:again", "-q", cwd=store)
    assert result.returncode == 0, result.stderr
    assert sorted(contents(path)) == sorted([*old, "again"])
    assert clean_folder(store) == []  # no temporary file, and the lock file a killed run leaves is gone too


@pytest.mark.parametrize("budget", [None, "1000"])
def test_h5_output_chunks_are_the_tiles_chunks(store, budget):
    import h5py
    import zarr

    env = {"DECONV_MEMORY_BUDGET": budget} if budget else None
    for output in ("y.h5:/y", "y.zarr"):
        result = run("run", "x.npy", "w.npy", "-o", output, "-q", cwd=store, env=env)
        assert result.returncode == 0, result.stderr
    with h5py.File(store / "y.h5") as f:
        chunks, data = f["y"].chunks, f["y"][...]
    assert chunks == zarr.open_array(str(store / "y.zarr"), mode="r").chunks
    assert chunks[2] < 10 if budget else chunks == (1, 3, 10, 10)  # streamed: row blocks, one per tile
    assert data.tobytes() == np.load(store / "want1.npy").tobytes()


def test_stale_temporary_files_are_removed_and_nothing_else(store):
    from deconv_cli.tensor_io._common import _host_tag

    host = _host_tag()
    dead = subprocess.Popen(["true"])
    dead.wait()
    day_ago = time.time() - 2 * 24 * 3600
    started = time.time() - time.monotonic()  # before this process started (boot), as a reused pid would be
    files = {
        ".deconv-abcd_123.npy": (day_ago, False),  # an older version's mkstemp name, untouched for days
        ".deconv-efgh5678.h5": (None, True),  # the same, fresh: perhaps an older version still writing
        f".deconv-tmp-{os.getpid()}-{host}-00000000.npy": (None, True),  # a live run's
        f".deconv-tmp-{os.getpid()}-{host}-11111111.npy": (started - 60, False),  # older than the pid's process
        f".deconv-tmp-{dead.pid}-{host}-22222222.npz": (None, False),  # its run is dead
        f".deconv-tmp-{dead.pid}-00000000-33333333.npy": (None, True),  # another host's: pids mean nothing here
        ".deconv-notes.txt": (day_ago, True),  # not a name deconv makes
    }
    for name, (mtime, _) in files.items():
        (store / name).write_bytes(b"partial")
        if mtime is not None:
            os.utime(store / name, (mtime, mtime))
    old_store = store / f".deconv-tmp-{dead.pid}-{host}-44444444.zarr.old"  # a swapped-out array of a killed run
    (old_store / "c").mkdir(parents=True)
    result = run("run", "x.npy", "w.npy", "-o", "y.npy", "-q", cwd=store)
    assert result.returncode == 0, result.stderr
    assert clean_folder(store) == sorted(name for name, (_, kept) in files.items() if kept)


# ---------------------------------------------------------------- workers killed


def test_a_batch_worker_killed_mid_job_reruns_that_job_and_the_batch_finishes(tmp_path, rng):
    medium_jobs(tmp_path, rng, 12)
    # job 3 stops in its worker with its output written to the temporary file, about to commit; that worker
    # (not the batch process) is then killed from outside
    hook = 'if args[1].path.endswith("m2.npy") and not os.path.exists("killed"):\n' \
           '    open(f"worker-{os.getpid()}", "w").close()\n    time.sleep(60)'
    proc = hooked(hook, "batch", "jobs.jsonl", "--jobs", "2", "--json", cwd=tmp_path, target="deconv_cli.tensor_io.commit")
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("worker-*")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    [marker] = tmp_path.glob("worker-*")
    worker = int(marker.name.split("-")[1])
    assert worker != proc.pid
    assert leftovers(tmp_path) != []  # the partial output, in its temporary file
    (tmp_path / "killed").touch()
    os.kill(worker, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    records = [json.loads(line) for line in out.decode().splitlines()]
    assert sorted(r["id"] for r in records) == list(range(1, 13)) and {r["status"] for r in records} == {"ok"}
    assert summary(err.decode()) == (12, 0, 0, 0)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"m{i}.npy" for i in range(12))
    assert leftovers(tmp_path) == []


def _die(n: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return n


def _square(n: int) -> int:
    time.sleep(0.05)
    return n * n


def test_a_task_whose_worker_dies_twice_fails_alone_and_every_other_task_completes():
    from deconv_cli.execution.executors import ProcessExecutor, WorkerDied

    with ProcessExecutor(2) as executor:
        tasks = {executor.submit(_square, n): n for n in range(3)}
        dying = executor.submit(_die, 99)
        tasks.update({executor.submit(_square, n): n for n in range(3, 6)})
        results = {done.task: done for done in executor.completed()}
    assert sorted(results) == sorted([*tasks, dying])
    assert isinstance(results[dying].error, WorkerDied)
    assert {task: results[task].value for task in tasks} == {task: n * n for task, n in tasks.items()}


# ---------------------------------------------------------------- Dask


@pytest.mark.parametrize("listener", ["nothing", "silent"])
@pytest.mark.parametrize("command", ["batch", "run"])
def test_a_scheduler_address_where_no_scheduler_answers_is_one_line_within_10_s(tmp_path, command, listener):
    import socket

    np.save(tmp_path / "x.npy", np.ones((1, 2, 4, 4), np.float32))
    np.save(tmp_path / "w.npy", np.ones((2, 2, 3, 3), np.float32))
    write_jsonl(tmp_path / "jobs.jsonl", [{"input": "x.npy", "weight": "w.npy", "output": "y.npy"}])
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    if listener == "silent":
        server.listen()  # accepts connections, never speaks Dask
    else:
        server.close()  # a free port: nothing listens
    args = ["jobs.jsonl"] if command == "batch" else ["x.npy", "w.npy", "-o", "y.zarr"]
    try:
        start = time.monotonic()
        result = run(command, *args, "--scheduler", f"tcp://127.0.0.1:{port}", cwd=tmp_path, timeout=60)
        seconds = time.monotonic() - start
    finally:
        server.close()
    assert result.returncode == 1
    kind = "OSError" if listener == "nothing" else "TimeoutError"
    assert result.stderr == (f"Error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port} ({kind}). "
                             "Start one with `dask scheduler` and `dask worker ADDRESS`, or check the address.\n")
    assert seconds < 10
    assert sorted(os.listdir(tmp_path)) == ["jobs.jsonl", "w.npy", "x.npy"]


# A Dask worker's preload: job 3 of the batch stops with its output in the temporary file, about to commit, on
# whichever worker gets it first (which the test then kills); a marker file names that worker's pid.
PRELOAD = """
import os, time
from deconv_cli import tensor_io

real = getattr(tensor_io.commit, "real", tensor_io.commit)  # dask may run a preload twice
FOLDER = {folder!r}


def commit(tmp, ref, **kwargs):
    if ref.path.endswith("y2.npy") and not os.path.exists(os.path.join(FOLDER, "killed")):
        open(os.path.join(FOLDER, f"worker-{{os.getpid()}}"), "w").close()
        time.sleep(120)
    return real(tmp, ref, **kwargs)


commit.real = real
tensor_io.commit = commit
"""


def test_a_dask_worker_killed_mid_job_has_the_job_rerun_elsewhere_and_the_batch_finishes(tmp_path, rng):
    pytest.importorskip("distributed")
    from test_batch_dask import _dask

    (tmp_path / "jobs" / "out").mkdir(parents=True)
    work = tmp_path / "jobs"
    np.save(work / "w.npy", rng.standard_normal((8, 4, 3, 3)).astype(np.float32))
    for i in range(6):
        np.save(work / f"x{i}.npy", rng.standard_normal((1, 8, 6, 6)).astype(np.float32))
    write_jsonl(work / "jobs.jsonl", jobs(6))
    (tmp_path / "preload.py").write_text(PRELOAD.format(folder=str(work)))
    info = tmp_path / "scheduler.json"
    processes = [_dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(info),
                       log=tmp_path / "scheduler.log")]
    try:
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        for n in range(2):
            processes.append(_dask("worker", "--scheduler-file", str(info), "--host", "127.0.0.1", "--nthreads", "1",
                                   "--no-nanny", "--no-dashboard", "--preload", str(tmp_path / "preload.py"),
                                   log=tmp_path / f"worker{n}.log"))
        address = json.loads(info.read_text())["address"]
        import distributed

        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        proc = subprocess.Popen([*DECONV, "batch", "jobs.jsonl", "--scheduler", address, "--json"], cwd=work,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not list(work.glob("worker-*")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        [marker] = work.glob("worker-*")
        assert leftovers(work) != []  # job 3's output, in its temporary file
        (work / "killed").touch()
        os.kill(int(marker.name.split("-")[1]), signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
    assert proc.returncode == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert sorted((r["id"], r["status"]) for r in records) == [(i, "ok") for i in range(1, 7)]
    assert sorted(p.name for p in (work / "out").iterdir()) == [f"y{i}.npy" for i in range(6)]
    assert leftovers(work) == []


def test_a_job_run_again_in_the_same_run_replaces_only_its_own_earlier_output(tmp_path, rng):
    """A worker that dies after writing a job's output and before reporting it has the job run again (Dask,
    the process pool): that attempt replaces the output written since the run submitted it, and never a
    file the user had before the run."""
    from deconv_cli.execution import batch
    from deconv_cli.execution.job import Job

    np.save(tmp_path / "x.npy", rng.standard_normal((1, 2, 4, 4)).astype(np.float32))
    np.save(tmp_path / "w.npy", rng.standard_normal((2, 3, 3, 3)).astype(np.float32))
    out = tmp_path / "y.npy"
    job = Job(input=str(tmp_path / "x.npy"), weight=str(tmp_path / "w.npy"), output=str(out), style="torch", options={})
    np.save(out, np.zeros(3))  # the user's file, from before the run
    os.utime(out, (time.time() - 60, time.time() - 60))
    since = time.time()
    record = batch.execute(batch.Task(1, 1, job, str(out), since))
    assert record["status"] == "failed" and "already exists" in record["error"]
    assert np.load(out).shape == (3,)
    os.utime(out, (since + 0.5, since + 0.5))  # as if the first attempt of this job wrote it in this run
    record = batch.execute(batch.Task(1, 1, job, str(out), since))
    assert record["status"] == "ok", record
    assert np.load(out).shape == (1, 3, 6, 6)
