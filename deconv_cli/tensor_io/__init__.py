"""Tensor files: references, header-only shapes, loading and atomic saving. No math. May import core.

A reference is ``x.npy``, ``x.npz:name``, ``x.h5:/group/dataset``, ``x.zarr:/group/array``,
``x.safetensors:name`` (the part after the last ':' that
follows a known extension names the array; a .npz/.h5 holding exactly one array needs no name), or
``-`` for .npy bytes on stdin/stdout.

Each format is one module behind the interface described in ``_common`` (npy.py, npz.py, h5.py, zarr.py,
safetensors.py, and stdio.py for ``-``); this module picks the module by the reference and owns what all
formats share: error wording, checks before reading (a regular file, as many bytes as declared), native
byte order and C order on every path, and the temporary file that becomes OUT only when complete.
"""

from __future__ import annotations

import importlib
import math
import os
import stat
from types import ModuleType

from ..core.errors import TensorFileError
from ._common import (
    EXTENSIONS,
    FORMATS,
    REFERENCES,
    STDIO,
    STREAMING,
    WINDOWED,
    WRITABLE,
    ArrayInfo,
    BadReference,
    Ref,
    commit,
    container_lock,
    discard,
    human,
    parse_ref,
    read_failed,
    remove_stale_temps,
    removing_temps_on_signals,
    snapshot,
    temp_file,
    write_failed,
)

__all__ = [
    "EXTENSIONS", "REFERENCES", "STREAMING", "WINDOWED", "ArrayInfo", "BadReference", "Ref", "StreamWriter",
    "can_stream", "check_writable", "container_lock", "describe", "formats_help", "load", "open_slices", "parse_ref",
    "peek", "remove_stale_temps",
    "removing_temps_on_signals", "save",
]


def formats_help(*, stdio: bool, written: bool = False) -> str:
    """The tensor references a command accepts, for its help: every format (``written``: those it can write;
    and ``-`` where it reads or writes stdin/stdout), from the one table in ``_common``."""
    forms = [form for ext, form in REFERENCES.items() if not written or ext in WRITABLE]
    forms += [STDIO] if stdio else []
    return ", ".join(forms[:-1]) + " or " + forms[-1]


def format_of(ref: Ref) -> ModuleType:
    """The module that reads and writes this reference (imported on first use)."""
    name = "stdio" if ref.path == "-" else FORMATS[ref.kind]
    module = _MODULES.get(name)
    if module is None:
        module = _MODULES[name] = importlib.import_module(f".{name}", __name__)
    return module


_MODULES: dict[str, ModuleType] = {}  # a job asks eight times; import_module costs 15 us even when imported


# ---------------------------------------------------------------- header-only inspection


def _regular(path: str) -> None:
    """Refuse what cannot be read twice (header, then data) or would block: FIFOs, devices, sockets."""
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    what = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"
    raise TensorFileError(f"{path} is {what}, not a tensor file", "save the tensor to a regular file first (or pipe .npy bytes to -)")


def describe(ref: Ref) -> list[ArrayInfo]:
    """Every array in the file (or the named one), from headers only."""
    try:
        if ref.path != "-":
            _regular(ref.path)
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


def nbytes(info: ArrayInfo) -> int | None:
    """The declared data size, for the dtypes deconv computes in (None for others)."""
    digits = "".join(c for c in info.dtype if c.isdigit())
    return math.prod(info.shape) * int(digits) // 8 if info.dtype.startswith("float") and digits else None


def _memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


# ---------------------------------------------------------------- loading


def _native(array):
    """C order, native byte order: what every path computes on and writes."""
    import numpy as np

    array = np.asarray(array)
    if array.dtype.isnative and array.flags.c_contiguous:
        return array
    return np.asarray(array, dtype=array.dtype.newbyteorder("="), order="C")  # keeps 0-d arrays 0-d


def load(ref: Ref, info: ArrayInfo | None = None, *, out=None):
    """The array a reference selects, read (never memory-mapped) in native byte order; nothing is
    ever unpickled, and nothing is allocated before its size is checked against the file and memory.
    ``info``: what ``peek`` said of it moments ago (saves reading the header twice); the array read must
    still have that shape. ``out``: a buffer to read into where the format can and it fits (a .npy file of that
    shape and native dtype, C order); what comes back is then ``out`` itself."""
    memory = _memory()
    if ref.path == "-":
        info = None
    else:
        if info is None:
            info = peek(ref)  # validates the header, the name and the size against the file first
        size = nbytes(info)
        if size is not None and memory is not None and size > memory:
            raise TensorFileError(
                f"{ref} declares shape {info.shape} ({human(size)}), more than this machine's memory ({human(memory)})",
                "check the file's header",
            )
    try:
        module = format_of(ref)
        if ref.path == "-":
            array = module.load(ref, info, memory)
        elif out is not None and getattr(module, "LOADS_INTO", False):
            array = module.load(ref, info, out)
        else:
            array = module.load(ref, info)
    except (ValueError, OSError, EOFError) as exc:
        raise read_failed(ref, exc) from None
    if info is not None and tuple(array.shape) != tuple(info.shape):
        raise TensorFileError(f"{ref} changed while deconv was reading it (shape {tuple(info.shape)}, now "
                              f"{tuple(array.shape)})",
                              "run again once nothing writes to it")
    try:
        return _native(array)
    except (ValueError, OSError, EOFError) as exc:
        raise read_failed(ref, exc) from None


def can_stream(ref: Ref) -> bool:
    """Whether a reference can be read or written a window at a time."""
    return ref.path != "-" and format_of(ref).STREAMS


class _Reader:
    """A format's reader with this package's error wording and native byte order."""

    def __init__(self, ref: Ref):
        self.ref = ref
        info = peek(ref)
        try:
            self._reader = format_of(ref).open_reader(ref, info)
        except (OSError, ValueError) as exc:
            raise read_failed(ref, exc) from None
        self.shape, self.dtype = tuple(self._reader.shape), self._reader.dtype.newbyteorder("=")

    def __getitem__(self, index):
        try:
            return _native(self._reader[index])
        except (OSError, ValueError, RuntimeError) as exc:
            raise read_failed(self.ref, exc) from None

    def close(self) -> None:
        self._reader.close()


def open_slices(ref: Ref) -> _Reader:
    """Windows (a slice or tuple of slices) of an array that stays on disk."""
    return _Reader(ref)


# ---------------------------------------------------------------- saving


def check_writable(ref: Ref, *, force: bool) -> None:
    """Fail before any work if OUT cannot be written: an output name that means nothing, an existing
    file (without --force; for a .npz/.h5, an existing array of that name), a missing folder."""
    if ref.path == "-":
        format_of(ref).check_target()
        return
    module = format_of(ref)
    if not hasattr(module, "write"):
        raise BadReference(f"cannot write '{ref.path}'", f"use an output ending in {', '.join(WRITABLE)}")
    if ref.kind == ".npy" and ref.key:
        raise BadReference(f"'{ref}': a .npy file holds one unnamed array", "drop the ':name'")
    if getattr(module, "CONTAINER", False):
        module.check_name(ref)
    folder = os.path.dirname(os.path.abspath(ref.path))
    try:
        st = os.stat(ref.path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise TensorFileError(f"cannot write {ref.path}: {exc.strerror or exc}", "choose another --output") from None
    store = ref.kind == ".zarr"  # a Zarr store is a folder
    if st is not None and stat.S_ISDIR(st.st_mode) and not store:
        raise TensorFileError(f"output {ref.path} is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode) and not (store and stat.S_ISDIR(st.st_mode)):
        raise TensorFileError(f"output {ref.path} is not a regular file", "choose another --output")
    if st is not None and not force:
        if not getattr(module, "CONTAINER", False) or (hasattr(module, "holds") and ref.key is None and module.holds(ref)):
            raise TensorFileError(f"output {ref.path} already exists", "pass --force to replace it")
        member = ref.key or "output"
        if hasattr(module, "holds"):  # a store of folders: the array's own folder says it
            taken = module.holds(ref)
        else:
            taken = member.strip("/") in [i.name.strip("/") for i in describe(Ref(ref.path))]
        if taken:
            raise TensorFileError(f"{ref.path} already holds an array '{member}'", "pass --force to replace it")
    if not os.path.isdir(folder):
        raise TensorFileError(f"output folder {folder} does not exist", "create it first")
    if not os.access(folder, os.W_OK):
        raise TensorFileError(f"output folder {folder} is not writable", "choose another --output")


def free_space(folder: str) -> int | None:
    """Bytes free for an ordinary user in ``folder``'s filesystem; None where it reports no sizes."""
    try:
        fs = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    if fs.f_blocks == 0:  # a pseudo filesystem (/sys, /proc) that reports no sizes
        return None
    return fs.f_bavail * fs.f_frsize


def check_space(ref: Ref, size: int) -> None:
    """Refuse up front an output the folder has no room for (plus the arrays a container keeps)."""
    folder = os.path.dirname(os.path.abspath(ref.path))
    free = free_space(folder)
    if free is None:
        return
    keep = os.path.getsize(ref.path) if getattr(format_of(ref), "CONTAINER", False) and os.path.isfile(ref.path) else 0
    if size + keep > free:
        raise TensorFileError(
            f"not enough free space for {ref.path}: it needs {human(size + keep)}, {folder} has {human(free)} free",
            "free some space or choose another --output",
        )


def _base(ref: Ref, force: bool) -> tuple[dict, object]:
    """For a container that exists: the file whose other arrays the new one keeps (as ``base=``),
    and its stat, which must not change before the commit. With --force, a file that is not a
    readable container is replaced whole. A Zarr store is not copied: it is only ``base=`` (its format)."""
    module = format_of(ref)
    if not getattr(module, "CONTAINER", False):
        return {}, None
    if hasattr(module, "holds"):
        return ({"base": ref.path} if os.path.isdir(ref.path) else {}), None
    if not os.path.isfile(ref.path):
        return {}, None
    try:
        describe(Ref(ref.path))
    except TensorFileError:
        if force:
            return {}, None
        raise
    return {"base": ref.path}, snapshot(ref.path)


class _Target:
    """One write of OUT, from the checks to the commit: the container's lock (held throughout, so that the
    checks, the copy of the other arrays and the commit see no other deconv run's write in between), the
    checks again under it, the temporary file, and the commit. ``close`` removes what was not committed and
    releases the lock, on every path."""

    def __init__(self, ref: Ref, size: int, *, force: bool, chunks=None):
        self.ref, self.force, self.tmp, self.committed = ref, force, None, False
        self.module = format_of(ref)
        self._lock = container_lock(ref.path) if getattr(self.module, "CONTAINER", False) else None
        if self._lock is not None:
            self._lock.__enter__()
        try:
            if self._lock is not None:  # again, under the lock: another run may have taken the name meanwhile
                check_writable(ref, force=force)
            check_space(ref, size)
            self.base, self._expect = _base(ref, force)
            if chunks and getattr(self.module, "CHUNKED", False):
                self.base["chunks"] = chunks
            self.tmp = temp_file(ref)
        except BaseException:
            self.close()
            raise

    def commit(self) -> None:
        if hasattr(self.module, "commit"):
            self.module.commit(self.tmp, self.ref, replace=self.force)
        else:
            commit(self.tmp, self.ref, replace=self.force, expect=self._expect)
        self.committed = True

    def close(self) -> None:
        try:
            if not self.committed:
                discard(self.tmp)
        finally:
            lock, self._lock = self._lock, None
            if lock is not None:
                lock.__exit__(None, None, None)


def save(ref: Ref, array, *, force: bool, chunks=None) -> None:
    """Write atomically: a temporary file in the target folder, then into place. Never partial,
    never clobbered without --force; a container (.npz, .h5, .zarr) keeps its other arrays. ``chunks``: the
    chunk shape for a chunked format (Zarr), the one a streamed write of the same job would use."""
    array = _native(array)
    check_writable(ref, force=force)
    if ref.path == "-":
        format_of(ref).write(ref, None, array)
        return
    target = None
    try:
        target = _Target(ref, array.nbytes, force=force, chunks=chunks)
        target.module.write(ref, target.tmp, array, **target.base)
        target.commit()
    except (OSError, RuntimeError, ValueError, TypeError) as exc:  # what h5py and zipfile raise on write
        raise write_failed(ref.path, exc) from None
    finally:
        if target is not None:
            target.close()


class StreamWriter:
    """Write an output one window after another into a temporary file; ``commit`` puts it in place.
    As a context manager, leaving without ``commit`` removes the temporary file. A container stays locked
    from here to the commit (see ``_Target``). ``tmp``: the temporary file (or store)."""

    def __init__(self, ref: Ref, shape, dtype, *, force: bool, chunks=None):
        import numpy as np

        check_writable(ref, force=force)
        self.ref, self._writer, self._target, self.tmp = ref, None, None, None
        try:
            self._target = _Target(ref, math.prod(shape) * np.dtype(dtype).itemsize, force=force, chunks=chunks)
            self.tmp = self._target.tmp
            self._writer = self._target.module.open_writer(ref, self.tmp, shape, np.dtype(dtype).newbyteorder("="),
                                                           **self._target.base)
        except (OSError, RuntimeError, ValueError, TypeError) as exc:
            self.__exit__()
            raise write_failed(ref.path, exc) from None
        except BaseException:
            self.__exit__()
            raise

    def __setitem__(self, index, value) -> None:
        try:
            self._writer[index] = value
        except (OSError, RuntimeError) as exc:
            raise write_failed(self.ref.path, exc) from None

    def commit(self) -> None:
        try:
            self._close()
            self._target.commit()
        except (OSError, RuntimeError) as exc:
            raise write_failed(self.ref.path, exc) from None
        self._target.close()

    def _close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._close()
        except (OSError, RuntimeError):
            pass
        finally:
            if self._target is not None:
                self._target.close()
