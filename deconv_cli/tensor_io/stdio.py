"""``-``: .npy bytes on stdin (inputs) or stdout (the output). Read once, whole; never a temporary file."""

from __future__ import annotations

import io
import sys

from ..errors import TensorFileError
from ._common import ArrayInfo, ArrayReader, Ref

STREAMS = False


def describe(ref: Ref) -> list[ArrayInfo]:
    raise TensorFileError("cannot inspect stdin without reading it", "save the tensor to a file first")


def load(ref: Ref, info: ArrayInfo | None):
    import numpy as np

    return np.load(io.BytesIO(sys.stdin.buffer.read()), allow_pickle=False)


def open_reader(ref: Ref, info: ArrayInfo | None) -> ArrayReader:
    return ArrayReader(load(ref, info))


def write(ref: Ref, tmp: None, array) -> None:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    sys.stdout.buffer.write(buf.getvalue())
    sys.stdout.buffer.flush()
