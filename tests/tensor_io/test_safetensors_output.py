"""`-o out.safetensors:name`: the same rules as .npz (issue 22). Every file written here is read back with the
safetensors package's own reader, which refuses a header with holes, overlaps or a bad length."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("safetensors")
from safetensors import safe_open  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

from deconv_cli import tensor_io  # noqa: E402
from deconv_cli.cli import cli  # noqa: E402
from deconv_cli.tensor_io import safetensors as st_format  # noqa: E402

RUN = ("run", "x.npy", "w.npy", "--set", "stride=2", "--set", "padding=1", "-q")


def invoke(*argv):
    return CliRunner().invoke(cli, list(argv), catch_exceptions=False)


@pytest.fixture
def folder(tmp_path, rng, monkeypatch):
    np.save(tmp_path / "x.npy", rng.standard_normal((2, 3, 6, 5)).astype(np.float32))
    np.save(tmp_path / "w.npy", rng.standard_normal((3, 2, 3, 3)).astype(np.float32))
    monkeypatch.chdir(tmp_path)
    assert invoke(*RUN, "-o", "y.npy").exit_code == 0
    return tmp_path


@pytest.fixture
def model(folder):
    """A checkpoint as a porting script has it: other tensors of other dtypes, and metadata."""
    tensors = {"embed": np.arange(12, dtype=np.int64).reshape(3, 4), "scale": np.full((2, 3), 0.5, np.float16),
               "y": np.zeros(3, np.float32)}
    save_file(tensors, "m.safetensors", metadata={"format": "pt", "source": "unit test"})
    return tensors


def read_back(path: str) -> tuple[dict | None, dict]:
    with safe_open(path, "np") as f:
        return f.metadata(), {name: f.get_tensor(name) for name in f.keys()}


def test_a_new_file_holds_the_output_under_its_name(folder):
    assert invoke(*RUN, "-o", "out.safetensors:y").exit_code == 0
    metadata, tensors = read_back("out.safetensors")
    assert metadata is None and list(tensors) == ["y"]
    np.testing.assert_array_equal(tensors["y"], np.load("y.npy"))
    assert tensors["y"].dtype == np.float32
    (length,) = struct.unpack("<Q", (folder / "out.safetensors").read_bytes()[:8])
    assert length % 8 == 0  # padded as the safetensors package pads it


def test_no_name_writes_output_as_npz_does(folder):
    assert invoke(*RUN, "-o", "out.safetensors").exit_code == 0
    assert list(load_file("out.safetensors")) == ["output"]


def test_other_tensors_and_metadata_are_kept(model):
    assert invoke(*RUN, "-o", "m.safetensors:deconv").exit_code == 0
    metadata, tensors = read_back("m.safetensors")
    assert metadata == {"format": "pt", "source": "unit test"}
    assert sorted(tensors) == ["deconv", "embed", "scale", "y"]
    for name, array in model.items():
        np.testing.assert_array_equal(tensors[name], array)
        assert tensors[name].dtype == array.dtype
    np.testing.assert_array_equal(tensors["deconv"], np.load("y.npy"))


def test_an_existing_name_needs_force_and_force_loses_nothing_else(model, folder):
    before = (folder / "m.safetensors").read_bytes()
    result = invoke(*RUN, "-o", "m.safetensors:y")
    assert result.exit_code == 1
    assert result.stderr == "Error: m.safetensors already holds an array 'y'. Pass --force to replace it.\n"
    assert (folder / "m.safetensors").read_bytes() == before
    os.chmod("m.safetensors", 0o640)
    assert invoke(*RUN, "-o", "m.safetensors:y", "--force").exit_code == 0
    metadata, tensors = read_back("m.safetensors")
    assert metadata == {"format": "pt", "source": "unit test"} and sorted(tensors) == ["embed", "scale", "y"]
    np.testing.assert_array_equal(tensors["y"], np.load("y.npy"))
    np.testing.assert_array_equal(tensors["embed"], model["embed"])
    assert os.stat("m.safetensors").st_mode & 0o777 == 0o640
    assert sorted(os.listdir(folder)) == ["m.safetensors", "w.npy", "x.npy", "y.npy"]


def test_the_metadata_key_is_not_a_tensor_name(folder):
    result = invoke(*RUN, "-o", "out.safetensors:__metadata__")
    assert result.exit_code == 2
    assert result.stderr == ("Error: 'out.safetensors:__metadata__': '__metadata__' is the file's metadata, not a tensor "
                             "name. Choose another name (e.g. :y).\n")
    assert not os.path.exists("out.safetensors")


def test_a_damaged_file_is_refused_and_replaced_whole_only_with_force(folder):
    (folder / "bad.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    result = invoke(*RUN, "-o", "bad.safetensors:y")
    assert result.exit_code == 1
    assert result.stderr == "Error: bad.safetensors is not a valid .safetensors file (bad header). Re-save it with safetensors.\n"
    assert invoke(*RUN, "-o", "bad.safetensors:y", "--force").exit_code == 0
    assert list(load_file("bad.safetensors")) == ["y"]


def test_an_output_over_the_memory_budget_is_refused_up_front(model, folder, monkeypatch):
    monkeypatch.setenv("DECONV_MEMORY_BUDGET", "1K")
    before = (folder / "m.safetensors").read_bytes()
    result = invoke(*RUN, "-o", "m.safetensors:deconv")
    assert result.exit_code == 1
    assert ".safetensors cannot be written in parts" in result.stderr
    assert result.stderr.startswith("Error: input + output need ") and result.stderr.count("\n") == 1
    assert (folder / "m.safetensors").read_bytes() == before
    assert sorted(os.listdir(folder)) == ["m.safetensors", "w.npy", "x.npy", "y.npy"]


def test_a_failed_write_leaves_the_file_and_no_temporary(model, folder, monkeypatch):
    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(st_format, "_copy", fail)
    before = (folder / "m.safetensors").read_bytes()
    result = invoke(*RUN, "-o", "m.safetensors:deconv")
    assert result.exit_code == 1
    assert result.stderr == "Error: cannot write m.safetensors: No space left on device. Check free space and permissions.\n"
    assert (folder / "m.safetensors").read_bytes() == before
    assert sorted(os.listdir(folder)) == ["m.safetensors", "w.npy", "x.npy", "y.npy"]


@pytest.mark.parametrize("dtype", [">f8", "<f2", ">f4"])
def test_any_byte_order_is_written_little_endian(folder, dtype):
    array = np.arange(24, dtype=dtype).reshape(2, 3, 4)[:, ::2]  # not C-contiguous either
    tensor_io.save(tensor_io.parse_ref("a.safetensors:a"), array, force=False)
    back = load_file("a.safetensors")["a"]
    np.testing.assert_array_equal(back, array)
    assert back.dtype == array.dtype.newbyteorder("<")
    raw = (folder / "a.safetensors").read_bytes()
    header = json.loads(raw[8 : 8 + struct.unpack("<Q", raw[:8])[0]])
    assert header["a"]["dtype"] == {"f8": "F64", "f2": "F16", "f4": "F32"}[dtype[1:]]


def test_batch_outputs_in_every_container_format_make_only_their_folder(folder):
    """The manifest splits a reference at the same extensions as tensor_io: `out/y.zarr:/g/a` once made a
    stray folder `out/y.zarr:` next to the store."""
    jobs = [{"input": "x.npy", "weight": "w.npy", "output": output, "set": {"stride": 2, "padding": 1}}
            for output in ("out/m.safetensors:y", "out/y.zarr:/g/a")]
    (folder / "jobs.jsonl").write_text("".join(json.dumps(job) + "\n" for job in jobs))
    result = invoke("batch", "jobs.jsonl", "--jobs", "1", "-q")
    assert result.exit_code == 0, result.stderr
    assert sorted(os.listdir(folder / "out")) == ["m.safetensors", "y.zarr"]
    np.testing.assert_array_equal(load_file("out/m.safetensors")["y"], np.load("y.npy"))


def test_tensors_numpy_cannot_hold_are_kept_byte_for_byte(folder):
    """A bf16 tensor (no numpy dtype) is copied as bytes; the package's own parser reads the result."""
    import safetensors

    raw = bytes(range(6))
    header = json.dumps({"__metadata__": {"k": "v"}, "bf": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}})
    (folder / "m.safetensors").write_bytes(struct.pack("<Q", len(header)) + header.encode() + raw)
    assert invoke(*RUN, "-o", "m.safetensors:y").exit_code == 0
    tensors = dict(safetensors.deserialize((folder / "m.safetensors").read_bytes()))
    assert tensors["bf"]["dtype"].lower() in ("bf16", "bfloat16") and tensors["bf"]["shape"] == [3]
    assert bytes(tensors["bf"]["data"]) == raw
    assert np.frombuffer(bytes(tensors["y"]["data"]), "<f4").reshape(tensors["y"]["shape"]).tolist() == np.load("y.npy").tolist()
    with safe_open("m.safetensors", "np") as f:
        assert f.metadata() == {"k": "v"}


def test_every_tensor_starts_at_a_multiple_of_its_item_size(folder):
    """As the safetensors package lays a file out (widest dtype first): a float64 output after an odd-sized
    float16 tensor would otherwise start mid-word, which memory-mapping readers refuse."""
    save_file({"odd": np.ones(3, np.float16), "b": np.ones(1, np.int8)}, "m.safetensors")
    assert invoke(*RUN, "--cast", "float64", "-o", "m.safetensors:y").exit_code == 0
    raw = (folder / "m.safetensors").read_bytes()
    length = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + length])
    sizes = {"F64": 8, "F16": 2, "I8": 1}
    assert [header[n]["dtype"] for n in ("y", "odd", "b")] == ["F64", "F16", "I8"]
    assert all(header[n]["data_offsets"][0] % sizes[header[n]["dtype"]] == 0 for n in ("y", "odd", "b"))
    assert (8 + length) % 8 == 0
    np.testing.assert_array_equal(load_file("m.safetensors")["odd"], np.ones(3, np.float16))
