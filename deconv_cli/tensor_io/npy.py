"""``.npy``: one array. Headers are parsed here in pure Python (``deconv shape`` never imports numpy);
windows are read and written with plain reads and writes at offsets (no memory map, whose touched
pages would stay resident)."""

from __future__ import annotations

import ast
import os
import struct

from ..errors import TensorFileError
from ._common import ArrayInfo, Ref, runs, window

STREAMS = True
MAGIC = b"\x93NUMPY"
# .npy 'descr' kind -> numpy dtype name, for the dtypes a header may carry
_KINDS = {"f": "float", "i": "int", "u": "uint", "b": "bool", "c": "complex"}


def describe(ref: Ref) -> list[ArrayInfo]:
    with open(ref.path, "rb") as f:
        return [read_header(f, ref.path)]


def read_header(f, where: str, name: str = "") -> ArrayInfo:
    """Parse a .npy header (format versions 1-3) without numpy."""
    bad = TensorFileError(f"{where} is not a valid .npy file (bad header)", "re-save it with numpy.save")
    magic = f.read(8)
    if len(magic) < 8 or magic[:6] != MAGIC:
        raise bad
    major = magic[6]
    if major not in (1, 2, 3):
        raise bad
    size_bytes = f.read(2 if major == 1 else 4)
    try:
        (length,) = struct.unpack("<H" if major == 1 else "<I", size_bytes)
        header = ast.literal_eval(f.read(length).decode("latin1" if major < 3 else "utf8"))
        descr, shape = header["descr"], tuple(int(v) for v in header["shape"])
    except (struct.error, ValueError, SyntaxError, KeyError, TypeError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(descr, str) or descr.lstrip("<>|=")[:1] == "O":
        raise TensorFileError(
            f"{where} holds Python objects (a pickled array), which deconv never loads",
            "save a numeric array (float16/32/64)",
        )
    code = descr.lstrip("<>|=")
    kind, size = code[:1], code[1:]
    dtype = f"{_KINDS[kind]}{int(size) * (8 if kind != 'b' else 0) or ''}" if kind in _KINDS and size.isdigit() else code
    return ArrayInfo(name or os.path.splitext(os.path.basename(where))[0], shape, dtype)


def load(ref: Ref, info: ArrayInfo):
    import numpy as np

    return np.load(ref.path, mmap_mode="r", allow_pickle=False)


class Reader:
    """Windows of a C-ordered .npy read at their offsets; a Fortran-ordered one through its map."""

    def __init__(self, ref: Ref, info: ArrayInfo):
        import numpy as np

        self.ref, self._data = ref, None
        self._file = open(ref.path, "rb")
        major, _ = np.lib.format.read_magic(self._file)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(self._file)
        self.shape, self.dtype, self._offset = tuple(shape), np.dtype(dtype), self._file.tell()
        if fortran:  # slices are strided: use the map
            self._file.close()
            self._file, self._data = None, load(ref, info)

    def __getitem__(self, index):
        import numpy as np

        bounds = window(index, self.shape)
        if self._data is not None:
            return np.ascontiguousarray(self._data[tuple(slice(a, b) for a, b in bounds)])
        out = np.empty(tuple(b - a for a, b in bounds), dtype=self.dtype)
        size = self.dtype.itemsize
        for first, length, at in runs(self.shape, bounds):
            self._file.seek(self._offset + first * size)
            got = self._file.readinto(out[at].reshape(-1).view(np.uint8))
            if got != length * size:
                raise ValueError("file ends early")
        return out

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def open_reader(ref: Ref, info: ArrayInfo) -> Reader:
    return Reader(ref, info)


class Writer:
    """Windows written at their offsets after the header, in any order."""

    def __init__(self, tmp: str, shape, dtype):
        import numpy as np

        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self._file = open(tmp, "r+b")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_1_0(self._file, header)
        self._offset = self._file.tell()

    def __setitem__(self, index, value) -> None:
        import numpy as np

        value = np.ascontiguousarray(value)
        size = self.dtype.itemsize
        for first, _, at in runs(self.shape, window(index, self.shape)):
            self._file.seek(self._offset + first * size)
            self._file.write(np.ascontiguousarray(value[at]).tobytes())

    def close(self) -> None:
        self._file.close()


def open_writer(ref: Ref, tmp: str, shape, dtype) -> Writer:
    return Writer(tmp, shape, dtype)


def write(ref: Ref, tmp: str, array) -> None:
    import numpy as np

    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
