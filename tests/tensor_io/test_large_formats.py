"""Zarr stores and safetensors files as tensor references, and what `run` refuses up front when the
tensors do not fit the memory budget or the disk."""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections import namedtuple

import numpy as np
import pytest
from click.testing import CliRunner

from deconv_cli import tensor_io
from deconv_cli.cli import cli
from deconv_cli.execution import tiles


def invoke(*argv):
    return CliRunner().invoke(cli, list(argv), catch_exceptions=False)


@pytest.fixture
def folder(tmp_path, rng, monkeypatch):
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    for name, array in dict(x=x, w=w, b=b).items():
        np.save(tmp_path / f"{name}.npy", array)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------- zarr


def test_zarr_root_array_and_group_arrays_in_and_out(folder):
    import zarr

    x = np.load(folder / "x.npy")
    zarr.create_array(store=str(folder / "in.zarr"), name="data/x", shape=x.shape, dtype=x.dtype, chunks=(1, 3, 3, 5),
                      zarr_format=3)[...] = x
    zarr.create_array(store=str(folder / "v2.zarr"), shape=x.shape, dtype=x.dtype, zarr_format=2)[...] = x
    assert invoke("run", "x.npy", "w.npy", "--bias", "b.npy", "--set", "stride=2", "-o", "want.npy", "-q").exit_code == 0
    want = np.load(folder / "want.npy")
    for source, target in [("in.zarr:/data/x", "out.zarr"), ("v2.zarr", "out2.zarr:/results/y")]:
        result = invoke("run", source, "w.npy", "--bias", "b.npy", "--set", "stride=2", "-o", target, "-q")
        assert result.exit_code == 0, result.output
        got = tensor_io.load(tensor_io.parse_ref(target))
        assert got.tobytes() == want.tobytes()
    assert zarr.open(str(folder / "out.zarr"), mode="r").metadata.zarr_format == 3
    assert zarr.open_array(str(folder / "out2.zarr"), path="results/y", mode="r").metadata.zarr_format == 3
    assert not [n for n in os.listdir(folder) if n.startswith(".deconv-")]


def test_zarr_shapes_come_from_metadata_alone(folder):
    """`deconv shape` and `info` on a store whose chunks are gone: only zarr.json is read."""
    import zarr

    zarr.create_array(store=str(folder / "big.zarr"), name="vol", shape=(1, 3, 4000, 4000), dtype="float32",
                      chunks=(1, 3, 500, 500), zarr_format=3)[0, :, :500, :500] = 1
    shutil.rmtree(folder / "big.zarr" / "vol" / "c")  # no chunk left to read
    result = invoke("shape", "big.zarr:/vol", "w.npy", "--set", "stride=2", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["output_shape"] == [1, 2, 8001, 8001]
    result = invoke("info", "big.zarr", "--json")
    assert json.loads(result.stdout) == {"big.zarr": [{"name": "/vol", "shape": [1, 3, 4000, 4000], "dtype": "float32"}]}


def test_zarr_streamed_output_is_chunked_like_the_tiles(folder, monkeypatch):
    import zarr

    monkeypatch.setattr(tiles, "TILE_BYTES", 600)
    monkeypatch.setenv("DECONV_MEMORY_BUDGET", "2K")
    result = invoke("run", "x.npy", "w.npy", "--set", "stride=2", "-o", "y.zarr", "--json", "-q")
    assert result.exit_code == 0, result.output
    timings = json.loads(result.stdout)["timings"]
    array = zarr.open_array(str(folder / "y.zarr"), mode="r")
    assert array.shape == (2, 2, 13, 11)
    assert array.chunks[:2] == (1, 2) and array.chunks[2] < 13  # one sample, spatial row blocks
    assert timings["chunks"] == 2 * -(-13 // array.chunks[2]) * -(-11 // array.chunks[3])
    monkeypatch.delenv("DECONV_MEMORY_BUDGET")  # in memory: the same chunks, the same store
    assert invoke("run", "x.npy", "w.npy", "--set", "stride=2", "-o", "z.zarr", "-q").exit_code == 0
    assert zarr.open_array(str(folder / "z.zarr"), mode="r").chunks == array.chunks


def test_zarr_output_is_never_clobbered_without_force(folder):
    assert invoke("run", "x.npy", "w.npy", "-o", "y.zarr", "-q").exit_code == 0
    before = sorted(p.name for p in (folder / "y.zarr").iterdir())
    result = invoke("run", "x.npy", "w.npy", "--set", "stride=2", "-o", "y.zarr", "-q")
    assert result.exit_code == 1
    assert result.stderr == "Error: output y.zarr already exists. Pass --force to replace it.\n"
    assert sorted(p.name for p in (folder / "y.zarr").iterdir()) == before
    result = invoke("run", "x.npy", "w.npy", "--set", "stride=2", "-o", "y.zarr", "-q", "--force")
    assert result.exit_code == 0
    assert tensor_io.peek(tensor_io.parse_ref("y.zarr")).shape == (2, 2, 13, 11)
    assert not [n for n in os.listdir(folder) if n.startswith(".deconv-")]


def test_zarr_missing_array_names_what_is_there(folder):
    import zarr

    zarr.create_array(store=str(folder / "s.zarr"), name="a/x", shape=(1, 3, 2, 2), dtype="float32", zarr_format=3)
    result = invoke("run", "s.zarr:/a/y", "w.npy", "-o", "y.npy")
    assert result.exit_code == 1
    assert result.stderr == "Error: s.zarr has no array '/a/y'. It holds: /a/x.\n"


# ---------------------------------------------------------------- safetensors


def test_safetensors_inputs_by_name_with_header_only_shapes(folder):
    from safetensors.numpy import save_file

    x, w = np.load(folder / "x.npy"), np.load(folder / "w.npy")
    save_file({"x": x, "w": w, "other": np.zeros((2, 2), np.float16)}, str(folder / "m.safetensors"))
    result = invoke("info", "m.safetensors", "--json")
    assert json.loads(result.stdout) == {"m.safetensors": [
        {"name": "other", "shape": [2, 2], "dtype": "float16"},
        {"name": "w", "shape": [3, 2, 3, 3], "dtype": "float32"},
        {"name": "x", "shape": [2, 3, 6, 5], "dtype": "float32"},
    ]}
    assert invoke("run", "x.npy", "w.npy", "--set", "stride=2", "-o", "want.npy", "-q").exit_code == 0
    result = invoke("run", "m.safetensors:x", "m.safetensors:w", "--set", "stride=2", "-o", "y.npy", "-q")
    assert result.exit_code == 0, result.output
    assert np.load(folder / "y.npy").tobytes() == np.load(folder / "want.npy").tobytes()


def test_safetensors_window_reads_only_its_byte_ranges(folder, monkeypatch):
    """A window of a tensor is read run by run at its offsets, never the whole file."""
    from safetensors.numpy import save_file

    from deconv_cli.tensor_io import safetensors as st_format

    big = np.arange(4 * 50 * 60, dtype=np.float64).reshape(4, 50, 60)
    save_file({"a": np.ones(3, np.float32), "big": big}, str(folder / "t.safetensors"))
    Read = namedtuple("Read", "offset size")
    reads = []
    real_open = open

    class Spy:
        def __init__(self, f):
            self.f = f

        def seek(self, offset):
            self.at = offset
            return self.f.seek(offset)

        def readinto(self, buffer):
            reads.append(Read(self.at, len(buffer)))
            return self.f.readinto(buffer)

        def read(self, size):
            return self.f.read(size)

        def close(self):
            self.f.close()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(st_format, "open", lambda path, mode="r": Spy(real_open(path, mode)) if mode == "rb" else real_open(path, mode), raising=False)
    ref = tensor_io.parse_ref("t.safetensors:big")
    reader = tensor_io.open_slices(ref)
    window = reader[1:3, 10:12]
    reader.close()
    np.testing.assert_array_equal(window, big[1:3, 10:12])
    assert len(reads) == 2 and all(r.size == 2 * 60 * 8 for r in reads)  # two runs of two whole rows
    assert sum(r.size for r in reads) < big.nbytes // 10


def test_safetensors_bad_header(folder):
    (folder / "bad.safetensors").write_bytes(struct.pack("<Q", 10**6) + b"{}")
    result = invoke("info", "bad.safetensors")
    assert result.exit_code == 1
    assert result.stderr == "Error: bad.safetensors is not a valid .safetensors file (bad header). Re-save it with safetensors.\n"


# ---------------------------------------------------------------- refusals up front


@pytest.mark.parametrize("target, where", [("y.npz", ".npz"), ("-", "stdout")])
def test_outputs_that_cannot_stream_and_do_not_fit_are_refused(folder, monkeypatch, target, where):
    monkeypatch.setenv("DECONV_MEMORY_BUDGET", "1K")
    result = invoke("run", "x.npy", "w.npy", "--set", "stride=2", "-o", target, "-q")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: input + output need 2.9 KiB (output (2, 2, 13, 11) float32), more than the memory budget 1.0 KiB "
        f"(DECONV_MEMORY_BUDGET); {where} cannot be written in parts. Write the output to .npy, .h5, .zarr (they stream "
        "tile by tile), or raise DECONV_MEMORY_BUDGET to 3K if the machine has that memory.\n"
    )
    assert result.stdout == "" and sorted(os.listdir(folder)) == ["b.npy", "w.npy", "x.npy"]


def test_an_input_that_cannot_be_read_in_parts_and_does_not_fit_is_refused(folder, monkeypatch):
    np.savez(folder / "x.npz", x=np.load(folder / "x.npy"))
    monkeypatch.setattr(tiles, "TILE_BYTES", 600)
    monkeypatch.setenv("DECONV_MEMORY_BUDGET", "700")
    result = invoke("run", "x.npz:x", "w.npy", "--set", "stride=2", "-o", "y.npy", "-q")
    assert result.exit_code == 1
    assert result.stderr == ("Error: the input needs 720 B, more than the memory budget 700 B (DECONV_MEMORY_BUDGET), and "
                             ".npz cannot be read in parts. Save the input as .npy, .h5, .zarr, .safetensors, or raise "
                             "DECONV_MEMORY_BUDGET to 3K if the machine has that memory.\n")
    assert not (folder / "y.npy").exists()
    monkeypatch.setenv("DECONV_MEMORY_BUDGET", "2K")  # the input fits: the output streams
    assert invoke("run", "x.npz:x", "w.npy", "--set", "stride=2", "-o", "y.npy", "-q").exit_code == 0


def test_a_budget_below_one_tile_is_refused(folder, monkeypatch):
    """A budget under 16 MiB cuts finer tiles; one that cannot hold even the smallest is refused."""
    monkeypatch.setenv("DECONV_MEMORY_BUDGET", "64")
    result = invoke("run", "x.npy", "w.npy", "--set", "stride=2", "-o", "y.npy", "-q")
    assert result.exit_code == 1
    assert result.stderr == ("Error: the memory budget 64 B (DECONV_MEMORY_BUDGET) cannot hold one tile of this job (116 B "
                             "of input window and output). Raise DECONV_MEMORY_BUDGET to at least 1K.\n")
    assert not (folder / "y.npy").exists()


def test_an_output_larger_than_the_free_disk_is_refused(folder, monkeypatch):
    monkeypatch.setattr(tensor_io, "free_space", lambda folder: 1000)
    from deconv_cli.engines import numpy_engine

    monkeypatch.setattr(numpy_engine, "deconvolve", None)  # refused before any computing
    result = invoke("run", "x.npy", "w.npy", "--set", "stride=2", "-o", "y.h5", "-q")
    assert result.exit_code == 1
    assert result.stderr == (f"Error: not enough free space for y.h5: it needs 2.2 KiB, {folder} has 1000 bytes free. "
                             "Free some space or choose another --output.\n")
    assert not (folder / "y.h5").exists()
