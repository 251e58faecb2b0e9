"""Engines run a canonical DeconvConfig on arrays; numpy and cupy are imported only here, on demand. May import core."""

from __future__ import annotations

import functools
import os

from ..core.errors import ConfigError, DeconvError


def cpus() -> int:
    """The CPUs this process may run on: its affinity mask (taskset, a container's cpuset), read on every
    call (about 1 us) so that a forked worker that narrows its mask is seen. Every thread split uses it."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def threads() -> int:
    """Threads for one call's independent work items (and onnxruntime's node): DECONV_THREADS, never more
    than the CPUs (more only oversubscribe them, and OpenBLAS crashes with hundreds of concurrent callers);
    default min(CPUs, 8)."""
    return min(wanted_threads(), cpus())  # the mask, read each call (about 1 us)


def wanted_threads() -> int:
    """DECONV_THREADS as set now (8 when unset); a bad value is a ConfigError."""
    return _parse_threads(os.environ.get("DECONV_THREADS", ""))


@functools.lru_cache(maxsize=8)
def _parse_threads(env: str) -> int:
    env = env.strip()
    if not env:
        return 8
    digits = env.lstrip("0")
    if not (env.isascii() and env.isdigit()) or not digits:
        raise ConfigError(f"DECONV_THREADS={env!r} is not a positive whole number", "write e.g. DECONV_THREADS=2")
    return int(digits) if len(digits) < 10 else 1 << 30


def get_engine(device: str, arrays=()):
    """The engine module for 'cpu', 'gpu' or 'auto' (gpu when CuPy and a device are usable)."""
    if device == "cpu":
        from . import numpy_engine

        return numpy_engine
    if device in ("gpu", "auto"):
        from . import cupy_engine

        problem = cupy_engine.unavailable()
        if problem is None:
            return cupy_engine
        if device == "gpu":
            raise DeconvError(f"--device gpu: {problem}", "install the gpu extra (pip install 'deconv-cli[gpu]') on a machine with an NVIDIA GPU, or use --device cpu")
        from . import numpy_engine

        return numpy_engine
    raise DeconvError(f"unknown device '{device}'", "use cpu, gpu or auto")
