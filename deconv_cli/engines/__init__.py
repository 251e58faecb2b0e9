"""Engines run a canonical DeconvConfig on arrays; numpy and cupy are imported only here, on demand. May import core."""

from __future__ import annotations

import os

from ..core.errors import DeconvError


def cpus() -> int:
    """The CPUs this process may run on: its affinity mask (taskset, a container's cpuset), read on every
    call (about 1 us) so that a forked worker that narrows its mask is seen. Every thread split uses it."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


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
