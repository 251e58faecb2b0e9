"""``.zarr``: a Zarr store (a folder): ``x.zarr`` is its root array, ``x.zarr:/group/array`` an array inside.
Reads Zarr v2 and v3, writes v3 (v2 into an existing v2 store), through the ``zarr`` package (the ``zarr``
extra), imported on first use.

Shapes come from the store's metadata (``zarr.json`` / ``.zarray``), never from chunks. Windows are read
and written as array slices; a streamed output is chunked like the tiles that write it, so each tile
writes whole chunks and tiles can be written concurrently (Dask workers).

Writing: the array is made in a temporary store next to OUT, at the same path inside it. A new store, or
a root array, becomes OUT by one rename. An array into an existing store: the topmost folder of its path
that the store lacks moves in by one rename (a new group with it), or, with --force, the array's folder
swaps places with the old one in one step; every other array and group of the store is left alone.
"""

from __future__ import annotations

import contextlib
import os

from ..core.errors import TensorFileError
from ._common import ArrayInfo, BadReference, Ref, discard, missing, move_folder

STREAMS = True
CHUNKED = True  # open_writer takes chunks=
CONTAINER = True  # arrays are added to an existing store, one at a time


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


@contextlib.contextmanager
def _quiet():
    """Without zarr's notice that consolidated v3 metadata is not in the specification: the user did not ask."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        yield


def _open(ref: Ref):
    zarr = _zarr()
    if not os.path.exists(ref.path):
        raise FileNotFoundError(ref.path)
    try:
        with _quiet():
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


def _format(store: str) -> int:
    """The Zarr format of an existing store (2 or 3), from its root metadata."""
    return 2 if any(os.path.exists(os.path.join(store, n)) for n in (".zgroup", ".zarray")) else 3


def _node(path: str) -> str | None:
    """'array', 'group' or None: what the folder ``path`` of a store holds, from its metadata files alone."""
    import json

    if os.path.isfile(os.path.join(path, ".zarray")):
        return "array"
    if os.path.isfile(os.path.join(path, ".zgroup")):
        return "group"
    try:
        with open(os.path.join(path, "zarr.json"), "rb") as f:
            kind = json.loads(f.read()).get("node_type")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if kind in ("array", "group") else None


def _parts(ref: Ref) -> list[str]:
    return ref.key.strip("/").split("/") if ref.key else []


def check_name(ref: Ref) -> None:
    """An output array path: no '.', '..' or empty parts, no name Zarr reserves ('__...') or deconv's temporary
    names use; in an existing store, not a group (--force replaces an array, never a group of them), not
    under an array, and the store must be one (a folder of other things is never written into or replaced)."""
    parts = _parts(ref)
    if ref.key is not None and (not parts or any(p in (".", "..", "") or p.startswith(("__", ".deconv-")) for p in parts)):
        raise BadReference(f"'{ref}' does not name an array", f"name one, e.g. {ref.path}:/y")
    if not os.path.isdir(ref.path):
        return
    root = _node(ref.path)
    if root is None and os.listdir(ref.path):
        raise TensorFileError(f"{ref.path} is a folder but not a Zarr store", "choose another --output")
    if root == "group" and not parts:
        raise TensorFileError(f"{ref.path} is a group of arrays, not an array", f"name an array inside it, e.g. {ref.path}:/y")
    if root == "array" and parts:
        raise TensorFileError(f"{ref.path} is an array, so it cannot hold /{'/'.join(parts)}", "write to another store")
    for depth in range(1, len(parts) + 1):
        path = os.path.join(ref.path, *parts[:depth])
        node = _node(path) if os.path.isdir(path) else None
        where = f"{ref.path}:/{'/'.join(parts[:depth])}"
        if node == "group" and depth == len(parts):
            raise TensorFileError(f"{where} is a group of arrays, not an array", "name an array inside it")
        if node == "array" and depth < len(parts):
            raise TensorFileError(f"{where} is an array, so it cannot hold {ref.key}", "choose another name")
        if node is None and os.path.lexists(path):
            if depth == len(parts) or not os.path.isdir(path):
                raise TensorFileError(f"{where} exists but is not a Zarr array or group", "choose another name")


def holds(ref: Ref) -> bool:
    """Whether the array OUT names is already there (for the root array: whether the store is)."""
    parts = _parts(ref)
    return os.path.lexists(os.path.join(ref.path, *parts)) if parts else os.path.lexists(ref.path)


def create(ref: Ref, tmp: str, shape, dtype, chunks=None, base: str | None = None):
    """A new array in the temporary store ``tmp`` (at ``ref.key``, or the root): v3, or the format of ``base``
    (the existing store it goes into)."""
    name = ref.key.strip("/") if ref.key else None
    kwargs = {"chunks": tuple(int(c) for c in chunks)} if chunks else {}
    version = 3 if base is None or not ref.key else _format(base)
    return _zarr().create_array(store=tmp, name=name, shape=tuple(shape), dtype=dtype, zarr_format=version, **kwargs)


class Writer:
    def __init__(self, ref: Ref, tmp: str, shape, dtype, chunks=None, base: str | None = None):
        self._data = create(ref, tmp, shape, dtype, chunks, base)

    def __setitem__(self, index, value) -> None:
        with _one_at_a_time():
            self._data[index] = value

    def close(self) -> None:
        self._data = None


def open_writer(ref: Ref, tmp: str, shape, dtype, chunks=None, base: str | None = None) -> Writer:
    return Writer(ref, tmp, shape, dtype, chunks, base)


def write(ref: Ref, tmp: str, array, chunks=None, base: str | None = None) -> None:
    with _one_at_a_time():
        create(ref, tmp, array.shape, array.dtype, chunks, base)[...] = array


def commit(tmp: str, ref: Ref, *, replace: bool) -> None:
    """Put the array made in the temporary store ``tmp`` into OUT (see the module docstring)."""
    parts = _parts(ref)
    if not parts or not os.path.isdir(ref.path):  # a new store, or a root array: the whole store
        _move(tmp, ref.path, ref, replace=replace)
        discard(tmp)
        return
    depth = next((d for d in range(1, len(parts) + 1) if not os.path.lexists(os.path.join(ref.path, *parts[:d]))), len(parts))
    source, target = os.path.join(tmp, *parts[:depth]), os.path.join(ref.path, *parts[:depth])
    aside = os.path.join(os.path.dirname(tmp), f"{os.path.basename(tmp)}.old")
    _move(source, target, ref, replace=replace, aside=aside)
    discard(tmp)  # what is left of it: its root metadata, or the old array after a swap
    if _consolidated(ref.path):  # readers that trust it would not see the new array: list it there too
        with _quiet():
            _zarr().consolidate_metadata(ref.path)  # zarr writes the root metadata to a new file, then renames


def _consolidated(store: str) -> bool:
    """Whether the store keeps its hierarchy's metadata in its root too (zarr.consolidate_metadata)."""
    import json

    if os.path.exists(os.path.join(store, ".zmetadata")):
        return True
    try:
        with open(os.path.join(store, "zarr.json"), "rb") as f:
            return json.loads(f.read()).get("consolidated_metadata") is not None
    except (OSError, ValueError, AttributeError):
        return False


def _move(source: str, target: str, ref: Ref, *, replace: bool, aside: str | None = None) -> None:
    try:
        move_folder(source, target, replace=replace, aside=aside or f"{source}.old")
    except FileExistsError:
        raise TensorFileError(f"output {ref} already exists", "pass --force to replace it") from None

