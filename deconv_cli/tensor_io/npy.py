"""``.npy``: one array. Headers are parsed here in pure Python (``deconv shape`` never imports numpy)
and checked against the bytes that follow them; the data is read with plain reads at offsets (never
a memory map: a file truncated under a map kills the process with SIGBUS, and touched pages would
stay resident). Windows of C- and Fortran-ordered files alike; writes are C-ordered, native-endian."""

from __future__ import annotations

import ast
import math
import os
import re
import struct
from dataclasses import dataclass

from ..core.errors import TensorFileError
from ._common import ArrayInfo, BadReference, Ref, human, runs, window

STREAMS = True
CONTAINER = False
MAGIC = b"\x93NUMPY"
# .npy 'descr' kind -> numpy dtype name, for the dtypes a header may carry
_KINDS = {"f": "float", "i": "int", "u": "uint", "b": "bool", "c": "complex"}
_DESCR = re.compile(r"^[<>|=]?([a-zA-Z])(\d+)$")
# the header numpy.save writes, e.g. "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 8), }" + padding;
# anything else (other key orders, other writers) goes through ast.literal_eval, 0.1 ms a header
_NUMPY_HEADER = re.compile(
    r"\{'descr': '([^'\\]*)', 'fortran_order': (True|False), 'shape': \(((?:\d+, )*\d*|(?:\d+, )*\d+,?)\), \}[ \n]*\Z")


def _literal(text: str) -> dict:
    """The header dictionary: a regular expression for numpy's own layout, ast.literal_eval for any other."""
    match = _NUMPY_HEADER.match(text)
    if match is None:
        return ast.literal_eval(text)
    descr, fortran, dims = match.groups()
    return {"descr": descr, "fortran_order": fortran == "True",
            "shape": tuple(int(d) for d in dims.replace(",", " ").split())}


@dataclass(frozen=True)
class Header:
    descr: str
    fortran: bool
    shape: tuple[int, ...]
    offset: int  # where the data starts
    itemsize: int | None  # None: a dtype deconv does not size (refused later by its name)

    @property
    def nbytes(self) -> int | None:
        return None if self.itemsize is None else math.prod(self.shape) * self.itemsize


def parse_header(f, where: str) -> Header:
    """A .npy header (format versions 1-3), validated, without numpy. ``f`` is at the magic."""
    bad = TensorFileError(f"{where} is not a valid .npy file (bad header)", "re-save it with numpy.save")
    magic = f.read(8)
    if magic[:4] == b"PK\x03\x04":
        raise TensorFileError(f"{where} holds .npz (zip) bytes, not .npy", "give the .npz file with :name instead")
    if len(magic) < 8 or magic[:6] != MAGIC or magic[6] not in (1, 2, 3):
        raise bad
    major = magic[6]
    size_bytes = f.read(2 if major == 1 else 4)
    try:
        (length,) = struct.unpack("<H" if major == 1 else "<I", size_bytes)
        text = f.read(length)
        if len(text) != length:
            raise ValueError
        header = _literal(text.decode("latin1" if major < 3 else "utf8"))
        descr, shape, fortran = header["descr"], header["shape"], header["fortran_order"]
    except (struct.error, ValueError, SyntaxError, KeyError, TypeError, UnicodeDecodeError, MemoryError, RecursionError):
        raise bad from None
    if isinstance(descr, list):
        raise TensorFileError(
            f"{where} holds a structured array (named fields), not a plain numeric array",
            "save each field as its own array (float16/32/64)",
        )
    if not isinstance(descr, str) or descr.lstrip("<>|=")[:1] == "O":
        raise TensorFileError(
            f"{where} holds Python objects (a pickled array), which deconv never loads",
            "save a numeric array (float16/32/64)",
        )
    if not isinstance(shape, tuple) or not all(type(v) is int for v in shape) or type(fortran) is not bool:
        raise TensorFileError(f"{where} is not a valid .npy file (its header declares shape {shape!r})", "re-save it with numpy.save")
    if any(v < 0 for v in shape):
        raise TensorFileError(
            f"{where} is not a valid .npy file (its header declares a negative dimension, shape {shape})",
            "re-save it with numpy.save",
        )
    match = _DESCR.match(descr)
    itemsize = int(match.group(2)) if match and match.group(1) in "fiucb" else None
    return Header(descr, fortran, shape, 8 + len(size_bytes) + length, itemsize)


def check_size(header: Header, where: str, available: int | None) -> None:
    """Refuse a header that declares more data than the file holds (truncated, or lying)."""
    need = header.nbytes
    if need is None or available is None or available - header.offset >= need:
        return
    have = max(0, available - header.offset)
    raise TensorFileError(
        f"{where} is truncated: its header declares shape {header.shape} ({human(need)} of data) "
        f"but only {human(have)} follow",
        "the file is truncated or corrupt; re-save it",
    )


def dtype_name(descr: str) -> str:
    code = descr.lstrip("<>|=")
    kind, size = code[:1], code[1:]
    return f"{_KINDS[kind]}{int(size) * (8 if kind != 'b' else 0) or ''}" if kind in _KINDS and size.isdigit() else code


def read_header(f, where: str, name: str = "", size: int | None = None) -> ArrayInfo:
    """The ArrayInfo of a .npy stream of ``size`` bytes (default: the open file's size)."""
    header = parse_header(f, where)
    if size is None:
        try:
            size = os.fstat(f.fileno()).st_size
        except (AttributeError, OSError, ValueError):
            size = None
    check_size(header, where, size)
    return ArrayInfo(name or os.path.splitext(os.path.basename(where))[0], header.shape, dtype_name(header.descr))


def describe(ref: Ref) -> list[ArrayInfo]:
    if ref.key is not None:
        raise BadReference(f"'{ref}': a .npy file holds one unnamed array", f"drop the ':{ref.key}'")
    with open(ref.path, "rb") as f:
        return [read_header(f, ref.path)]


LOADS_INTO = True  # load(..., out=) reads straight into a caller's buffer where it fits


def load(ref: Ref, info: ArrayInfo, out=None):
    reader = Reader(ref, info)
    try:
        return reader.read_into(out) if reader.fits(out) else reader[()]
    finally:
        reader.close()


class Reader:
    """Windows read at their offsets: runs of the file's own order (a Fortran-ordered file is the
    C-ordered transpose), returned C-ordered in native byte order."""

    def __init__(self, ref: Ref, info: ArrayInfo | None):
        import numpy as np

        self.ref = ref
        self._file = open(ref.path, "rb")
        try:
            header = parse_header(self._file, ref.path)
            check_size(header, ref.path, os.fstat(self._file.fileno()).st_size)
            self._stored = np.dtype(header.descr)
        except BaseException:
            self._file.close()
            raise
        self.shape, self._fortran, self._offset = header.shape, header.fortran, header.offset
        self.dtype = self._stored.newbyteorder("=")

    def fits(self, out) -> bool:
        """Whether the whole array can be read straight into ``out``: C order, native, same shape and dtype."""
        return out is not None and out.shape == tuple(self.shape) and out.dtype == self._stored and \
            self._stored.isnative and not self._fortran and out.flags.c_contiguous and out.flags.writeable

    def read_into(self, out):
        self._read_runs(out, [(0, n) for n in self.shape], tuple(self.shape))
        return out

    def _read_runs(self, out, bounds, shape) -> None:
        import numpy as np

        size = self._stored.itemsize
        for first, length, at in runs(shape, bounds):
            self._file.seek(self._offset + first * size)
            view = out[at].reshape(-1).view(np.uint8)
            got = self._file.readinto(view)
            while got and got < length * size:  # short reads (pipes, network filesystems)
                more = self._file.readinto(view[got:])
                if not more:
                    break
                got += more
            if got != length * size:
                raise ValueError("the file ends early (truncated while reading?)")

    def __getitem__(self, index):
        import numpy as np

        bounds = window(index, self.shape)
        shape = self.shape
        if self._fortran:  # the file holds the transpose in C order
            bounds, shape = bounds[::-1], shape[::-1]
        out = np.empty(tuple(b - a for a, b in bounds), dtype=self._stored)
        self._read_runs(out, bounds, shape)
        if self._fortran:
            out = out.T
        return np.asarray(out, dtype=self.dtype, order="C")  # ascontiguousarray would make a 0-d array 1-d

    def close(self) -> None:
        self._file.close()


def open_reader(ref: Ref, info: ArrayInfo) -> Reader:
    return Reader(ref, info)


def header_bytes(shape, dtype) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    try:
        np.lib.format.write_array_header_1_0(buf, header)
    except ValueError:  # a header too long for format 1.0
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue()


class Writer:
    """Windows written at their offsets after the header, in any order."""

    def __init__(self, tmp: str, shape, dtype):
        import numpy as np

        self.shape, self.dtype = tuple(shape), np.dtype(dtype).newbyteorder("=")
        self._file = open(tmp, "r+b")
        self._file.write(header_bytes(self.shape, self.dtype))
        self._offset = self._file.tell()

    def __setitem__(self, index, value) -> None:
        import numpy as np

        value = np.ascontiguousarray(value, dtype=self.dtype)
        size = self.dtype.itemsize
        for first, _, at in runs(self.shape, window(index, self.shape)):
            self._file.seek(self._offset + first * size)
            self._file.write(np.ascontiguousarray(value[at]).data)

    def close(self) -> None:
        self._file.close()


def open_writer(ref: Ref, tmp: str, shape, dtype) -> Writer:
    return Writer(tmp, shape, dtype)


def write(ref: Ref, tmp: str, array) -> None:
    """The same bytes a stream of windows would give: C order, native byte order."""
    import numpy as np

    array = np.ascontiguousarray(array, dtype=np.asarray(array).dtype.newbyteorder("="))
    # "r+b", not "wb": the temporary file is new and empty, and truncating it on open makes ext4 (auto_da_alloc)
    # start writing it back at close, which held up the next file creation: 1.3 ms a job in a batch, 0.2 without
    with open(tmp, "r+b") as f:
        np.save(f, array, allow_pickle=False)
