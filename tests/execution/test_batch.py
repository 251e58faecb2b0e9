"""`deconv batch` end to end: manifest rules (exit 2 naming the line), records, files on disk, resume and shards,
failure isolation, and real signals (SIGINT, SIGKILL) sent to real `deconv batch` processes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from reference import reference_deconv

from deconv_cli.cli import cli

SUMMARY = re.compile(r"^(\d+) ok, (\d+) failed, (\d+) mismatched, (\d+) skipped in \d+\.\d\d s$")
DECONV = [sys.executable, "-m", "deconv_cli"]


def invoke(*args, input=None):
    return CliRunner().invoke(cli, ["batch", *args], input=input)


def summary(stderr: str) -> tuple[int, int, int, int]:
    match = SUMMARY.match(stderr.splitlines()[-1])
    assert match, stderr
    return tuple(int(v) for v in match.groups())


def write_jsonl(path: Path, jobs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(job) + "\n" for job in jobs))
    return path


def expected(x, w, stride=2, padding=1, bias=None):
    return reference_deconv(x, w, bias, stride=(stride, stride), dilation=(1, 1), crops=((padding, padding),) * 2, groups=1)


@pytest.fixture
def folder(tmp_path, rng, monkeypatch):
    """w.npy (8, 4, 3, 3), x0..x5.npy (1, 8, 6, 6), an empty out/, and the working directory there."""
    np.save(tmp_path / "w.npy", rng.standard_normal((8, 4, 3, 3)).astype(np.float32))
    for i in range(6):
        np.save(tmp_path / f"x{i}.npy", rng.standard_normal((1, 8, 6, 6)).astype(np.float32))
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def jobs(n=6, **extra):
    return [{"input": f"x{i}.npy", "weight": "w.npy", "output": f"out/y{i}.npy", **extra} for i in range(n)]


def leftovers(folder: Path) -> list[str]:
    """Temporary files a write left behind."""
    return sorted(p.name for p in folder.rglob(".deconv-*"))


# ---------------------------------------------------------------- the manifest is checked whole, first


BAD_MANIFESTS = [
    ('{"input": "x0.npy", "weight": "w.npy", "output": "out/a.npy"}\n{"input": "x1.npy",}\n',
     "Error: line 2: not valid JSON (Expecting property name enclosed in double quotes at column 20). Write one JSON object per line."),
    ('{"input": "x0.npy", "weight": "w.npy", "output": "out/a.npy", "strid": 2}\n',
     "Error: line 1: unknown field 'strid'. Fields are input, weight, output, bias, style, set, quirks, expect, atol, rtol, id, layer."),
    ('{"input": "x0.npy", "weight": "w.npy", "output": "out/a.npy"}\n\n{"input": "x1.npy", "output": "out/b.npy"}\n',
     "Error: line 3: missing required field 'weight'. Add \"weight\": \"path\"."),
    ('{"input": "x0.npy", "weight": "w.npy"}\n',
     "Error: line 1: missing required field 'output'. Add \"output\": \"path\" (or \"expect\" to only compare)."),
    ('{"input": "x0.npy", "weight": "w.npy", "output": "out/a.npy"}\n{"input": "x1.npy", "weight": "w.npy", "output": "out/../out/a.npy"}\n',
     "Error: line 2: output out/../out/a.npy is also written by line 1. Give every job its own output file."),
    ('{"input": "x0.npy", "weight": "w.npy", "output": "out/a.npy"}\n{"input": "out/a.npy", "weight": "w.npy", "output": "out/b.npy"}\n',
     "Error: line 2: input a.npy is the output of line 1. A batch's jobs run in any order; run the two steps as two batches."),
    ('{"input": "x0.npy", "weight": "w.npy", "output": "out/a.npy", "id": "a"}\n{"input": "x1.npy", "weight": "w.npy", "output": "out/b.npy", "id": "a"}\n',
     "Error: line 2: id \"a\" is also the id of line 1. Give every job its own id."),
    ('["x0.npy", "w.npy"]\n', "Error: line 1: expected a JSON object, got list. Write e.g. {\"input\": \"x.npy\", \"weight\": \"w.npy\", \"output\": \"y.npy\"}."),
    ('{"input": "x0.npy", "weight": "w.npy", "output": "out/a.npy", "set": ["stride"]}\n',
     "Error: line 1: set 'stride' is not KEY=VALUE. Write e.g. set stride=2."),
    ('{"input": "x0.npy", "weight": "w.npy", "output": "out/a.npy", "quirks": "yes"}\n',
     "Error: line 1: 'quirks' must be true or false, got \"yes\"."),
    ('{"input": 3, "weight": "w.npy", "output": "out/a.npy"}\n', "Error: line 1: 'input' must be a non-empty string, got 3."),
]


@pytest.mark.parametrize(("text", "line"), BAD_MANIFESTS)
def test_a_bad_manifest_exits_2_naming_the_line_and_runs_nothing(folder, text, line):
    (folder / "jobs.jsonl").write_text(text)
    result = invoke("jobs.jsonl", "-j", "1")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [line]
    assert result.stdout == ""
    assert list((folder / "out").iterdir()) == []
    assert not (folder / "jobs.jsonl.journal").exists()


def test_a_bad_csv_header_exits_2(folder):
    (folder / "jobs.csv").write_text("input,weight,output,stride\nx0.npy,w.npy,out/a.npy,2\n")
    result = invoke("jobs.csv")
    assert result.exit_code == 2
    assert result.stderr == "Error: line 1: unknown column 'stride'. Columns are input, weight, output, bias, style, set, quirks, expect, atol, rtol, id, layer.\n"


@pytest.mark.parametrize(("args", "line"), [
    (["jobs.txt"], "Error: manifest jobs.txt is neither .jsonl nor .csv. Name it jobs.jsonl or jobs.csv (or pass - for JSONL on stdin)."),
    (["none.jsonl"], "Error: manifest none.jsonl: no such file. Check the path."),
    (["jobs.jsonl", "--shard", "3/2"], "Error: --shard '3/2' is not K/N with 1 <= K <= N. Write e.g. --shard 2/4."),
    (["jobs.jsonl", "--jobs", "0"], "Error: --jobs 0 must be at least 1. Write e.g. --jobs 4."),
    (["jobs.jsonl", "--jobs", "2", "--scheduler", "tcp://127.0.0.1:1"],
     "Error: --jobs and --scheduler do not go together. The cluster's workers set the parallelism; drop --jobs."),
])
def test_usage_errors_exit_2(folder, args, line):
    write_jsonl(folder / "jobs.jsonl", jobs())
    (folder / "jobs.txt").write_text("")
    result = invoke(*args)
    assert (result.exit_code, result.stderr.splitlines()) == (2, [line])
    assert list((folder / "out").iterdir()) == []


# ---------------------------------------------------------------- running


def test_jsonl_batch_writes_every_output_and_one_record_per_job(folder):
    write_jsonl(folder / "jobs.jsonl", jobs(set={"stride": [2, 2], "padding": 1}))
    result = invoke("jobs.jsonl", "-j", "1", "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["id"], r["status"], r["output"], r["output_shape"]) for r in records] == [
        (i + 1, "ok", f"out/y{i}.npy", [1, 4, 11, 11]) for i in range(6)
    ]
    assert all(set(r["timings"]) == {"load_s", "compute_s", "save_s"} for r in records)
    assert summary(result.stderr) == (6, 0, 0, 0)
    assert len(result.stderr.splitlines()) == 1
    w = np.load(folder / "w.npy")
    for i in range(6):
        np.testing.assert_allclose(np.load(folder / f"out/y{i}.npy"), expected(np.load(folder / f"x{i}.npy"), w), rtol=1e-5, atol=1e-5)


def test_defaults_merge_with_job_fields_key_by_key_in_csv(folder):
    # --set stride=2 --set padding=1 for all; row b overrides padding only; row c another style (same keyword names)
    (folder / "jobs.csv").write_text(
        "id,input,weight,output,set,style\n"
        "a,x0.npy,w.npy,out/a.npy,,\n"
        "b,x1.npy,w.npy,out/b.npy,padding=0,\n"
        "c,x2.npy,w.npy,out/c.npy,\"'stride=(3, 3)' padding=0\",oneflow\n"
    )
    result = invoke("jobs.csv", "-j", "1", "--set", "stride=2", "--set", "padding=1", "--json", "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    shapes = {r["id"]: r["output_shape"] for r in map(json.loads, result.stdout.splitlines())}
    assert shapes == {"a": [1, 4, 11, 11], "b": [1, 4, 13, 13], "c": [1, 4, 18, 18]}
    w = np.load(folder / "w.npy")
    np.testing.assert_allclose(np.load(folder / "out/b.npy"), expected(np.load(folder / "x1.npy"), w, padding=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.load(folder / "out/c.npy"), expected(np.load(folder / "x2.npy"), w, stride=3, padding=0), rtol=1e-5, atol=1e-5)


def test_stdin_manifest_resolves_against_the_working_directory_and_takes_set_lists(folder, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("manifests")
    (elsewhere / "out").mkdir()
    text = "".join(json.dumps(job) + "\n" for job in jobs(2, set=["stride=2", "padding=1"]))
    write_jsonl(elsewhere / "jobs.jsonl", [  # inputs absolute, outputs relative
        {**job, "input": str(folder / job["input"]), "weight": str(folder / "w.npy")} for job in jobs(2)])
    result = invoke("-", "-j", "1", "--json", input=text)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["output_shape"] for line in result.stdout.splitlines()] == [[1, 4, 11, 11]] * 2
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["y0.npy", "y1.npy"]
    # a manifest file resolves relative paths against its own folder
    result = invoke(str(elsewhere / "jobs.jsonl"), "-j", "1", "--set", "stride=2")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (elsewhere / "out").iterdir()) == ["y0.npy", "y1.npy"]


def test_one_bad_job_fails_alone_without_a_partial_file(folder):
    manifest = jobs(4, set={"stride": 2})
    manifest[1]["input"] = "missing.npy"
    manifest[2]["set"] = {"stride": 2, "groups": 3}
    write_jsonl(folder / "jobs.jsonl", manifest)
    result = invoke("jobs.jsonl", "-j", "1", "--json")
    assert result.exit_code == 1
    records = {r["id"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert {i: r["status"] for i, r in records.items()} == {1: "ok", 2: "failed", 3: "failed", 4: "ok"}
    assert records[2]["error"] == "missing.npy: no such file. Check the path."
    assert records[3]["error"].startswith("groups=3 must divide")
    assert result.stderr.splitlines()[:2] == [f"job 2 (line 2) failed: {records[2]['error']}", f"job 3 (line 3) failed: {records[3]['error']}"]
    assert summary(result.stderr) == (2, 2, 0, 0)
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["y0.npy", "y3.npy"]
    assert leftovers(folder) == []


def test_existing_outputs_are_failures_unless_force(folder):
    write_jsonl(folder / "jobs.jsonl", jobs(2))
    (folder / "out/y1.npy").write_bytes(b"keep me")
    result = invoke("jobs.jsonl", "-j", "1")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "job 2 (line 2) failed: output out/y1.npy already exists. Pass --force to replace it."
    assert (folder / "out/y1.npy").read_bytes() == b"keep me"
    result = invoke("jobs.jsonl", "-j", "1", "--force", "-q")
    assert (result.exit_code, result.stderr) == (0, "")
    assert np.load(folder / "out/y1.npy").shape == (1, 4, 8, 8)


def test_dry_run_plans_from_headers_and_writes_nothing(folder):
    manifest = jobs(3, set={"stride": 2})
    manifest[2]["set"] = {"stride": 0}
    write_jsonl(folder / "jobs.jsonl", manifest)
    result = invoke("jobs.jsonl", "--dry-run")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["1\tout/y0.npy\t(1, 4, 13, 13)", "2\tout/y1.npy\t(1, 4, 13, 13)"]
    assert result.stderr.splitlines()[0].startswith("job 3 (line 3) failed: stride")
    assert summary(result.stderr) == (2, 1, 0, 0)
    assert list((folder / "out").iterdir()) == []
    assert not (folder / "jobs.jsonl.journal").exists()


def test_fail_fast_stops_after_the_first_failure(folder):
    manifest = jobs(5)
    manifest[1]["input"] = "missing.npy"
    write_jsonl(folder / "jobs.jsonl", manifest)
    result = invoke("jobs.jsonl", "-j", "1", "--fail-fast", "--json")
    assert result.exit_code == 1
    assert [json.loads(line)["status"] for line in result.stdout.splitlines()] == ["ok", "failed"]
    assert result.stderr.splitlines()[1] == "--fail-fast: 3 jobs not run"
    assert summary(result.stderr) == (1, 1, 0, 0)
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["y0.npy"]


# ---------------------------------------------------------------- resume and shards


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((folder / "out").iterdir())}


def test_resume_reruns_exactly_the_changed_jobs(folder, rng):
    write_jsonl(folder / "jobs.jsonl", jobs(6, set={"stride": 2}))
    assert invoke("jobs.jsonl", "-j", "1").exit_code == 0
    before = mtimes(folder)
    time.sleep(0.01)
    np.save(folder / "x1.npy", rng.standard_normal((1, 8, 6, 6)).astype(np.float32))  # an input changed
    (folder / "out/y2.npy").unlink()  # an output gone
    changed = jobs(6, set={"stride": 2})
    changed[3]["set"] = {"stride": 2, "padding": 1}  # a job's fields changed
    write_jsonl(folder / "jobs.jsonl", changed)
    result = invoke("jobs.jsonl", "-j", "1", "--resume", "--json")
    assert result.exit_code == 0, result.output
    statuses = {r["id"]: r["status"] for r in map(json.loads, result.stdout.splitlines())}
    assert statuses == {1: "skipped", 2: "ok", 3: "ok", 4: "ok", 5: "skipped", 6: "skipped"}
    assert summary(result.stderr) == (3, 0, 0, 3)
    after = mtimes(folder)
    assert {name for name in before if before[name] == after.get(name)} == {"y0.npy", "y4.npy", "y5.npy"}
    w = np.load(folder / "w.npy")
    np.testing.assert_allclose(np.load(folder / "out/y1.npy"), expected(np.load(folder / "x1.npy"), w, padding=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.load(folder / "out/y3.npy"), expected(np.load(folder / "x3.npy"), w, padding=1), rtol=1e-5, atol=1e-5)
    # nothing left to do
    result = invoke("jobs.jsonl", "-j", "1", "--resume")
    assert summary(result.stderr) == (0, 0, 0, 6)


def test_resume_never_replaces_a_file_this_manifest_did_not_write(folder):
    write_jsonl(folder / "jobs.jsonl", jobs(2))
    (folder / "out/y0.npy").write_bytes(b"the user's")
    result = invoke("jobs.jsonl", "-j", "1", "--resume")
    assert result.exit_code == 1
    assert (folder / "out/y0.npy").read_bytes() == b"the user's"
    assert summary(result.stderr) == (1, 1, 0, 0)


def test_two_shards_cover_the_manifest_exactly_once(folder):
    write_jsonl(folder / "jobs.jsonl", jobs(6, set={"stride": 2}) + [
        {"input": "x0.npy", "weight": "w.npy", "output": "out/z.npy", "set": {"stride": 3}}])
    seen = []
    for k in (1, 2):
        result = invoke("jobs.jsonl", "-j", "1", "--shard", f"{k}/2", "--json")
        assert result.exit_code == 0, result.output
        seen.append([json.loads(line)["id"] for line in result.stdout.splitlines()])
    assert seen == [[1, 3, 5, 7], [2, 4, 6]]
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["y0.npy", "y1.npy", "y2.npy", "y3.npy", "y4.npy", "y5.npy", "z.npy"]
    assert (folder / "jobs.jsonl.journal-1-of-2").exists() and (folder / "jobs.jsonl.journal-2-of-2").exists()
    # an unsharded resume reads every shard's journal
    result = invoke("jobs.jsonl", "-j", "1", "--resume")
    assert summary(result.stderr) == (0, 0, 0, 7)


# ---------------------------------------------------------------- real processes: pool, SIGINT, SIGKILL


def medium_jobs(folder: Path, rng, n: int) -> Path:
    """n jobs of ~20 ms each (64 x 32 channels, 24x24, stride 2) sharing one input and weight."""
    np.save(folder / "xm.npy", rng.standard_normal((16, 64, 24, 24)).astype(np.float32))
    np.save(folder / "wm.npy", rng.standard_normal((64, 32, 4, 4)).astype(np.float32))
    (folder / "out").mkdir(exist_ok=True)
    return write_jsonl(folder / "jobs.jsonl", [
        {"input": "xm.npy", "weight": "wm.npy", "output": f"out/m{i}.npy", "set": {"stride": 2, "padding": i % 3}} for i in range(n)])


def start(args, cwd) -> subprocess.Popen:
    return subprocess.Popen([*DECONV, "batch", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_done_lines(journal: Path, count: int, process: subprocess.Popen, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists() and journal.read_text().count('"event": "done"') >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"the batch finished or stalled before {count} jobs were done")


def done_ids(journal: Path) -> set:
    ids = set()
    for text in journal.read_text().splitlines():
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            continue
        if record.get("event") == "done" and record["status"] == "ok":
            ids.add(record["id"])
    return ids


def test_sigkill_then_resume_equals_an_uninterrupted_run_and_reruns_no_finished_job(tmp_path, rng):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    medium_jobs(whole, rng, 40)
    for name in ("xm.npy", "wm.npy", "jobs.jsonl"):
        (killed / name).write_bytes((whole / name).read_bytes())
    (killed / "out").mkdir()
    process = start(["jobs.jsonl", "--jobs", "2"], killed)
    wait_for_done_lines(killed / "jobs.jsonl.journal", 6, process)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    time.sleep(0.5)  # the workers follow their parent (exit_with_parent)
    finished = done_ids(killed / "jobs.jsonl.journal")
    assert 6 <= len(finished) < 40
    finished_mtimes = {i: (killed / f"out/m{i - 1}.npy").stat().st_mtime_ns for i in finished}

    resumed = start(["jobs.jsonl", "--jobs", "2", "--resume", "--json"], killed)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert {r["id"] for r in records if r["status"] == "skipped"} == finished
    assert {r["id"] for r in records if r["status"] == "ok"} == set(range(1, 41)) - finished
    assert summary(err) == (40 - len(finished), 0, 0, len(finished))
    assert {i: (killed / f"out/m{i - 1}.npy").stat().st_mtime_ns for i in finished} == finished_mtimes

    uninterrupted = start(["jobs.jsonl", "--jobs", "2"], whole)
    _, err = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, err
    for i in range(40):
        np.testing.assert_array_equal(np.load(killed / f"out/m{i}.npy"), np.load(whole / f"out/m{i}.npy"))
    assert leftovers(killed) == []


def test_ctrl_c_exits_130_with_a_summary_and_no_partial_file(tmp_path, rng):
    medium_jobs(tmp_path, rng, 200)
    process = start(["jobs.jsonl", "--jobs", "2", "--json"], tmp_path)
    wait_for_done_lines(tmp_path / "jobs.jsonl.journal", 4, process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    lines = err.splitlines()
    assert re.fullmatch(r"Interrupted: \d+ jobs did not run; run again with --resume to run them\.", lines[-2])
    assert "Interrupted: finishing the running jobs (Ctrl-C again to stop them now)" in lines
    ok = summary(err)[0]
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == ok and all(r["status"] == "ok" for r in records)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(Path(r["output"]).name for r in records)
    assert leftovers(tmp_path) == []
    x, w = np.load(tmp_path / "xm.npy"), np.load(tmp_path / "wm.npy")
    first = records[0]
    padding = (int(Path(first["output"]).stem[1:])) % 3
    np.testing.assert_allclose(np.load(tmp_path / first["output"]), expected(x, w, padding=padding), rtol=1e-4, atol=1e-4)


def test_worker_pool_matches_the_in_process_run(tmp_path, rng):
    medium_jobs(tmp_path, rng, 6)
    process = start(["jobs.jsonl", "--jobs", "2", "--json"], tmp_path)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert sorted(json.loads(line)["id"] for line in out.splitlines()) == [1, 2, 3, 4, 5, 6]
    pooled = {p.name: np.load(p) for p in (tmp_path / "out").iterdir()}
    assert invoke(str(tmp_path / "jobs.jsonl"), "-j", "1", "--force", "-q").exit_code == 0
    for name, array in pooled.items():
        np.testing.assert_allclose(np.load(tmp_path / "out" / name), array, rtol=1e-6, atol=1e-5)


def test_a_local_batch_imports_no_dask_and_leaves_numpy_to_its_workers(folder):
    probe = (
        "import sys\nfrom deconv_cli.cli import cli\n"
        "try:\n    cli.main(args=['batch', 'jobs.jsonl', '-j', '2', '-q'], prog_name='deconv', standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        "print([m for m in ('dask', 'distributed', 'numpy') if m in sys.modules])\n"
    )
    write_jsonl(folder / "jobs.jsonl", jobs(2))
    done = subprocess.run([sys.executable, "-c", probe], cwd=folder, capture_output=True, text=True, check=False)
    assert done.stdout.splitlines()[-1] == "[]", done.stderr
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["y0.npy", "y1.npy"]


# ---------------------------------------------------------------- expect: compare with a reference


def test_expect_reports_match_and_mismatch_with_a_compare_object(folder):
    w = np.load(folder / "w.npy")
    right = expected(np.load(folder / "x0.npy"), w, padding=0).astype(np.float32)
    np.save(folder / "right.npy", right)
    np.save(folder / "shifted.npy", np.roll(right, 1, axis=-1))
    write_jsonl(folder / "jobs.jsonl", [
        {"id": "same", "input": "x0.npy", "weight": "w.npy", "output": "out/a.npy", "expect": "right.npy"},
        {"id": "off", "input": "x0.npy", "weight": "w.npy", "output": "out/b.npy", "expect": "shifted.npy"},
        {"id": "loose", "input": "x0.npy", "weight": "w.npy", "expect": "shifted.npy", "atol": 100.0},
        {"id": "only", "input": "x0.npy", "weight": "w.npy", "expect": "right.npy"},
    ])
    result = invoke("jobs.jsonl", "-j", "1", "--set", "stride=2", "--json")
    assert result.exit_code == 1
    records = {r["id"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert {k: r["status"] for k, r in records.items()} == {"same": "ok", "off": "mismatch", "loose": "ok", "only": "ok"}
    assert records["same"]["compare"]["match"] is True and records["same"]["compare"]["mismatches"] == 0
    off = records["off"]["compare"]
    assert off["match"] is False and off["total"] == right.size and off["mismatches"] > 0
    assert records["loose"]["compare"]["atol"] == 100.0
    assert result.stderr.splitlines()[0] == (
        f"job off (line 2) mismatch: {off['mismatches']} of {off['total']} elements differ (max abs {off['max_abs']})")
    assert summary(result.stderr) == (3, 0, 1, 0)
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["a.npy", "b.npy"]  # expect-only jobs write nothing


def test_a_wrong_shape_expect_is_a_mismatch_with_a_compare_object_in_runs_and_dry_runs(folder):
    np.save(folder / "short.npy", np.zeros((1, 4, 12, 12), np.float32))
    write_jsonl(folder / "jobs.jsonl", [
        {"id": "only", "input": "x0.npy", "weight": "w.npy", "expect": "short.npy"},
        {"id": "both", "input": "x1.npy", "weight": "w.npy", "output": "out/b.npy", "expect": "short.npy"},
        {"id": "fine", "input": "x2.npy", "weight": "w.npy", "output": "out/c.npy"},
    ])
    error = "shapes differ: actual (1, 4, 13, 13) vs expected (1, 4, 12, 12)"
    for extra in ([], ["--dry-run"]):
        result = invoke("jobs.jsonl", "-j", "1", "--set", "stride=2", "--json", *extra)
        assert result.exit_code == 1
        records = {r["id"]: r for r in map(json.loads, result.stdout.splitlines())}
        assert {k: r["status"] for k, r in records.items()} == {"only": "mismatch", "both": "mismatch", "fine": "ok"}
        for key in ("only", "both"):
            compare = records[key]["compare"]
            assert compare["match"] is False and "error" not in records[key]
            assert compare["error"] == f"{error}. Check the options with deconv detect INPUT WEIGHT EXPECTED."
            assert (compare["shape"], compare["expected_shape"]) == ([1, 4, 13, 13], [1, 4, 12, 12])
        assert result.stderr.splitlines()[0].startswith(f"job only (line 1) mismatch: {error}")
        assert summary(result.stderr) == (1, 0, 2, 0)


def test_dry_run_names_what_an_expect_only_job_compares_with(folder):
    np.save(folder / "right.npy", np.zeros((1, 4, 13, 13), np.float32))
    write_jsonl(folder / "jobs.jsonl", [{"input": "x0.npy", "weight": "w.npy", "expect": "right.npy"},
                                        {"input": "x1.npy", "weight": "w.npy", "output": "out/b.npy"}])
    result = invoke("jobs.jsonl", "--set", "stride=2", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["1\t(compare with right.npy)\t(1, 4, 13, 13)", "2\tout/b.npy\t(1, 4, 13, 13)"]
    assert "None" not in result.stdout


@pytest.mark.parametrize("extra", [[], ["--dry-run"]])
def test_errors_name_files_as_the_records_and_the_manifest_do(folder, extra):
    (folder / "sub").mkdir()
    write_jsonl(folder / "sub" / "jobs.jsonl", [{"input": "../missing.npy", "weight": "../w.npy", "output": "../out/y.npy"},
                                                {"input": "../x0.npy", "weight": "../w.npy", "output": "../out/z.npy"}])
    (folder / "out" / "z.npy").write_bytes(b"keep me")
    result = invoke("sub/jobs.jsonl", "-j", "1", "--json", *extra)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[0]["output"] == "../out/y.npy"
    assert records[0]["error"] == "../missing.npy: no such file. Check the path."
    assert result.stderr.splitlines()[0] == f"job 1 (line 1) failed: {records[0]['error']}"
    if not extra:
        assert records[1]["error"] == "output ../out/z.npy already exists. Pass --force to replace it."
    assert str(folder) not in result.stdout + result.stderr


def test_expect_fields_are_checked_with_the_manifest(folder):
    write_jsonl(folder / "jobs.jsonl", [{"input": "x0.npy", "weight": "w.npy", "expect": "right.npy", "atol": -1}])
    result = invoke("jobs.jsonl")
    assert (result.exit_code, result.stderr) == (2, "Error: line 1: 'atol' must be a number >= 0, got -1.\n")


# ---------------------------------------------------------------- the README's manifests, executors, caches, progress


def test_the_readme_manifests_plan(tmp_path):
    root = Path(__file__).parent.parent.parent
    section = (root / "README.md").read_text().split("## Batch jobs", 1)[1].split("\n## ", 1)[0]
    for sample in (root / "samples").iterdir():
        if sample.suffix in (".npy", ".npz"):
            (tmp_path / sample.name).write_bytes(sample.read_bytes())
    (tmp_path / "out").mkdir()
    for kind, count in (("jsonl", 3), ("csv", 2)):
        (tmp_path / f"jobs.{kind}").write_text(re.search(rf"```{kind}\n(.*?)```", section, re.S).group(1))
        result = invoke(str(tmp_path / f"jobs.{kind}"), "--dry-run")
        assert result.exit_code == 0, result.output
        assert len(result.stdout.splitlines()) == count


def test_the_sample_manifests_run(tmp_path):
    root = Path(__file__).parent.parent.parent
    for name in ("jobs.jsonl", "jobs.csv"):
        result = invoke(str(root / "samples" / name), "--dry-run")
        assert result.exit_code == 0, result.output


def _square(n):
    return n * n


def _fail(n):
    raise ValueError(f"bad {n}")


def _slow_then_mark(folder, n):
    marker = Path(folder) / f"started{n}"
    marker.write_text("")
    try:
        time.sleep(30)
    finally:
        marker.unlink()  # a finally block runs even when the task is stopped


@pytest.mark.parametrize("jobs", [1, 2])
def test_executors_return_every_task_once_with_its_error(jobs):
    from deconv_cli.execution.executors import open_executor

    with open_executor(jobs=jobs) as executor:
        tasks = [executor.submit(_square, n) for n in range(7)] + [executor.submit(_fail, 7)]
        done = {d.task: d for d in executor.completed()}
    assert sorted(done) == tasks
    assert [done[t].value for t in tasks[:7]] == [n * n for n in range(7)]
    assert isinstance(done[7].error, ValueError) and str(done[7].error) == "bad 7"


def test_cancel_keeps_running_tasks_and_terminate_unwinds_them(tmp_path):
    from deconv_cli.execution.executors import ProcessExecutor

    executor = ProcessExecutor(2)
    for n in range(2):
        executor.submit(_square, n)
    executor.cancel()  # nothing waits here any more except what the pool already has
    assert sorted(d.value for d in executor.completed()) == [0, 1]
    executor.close()

    executor = ProcessExecutor(2)
    for n in range(6):
        executor.submit(_slow_then_mark, str(tmp_path), n)
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("started*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(list(tmp_path.glob("started*"))) == 2
    start = time.monotonic()
    executor.terminate()
    executor.close()
    assert time.monotonic() - start < 10
    assert list(tmp_path.glob("started*")) == []  # both running tasks ran their finally blocks


def test_threads_are_split_between_jobs(monkeypatch):
    from deconv_cli.execution import executors

    monkeypatch.delenv("DECONV_THREADS", raising=False)
    monkeypatch.setattr(executors, "cpus", lambda: 8)
    assert executors.split_threads(None) == (8, 1)
    assert executors.split_threads(2) == (2, 4)
    assert executors.split_threads(3) == (3, 2)
    assert executors.split_threads(16) == (16, 1)
    monkeypatch.setenv("DECONV_THREADS", "3")
    assert executors.split_threads(2) == (2, 3)


def test_shared_weights_are_read_once_per_file_version(tmp_path, rng):
    from deconv_cli import tensor_io
    from deconv_cli.execution import batch

    np.save(tmp_path / "w.npy", rng.standard_normal((4, 2, 3, 3)).astype(np.float32))
    ref = tensor_io.parse_ref(str(tmp_path / "w.npy"))
    shared = batch.SharedTensors()
    first, header = shared.load(ref), shared.peek(ref)
    assert shared.load(ref) is first and shared.peek(ref) is header
    time.sleep(0.01)
    np.save(tmp_path / "w.npy", np.ones((4, 2, 5, 3), dtype=np.float32))
    second = shared.load(ref)
    assert second is not first and np.all(np.asarray(second) == 1)
    assert shared.peek(ref).shape == (4, 2, 5, 3)


def test_plans_are_cached_across_jobs():
    from deconv_cli.execution.job import plan

    one = plan("torch", {"stride": 2, "padding": [1, 1]}, (1, 8, 6, 6), (8, 4, 3, 3))
    assert plan("torch", {"stride": 2, "padding": [1, 1]}, (1, 8, 6, 6), (8, 4, 3, 3)) is one
    assert plan("torch", {"stride": 2, "padding": (1, 1)}, (1, 8, 6, 6), (8, 4, 3, 3)) is not one  # the spelling is kept
    assert plan("torch", {"stride": 2, "padding": 1}, (1, 8, 7, 6), (8, 4, 3, 3)).output_shape == (1, 4, 13, 11)  # a new shape, a new plan


class _Terminal:
    def __init__(self):
        self.text = []

    def write(self, text):
        self.text.append(text)
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return True


def test_progress_bar_on_a_terminal_only(monkeypatch):
    from deconv_cli.render.report import BatchProgress

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    terminal = _Terminal()
    progress = BatchProgress(terminal, show=True)
    progress.start(3)
    for status in ("ok", "failed", "ok"):
        progress.advance(status)
    progress.log("job 2 (line 2) failed: no")
    progress.close()
    drawn = "".join(terminal.text)
    assert "3/3" in drawn and "1 failed, 0 mismatched" in drawn and "job 2 (line 2) failed: no" in drawn
    quiet = _Terminal()
    progress = BatchProgress(quiet, show=False)
    progress.start(3)
    progress.advance("ok")
    progress.close()
    assert quiet.text == []


def test_the_journal_is_flushed_per_job_and_fsynced_at_most_once_an_interval(tmp_path, monkeypatch):
    """Every line is in the file as soon as it is written (a killed run loses nothing); fsyncs, which hold up
    file creation on ext4, come at most once per SYNC_INTERVAL_S and once more on close."""
    from deconv_cli.execution import batch

    monkeypatch.setattr(batch, "SYNC_INTERVAL_S", 30.0)
    journal = batch.Journal(str(tmp_path / "j.journal"))
    for i in range(200):
        journal.write([{"event": "done", "key": str(i)}])
        assert len((tmp_path / "j.journal").read_text().splitlines()) == i + 1
    time.sleep(0.2)
    assert journal.syncs == 1  # the first, then the interval holds the rest
    journal.close()
    assert journal.syncs == 2 and [r["key"] for r in journal.read()] == [str(i) for i in range(200)]


def test_a_worker_reads_each_input_into_one_reused_buffer_and_never_a_wrong_value(tmp_path):
    from deconv_cli import tensor_io
    from deconv_cli.execution import batch

    shared = batch.SharedTensors()
    arrays = {"a": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "b": -np.arange(24, dtype=np.float32).reshape(2, 3, 4),
              "big_endian": np.arange(24, dtype=">f4").reshape(2, 3, 4), "fortran": np.asfortranarray(np.ones((2, 3, 4), np.float32)),
              "other_shape": np.ones((3, 3), np.float32)}
    loaded = {}
    for name, array in arrays.items():
        np.save(tmp_path / f"{name}.npy", array)
        ref = tensor_io.parse_ref(str(tmp_path / f"{name}.npy"))
        loaded[name] = shared.load_input(ref, tensor_io.peek(ref))
        np.testing.assert_array_equal(loaded[name], array)
        assert loaded[name].dtype.isnative and loaded[name].flags.c_contiguous
    assert loaded["b"] is loaded["a"]  # the second job of that shape read into the first one's buffer
    assert loaded["big_endian"] is not loaded["a"] and loaded["fortran"] is not loaded["a"]  # those are converted
    assert loaded["other_shape"] is not loaded["a"] and loaded["other_shape"].shape == (3, 3)
    buffer = shared._scratch
    with h5py.File(tmp_path / "x.h5", "w") as f:  # a format that does not read into a buffer: none is made
        f["x"] = np.full((5, 5), 2.0, np.float32)
    ref = tensor_io.parse_ref(f"{tmp_path / 'x.h5'}:x")
    np.testing.assert_array_equal(shared.load_input(ref, tensor_io.peek(ref)), np.full((5, 5), 2.0))
    assert shared._scratch is buffer
