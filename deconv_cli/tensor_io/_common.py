"""What every format shares: references, array descriptions, errors, window arithmetic, atomic commit.

A format module (npy.py, npz.py, h5.py, stdio.py) implements, at module level:

    STREAMS                                   whether open_writer exists (slices written one by one)
    CONTAINER                                 whether a file holds several named arrays
    describe(ref) -> list[ArrayInfo]          headers only; checks declared sizes against the file
    load(ref, info) -> array                  the whole array
    open_reader(ref, info) -> reader          .shape, .dtype, reader[tuple of slices], .close()
    open_writer(ref, tmp, shape, dtype)       writer[tuple of slices] = array, .close()   (if STREAMS;
                                              with chunks= too if the module sets CHUNKED)
    write(ref, tmp, array)                    the whole array into the temporary file tmp
    check_name(ref)                           (CONTAINER) refuse an output name that means nothing

A CONTAINER's open_writer and write take ``base=``: the existing file whose other arrays the
temporary file must keep (for a Zarr store: the store, whose format the new array follows). Writers only
ever write the temporary file (a temporary folder for a Zarr store); ``commit`` puts it in place, or the
module's own ``commit(tmp, ref, replace=...)`` where it has one (a Zarr store moves one array folder in).
Arrays may come back in any byte order and memory order; the package makes them native C order.

Adding a container format (e.g. a .safetensors writer): set CONTAINER = True and give the module
``check_name(ref)`` and ``write(ref, tmp, array, base=None)`` (which copies ``base``'s other arrays into
``tmp``); ``tensor_io.save`` then does the rest for it: the lock beside the container (``container_lock``,
held from the check that the name is free to the commit, so two runs adding different arrays at once both
keep theirs), the copy, and the atomic commit that refuses a container changed meanwhile by another program.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import re
import time
from dataclasses import dataclass

from ..core.errors import TensorFileError

# extension -> format module (``.hdf5`` is read and written as ``.h5``)
FORMATS = {".npy": "npy", ".npz": "npz", ".h5": "h5", ".hdf5": "h5", ".zarr": "zarr", ".safetensors": "safetensors",
           ".onnx": "onnx", ".keras": "keras"}  # a model's weights (read only)
EXTENSIONS = tuple(FORMATS)
# How a reference to each format is written, one per format module: every help text lists these, so a
# format added to FORMATS without one here fails tests/cli/test_help_formats.py.
REFERENCES = {".npy": "x.npy", ".npz": "x.npz:name", ".h5": "x.h5:/path", ".zarr": "x.zarr[:/path]",
              ".safetensors": "x.safetensors:name", ".onnx": "x.onnx:initializer", ".keras": "x.keras:layers/path"}
STDIO = "- (.npy bytes on stdin/stdout)"
WRITABLE = (".npy", ".npz", ".h5", ".zarr", ".safetensors")
STREAMING = (".npy", ".h5", ".zarr")  # outputs written one tile at a time
WINDOWED = (".npy", ".h5", ".zarr", ".safetensors")  # inputs read one window at a time


@dataclass(frozen=True)
class Ref:
    path: str
    key: str | None = None

    @functools.cached_property  # asked a dozen times per job
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
        raise BadReference(
            f"'{text}' has no known tensor extension",
            "use .npy, .npz[:name], .h5[:/dataset], .zarr[:/array] or .safetensors[:name] (or - for .npy on "
            "stdin/stdout); a model's weights read from .onnx[:initializer] and .keras[:layers/path]",
        )
    return Ref(text)


class BadReference(TensorFileError):
    """A tensor reference that cannot mean anything (unknown extension, a name where none fits):
    a usage error, exit code 2."""

    exit_code = 2


def human(size: int) -> str:
    """A byte count for people: 1344 -> '1.3 KiB'; absurd header sizes stay short ('8.33e+13 EiB')."""
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        value /= 1024
        if value < 1024 or unit == "EiB":
            return f"{value:.1f} {unit}" if value < 1024 else f"{value:.3g} {unit}"
    return str(size)


def missing(ref: Ref, name: str, names: list[str]) -> TensorFileError:
    return TensorFileError(f"{ref.path} has no array '{name}'", f"it holds: {', '.join(names) or 'nothing'}")


def read_failed(ref, exc: BaseException) -> TensorFileError:
    return TensorFileError(f"cannot read {ref}: {oneline(exc)}", "the file is truncated or corrupt; re-save it")


def oneline(exc: BaseException) -> str:
    """An exception's text on one line (HDF5 messages come in several)."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip()) or type(exc).__name__


def write_failed(path: str, exc: BaseException) -> TensorFileError:
    text = oneline(exc)
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


# ---------------------------------------------------------------- temporary files and the atomic commit
#
# A temporary file is named ``.deconv-tmp-<pid>-<host>-<random><ext>`` next to OUT, created with
# O_EXCL and mode 0666 (so the umask applies, as for any new file). It is registered while it
# exists, so a signal handler can remove it; one left by a killed run (its pid dead on this host)
# is removed by the next run that writes into the same folder. It becomes OUT by ``commit``:
# a rename that refuses to replace (renameat2 RENAME_NOREPLACE, else os.link and unlinking the temp) when OUT
# must not exist (an atomic claim: two runs cannot both win), os.replace otherwise.

TEMP_PREFIX = ".deconv-tmp-"
_LIVE: set[str] = set()


@functools.cache
def _host_tag() -> str:
    """8 hex digits naming this host. platform (loaded with numpy) and zlib rather than socket, hashlib and
    secrets: those three cost a tiny `deconv run` about 5 ms of start-up."""
    import platform
    import zlib

    return f"{zlib.crc32(platform.node().encode()):08x}"


def temp_file(ref: Ref) -> str:
    """A new empty temporary file (a folder for a Zarr store) next to OUT, for a format module to write."""
    folder = os.path.dirname(os.path.abspath(ref.path))
    remove_stale_temps(folder)
    while True:
        tmp = os.path.join(folder, f"{TEMP_PREFIX}{os.getpid()}-{_host_tag()}-{os.urandom(4).hex()}{ref.kind}")
        try:
            if ref.kind == ".zarr":
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        _LIVE.add(tmp)
        return tmp


_SWEPT: set[str] = set()  # folders this process has already swept: a batch writes many outputs into one
_LEGACY = re.compile(r"\.deconv-[a-z0-9_]{8}(\.npy|\.npz|\.h5|\.hdf5|\.zarr)")  # tempfile.mkstemp's, before the pid
LEGACY_STALE_S = 24 * 3600  # a legacy name carries no pid: only one untouched for a day is surely dead


def remove_stale_temps(folder: str) -> None:
    """Remove the temporary files that killed runs of deconv left in ``folder``: only this user's, only ours
    by name, only stale ones (the pid in the name is dead on this host, or was reused by a process started
    after the file was last written; a name from older versions, which carried no pid, untouched for a day).
    Once per folder and process: a scan per output made a batch of n outputs into one folder O(n^2)."""
    if folder in _SWEPT:
        return
    _SWEPT.add(folder)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    host = _host_tag()
    for entry in entries:
        try:
            if not entry.name.startswith(".deconv-") or entry.stat(follow_symlinks=False).st_uid != os.geteuid():
                continue
            if _stale(entry, host):
                _remove(entry)
        except OSError:
            pass


def _stale(entry: os.DirEntry, host: str) -> bool:
    mtime = entry.stat(follow_symlinks=False).st_mtime
    if _LEGACY.fullmatch(entry.name):
        return time.time() - mtime > LEGACY_STALE_S
    parts = entry.name[len(TEMP_PREFIX):].split("-") if entry.name.startswith(TEMP_PREFIX) else []
    if len(parts) != 3 or parts[1] != host or not parts[0].isdigit():
        return False  # not ours, or another host's (its pids mean nothing here)
    started = _process_start(int(parts[0]))
    return started is None or started > mtime + 1  # dead, or the pid now names a younger process


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch); None when there is none (or a zombie); +inf where the
    system cannot tell (then it counts as alive: a temporary file is never removed on a guess)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except (PermissionError, OverflowError):
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()  # from field 3: after the name, which may hold spaces
        if fields[0] in (b"Z", b"X"):
            return None  # exited, not yet reaped by its parent: it writes nothing more
        ticks = int(fields[19])  # field 22, the start time
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except FileNotFoundError:
        return None  # exited meanwhile
    except (OSError, ValueError, IndexError, StopIteration):
        return math.inf


def _remove(entry: os.DirEntry) -> None:
    if entry.is_dir(follow_symlinks=False):
        import shutil

        shutil.rmtree(entry.path)
    else:
        os.unlink(entry.path)


def commit(tmp: str, ref: Ref, *, replace: bool, expect=None) -> None:
    """Put the finished temporary file at OUT. Without ``replace``, OUT must not exist and is claimed
    atomically; with it, OUT is replaced and keeps its mode. ``expect``: the stat of OUT when a
    container's other arrays were copied from it; OUT must not have changed since."""
    import stat

    if os.path.isdir(tmp):
        _commit_folder(tmp, ref, replace=replace)
        return
    try:
        old = os.stat(ref.path)
    except FileNotFoundError:
        old = None
    if expect is not None and (old is None or (old.st_dev, old.st_ino, old.st_size, old.st_mtime_ns) != expect):
        raise TensorFileError(f"{ref.path} changed while deconv was writing into it", "run again")
    if old is not None and (replace or expect is not None):
        os.chmod(tmp, stat.S_IMODE(old.st_mode))
        os.replace(tmp, ref.path)
        _LIVE.discard(tmp)
        return
    try:
        if _rename_noreplace(tmp, ref.path):
            _LIVE.discard(tmp)
            return
        os.link(tmp, ref.path)
    except FileExistsError:
        raise exists(ref) from None
    except OSError:  # no hard links on this filesystem: claim the name with O_EXCL, then fill it
        try:
            os.close(os.open(ref.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            raise exists(ref) from None
        os.replace(tmp, ref.path)
    discard(tmp)


_RENAMEAT2 = []  # [the libc function, or None where there is none]
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2


def _renameat2(src: str, dst: str, flags: int) -> bool:
    """One renameat2 call; False where the system or the file system cannot (the caller then falls back)."""
    import ctypes
    import errno

    if not _RENAMEAT2:
        function = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
        if function is not None:
            function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
        _RENAMEAT2.append(function)
    function = _RENAMEAT2[0]
    if function is None:
        return False
    at_fdcwd = -100
    if function(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):  # old kernel, or this file system
        return False
    raise OSError(code, os.strerror(code), dst)


def _rename_noreplace(src: str, dst: str) -> bool:
    """Rename ``src`` to ``dst`` unless ``dst`` exists (FileExistsError), in one step; False where the system or
    the file system cannot (then the caller links and unlinks). One system call where the claim by link took
    two, and no temporary name left to unlink."""
    return _renameat2(src, dst, _RENAME_NOREPLACE)


def move_folder(tmp: str, dst: str, *, replace: bool, aside: str) -> None:
    """Put the folder ``tmp`` at ``dst``. Without ``replace``, ``dst`` must not exist (FileExistsError) and is
    claimed in one step. With it, an existing ``dst`` is swapped with ``tmp`` in one step (renameat2
    RENAME_EXCHANGE), so a reader or a kill sees the old folder or the new one, never none; the old one,
    now at ``tmp``, is then removed. Where the file system cannot swap, the old folder moves to ``aside``
    first (a temporary name, removed after, or by the next run if this one is killed)."""
    import shutil

    if not replace or not os.path.lexists(dst):
        if not _rename_noreplace(tmp, dst):
            if os.path.lexists(dst):
                raise FileExistsError(dst)
            os.rename(tmp, dst)
        _LIVE.discard(tmp)
        return
    if _renameat2(tmp, dst, _RENAME_EXCHANGE):
        shutil.rmtree(tmp, ignore_errors=True)
        _LIVE.discard(tmp)
        return
    _LIVE.add(aside)
    os.rename(dst, aside)
    os.rename(tmp, dst)
    _LIVE.discard(tmp)
    discard(aside)


def _commit_folder(tmp: str, ref: Ref, *, replace: bool) -> None:
    """A whole Zarr store (its root array): see ``move_folder``."""
    try:
        move_folder(tmp, ref.path, replace=replace, aside=f"{tmp}.old")
    except FileExistsError:
        raise exists(ref) from None


class container_lock:
    """An exclusive lock on a container (a .npz/.h5 file, a Zarr store) among deconv runs, from the check
    that an array name is free to the commit: two runs adding different arrays at once both keep theirs
    (the second waits, then copies the first's result). The lock is ``flock`` on a hidden file beside the
    container (``.NAME.deconv-lock``), which the kernel releases however the process ends; the holder
    removes the file on release, and a waiter that finds it replaced starts over."""

    def __init__(self, path: str):
        folder, name = os.path.split(os.path.abspath(path))
        self.path = os.path.join(folder, f".{name}.deconv-lock")
        self._fd: int | None = None

    def __enter__(self):
        import fcntl

        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    self._fd = fd
                    _LIVE_LOCKS.add(self.path)
                    return self
            except FileNotFoundError:  # the holder removed it as we waited: take the next one
                pass
            except OSError as exc:
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP):
                    os.close(fd)
                    raise
                self._fd = fd  # a file system without locks: as before, the commit still refuses a changed file
                _LIVE_LOCKS.add(self.path)
                return self
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def __exit__(self, *exc) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _LIVE_LOCKS.discard(self.path)
        try:
            os.unlink(self.path)  # while still held: a waiter then sees its file replaced and starts over
        except OSError:
            pass
        os.close(fd)


_LIVE_LOCKS: set[str] = set()  # lock files held by this process, removed by the signal handler too


def snapshot(path: str):
    """What ``commit(expect=...)`` compares: OUT as it was when its arrays were copied."""
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def exists(ref: Ref) -> TensorFileError:
    return TensorFileError(f"output {ref.path} already exists", "pass --force to replace it")


def discard(tmp: str | None) -> None:
    if tmp is None or tmp not in _LIVE:  # never made, or already committed or removed
        return
    _LIVE.discard(tmp)
    try:
        if os.path.isdir(tmp) and not os.path.islink(tmp):  # a Zarr store
            import shutil

            shutil.rmtree(tmp)
        else:
            os.unlink(tmp)
    except FileNotFoundError:
        pass


class removing_temps_on_signals:
    """While active, SIGTERM, SIGHUP and SIGINT remove the temporary files and exit 128+signal."""

    SIGNALS = ("SIGTERM", "SIGHUP", "SIGINT")

    def __enter__(self):
        import signal
        import threading

        self._saved = {}
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                number = getattr(signal, name, None)
                if number is not None:
                    self._saved[number] = signal.signal(number, _on_signal)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for number, handler in self._saved.items():
            signal.signal(number, handler)


def _on_signal(number, frame) -> None:
    import signal

    for tmp in list(_LIVE):
        try:
            discard(tmp)
        except OSError:
            pass
    for lock in list(_LIVE_LOCKS):  # held until os._exit closes them; a waiter then finds its file gone
        try:
            os.unlink(lock)
        except OSError:
            pass
    try:
        os.write(2, f"Error: stopped by {signal.Signals(number).name}; no partial output was left.\n".encode())
    finally:
        os._exit(128 + number)
