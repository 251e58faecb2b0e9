"""`deconv batch` splits every tensor reference the way `deconv run` does (`tensor_io.parse_ref`): a changed
input of any format is noticed by `--resume`, and an output inside a store makes no stray folder."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import zarr
from test_batch import expected, invoke, summary, write_jsonl

from deconv_cli import tensor_io

# the input's reference as the manifest writes it (relative to the manifest's folder)
INPUTS = ["x.npy", "x.npz:x", "x.h5:/g/x", "x.zarr", "x.zarr:/g/x", "x.safetensors:x"]


def save(folder, reference, array):
    ref = tensor_io.parse_ref(str(folder / reference))
    if ref.kind == ".safetensors":  # read-only here: written by its own package
        from safetensors.numpy import save_file

        save_file({ref.key: array}, ref.path)
        return
    tensor_io.save(ref, array, force=True)


def records(result) -> dict:
    return {r["id"]: r for r in map(json.loads, result.stdout.splitlines())}


@pytest.mark.parametrize("reference", INPUTS)
def test_resume_reruns_a_job_whose_input_changed_in_every_format(tmp_path, rng, monkeypatch, reference):
    monkeypatch.chdir(tmp_path)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    np.save(tmp_path / "w.npy", w)
    save(tmp_path, reference, rng.standard_normal((1, 8, 6, 6)).astype(np.float32))
    np.save(tmp_path / "x_other.npy", rng.standard_normal((1, 8, 6, 6)).astype(np.float32))
    write_jsonl(tmp_path / "jobs.jsonl", [
        {"input": reference, "weight": "w.npy", "output": "out/y.npy", "set": {"stride": 2, "padding": 1}},
        {"input": "x_other.npy", "weight": "w.npy", "output": "out/z.npy", "set": {"stride": 2, "padding": 1}}])
    assert invoke("jobs.jsonl", "-j", "1").exit_code == 0
    unchanged = invoke("jobs.jsonl", "-j", "1", "--resume", "--json")
    assert [r["status"] for r in records(unchanged).values()] == ["skipped", "skipped"]

    time.sleep(0.05)  # a later modification time on any file system clock
    x = rng.standard_normal((1, 8, 6, 6)).astype(np.float32)  # same shape and dtype: often the same size
    save(tmp_path, reference, x)
    result = invoke("jobs.jsonl", "-j", "1", "--resume", "--json")
    assert result.exit_code == 0, result.output
    assert {i: r["status"] for i, r in records(result).items()} == {1: "ok", 2: "skipped"}
    assert summary(result.stderr) == (1, 0, 0, 1)
    np.testing.assert_allclose(np.load(tmp_path / "out/y.npy"), expected(x, w), rtol=1e-5, atol=1e-5)


def test_resume_notices_a_zarr_chunk_rewritten_in_place(tmp_path, rng, monkeypatch):
    monkeypatch.chdir(tmp_path)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    np.save(tmp_path / "w.npy", w)
    x = rng.standard_normal((1, 8, 6, 6)).astype(np.float32)
    save(tmp_path, "x.zarr:/g/x", x)
    write_jsonl(tmp_path / "jobs.jsonl", [{"input": "x.zarr:/g/x", "weight": "w.npy", "output": "out/y.npy",
                                           "set": {"stride": 2, "padding": 1}}])
    assert invoke("jobs.jsonl", "-j", "1").exit_code == 0
    time.sleep(0.05)
    x[0, 0, 0, 0] += 1.0
    zarr.open_array(str(tmp_path / "x.zarr"), path="g/x", mode="r+")[0, 0, 0, 0] = x[0, 0, 0, 0]  # one chunk
    result = invoke("jobs.jsonl", "-j", "1", "--resume", "--json")
    assert [r["status"] for r in records(result).values()] == ["ok"]
    np.testing.assert_allclose(np.load(tmp_path / "out/y.npy"), expected(x, w), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("output", ["out/y.zarr:/g/y", "out/y.h5:/g/y", "out/y.npz:y"])
def test_an_output_with_an_array_name_makes_only_its_own_file(tmp_path, rng, monkeypatch, output):
    monkeypatch.chdir(tmp_path)
    x = rng.standard_normal((1, 8, 6, 6)).astype(np.float32)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    write_jsonl(tmp_path / "jobs.jsonl", [{"input": "x.npy", "weight": "w.npy", "output": output,
                                           "set": {"stride": 2, "padding": 1}}])
    result = invoke("jobs.jsonl", "-j", "1")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [output.split(":")[0].split("/")[1]]
    assert not any(":" in p.name for p in tmp_path.rglob("*"))
    got = tensor_io.load(tensor_io.parse_ref(str(tmp_path / output)))
    np.testing.assert_allclose(np.asarray(got), expected(x, w), rtol=1e-5, atol=1e-5)
    # and --resume finds that output where the job wrote it
    again = invoke("jobs.jsonl", "-j", "1", "--resume")
    assert summary(again.stderr) == (0, 0, 0, 1)
