"""``deconv batch``: the jobs of a manifest, run in parallel, each isolated, resumable and shardable.

    manifest.read -> [Entry] -> shard -> (resume: drop the journal's finished jobs)
        -> executor.submit(execute, Task) ... -> completed() -> record -> journal + report

Each job is one ``job.Job`` run by ``job.run_job`` in a worker (a local process, this process, or a Dask
worker); a job's failure is its own ``failed`` record, never another's. Workers keep numpy, the parsed
plans (``job.plan`` is cached) and the weights that several jobs share (a small per-process cache keyed by
path, size and modification time) from one job to the next.

The journal (``<manifest>.journal``, or ``<manifest>.journal-K-of-N`` for a shard; ``--journal`` sets another
path) is a JSONL file appended by this process only, flushed as each job finishes (a killed run loses
nothing) and fsynced by a background thread at most once a second (``SYNC_INTERVAL_S``: an fsync commits the
file system's journal, which holds up every file creation meanwhile; syncing after every job made creating each
output's temporary file take 0.5 ms instead of 0.04), so an OS crash or power cut loses at most the last
second of ``done`` lines, and those jobs run again on ``--resume``:
``start`` lines (the job's key and output, when submitted) and ``done`` lines (its status, the size and
modification time of every file it read, when it finished). ``--resume`` skips exactly the jobs with a
``done``/``ok`` line of the same key (same fields after defaults and paths) whose inputs are unchanged and
whose output is still there; it may replace an output that a ``start`` line shows this manifest wrote
(its modification time is later than the start), so a job killed after writing is simply run again. Within
one run, a job that Dask or the process pool runs again (its worker died after writing and before reporting)
replaces the output written since the run submitted it, and never a file older than that.
A journal line that cannot be read (torn by a crash, not UTF-8) is skipped with a warning naming it, and its
job runs again. A run holds its journal (a lock that dies with the process): a second ``deconv batch`` with
the same journal is refused instead of running every job a second time.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ..core.errors import DeconvError
from . import manifest
from .job import EXPECT_HINT, Job, run_job
from .manifest import Entry

STATUSES = ("ok", "failed", "mismatch", "skipped")
SYNC_INTERVAL_S = 1.0  # the journal's fsyncs, at most one per interval (see the module docstring)
_MTIME_SLACK_S = 1.0  # file systems with coarse timestamps


@dataclass(frozen=True)
class Settings:
    """How to run a batch (the command line's options other than the per-job defaults)."""

    jobs: int | None = None
    scheduler: str | None = None
    shard: tuple[int, int] | None = None
    resume: bool = False
    dry_run: bool = False
    device: str = "cpu"
    force: bool = False
    fail_fast: bool = False
    journal: str | None = None


@dataclass(frozen=True)
class Task:
    """What a worker needs for one job (small and picklable)."""

    id: str | int
    line: int
    job: Job
    output: str | None
    since: float | None = None  # when this run submitted it: an output written after is this job's own


@dataclass
class Summary:
    counts: dict = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    seconds: float = 0.0
    interrupted: bool = False
    stopped: bool = False  # no new job started (--fail-fast, Ctrl-C)
    not_run: int = 0

    def line(self) -> str:
        c = self.counts
        return f"{c['ok']} ok, {c['failed']} failed, {c['mismatch']} mismatched, {c['skipped']} skipped in {self.seconds:.2f} s"

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 0 if self.counts["failed"] == 0 and self.counts["mismatch"] == 0 else 1


# ---------------------------------------------------------------- in the worker

class SharedTensors:
    """The weights and biases a worker's jobs share, read once: headers and arrays cached by path, array
    name, size and modification time (a rewritten file is read again). Per process, a few files."""

    def __init__(self, entries: int = 8):
        self._entries = entries
        self._cache: OrderedDict = OrderedDict()
        self._scratch = None

    def _get(self, kind: str, ref, read):
        try:
            stat = os.stat(ref.path)
        except OSError:
            return read(ref)  # raises the proper error
        key = (kind, os.path.abspath(ref.path), ref.key, stat.st_size, stat.st_mtime_ns)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = self._cache[key] = read(ref)
        if len(self._cache) > self._entries:
            self._cache.popitem(last=False)
        return value

    def peek(self, ref):
        from .. import tensor_io

        return self._get("peek", ref, tensor_io.peek)

    def load(self, ref, info=None):
        from .. import tensor_io

        return self._get("load", ref, lambda ref: tensor_io.load(ref, info))

    def load_input(self, ref, info):
        """A job's input, read into this worker's one reusable buffer where the format allows (a .npy file):
        jobs of one shape then fault in no fresh pages (a 32 MB input: 4 ms instead of 8). The array is
        valid until the next job's input is read; a job keeps nothing of its input."""
        import numpy as np

        from .. import tensor_io
        from ..core.config import FLOAT_DTYPES

        if info.dtype not in FLOAT_DTYPES or not getattr(tensor_io.format_of(ref), "LOADS_INTO", False):
            return tensor_io.load(ref, info)  # no buffer made for a format that would not read into it
        dtype = np.dtype(info.dtype)
        if self._scratch is None or self._scratch.shape != tuple(info.shape) or self._scratch.dtype != dtype:
            self._scratch = None  # the old buffer goes before the new one is made
            self._scratch = np.empty(info.shape, dtype)
        return tensor_io.load(ref, info, out=self._scratch)


SHARED = SharedTensors()


def execute(task: Task) -> dict:
    """Run one job in a worker and return its record. A DeconvError is the job's own failure."""
    from ..checks.compare import ShapeMismatch  # lazily: the parent process of a local batch imports no NumPy

    record = {"id": task.id, "line": task.line, "status": "ok", "output": task.output}
    try:
        job = task.job
        if job.output is not None:  # a manifest's output tree is made as needed
            _make_folder(job.output)
            if not job.force and _written_since(job.output, task.since):
                # an earlier attempt of this job in this run wrote it, and its worker died before reporting
                # (Dask and the process pool run such a job again); no other job of a manifest writes it
                job = replace(job, force=True)
        result = run_job(job, shared=SHARED)
        record.update(output_shape=list(result.derivation.output_shape), timings=result.timings)
        if result.compare is not None:
            record["compare"] = result.compare.as_dict()
            if not result.compare.match:
                record["status"] = "mismatch"
    except ShapeMismatch as error:  # an expect of another shape: checked before computing, still a verdict
        record.update(status="mismatch", output_shape=list(error.actual), compare=error.as_dict())
    except DeconvError as error:
        record.update(status="failed", error=str(error))
    except MemoryError:
        record.update(status="failed", error="out of memory. Run fewer jobs at once (--jobs) or lower DECONV_MEMORY_BUDGET.")
    return record


def _written_since(output: str, since: float | None) -> bool:
    try:
        # no slack for coarse timestamps here: a file the user had just before the run is never replaced
        return since is not None and os.stat(manifest.file_of(output)).st_mtime >= since
    except OSError:
        return False


def _make_folder(output: str) -> None:
    folder = os.path.dirname(manifest.file_of(output))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise DeconvError(f"cannot create the output folder {folder}: {exc.strerror or exc}", "check the path and its permissions") from None


# ---------------------------------------------------------------- the journal


def journal_path(source: str, settings: Settings) -> str:
    """Where a run of ``source`` keeps its journal (stdin: ``deconv-stdin.journal`` in the working directory)."""
    if settings.journal:
        return settings.journal
    base = os.path.abspath("deconv-stdin.jsonl" if source == "-" else source) + ".journal"
    return base if settings.shard is None else f"{base}-{settings.shard[0]}-of-{settings.shard[1]}"


class Journal:
    """Append-only JSONL of started and finished jobs; see the module docstring."""

    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None
        self._created = False
        self._syncer: threading.Thread | None = None
        self._dirty = threading.Event()
        self._closing = threading.Event()
        self.syncs = 0

    def read(self, pattern: str | None = None, warn: Callable[[str], None] = lambda line: None) -> list[dict]:
        """Every readable line of this journal (and of the others matching ``pattern``: all shards). A line that
        cannot be read (cut short by a crash, bytes that are not UTF-8, not a record) is skipped with one warning
        naming it; its job then runs again."""
        records = []
        for path in sorted(set([self.path, *(glob.glob(glob.escape(pattern) + "*") if pattern else [])])):
            try:
                data = self._contents() if path == self.path and self._fd is not None else _contents(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise DeconvError(f"cannot read the journal {path}: {exc.strerror or exc}", "check its permissions") from None
            for number, line in enumerate(data.split(b"\n"), start=1):
                record = _record(line)
                if record is None:
                    warn(f"journal {path}, line {number} cannot be read (skipped): its job runs again")
                elif record:
                    records.append(record)
        return records

    def lock(self) -> None:
        """Hold this journal for this run: a second ``deconv batch`` with the same journal (the same manifest and
        shard) is refused rather than running every job a second time beside this one. A POSIX record lock: it
        goes with this process however it ends, and forked workers do not inherit it. Closing any other
        descriptor of this file would drop it, so this journal is read through the locked one (``_contents``)."""
        import fcntl

        if self._fd is None:
            self._fd = self._open()
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):  # else a file system without locks: run unguarded
                os.close(self._fd)
                self._fd = None
                raise DeconvError(f"another deconv batch is running with the journal {self.path}",
                                  "wait for it to finish (then --resume), or give this run its own --shard or --journal") from None
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":  # a crash cut the last line short: end it, or the next record joins it
            self._append(b"\n")

    def write(self, records: list[dict]) -> None:
        if self._fd is None:
            self._fd = self._open()
        self._append("".join(json.dumps(r) + "\n" for r in records).encode())
        if self._syncer is None:
            self._syncer = threading.Thread(target=self._sync, name="deconv-journal", daemon=True)
            self._syncer.start()
        self._dirty.set()

    def _append(self, data: bytes) -> None:
        """Whole lines in one system call (O_APPEND), in the kernel once written: a killed run loses nothing."""
        while data:
            data = data[os.write(self._fd, data):]

    def _open(self) -> int:
        self._created = not os.path.lexists(self.path)
        try:
            return os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as exc:
            raise DeconvError(f"cannot write the journal {self.path}: {exc.strerror or exc}", "pass --journal PATH in a writable folder") from None

    def _contents(self) -> bytes:
        chunks, offset = [], 0
        while chunk := os.pread(self._fd, 1 << 20, offset):
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def _sync(self) -> None:
        """fsync beside the run, at most once per ``SYNC_INTERVAL_S``: what was written is on disk soon after."""
        while True:
            self._dirty.wait()
            if self._closing.is_set():
                return
            self._dirty.clear()
            os.fsync(self._fd)
            self.syncs += 1
            if self._closing.wait(SYNC_INTERVAL_S):
                return

    def close(self) -> None:
        if self._fd is not None:
            if self._syncer is not None:
                self._closing.set()
                self._dirty.set()
                self._syncer.join()
                self._syncer = None
            os.fsync(self._fd)
            self.syncs += 1
            if self._created and os.fstat(self._fd).st_size == 0:  # nothing ran (the cluster was unreachable...)
                os.unlink(self.path)  # while still locked: no other run can have written to it
            os.close(self._fd)
            self._fd = None


def _contents(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _record(data: bytes) -> dict | None:
    """One journal line: the record, {} for a blank line, None for one that cannot be read."""
    if not data.strip():
        return {}
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or record.get("event") not in ("start", "done") or not isinstance(record.get("key"), str):
        return None
    if record["event"] == "start" and (not isinstance(record.get("t"), int | float)
                                       or not isinstance(record.get("output"), str | None)):
        return None
    return record


def _stats(entry: Entry) -> dict[str, list]:
    """[path, size, mtime_ns] of every file a job reads (None for a missing one)."""
    found = {}
    for role, path in entry.tensors().items():
        try:
            found[role] = [path, *_size_and_mtime(path)]
        except OSError:
            found[role] = [path, None, None]
    return found


def _size_and_mtime(path: str) -> tuple[int, int]:
    """A file's size and modification time; for a folder (a Zarr store), the total size of its files and
    the latest time of anything in it: rewriting one chunk in place changes neither the folder's own
    size nor its time."""
    stat = os.stat(path)
    if not os.path.isdir(path):
        return stat.st_size, stat.st_mtime_ns
    size, latest = 0, stat.st_mtime_ns
    for folder, _, names in os.walk(path):
        latest = max(latest, os.stat(folder).st_mtime_ns)
        for name in names:
            inner = os.stat(os.path.join(folder, name))
            size, latest = size + inner.st_size, max(latest, inner.st_mtime_ns)
    return size, latest


def _resume_plan(entries: list[Entry], records: list[dict]) -> tuple[dict, set]:
    """(finished jobs to skip: key -> done record, outputs this manifest may replace)."""
    done = {r["key"]: r for r in records if r.get("event") == "done" and r.get("status") == "ok"}
    started: dict[str, float] = {}
    for r in records:
        if r.get("event") == "start" and r.get("output"):
            started[r["output"]] = min(started.get(r["output"], r["t"]), r["t"])
    skip, replaceable = {}, set()
    for entry in entries:
        record = done.get(entry.key)
        output_there = entry.output is None or os.path.exists(manifest.file_of(entry.output))
        if record is not None and record.get("inputs") == _stats(entry) and output_there:
            skip[entry.key] = record
            continue
        target = entry.output and manifest.file_of(entry.output)
        if target in started:
            try:
                if os.stat(target).st_mtime >= started[target] - _MTIME_SLACK_S:
                    replaceable.add(target)
            except OSError:
                pass
    return skip, replaceable


# ---------------------------------------------------------------- the run


def _task(entry: Entry, settings: Settings, force: bool, since: float | None = None) -> Task:
    job = Job(
        input=entry.input, weight=entry.weight, output=entry.output, bias=entry.bias, style=entry.style,
        options=dict(entry.options), device=settings.device, force=force, quirks=entry.quirks,
        expect=entry.expect, atol=entry.atol, rtol=entry.rtol,
    )
    return Task(entry.id, entry.line, job, entry.raw_output, since)


def dry_run(entries: list[Entry], emit: Callable[[dict], None], log: Callable[[str], None]) -> Summary:
    """Plan every job from headers (shapes, options, dtypes), computing nothing."""
    from .. import tensor_io
    from ..checks.compare import ShapeMismatch
    from ..conventions.plan import plan

    summary, start = Summary(), time.perf_counter()
    for entry in entries:
        record = {"id": entry.id, "line": entry.line, "status": "ok", "output": entry.raw_output}
        if entry.expect is not None:
            record["expect"] = as_written(entry.expect, entry)
        try:
            infos = {role: tensor_io.peek(tensor_io.parse_ref(getattr(entry, role)))
                     for role in ("input", "weight", "bias", "expect") if getattr(entry, role) is not None}
            derivation = plan(
                entry.style, dict(entry.options), infos["input"].shape, infos["weight"].shape,
                infos["bias"].shape if "bias" in infos else None, quirks=entry.quirks,
                dtypes={role: info.dtype for role, info in infos.items() if role != "expect"},
            )
            record["output_shape"] = list(derivation.output_shape)
            if "expect" in infos and tuple(infos["expect"].shape) != tuple(derivation.output_shape):
                actual, wanted = tuple(derivation.output_shape), tuple(infos["expect"].shape)
                mismatch = ShapeMismatch(f"shapes differ: actual {actual} vs expected {wanted}", EXPECT_HINT,
                                         actual=actual, expected=wanted)
                record.update(status="mismatch", compare=mismatch.as_dict())
        except DeconvError as error:
            record.update(status="failed", error=as_written(str(error), entry))
        if record["status"] != "ok":
            log(f"job {entry.id} (line {entry.line}) {record['status']}: {record.get('error') or _mismatch_text(record)}")
        summary.counts[record["status"]] += 1
        emit(record)
    summary.seconds = time.perf_counter() - start
    return summary


def run(source: str, defaults: manifest.Defaults, settings: Settings, *, emit: Callable[[dict], None],
        progress=None, log: Callable[[str], None] = lambda line: None) -> Summary:
    """Read and check the whole manifest (ConfigError: nothing runs), then run the selected jobs.

    ``emit`` gets each job's record as it finishes; ``progress.advance(status)`` follows along.
    A first Ctrl-C starts no new job and lets the running ones finish (reported and journaled); a second
    stops them too. Either way the summary comes back with ``interrupted`` set.
    """
    from .executors import DeferredInterrupt, open_executor

    start = time.perf_counter()
    entries = manifest.shard(manifest.read(source, defaults), settings.shard)
    if settings.dry_run:
        return dry_run(entries, emit, log)
    journal = Journal(journal_path(source, settings))
    journal.lock()
    skip, replaceable = {}, set()
    if settings.resume:
        pattern = None if settings.journal else os.path.abspath("deconv-stdin.jsonl" if source == "-" else source) + ".journal"
        try:
            skip, replaceable = _resume_plan(entries, journal.read(pattern, warn=lambda line: log(f"Warning: {line}")))
        except BaseException:
            journal.close()
            raise
    summary = Summary()

    def finish(record: dict) -> None:
        summary.counts[record["status"]] += 1
        if record["status"] in ("failed", "mismatch"):
            log(f"job {record['id']} (line {record['line']}) {record['status']}: {record.get('error') or _mismatch_text(record)}")
        emit(record)
        if progress is not None:
            progress.advance(record["status"])

    todo = [entry for entry in entries if entry.key not in skip]
    pending: dict[int, tuple[Entry, dict]] = {}

    def collect(done) -> None:
        entry, stats = pending.pop(done.task)
        record = done.value if done.error is None else {
            "id": entry.id, "line": entry.line, "status": "failed", "output": entry.raw_output,
            "error": str(done.error) if isinstance(done.error, DeconvError)
            else f"internal error: {done.error.__class__.__name__}: {done.error}",
        }
        if "error" in record:
            record["error"] = as_written(record["error"], entry)
        journal.write([{"event": "done", "key": entry.key, "id": entry.id, "status": record["status"],
                        "inputs": stats, "output_shape": record.get("output_shape"), "t": time.time()}])
        finish(record)

    def first_interrupt() -> None:  # in the signal handler: a plain write, no buffered stream
        os.write(2, b"Interrupted: finishing the running jobs (Ctrl-C again to stop them now)\n")

    try:
        with DeferredInterrupt(first_interrupt) as interrupt, \
                open_executor(jobs=settings.jobs, scheduler=settings.scheduler) as executor:
            if progress is not None:  # after the workers started: fork only while this process has one thread
                progress.start(len(entries))
            for entry in entries:
                if entry.key in skip:
                    previous = skip[entry.key]
                    finish({"id": entry.id, "line": entry.line, "status": "skipped", "output": entry.raw_output,
                            "output_shape": previous.get("output_shape")})
            now = time.time()
            starts = []
            for entry in todo:
                force = settings.force or (entry.output is not None and manifest.file_of(entry.output) in replaceable)
                pending[executor.submit(execute, _task(entry, settings, force, now))] = (entry, _stats(entry))
                starts.append({"event": "start", "key": entry.key, "id": entry.id, "output": entry.output and manifest.file_of(entry.output), "t": now})
            if starts:
                journal.write(starts)
            for done in executor.completed():
                collect(done)
                failed = settings.fail_fast and done.value is not None and done.value["status"] in ("failed", "mismatch")
                if (interrupt.pending or failed or done.error is not None and settings.fail_fast) and not summary.stopped:
                    summary.stopped = True
                    executor.cancel()  # start nothing new; the running jobs finish and are reported
            summary.interrupted = interrupt.pending
    except KeyboardInterrupt:  # a second Ctrl-C: the executor stopped the running jobs too
        summary.interrupted = True
    finally:
        journal.close()
        _sweep(todo)
    summary.not_run = len(pending)
    if summary.stopped and pending and not summary.interrupted:
        log(f"--fail-fast: {len(pending)} jobs not run")
    summary.seconds = time.perf_counter() - start
    return summary


def as_written(text: str, entry: Entry) -> str:
    """``text`` with the job's resolved paths in the form its manifest wrote them, as the records show them."""
    for resolved, written in sorted(entry.written, key=lambda pair: -len(pair[0])):
        text = text.replace(resolved, written)
    return text


def _sweep(entries: list[Entry]) -> None:
    """Remove what workers killed mid-write left in the output folders (their temporary files): a job that ran
    again elsewhere may have written its output through a worker that had swept that folder already."""
    from ..tensor_io import remove_stale_temps

    for folder in sorted({os.path.dirname(manifest.file_of(e.output)) for e in entries if e.output is not None}):
        remove_stale_temps(folder)


def _mismatch_text(record: dict) -> str:
    compare = record.get("compare") or {}
    if "error" in compare:  # an expect of another shape
        return compare["error"]
    return f"{compare.get('mismatches')} of {compare.get('total')} elements differ (max abs {compare.get('max_abs')})"
