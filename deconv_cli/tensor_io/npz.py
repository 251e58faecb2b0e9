"""``.npz``: a zip of named ``.npy`` members (``x.npz:name``). Read whole; written whole."""

from __future__ import annotations

from ..errors import TensorFileError
from . import npy
from ._common import ArrayInfo, ArrayReader, Ref, missing, read_failed

STREAMS = False


def describe(ref: Ref) -> list[ArrayInfo]:
    import zipfile  # lazily: `deconv shape` on .npy files never needs it

    try:
        with zipfile.ZipFile(ref.path) as z:
            names = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
            infos = []
            for name in [ref.key] if ref.key else names:
                if name not in names:
                    raise missing(ref, name, names)
                with z.open(name + ".npy") as f:
                    infos.append(npy.read_header(f, f"{ref.path}:{name}", name))
            return infos
    except zipfile.BadZipFile:
        raise TensorFileError(f"{ref.path} is not a valid .npz file (not a zip archive)", "re-save it with numpy.savez") from None


def load(ref: Ref, info: ArrayInfo):
    import zipfile

    import numpy as np

    try:
        with np.load(ref.path, allow_pickle=False) as z:
            return z[info.name]
    except zipfile.BadZipFile as exc:
        raise read_failed(ref, exc) from None


def open_reader(ref: Ref, info: ArrayInfo) -> ArrayReader:
    return ArrayReader(load(ref, info))


def write(ref: Ref, tmp: str, array) -> None:
    import numpy as np

    with open(tmp, "wb") as f:
        np.savez(f, **{ref.key or "output": array})
