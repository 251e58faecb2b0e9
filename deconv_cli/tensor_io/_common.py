"""What every format shares: references, array descriptions, errors, window arithmetic, atomic commit.

A format module (npy.py, npz.py, h5.py, stdio.py) implements, at module level:

    STREAMS                                   whether open_writer exists (slices written one by one)
    describe(ref) -> list[ArrayInfo]          headers only
    load(ref, info) -> array                  the whole array
    open_reader(ref, info) -> reader          .shape, .dtype, reader[tuple of slices], .close()
    open_writer(ref, tmp, shape, dtype)       writer[tuple of slices] = array, .close()   (if STREAMS;
                                              with chunks= too if the module sets CHUNKED)
    write(ref, tmp, array)                    the whole array into the temporary file tmp

Writers only ever write the temporary file (a temporary folder for a Zarr store); ``commit`` puts it in
place.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ..errors import TensorFileError

# extension -> format module (``.hdf5`` is read and written as ``.h5``)
FORMATS = {".npy": "npy", ".npz": "npz", ".h5": "h5", ".hdf5": "h5", ".zarr": "zarr", ".safetensors": "safetensors"}
EXTENSIONS = tuple(FORMATS)
WRITABLE = (".npy", ".npz", ".h5", ".zarr")
STREAMING = (".npy", ".h5", ".zarr")  # outputs written one tile at a time
WINDOWED = (".npy", ".h5", ".zarr", ".safetensors")  # inputs read one window at a time


@dataclass(frozen=True)
class Ref:
    path: str
    key: str | None = None

    @property
    def kind(self) -> str:
        if self.path == "-":
            return ".npy"
        ext = os.path.splitext(self.path)[1].lower()
        return ".h5" if ext == ".hdf5" else ext

    def __str__(self) -> str:
        return self.path if self.key is None else f"{self.path}:{self.key}"


@dataclass(frozen=True)
class ArrayInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str


def parse_ref(text: str) -> Ref:
    """Split ``file.ext:name`` at the last ':' that follows a known extension."""
    if text == "-":
        return Ref("-")
    lower = text.lower()
    best = -1
    for ext in EXTENSIONS:
        at = lower.rfind(ext + ":")
        if at >= 0:
            best = max(best, at + len(ext))
    if best >= 0:
        return Ref(text[:best], text[best + 1 :] or None)
    ext = os.path.splitext(lower)[1]
    if ext not in EXTENSIONS:
        raise TensorFileError(
            f"'{text}' has no known tensor extension",
            "use .npy, .npz[:name], .h5[:/dataset], .zarr[:/array] or .safetensors[:name] (or - for .npy on stdin/stdout)",
        )
    return Ref(text)


def missing(ref: Ref, name: str, names: list[str]) -> TensorFileError:
    return TensorFileError(f"{ref.path} has no array '{name}'", f"it holds: {', '.join(names) or 'nothing'}")


def read_failed(ref, exc: BaseException) -> TensorFileError:
    return TensorFileError(f"cannot read {ref}: {exc}", "the file is truncated or corrupt; re-save it")


def write_failed(path: str, exc: BaseException) -> TensorFileError:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    return TensorFileError(f"cannot write {path}: {text}", "check free space and permissions")


# ---------------------------------------------------------------- windows of C-ordered arrays


def window(index, shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """``(start, stop)`` per axis of a slice or tuple of slices (missing trailing axes are whole)."""
    index = index if isinstance(index, tuple) else (index,)
    if len(index) > len(shape) or not all(isinstance(s, slice) for s in index):
        raise TypeError(f"expected up to {len(shape)} slices, got {index!r}")
    bounds = []
    for axis, size in enumerate(shape):
        s = index[axis] if axis < len(index) else slice(None)
        start, stop, step = s.indices(size)
        if step != 1:
            raise TypeError("slices must have step 1")
        bounds.append((start, max(start, stop)))
    return bounds


def runs(shape: tuple[int, ...], bounds: list[tuple[int, int]]):
    """The contiguous runs of a C-ordered array that a window covers: ``(first element, length,
    position in the window)``, the position being the window's leading indices before the run."""
    axis = len(shape)
    while axis > 0 and bounds[axis - 1] == (0, shape[axis - 1]):
        axis -= 1
    if axis == 0:  # the whole array
        yield 0, math.prod(shape), ()
        return
    run = axis - 1  # a range on this axis, everything after it whole
    inner = math.prod(shape[run + 1 :])
    length = (bounds[run][1] - bounds[run][0]) * inner
    if length == 0:
        return
    import itertools

    for lead in itertools.product(*(range(a, b) for a, b in bounds[:run])):
        flat = 0
        for ax, i in enumerate(lead):
            flat = flat * shape[ax] + i
        yield (flat * shape[run] + bounds[run][0]) * inner, length, tuple(i - bounds[ax][0] for ax, i in enumerate(lead))


class ArrayReader:
    """A reader over an array already in memory (formats that cannot read a window on their own)."""

    def __init__(self, array):
        self._array = array
        self.shape, self.dtype = tuple(array.shape), array.dtype

    def __getitem__(self, index):
        import numpy as np

        return np.ascontiguousarray(self._array[tuple(index if isinstance(index, tuple) else (index,))])

    def close(self) -> None:
        self._array = None


# ---------------------------------------------------------------- atomic writes


def check_writable(ref: Ref, *, force: bool) -> None:
    """Fail before any work if OUT exists (without --force) or its directory cannot take a file."""
    if ref.path == "-":
        return
    if ref.kind not in WRITABLE:
        raise TensorFileError(f"cannot write '{ref.path}'", "use an output ending in .npy, .npz, .h5 or .zarr")
    if ref.kind == ".npy" and ref.key:
        raise TensorFileError(f"'{ref}': a .npy file holds one unnamed array", "drop the ':name'")
    if os.path.isdir(ref.path) and ref.kind != ".zarr":  # a Zarr store is a folder
        raise TensorFileError(f"output {ref.path} is a directory")
    if os.path.exists(ref.path) and not force:
        raise TensorFileError(f"output {ref.path} already exists", "pass --force to replace it")
    folder = os.path.dirname(os.path.abspath(ref.path))
    if not os.path.isdir(folder):
        raise TensorFileError(f"output folder {folder} does not exist", "create it first")
    if not os.access(folder, os.W_OK):
        raise TensorFileError(f"output folder {folder} is not writable", "choose another --output")


def temp_file(ref: Ref) -> str:
    """A new empty temporary file (a folder for a Zarr store) next to OUT, for a format module to write."""
    import tempfile

    if ref.kind == ".zarr":
        return tempfile.mkdtemp(prefix=".deconv-", suffix=ref.kind, dir=os.path.dirname(os.path.abspath(ref.path)))
    fd, tmp = tempfile.mkstemp(prefix=".deconv-", suffix=ref.kind, dir=os.path.dirname(os.path.abspath(ref.path)))
    os.close(fd)
    return tmp


def commit(tmp: str, ref: Ref, *, force: bool) -> None:
    """Put the finished temporary file in place of OUT."""
    check_writable(ref, force=force)
    if os.path.isdir(tmp):  # a folder cannot replace a folder in one step: the old one moves aside first
        old = None
        if os.path.lexists(ref.path):
            old = tmp + ".old"
            os.rename(ref.path, old)
        os.rename(tmp, ref.path)
        discard(old)
        return
    os.replace(tmp, ref.path)


def discard(tmp: str | None) -> None:
    if tmp is not None and os.path.isdir(tmp) and not os.path.islink(tmp):
        import shutil

        shutil.rmtree(tmp)
    elif tmp is not None and os.path.exists(tmp):
        os.unlink(tmp)
