"""The GPU engine: the generic algorithm bound to CuPy (cuBLAS GEMMs, strided copies/adds on the device).

It takes the same paths and dispatch rules as the CPU engine (those rules were measured on the CPU) and runs
the work items one after another on the current stream. No RawKernel: a backend's own kernel comes only
with a benchmark that justifies it, none has a GPU benchmark behind it yet, and this engine has not been
run on a GPU since the fast-engines rewrite.
"""

from __future__ import annotations

from ..core.config import DeconvConfig, Shape
from . import dispatch

NAME = "cupy"
DEVICE = "gpu"


def unavailable() -> str | None:
    """None when CuPy imports and sees a CUDA device; otherwise what is missing."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "CuPy sees no CUDA device"
    except Exception as exc:  # CUDA driver/runtime errors come in several types
        return f"CuPy cannot reach a CUDA device ({exc.__class__.__name__}: {exc})"
    return None


def deconvolve(x, w, bias, config: DeconvConfig, out_spatial: Shape, *, path: str | None = None):
    import cupy

    to_device = cupy.asarray
    return dispatch.deconvolve(
        to_device(x), to_device(w), None if bias is None else to_device(bias), config, out_spatial, xp=cupy, path=path
    )


def to_host(array):
    import cupy

    return cupy.asnumpy(array)
