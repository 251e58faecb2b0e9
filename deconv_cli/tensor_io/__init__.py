"""Tensor files: references, header-only shapes, loading and atomic saving. No math.

A reference is ``x.npy``, ``x.npz:name``, ``x.h5:/group/dataset``, ``x.zarr:/group/array``,
``x.safetensors:name`` (the part after the last ':' that
follows a known extension names the array; a .npz/.h5 holding exactly one array needs no name), or
``-`` for .npy bytes on stdin/stdout.

Each format is one module behind the interface described in ``_common`` (npy.py, npz.py, h5.py, zarr.py,
safetensors.py, and stdio.py for ``-``); this module picks the module by the reference and owns what all formats share:
error wording, validation before reading, and the temporary file that becomes OUT only when complete.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import TensorFileError
from ._common import (
    EXTENSIONS,
    FORMATS,
    STREAMING,
    WINDOWED,
    ArrayInfo,
    Ref,
    check_writable,
    commit,
    discard,
    parse_ref,
    read_failed,
    temp_file,
    write_failed,
)

__all__ = [
    "EXTENSIONS", "STREAMING", "WINDOWED", "ArrayInfo", "Ref", "StreamWriter", "can_stream", "check_writable", "describe", "load",
    "open_slices", "parse_ref", "peek", "save",
]


def format_of(ref: Ref) -> ModuleType:
    """The module that reads and writes this reference (imported on first use)."""
    name = "stdio" if ref.path == "-" else FORMATS[ref.kind]
    return importlib.import_module(f".{name}", __name__)


# ---------------------------------------------------------------- header-only inspection


def describe(ref: Ref) -> list[ArrayInfo]:
    """Every array in the file (or the named one), from headers only."""
    try:
        return format_of(ref).describe(ref)
    except FileNotFoundError:
        raise TensorFileError(f"{ref.path}: no such file", "check the path") from None
    except IsADirectoryError:
        raise TensorFileError(f"{ref.path} is a directory, not a tensor file") from None
    except OSError as exc:
        raise TensorFileError(f"cannot read {ref.path}: {exc.strerror or exc}") from None


def peek(ref: Ref) -> ArrayInfo:
    """The one array a reference selects, from headers only."""
    infos = describe(ref)
    if len(infos) != 1:
        names = ", ".join(i.name for i in infos)
        raise TensorFileError(
            f"{ref.path} holds {len(infos)} arrays ({names or 'none'})",
            f"name one, e.g. {ref.path}:{infos[0].name}" if infos else "give a file with one array",
        )
    return infos[0]


# ---------------------------------------------------------------- loading


def load(ref: Ref):
    """The array a reference selects. .npy files are memory-mapped; nothing is ever unpickled."""
    info = None if ref.path == "-" else peek(ref)  # validates the header and the name first
    try:
        return format_of(ref).load(ref, info)
    except (ValueError, OSError, EOFError) as exc:
        raise read_failed(ref, exc) from None


def can_stream(ref: Ref) -> bool:
    """Whether a reference can be read or written a window at a time."""
    return ref.path != "-" and format_of(ref).STREAMS


class _Reader:
    """A format's reader with this package's error wording."""

    def __init__(self, ref: Ref):
        self.ref = ref
        self._reader = format_of(ref).open_reader(ref, peek(ref))
        self.shape, self.dtype = self._reader.shape, self._reader.dtype

    def __getitem__(self, index):
        try:
            return self._reader[index]
        except (OSError, ValueError) as exc:
            raise read_failed(self.ref, exc) from None

    def close(self) -> None:
        self._reader.close()


def open_slices(ref: Ref) -> _Reader:
    """Windows (a slice or tuple of slices) of an array that stays on disk."""
    return _Reader(ref)


# ---------------------------------------------------------------- saving


def save(ref: Ref, array, *, force: bool, chunks=None) -> None:
    """Write atomically: a temporary file in the target folder, then into place. Never partial.
    ``chunks``: the chunk shape for a chunked format (Zarr), the same a streamed write would use."""
    if ref.path == "-":
        format_of(ref).write(ref, None, array)
        return
    check_writable(ref, force=force)
    tmp = None
    try:
        tmp = temp_file(ref)
        module = format_of(ref)
        module.write(ref, tmp, array, **({"chunks": chunks} if chunks and getattr(module, "CHUNKED", False) else {}))
        commit(tmp, ref, force=force)
    except OSError as exc:
        raise write_failed(ref.path, exc) from None
    finally:
        discard(tmp)


class StreamWriter:
    """Write an output one window after another into a temporary file; ``commit`` puts it in place.
    As a context manager, leaving without ``commit`` removes the temporary file."""

    def __init__(self, ref: Ref, shape, dtype, *, force: bool, chunks=None):
        check_writable(ref, force=force)
        self.ref, self.force, self._writer, self._done = ref, force, None, False
        self.tmp = None
        try:
            self.tmp = temp_file(ref)
            module = format_of(ref)
            extra = {"chunks": chunks} if chunks and getattr(module, "CHUNKED", False) else {}
            self._writer = module.open_writer(ref, self.tmp, shape, dtype, **extra)
        except OSError as exc:
            self.__exit__()
            raise write_failed(ref.path, exc) from None

    def __setitem__(self, index, value) -> None:
        try:
            self._writer[index] = value
        except OSError as exc:
            raise write_failed(self.ref.path, exc) from None

    def commit(self) -> None:
        self._close()
        commit(self.tmp, self.ref, force=self.force)
        self._done = True

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._close()
        if not self._done:
            discard(self.tmp)
