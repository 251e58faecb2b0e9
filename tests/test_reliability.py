"""Nothing lost on the newer surfaces (issue 20): manifests as spreadsheets and editors save them, damaged
journals, hostile manifest lines, two batches at once, Zarr stores written one array at a time, containers
written by two runs at once, and runs killed (SIGKILL) while writing. Real files and real processes."""

from __future__ import annotations

import json
import subprocess
import time

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
