"""``.safetensors``: named tensors (``x.safetensors:name``), read a window at a time, written whole.

The file is an 8-byte little-endian header length, a JSON header ``{name: {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {...}}`` and the tensors' bytes, C-ordered and
little-endian. The header is parsed here (no package needed, numpy not imported for shapes); a tensor or
a window of it is read from its byte range with plain reads, never the whole file.

Writing one tensor into an existing file (``base``) copies its other tensors' bytes and its ``__metadata__``
into the temporary file, packed back to back as the format requires (no holes), the header padded with spaces
to 8 bytes as the safetensors package writes it.
"""

from __future__ import annotations

import json
import math
import os
import struct

from ..core.errors import TensorFileError
from ._common import ArrayInfo, BadReference, Ref, missing, runs, window

STREAMS = False  # written whole: the header, which comes first, holds every tensor's offsets
CONTAINER = True
# safetensors dtype -> numpy dtype name (BF16 and FP8 have no numpy dtype: described, never computed)
_DTYPES = {"F16": "float16", "F32": "float32", "F64": "float64", "I8": "int8", "I16": "int16", "I32": "int32",
           "I64": "int64", "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool"}
_MAX_HEADER = 100 << 20  # the format's own limit


def read_header(path: str) -> tuple[int, dict]:
    """(offset of the data section, the header's tensors) without reading any tensor data."""
    data, header = _read_header(path)
    header.pop("__metadata__", None)
    return data, header


def _read_header(path: str) -> tuple[int, dict]:
    """``read_header`` with the ``__metadata__`` entry kept (a writer copies it)."""
    bad = TensorFileError(f"{path} is not a valid .safetensors file (bad header)", "re-save it with safetensors")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise bad
        (length,) = struct.unpack("<Q", head)
        if length > min(_MAX_HEADER, size - 8):
            raise bad
        try:
            header = json.loads(f.read(length))
        except (ValueError, UnicodeDecodeError):
            raise bad from None
    if not isinstance(header, dict):
        raise bad
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = entry["data_offsets"]
            shape = [int(v) for v in entry["shape"]]
            dtype = str(entry["dtype"])
        except (KeyError, TypeError, ValueError):
            raise bad from None
        if not 0 <= begin <= end <= size - 8 - length or min(shape, default=0) < 0:
            raise bad
        itemsize = _itemsize(dtype)
        if itemsize and end - begin != math.prod(shape) * itemsize:
            raise bad
    return 8 + length, header


def _itemsize(dtype: str) -> int | None:
    name = _DTYPES.get(dtype)
    if name is None:
        return {"BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}.get(dtype)
    return 1 if name == "bool" else int("".join(c for c in name if c.isdigit())) // 8


def _dtype_name(dtype: str) -> str:
    return _DTYPES.get(dtype, dtype.lower())


def describe(ref: Ref) -> list[ArrayInfo]:
    _, header = read_header(ref.path)
    names = sorted(header)
    if ref.key is not None and ref.key not in header:
        raise missing(ref, ref.key, names)
    return [ArrayInfo(n, tuple(int(v) for v in header[n]["shape"]), _dtype_name(header[n]["dtype"]))
            for n in ([ref.key] if ref.key is not None else names)]


class Reader:
    """Windows of one tensor, read run by run from its byte range."""

    def __init__(self, ref: Ref, info: ArrayInfo):
        import numpy as np

        data, header = read_header(ref.path)
        entry = header[info.name]
        if entry["dtype"] not in _DTYPES:
            raise TensorFileError(f"{ref} has dtype {entry['dtype']}, which numpy cannot hold", "cast it to float32")
        self.shape = tuple(int(v) for v in entry["shape"])
        self.dtype = np.dtype(_DTYPES[entry["dtype"]]).newbyteorder("<")
        self._offset = data + entry["data_offsets"][0]
        self._file = open(ref.path, "rb")

    def __getitem__(self, index):
        import numpy as np

        bounds = window(index, self.shape)
        out = np.empty(tuple(b - a for a, b in bounds), dtype=self.dtype)
        size = self.dtype.itemsize
        for first, length, at in runs(self.shape, bounds):
            self._file.seek(self._offset + first * size)
            got = self._file.readinto(out[at].reshape(-1).view(np.uint8))
            if got != length * size:
                raise ValueError("file ends early")
        return out.astype(out.dtype.newbyteorder("="), copy=False)

    def close(self) -> None:
        self._file.close()


def open_reader(ref: Ref, info: ArrayInfo) -> Reader:
    return Reader(ref, info)


def load(ref: Ref, info: ArrayInfo):
    reader = Reader(ref, info)
    try:
        return reader[tuple(slice(None) for _ in reader.shape)]
    finally:
        reader.close()


# ---------------------------------------------------------------- writing

_CODES = {name: code for code, name in _DTYPES.items()}
_METADATA = "__metadata__"


def check_name(ref: Ref) -> None:
    """An output tensor name: any non-empty string but the header's own ``__metadata__`` key."""
    key = ref.key or "output"
    if key == _METADATA:
        raise BadReference(f"'{ref}': '{_METADATA}' is the file's metadata, not a tensor name", "choose another name (e.g. :y)")


def write(ref: Ref, tmp: str, array, base: str | None = None) -> None:
    """The other tensors and the metadata of ``base`` (the existing file, if given), then this array, into
    the temporary file. Tensors are laid out as the safetensors package lays them out, widest dtype first
    and then by name, so that every tensor starts at a multiple of its item size (memory-mapping readers
    need that)."""
    import contextlib

    import numpy as np

    name = ref.key or "output"
    array = np.ascontiguousarray(array, dtype=np.asarray(array).dtype.newbyteorder("<"))
    header: dict = {}
    data, old = _read_header(base) if base is not None else (0, {})
    if _METADATA in old:
        header[_METADATA] = old.pop(_METADATA)
    old.pop(name, None)
    old[name] = {"dtype": _CODES[array.dtype.name], "shape": list(array.shape), "data_offsets": [0, array.nbytes]}
    order = sorted(old, key=lambda n: (-(_itemsize(old[n]["dtype"]) or 1), n))
    offset = 0
    for n in order:
        begin, end = old[n]["data_offsets"]
        header[n] = {**old[n], "data_offsets": [offset, offset + end - begin]}
        offset += end - begin
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(tmp, "wb") as out, (open(base, "rb") if base is not None else contextlib.nullcontext()) as source:
        out.write(struct.pack("<Q", len(text)) + text)
        for n in order:
            if n == name:
                out.write(array.reshape(-1).view(np.uint8).data)
            else:
                begin, end = old[n]["data_offsets"]
                _copy(source, data + begin, end - begin, out)


def _copy(source, at: int, size: int, out) -> None:
    """``size`` bytes of ``source`` from ``at`` into ``out``, 1 MiB at a time."""
    buffer = memoryview(bytearray(min(size, 1 << 20)))
    source.seek(at)
    while size:
        got = source.readinto(buffer[: min(size, len(buffer))])
        if not got:
            raise ValueError(f"{source.name} ends early")
        out.write(buffer[:got])
        size -= got
