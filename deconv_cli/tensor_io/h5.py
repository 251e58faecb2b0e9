"""``.h5``/``.hdf5``: datasets in groups (``x.h5:/group/dataset``), through h5py. Soft and external
links to a dataset are followed. Windows are read and written as dataset slices. Writing one dataset
into an existing file (``base``) copies its other objects into the temporary file first."""

from __future__ import annotations

import os

from ..core.errors import TensorFileError
from ._common import ArrayInfo, BadReference, Ref, missing, oneline

STREAMS = True
CONTAINER = True
CHUNKED = True  # open_writer and write take chunks=: the tiles' chunks, so each tile writes whole chunks


def _h5py():
    try:
        import h5py
    except ImportError:
        raise TensorFileError("h5py is not installed, so .h5 files cannot be read", "pip install h5py") from None
    return h5py


def _path(ref: Ref) -> str | None:
    return None if ref.key is None else "/" + ref.key.strip("/")


def check_name(ref: Ref) -> None:
    """An output dataset path: not the root group, no '.' or '..' parts; in an existing file, not a
    group (--force replaces an array, never a group of them) and not under a dataset."""
    key = _path(ref) or "/output"
    if key == "/" or any(part in (".", "..", "") for part in key[1:].split("/")):
        raise BadReference(f"'{ref}' does not name a dataset", f"name one, e.g. {ref.path}:/y")
    if not os.path.isfile(ref.path):
        return
    h5py = _h5py()
    try:
        f = _open(ref)
    except TensorFileError:  # not a readable HDF5 file: --force replaces it whole, else it is refused later
        return
    with f:
        parts = key[1:].split("/")
        for depth in range(1, len(parts) + 1):
            path = "/" + "/".join(parts[:depth])
            try:
                found = f.get(path)
            except (KeyError, OSError, ValueError):
                return
            if found is None:
                return
            if isinstance(found, h5py.Group) and depth == len(parts):
                raise TensorFileError(f"{ref.path}:{path} is a group of arrays, not an array", "name a dataset inside it")
            if isinstance(found, h5py.Dataset) and depth < len(parts):
                raise TensorFileError(f"{ref.path}:{path} is a dataset, so it cannot hold {key}", "choose another name")


def _open(ref: Ref, mode: str = "r"):
    """The open file; HDF5's own errors become one line."""
    h5py = _h5py()
    try:
        return h5py.File(ref.path, mode)
    except OSError as exc:
        if not os.path.exists(ref.path):
            raise FileNotFoundError(ref.path) from None
        text = oneline(exc)
        if "lock" in text.lower():
            raise TensorFileError(
                f"{ref.path} is locked by another program writing it ({text})",
                "wait for it to finish, or set HDF5_USE_FILE_LOCKING=FALSE if the file is on a filesystem without locks",
            ) from None
        raise TensorFileError(f"{ref.path} is not a readable HDF5 file ({text})", "check the file") from None


def _datasets(f) -> list[str]:
    """Every dataset path, including soft and external links that resolve to a dataset."""
    h5py = _h5py()
    names: list[str] = []

    def visit(name, link):
        if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
            try:
                target = f.get("/" + name)
            except (KeyError, OSError, ValueError):
                return
        else:
            target = f.get("/" + name)
        if isinstance(target, h5py.Dataset):
            names.append("/" + name)

    f.visititems_links(visit)
    return names


def _info(ref: Ref, f, name: str) -> ArrayInfo:
    dataset = f[name]
    if dataset.shape is None:
        raise TensorFileError(f"{ref.path}:{name} holds no array (an HDF5 dataset with a null dataspace)", "name another dataset")
    return ArrayInfo(name, tuple(int(v) for v in dataset.shape), dataset.dtype.name)  # 'float32' for '>f4' too


def describe(ref: Ref) -> list[ArrayInfo]:
    with _open(ref) as f:
        names = _datasets(f)
        key = _path(ref)
        if key is not None:
            if key not in names:
                raise missing(ref, ref.key, names)
            return [_info(ref, f, key)]
        return [_info(ref, f, n) for n in names if f[n].shape is not None]


def load(ref: Ref, info: ArrayInfo):
    with _open(ref) as f:
        return f[info.name][()]


class Reader:
    def __init__(self, ref: Ref, info: ArrayInfo):
        self._file = _open(ref)
        self._data = self._file[info.name]
        self.shape, self.dtype = tuple(self._data.shape), self._data.dtype

    def __getitem__(self, index):
        return self._data[index]

    def close(self) -> None:
        self._file.close()


def open_reader(ref: Ref, info: ArrayInfo) -> Reader:
    return Reader(ref, info)


def _start(ref: Ref, tmp: str, base: str | None):
    """The temporary file, holding every other object of ``base`` (the existing file) if given."""
    out = _h5py().File(tmp, "w", rdcc_nbytes=0)  # no chunk cache: tiles write whole chunks, and a failed write leaves nothing to flush at exit
    key = _path(ref) or "/output"
    try:
        if base is not None:
            with _open(Ref(base)) as old:
                for name, value in old.attrs.items():
                    out.attrs[name] = value
                for name in old:
                    link = old.get(name, getlink=True)
                    if isinstance(link, _h5py().HardLink):
                        old.copy(old[name], out, name=name)
                    else:
                        out[name] = link
            if key in out:
                del out[key]
    except BaseException:
        out.close()
        raise
    return out, key


def _chunks(shape, chunks) -> tuple[int, ...] | None:
    """HDF5 chunks no larger than the dataset (h5py refuses more), or None for a contiguous dataset (no
    chunks asked, a 0-d or empty array)."""
    if not chunks or not shape or 0 in shape or len(chunks) != len(shape):
        return None
    return tuple(max(1, min(int(c), int(n))) for c, n in zip(chunks, shape))


class Writer:
    def __init__(self, ref: Ref, tmp: str, shape, dtype, chunks=None, base: str | None = None):
        self._file, key = _start(ref, tmp, base)
        try:
            self._data = self._file.create_dataset(key, shape=tuple(shape), dtype=dtype, chunks=_chunks(shape, chunks))
        except BaseException:
            self._file.close()
            raise

    def __setitem__(self, index, value) -> None:
        self._data[index] = value

    def close(self) -> None:
        self._file.close()


def open_writer(ref: Ref, tmp: str, shape, dtype, chunks=None, base: str | None = None) -> Writer:
    return Writer(ref, tmp, shape, dtype, chunks, base)


def write(ref: Ref, tmp: str, array, chunks=None, base: str | None = None) -> None:
    out, key = _start(ref, tmp, base)
    with out:
        out.create_dataset(key, data=array, chunks=_chunks(array.shape, chunks))
