"""Tensor files: references, header-only shapes, loads, atomic saves, and every way a file can be bad."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from deconv_cli import tensor_io
from deconv_cli.core.errors import TensorFileError
from deconv_cli.tensor_io import Ref, parse_ref


@pytest.mark.parametrize(
    "text, ref",
    [
        ("x.npy", Ref("x.npy")),
        ("x.npz:w", Ref("x.npz", "w")),
        ("d/x.h5:/group/w", Ref("d/x.h5", "/group/w")),
        ("c:/data/x.npz:w", Ref("c:/data/x.npz", "w")),
        ("odd:name.npz", Ref("odd:name.npz")),
        ("a.npz.d/b.npz:x", Ref("a.npz.d/b.npz", "x")),
        ("-", Ref("-")),
    ],
)
def test_parse_ref(text, ref):
    assert parse_ref(text) == ref


def test_unknown_extension():
    with pytest.raises(TensorFileError, match="has no known tensor extension"):
        parse_ref("x.txt")


def test_npy_header_shape_and_dtype_without_loading(tmp_path):
    for dtype in ("float16", "float32", "float64", "int64", "bool"):
        path = tmp_path / f"{dtype}.npy"
        np.save(path, np.zeros((2, 3, 4), dtype=dtype))
        assert tensor_io.peek(parse_ref(str(path))) == tensor_io.ArrayInfo(dtype, (2, 3, 4), dtype)
    fortran = tmp_path / "f.npy"
    np.save(fortran, np.asfortranarray(np.zeros((3, 5), dtype=np.float32)))
    assert tensor_io.peek(parse_ref(str(fortran))).shape == (3, 5)


def test_npz_and_h5_names(tmp_path):
    npz = tmp_path / "t.npz"
    np.savez(npz, x=np.zeros((1, 2)), w=np.ones((3,), dtype=np.float32))
    assert [i.name for i in tensor_io.describe(parse_ref(str(npz)))] == ["x", "w"]
    assert tensor_io.peek(parse_ref(f"{npz}:w")).shape == (3,)
    with pytest.raises(TensorFileError) as err:
        tensor_io.peek(parse_ref(str(npz)))
    assert str(err.value) == f"{npz} holds 2 arrays (x, w). Name one, e.g. {npz}:x."
    with pytest.raises(TensorFileError) as err:
        tensor_io.peek(parse_ref(f"{npz}:y"))
    assert str(err.value) == f"{npz} has no array 'y'. It holds: x, w."

    h5 = tmp_path / "t.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("g/x", data=np.zeros((2, 3), dtype=np.float32))
    assert tensor_io.peek(parse_ref(str(h5))) == tensor_io.ArrayInfo("/g/x", (2, 3), "float32")
    assert tensor_io.load(parse_ref(f"{h5}:/g/x")).shape == (2, 3)
    with pytest.raises(TensorFileError, match="has no array 'nope'"):
        tensor_io.peek(parse_ref(f"{h5}:nope"))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is not a valid .npy file (bad header). Re-save it with numpy.save."),
        (b"hello world, not numpy", "is not a valid .npy file (bad header). Re-save it with numpy.save."),
        (b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'", "is not a valid .npy file (bad header)."),
    ],
)
def test_corrupt_npy(tmp_path, content, message):
    path = tmp_path / "bad.npy"
    path.write_bytes(content)
    with pytest.raises(TensorFileError) as err:
        tensor_io.peek(parse_ref(str(path)))
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_truncated_npy_fails_on_load(tmp_path):
    path = tmp_path / "cut.npy"
    np.save(path, np.zeros((100, 100), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(TensorFileError, match="The file is truncated or corrupt"):
        tensor_io.load(parse_ref(str(path)))


def test_pickled_arrays_are_never_loaded(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(TensorFileError, match="holds Python objects"):
        tensor_io.peek(parse_ref(str(path)))


def test_not_hdf5_and_not_zip(tmp_path):
    fake = tmp_path / "x.h5"
    fake.write_bytes(b"plain text")
    with pytest.raises(TensorFileError, match="is not a readable HDF5 file"):
        tensor_io.peek(parse_ref(str(fake)))
    fake = tmp_path / "x.npz"
    fake.write_bytes(b"plain text")
    with pytest.raises(TensorFileError, match=r"is not a valid .npz file \(not a zip archive\)"):
        tensor_io.peek(parse_ref(str(fake)))
    with pytest.raises(TensorFileError, match="no such file"):
        tensor_io.peek(parse_ref(str(tmp_path / "missing.npy")))


@pytest.mark.parametrize("name", ["y.npy", "y.npz", "y.npz:out", "y.h5", "y.h5:/a/b"])
def test_save_round_trip_is_atomic(tmp_path, name):
    ref = parse_ref(str(tmp_path / name))
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensor_io.save(ref, data, force=False)
    np.testing.assert_array_equal(tensor_io.load(ref), data)
    assert sorted(os.listdir(tmp_path)) == [ref.path.rsplit("/", 1)[1]]


def test_no_clobber_without_force(tmp_path):
    path = tmp_path / "y.npy"
    path.write_bytes(b"precious")
    with pytest.raises(TensorFileError) as err:
        tensor_io.save(parse_ref(str(path)), np.zeros(2), force=False)
    assert str(err.value) == f"output {path} already exists. Pass --force to replace it."
    assert path.read_bytes() == b"precious"
    tensor_io.save(parse_ref(str(path)), np.zeros(2), force=True)
    assert np.load(path).shape == (2,)


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def broken_save(f, array, allow_pickle=False):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", broken_save)
    path = tmp_path / "y.npy"
    with pytest.raises(TensorFileError, match="No space left on device"):
        tensor_io.save(parse_ref(str(path)), np.zeros(2), force=False)
    assert os.listdir(tmp_path) == []


def test_unwritable_targets(tmp_path):
    with pytest.raises(TensorFileError, match="output folder .* does not exist"):
        tensor_io.check_writable(parse_ref(str(tmp_path / "no" / "y.npy")), force=False)
    with pytest.raises(TensorFileError, match="a .npy file holds one unnamed array. Drop the ':name'"):
        tensor_io.check_writable(parse_ref(str(tmp_path / "y.npy:name")), force=False)
    (tmp_path / "d.npy").mkdir()
    with pytest.raises(TensorFileError, match="is a directory"):
        tensor_io.check_writable(parse_ref(str(tmp_path / "d.npy")), force=False)


@pytest.mark.parametrize("name", ["x.npy", "x.h5:/d"])
def test_windows_read_and_write_like_numpy_slices(tmp_path, name):
    """Readers and stream writers take N-d windows (tiles), not only batch slices, in any order."""
    rng = np.random.default_rng(0)
    data = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    ref = parse_ref(str(tmp_path / name))
    tensor_io.save(ref, data, force=False)
    source = tensor_io.open_slices(ref)
    windows = [(slice(1, 3),), (slice(0, 3), slice(1, 2), slice(2, 5), slice(0, 6)), (slice(2, 3), slice(0, 4), slice(4, 5)),
               (slice(0, 1), slice(3, 4), slice(1, 4), slice(2, 5)), (slice(0, 0),)]
    try:
        for index in windows:
            np.testing.assert_array_equal(source[index], data[index])
    finally:
        source.close()
    out = parse_ref(str(tmp_path / ("y" + name[1:])))
    with tensor_io.StreamWriter(out, data.shape, data.dtype, force=False) as sink:
        for h in (slice(3, 5), slice(0, 3)):  # spatial tiles, out of order
            for n in (slice(2, 3), slice(0, 2)):
                sink[n, slice(None), h] = data[n, :, h]
        sink.commit()
    np.testing.assert_array_equal(tensor_io.load(out), data)


# ---------------------------------------------------------------- fast paths: one header parse, one rename


@pytest.mark.parametrize("shape", [(), (0,), (5,), (1, 8, 16, 16), (3, 0, 2), (10**12, 2)])
@pytest.mark.parametrize("descr", ["<f4", ">f8", "<f2", "|b1", "<i8"])
@pytest.mark.parametrize("fortran", [False, True])
def test_numpys_own_headers_take_the_regular_expression_and_read_as_literal_eval_does(shape, descr, fortran):
    import ast
    import io

    from deconv_cli.tensor_io import npy

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": fortran, "shape": shape})
    text = buf.getvalue()[10:].decode("latin1")
    assert npy._NUMPY_HEADER.match(text), text
    assert npy._literal(text) == ast.literal_eval(text)


@pytest.mark.parametrize("text", [
    "{'shape': (2, 3), 'descr': '<f4', 'fortran_order': False}",  # another writer's key order
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,3,), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }",
])
def test_other_headers_still_read_by_literal_eval(text):
    import ast

    from deconv_cli.tensor_io import npy

    assert npy._NUMPY_HEADER.match(text) is None and npy._literal(text) == ast.literal_eval(text)


def test_load_with_the_peeked_header_refuses_a_file_that_changed_shape_meanwhile(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((2, 3), np.float32))
    ref = parse_ref(str(path))
    info = tensor_io.peek(ref)
    assert tensor_io.load(ref, info).shape == (2, 3)
    np.save(path, np.zeros((4, 3), np.float32))
    with pytest.raises(TensorFileError, match=r"changed while deconv was reading it \(shape \(2, 3\), now \(4, 3\)\)"):
        tensor_io.load(ref, info)


def test_a_new_output_is_claimed_by_one_rename_that_never_replaces(tmp_path):
    from deconv_cli.tensor_io import _common

    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    with pytest.raises(FileExistsError):
        _common._rename_noreplace(str(tmp_path / "a"), str(tmp_path / "b"))
    assert (tmp_path / "b").read_bytes() == b"b" and (tmp_path / "a").exists()
    assert _common._rename_noreplace(str(tmp_path / "a"), str(tmp_path / "c")) is True  # Linux, ext4/tmpfs
    assert sorted(os.listdir(tmp_path)) == ["b", "c"]


@pytest.mark.parametrize("claim", ["renameat2", "link"])
def test_save_leaves_only_the_output_whichever_way_it_claims_the_name(tmp_path, monkeypatch, claim):
    from deconv_cli.tensor_io import _common

    if claim == "link":
        monkeypatch.setattr(_common, "_RENAMEAT2", [None])
    out = parse_ref(str(tmp_path / "y.npy"))
    tensor_io.save(out, np.arange(6, dtype=np.float32).reshape(2, 3), force=False)
    with pytest.raises(TensorFileError, match="already exists"):
        tensor_io.save(out, np.zeros(2, np.float32), force=False)
    assert os.listdir(tmp_path) == ["y.npy"] and np.load(tmp_path / "y.npy").tolist() == [[0, 1, 2], [3, 4, 5]]
