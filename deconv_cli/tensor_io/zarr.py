"""``.zarr``: a Zarr store (a folder): ``x.zarr`` is its root array, ``x.zarr:/group/array`` an array inside.
Reads Zarr v2 and v3, writes v3, through the ``zarr`` package (the ``zarr`` extra), imported on first use.

Shapes come from the store's metadata (``zarr.json`` / ``.zarray``), never from chunks. Windows are read
and written as array slices; a streamed output is chunked like the tiles that write it, so each tile
writes whole chunks and tiles can be written concurrently (Dask workers). The temporary store is a
folder next to OUT that becomes OUT by one rename.
"""

from __future__ import annotations

import os

from ..core.errors import TensorFileError
from ._common import ArrayInfo, Ref, missing

STREAMS = True
CHUNKED = True  # open_writer takes chunks=


def _zarr():
    try:
        import zarr
    except ImportError:
        raise TensorFileError(
            "the zarr package is not installed, so .zarr stores cannot be read or written",
            "pip install 'deconv-cli[zarr]'",
        ) from None
    return zarr


def _one_at_a_time():
    """Chunks encoded and decoded one at a time: zarr's default (10 at once) holds ~10 chunk copies, which
    the memory budget does not count (measured: 1 at a time peaks 30 MB lower on a 256 MiB output)."""
    return _zarr().config.set({"async.concurrency": 1})


def _open(ref: Ref):
    zarr = _zarr()
    if not os.path.exists(ref.path):
        raise FileNotFoundError(ref.path)
    try:
        return zarr.open(ref.path, mode="r")
    except (zarr.errors.NodeTypeValidationError, zarr.errors.GroupNotFoundError, ValueError, KeyError) as exc:
        raise TensorFileError(f"{ref.path} is not a readable Zarr store ({exc})", "check the path") from None


def _arrays(node) -> dict[str, object]:
    """'/path' -> array for every array in a group (or {'': array} for a root array)."""
    if hasattr(node, "shape"):
        return {"": node}
    return {"/" + name: obj for name, obj in node.members(max_depth=None) if hasattr(obj, "shape")}


def _select(ref: Ref):
    node = _open(ref)
    arrays = _arrays(node)
    if ref.key is None:
        return arrays
    key = "/" + ref.key.strip("/")
    if key not in arrays:
        raise missing(ref, ref.key, [n for n in arrays if n])
    return {key: arrays[key]}


def describe(ref: Ref) -> list[ArrayInfo]:
    infos = []
    for name, array in _select(ref).items():
        infos.append(ArrayInfo(name or os.path.splitext(os.path.basename(ref.path.rstrip("/")))[0],
                               tuple(int(v) for v in array.shape), str(array.dtype)))
    return infos


def _one(ref: Ref, info: ArrayInfo):
    arrays = _select(ref)
    return arrays[info.name] if info.name in arrays else next(iter(arrays.values()))


def load(ref: Ref, info: ArrayInfo):
    return _one(ref, info)[...]


class Reader:
    def __init__(self, ref: Ref, info: ArrayInfo):
        self._data = _one(ref, info)
        self.shape, self.dtype = tuple(self._data.shape), self._data.dtype

    def __getitem__(self, index):
        import numpy as np

        with _one_at_a_time():
            return np.ascontiguousarray(self._data[index])

    def close(self) -> None:
        self._data = None


def open_reader(ref: Ref, info: ArrayInfo) -> Reader:
    return Reader(ref, info)


def create(ref: Ref, tmp: str, shape, dtype, chunks=None):
    """A new v3 array in the temporary store ``tmp`` (at ``ref.key``, or the root)."""
    name = ref.key.strip("/") if ref.key else None
    kwargs = {"chunks": tuple(int(c) for c in chunks)} if chunks else {}
    return _zarr().create_array(store=tmp, name=name, shape=tuple(shape), dtype=dtype, zarr_format=3, **kwargs)


class Writer:
    def __init__(self, ref: Ref, tmp: str, shape, dtype, chunks=None):
        self._data = create(ref, tmp, shape, dtype, chunks)

    def __setitem__(self, index, value) -> None:
        with _one_at_a_time():
            self._data[index] = value

    def close(self) -> None:
        self._data = None


def open_writer(ref: Ref, tmp: str, shape, dtype, chunks=None) -> Writer:
    return Writer(ref, tmp, shape, dtype, chunks)


def write(ref: Ref, tmp: str, array, chunks=None) -> None:
    with _one_at_a_time():
        create(ref, tmp, array.shape, array.dtype, chunks)[...] = array
