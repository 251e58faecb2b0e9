"""``-``: .npy bytes on stdin (an input) or stdout (the output). Read once, whole, exactly the bytes
its header declares; never a temporary file. Binary never goes to a terminal."""

from __future__ import annotations

import os
import sys

from ..core.errors import TensorFileError
from . import npy
from ._common import ArrayInfo, ArrayReader, BadReference, Ref, human, oneline

STREAMS = False
CONTAINER = False
WHERE = "stdin"


def describe(ref: Ref) -> list[ArrayInfo]:
    raise TensorFileError("cannot inspect stdin without reading it", "save the tensor to a file first")


def load(ref: Ref, info: ArrayInfo | None, limit: int | None = None):
    """The array on stdin; ``limit``: the most data bytes to accept (checked before reading them)."""
    import numpy as np

    source = sys.stdin.buffer
    header = npy.parse_header(source, WHERE)
    if header.itemsize is None:
        raise TensorFileError(f"{WHERE} holds an array of dtype {npy.dtype_name(header.descr)}", "send float16/32/64")
    if limit is not None and header.nbytes > limit:
        raise TensorFileError(
            f"{WHERE} declares shape {header.shape} ({human(header.nbytes)}), more than this machine's memory",
            "save it to a file and check its header",
        )
    data = bytearray(header.nbytes)
    view, got = memoryview(data), 0
    while got < len(data):
        more = source.readinto(view[got:])
        if not more:
            raise TensorFileError(
                f"{WHERE} ends after {got} of the {header.nbytes} data bytes its header declares",
                "the sender stopped early; send the whole .npy",
            )
        got += more
    shape = header.shape[::-1] if header.fortran else header.shape
    array = np.frombuffer(data, dtype=np.dtype(header.descr)).reshape(shape)
    return array.T if header.fortran else array


def open_reader(ref: Ref, info: ArrayInfo | None) -> ArrayReader:
    return ArrayReader(load(ref, info))


def check_target() -> None:
    if sys.stdout.isatty():
        raise BadReference("-o - would write binary .npy bytes to the terminal", "redirect stdout to a file or a pipe, or give -o a file name")


def write(ref: Ref, tmp: None, array) -> None:
    import numpy as np

    array = np.ascontiguousarray(array)
    data = array.reshape(-1).view(np.uint8)
    try:
        sys.stdout.buffer.write(npy.header_bytes(array.shape, array.dtype))
        for start in range(0, data.size, 1 << 20):
            sys.stdout.buffer.write(data[start : start + (1 << 20)])
        sys.stdout.buffer.flush()
    except OSError as exc:
        # stdout is gone or full: point it at /dev/null so that exiting does not try (and fail) again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        if isinstance(exc, BrokenPipeError):
            raise TensorFileError("stdout was closed before the whole output was written (broken pipe)", "let the reader take all of it, or give -o a file name") from None
        raise TensorFileError(f"cannot write the output to stdout: {oneline(exc)}", "check where stdout goes") from None
