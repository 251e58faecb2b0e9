"""Tensor files: references, header-only shapes, loading and atomic saving. No math.

A reference is ``x.npy``, ``x.npz:name``, ``x.h5:/group/dataset`` (the part after the last ':' that
follows a known extension names the array; a .npz/.h5 holding exactly one array needs no name), or
``-`` for .npy bytes on stdin/stdout. Shapes come from headers: the .npy header is parsed here in pure
Python (so ``deconv shape`` never imports numpy), HDF5 metadata through h5py.
"""

from __future__ import annotations

import ast
import io
import os
import struct
import sys
from dataclasses import dataclass

from .errors import TensorFileError

EXTENSIONS = (".npy", ".npz", ".h5", ".hdf5")
_NPY_MAGIC = b"\x93NUMPY"
# .npy 'descr' -> numpy dtype name, for the dtypes a header may carry
_KINDS = {"f": "float", "i": "int", "u": "uint", "b": "bool", "c": "complex"}


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
            "use .npy, .npz[:name] or .h5[:/dataset] (or - for .npy on stdin/stdout)",
        )
    return Ref(text)


# ---------------------------------------------------------------- header-only inspection


def describe(ref: Ref) -> list[ArrayInfo]:
    """Every array in the file (or the named one), from headers only."""
    import zipfile  # lazily: `deconv shape` on .npy files never needs it

    try:
        if ref.kind == ".npy":
            if ref.path == "-":
                raise TensorFileError("cannot inspect stdin without reading it", "save the tensor to a file first")
            with open(ref.path, "rb") as f:
                return [_npy_header(f, ref.path)]
        if ref.kind == ".npz":
            with zipfile.ZipFile(ref.path) as z:
                names = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
                infos = []
                for name in ([ref.key] if ref.key else names):
                    if name not in names:
                        raise _missing(ref, name, names)
                    with z.open(name + ".npy") as f:
                        infos.append(_npy_header(f, f"{ref.path}:{name}", name))
                return infos
        return _h5_describe(ref)
    except FileNotFoundError:
        raise TensorFileError(f"{ref.path}: no such file", "check the path") from None
    except IsADirectoryError:
        raise TensorFileError(f"{ref.path} is a directory, not a tensor file") from None
    except zipfile.BadZipFile:
        raise TensorFileError(f"{ref.path} is not a valid .npz file (not a zip archive)", "re-save it with numpy.savez") from None
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


def _missing(ref: Ref, name: str, names: list[str]) -> TensorFileError:
    return TensorFileError(f"{ref.path} has no array '{name}'", f"it holds: {', '.join(names) or 'nothing'}")


def _npy_header(f, where: str, name: str = "") -> ArrayInfo:
    """Parse a .npy header (format versions 1-3) without numpy."""
    bad = TensorFileError(f"{where} is not a valid .npy file (bad header)", "re-save it with numpy.save")
    magic = f.read(8)
    if len(magic) < 8 or magic[:6] != _NPY_MAGIC:
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


def _h5_describe(ref: Ref) -> list[ArrayInfo]:
    h5py = _h5py()
    try:
        with h5py.File(ref.path, "r") as f:
            names: list[str] = []
            f.visititems(lambda name, obj: names.append("/" + name) if isinstance(obj, h5py.Dataset) else None)
            key = None if ref.key is None else "/" + ref.key.lstrip("/")
            if key is not None and key not in names:
                raise _missing(ref, ref.key, names)
            return [ArrayInfo(n, tuple(int(v) for v in f[n].shape), str(f[n].dtype)) for n in ([key] if key else names)]
    except OSError as exc:
        if not os.path.exists(ref.path):
            raise
        raise TensorFileError(f"{ref.path} is not a readable HDF5 file ({exc})", "check the file") from None


def _h5py():
    try:
        import h5py
    except ImportError:
        raise TensorFileError("h5py is not installed, so .h5 files cannot be read", "pip install h5py") from None
    return h5py


# ---------------------------------------------------------------- loading


def load(ref: Ref):
    """The array a reference selects. .npy files are memory-mapped; nothing is ever unpickled."""
    import zipfile

    import numpy as np

    info = None if ref.path == "-" else peek(ref)  # validates the header and the name first
    try:
        if ref.path == "-":
            return np.load(io.BytesIO(sys.stdin.buffer.read()), allow_pickle=False)
        if ref.kind == ".npy":
            return np.load(ref.path, mmap_mode="r", allow_pickle=False)
        if ref.kind == ".npz":
            with np.load(ref.path, allow_pickle=False) as z:
                return z[info.name]
        with _h5py().File(ref.path, "r") as f:
            return f[info.name][()]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise TensorFileError(f"cannot read {ref}: {exc}", "the file is truncated or corrupt; re-save it") from None


# ---------------------------------------------------------------- saving


def check_writable(ref: Ref, *, force: bool) -> None:
    """Fail before any work if OUT exists (without --force) or its directory cannot take a file."""
    if ref.path == "-":
        return
    if ref.kind not in (".npy", ".npz", ".h5"):
        raise TensorFileError(f"cannot write '{ref.path}'", "use an output ending in .npy, .npz or .h5")
    if ref.kind == ".npy" and ref.key:
        raise TensorFileError(f"'{ref}': a .npy file holds one unnamed array", "drop the ':name'")
    if os.path.isdir(ref.path):
        raise TensorFileError(f"output {ref.path} is a directory")
    if os.path.exists(ref.path) and not force:
        raise TensorFileError(f"output {ref.path} already exists", "pass --force to replace it")
    folder = os.path.dirname(os.path.abspath(ref.path))
    if not os.path.isdir(folder):
        raise TensorFileError(f"output folder {folder} does not exist", "create it first")
    if not os.access(folder, os.W_OK):
        raise TensorFileError(f"output folder {folder} is not writable", "choose another --output")


def save(ref: Ref, array, *, force: bool) -> None:
    """Write atomically: a temporary file in the target folder, then os.replace. Never partial."""
    import tempfile

    import numpy as np

    if ref.path == "-":
        buf = io.BytesIO()
        np.save(buf, np.asarray(array), allow_pickle=False)
        sys.stdout.buffer.write(buf.getvalue())
        sys.stdout.buffer.flush()
        return
    check_writable(ref, force=force)
    folder = os.path.dirname(os.path.abspath(ref.path))
    fd, tmp = tempfile.mkstemp(prefix=".deconv-", suffix=ref.kind, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            if ref.kind == ".npy":
                np.save(f, array, allow_pickle=False)
            elif ref.kind == ".npz":
                np.savez(f, **{ref.key or "output": array})
        if ref.kind == ".h5":
            with _h5py().File(tmp, "w") as h5:
                h5.create_dataset(ref.key or "output", data=array)
        os.replace(tmp, ref.path)
    except OSError as exc:
        raise TensorFileError(f"cannot write {ref.path}: {exc.strerror or exc}", "check free space and permissions") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ---------------------------------------------------------------- streaming (inputs larger than memory)


class _Sliceable:
    """Batch slices of an array that stays on disk: plain reads at an offset of a C-ordered .npy
    (no memory map, whose touched pages would stay resident), or an open HDF5 dataset."""

    def __init__(self, ref: Ref):
        import numpy as np

        self.ref, self._file, self._h5 = ref, None, None
        info = peek(ref)
        if ref.kind == ".h5":
            self._h5 = _h5py().File(ref.path, "r")
            self._data = self._h5[info.name]
            self.shape, self.dtype = tuple(self._data.shape), self._data.dtype
            return
        self._file = open(ref.path, "rb")
        major, _ = np.lib.format.read_magic(self._file)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(self._file)
        if fortran:
            self._file.close()
            self._file, self._data = None, load(ref)  # Fortran order: slices are strided, use the map
        self.shape, self.dtype, self._offset = tuple(shape), np.dtype(dtype), self._file.tell() if self._file else 0

    def __getitem__(self, index: slice):
        import numpy as np

        try:
            if self._file is None:
                return np.ascontiguousarray(self._data[index])
            start, stop, _ = index.indices(self.shape[0])
            row = int(np.prod(self.shape[1:])) * self.dtype.itemsize
            self._file.seek(self._offset + start * row)
            data = np.fromfile(self._file, dtype=self.dtype, count=(stop - start) * row // self.dtype.itemsize)
            if data.size * self.dtype.itemsize != (stop - start) * row:
                raise ValueError("file ends early")
            return data.reshape((stop - start, *self.shape[1:]))
        except (OSError, ValueError) as exc:
            raise TensorFileError(f"cannot read {self.ref}: {exc}", "the file is truncated or corrupt; re-save it") from None

    def close(self) -> None:
        for handle in (self._file, self._h5):
            if handle is not None:
                handle.close()


def can_stream(ref: Ref) -> bool:
    """Whether a reference can be read or written a batch slice at a time."""
    return ref.path != "-" and ref.kind in (".npy", ".h5")


def open_slices(ref: Ref) -> _Sliceable:
    return _Sliceable(ref)


class StreamWriter:
    """Write an output one batch slice after another into a temporary file; ``commit`` renames it into
    place. .npy slices are appended with plain writes after the header (no memory map); .h5 slices go
    into a dataset. As a context manager, leaving without ``commit`` removes the temporary file.
    """

    def __init__(self, ref: Ref, shape, dtype, *, force: bool):
        import tempfile

        import numpy as np

        check_writable(ref, force=force)
        self.ref, self.force, self._h5, self._file, self._done = ref, force, None, None, False
        fd, self.tmp = tempfile.mkstemp(prefix=".deconv-", suffix=ref.kind, dir=os.path.dirname(os.path.abspath(ref.path)))
        try:
            if ref.kind == ".npy":
                self._file = os.fdopen(fd, "wb")
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
                np.lib.format.write_array_header_1_0(self._file, header)
            else:
                os.close(fd)
                self._h5 = _h5py().File(self.tmp, "w")
                self._data = self._h5.create_dataset(ref.key or "output", shape=tuple(shape), dtype=dtype)
        except OSError as exc:
            self.__exit__()
            raise TensorFileError(f"cannot write {ref.path}: {exc}", "check free space and permissions") from None

    def __setitem__(self, index: slice, value) -> None:
        """Slices must come in order (start = where the previous one stopped) for .npy outputs."""
        import numpy as np

        try:
            if self._file is not None:
                self._file.write(np.ascontiguousarray(value).tobytes())
            else:
                self._data[index] = value
        except OSError as exc:
            raise TensorFileError(f"cannot write {self.ref.path}: {exc}", "check free space and permissions") from None

    def commit(self) -> None:
        self._close()
        check_writable(self.ref, force=self.force)
        os.replace(self.tmp, self.ref.path)
        self._done = True

    def _close(self) -> None:
        for handle in (self._file, self._h5):
            if handle is not None:
                handle.close()
        self._file = self._h5 = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._close()
        if not self._done and os.path.exists(self.tmp):
            os.unlink(self.tmp)
