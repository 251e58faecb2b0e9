"""``.npz``: a zip of named ``.npy`` members (``x.npz:name``). Read whole; written whole. Writing one
array into an existing file (``base``) copies its other members into the temporary file first."""

from __future__ import annotations

import zlib

from ..core.errors import TensorFileError
from . import npy
from ._common import ArrayInfo, ArrayReader, BadReference, Ref, missing, read_failed

STREAMS = False
CONTAINER = True


def check_name(ref: Ref) -> None:
    """An output member name: one plain name (a member '../x.npy' would escape on extraction)."""
    key = ref.key or "output"
    if key in (".", "..") or any(c in key for c in "/\\\0"):
        raise BadReference(f"'{ref}': '{key}' is not a plain array name", "use letters, digits and _ (e.g. :y)")


def _bad_zip(ref: Ref, exc: Exception) -> TensorFileError:
    import zipfile

    if zipfile.is_zipfile(ref.path):
        return TensorFileError(f"{ref.path} is a damaged .npz file ({exc})", "re-save it with numpy.savez")
    return TensorFileError(f"{ref.path} is not a valid .npz file (not a zip archive)", "re-save it with numpy.savez")


def describe(ref: Ref) -> list[ArrayInfo]:
    import zipfile  # lazily: `deconv shape` on .npy files never needs it

    try:
        with zipfile.ZipFile(ref.path) as z:
            members = {info.filename[:-4]: info for info in z.infolist() if info.filename.endswith(".npy")}
            infos = []
            for name in [ref.key] if ref.key else members:
                if name not in members:
                    raise missing(ref, name, list(members))
                with z.open(members[name]) as f:
                    infos.append(npy.read_header(f, f"{ref.path}:{name}", name, size=members[name].file_size))
            return infos
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, zlib.error) as exc:
        raise _bad_zip(ref, exc) from None


def load(ref: Ref, info: ArrayInfo):
    import zipfile

    import numpy as np

    try:
        with np.load(ref.path, allow_pickle=False) as z:
            return z[info.name]
    except (zipfile.BadZipFile, NotImplementedError, zlib.error) as exc:
        raise read_failed(ref, exc) from None


def open_reader(ref: Ref, info: ArrayInfo) -> ArrayReader:
    return ArrayReader(load(ref, info))


def write(ref: Ref, tmp: str, array, base: str | None = None) -> None:
    """The other members of ``base`` (the existing file, if given), then this array, into the temporary file."""
    import shutil
    import zipfile

    import numpy as np

    member = (ref.key or "output") + ".npy"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as out:
        if base is not None:
            try:
                with zipfile.ZipFile(base) as old:
                    for info in old.infolist():
                        if info.filename != member:
                            with old.open(info) as src, out.open(info, "w", force_zip64=True) as dst:
                                shutil.copyfileobj(src, dst, 1 << 20)
            except zipfile.BadZipFile as exc:
                raise _bad_zip(ref, exc) from None
        with out.open(member, "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.asarray(array), allow_pickle=False)
