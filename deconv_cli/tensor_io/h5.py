"""``.h5``/``.hdf5``: datasets in groups (``x.h5:/group/dataset``), through h5py. Windows are read and
written as dataset slices."""

from __future__ import annotations

import os

from ..errors import TensorFileError
from ._common import ArrayInfo, Ref, missing

STREAMS = True


def _h5py():
    try:
        import h5py
    except ImportError:
        raise TensorFileError("h5py is not installed, so .h5 files cannot be read", "pip install h5py") from None
    return h5py


def describe(ref: Ref) -> list[ArrayInfo]:
    h5py = _h5py()
    try:
        with h5py.File(ref.path, "r") as f:
            names: list[str] = []
            f.visititems(lambda name, obj: names.append("/" + name) if isinstance(obj, h5py.Dataset) else None)
            key = None if ref.key is None else "/" + ref.key.lstrip("/")
            if key is not None and key not in names:
                raise missing(ref, ref.key, names)
            return [ArrayInfo(n, tuple(int(v) for v in f[n].shape), str(f[n].dtype)) for n in ([key] if key else names)]
    except OSError as exc:
        if not os.path.exists(ref.path):
            raise
        raise TensorFileError(f"{ref.path} is not a readable HDF5 file ({exc})", "check the file") from None


def load(ref: Ref, info: ArrayInfo):
    with _h5py().File(ref.path, "r") as f:
        return f[info.name][()]


class Reader:
    def __init__(self, ref: Ref, info: ArrayInfo):
        self._file = _h5py().File(ref.path, "r")
        self._data = self._file[info.name]
        self.shape, self.dtype = tuple(self._data.shape), self._data.dtype

    def __getitem__(self, index):
        import numpy as np

        return np.ascontiguousarray(self._data[index])

    def close(self) -> None:
        self._file.close()


def open_reader(ref: Ref, info: ArrayInfo) -> Reader:
    return Reader(ref, info)


class Writer:
    def __init__(self, ref: Ref, tmp: str, shape, dtype):
        self._file = _h5py().File(tmp, "w")
        self._data = self._file.create_dataset(ref.key or "output", shape=tuple(shape), dtype=dtype)

    def __setitem__(self, index, value) -> None:
        self._data[index] = value

    def close(self) -> None:
        self._file.close()


def open_writer(ref: Ref, tmp: str, shape, dtype) -> Writer:
    return Writer(ref, tmp, shape, dtype)


def write(ref: Ref, tmp: str, array) -> None:
    with _h5py().File(tmp, "w") as h5:
        h5.create_dataset(ref.key or "output", data=array)
