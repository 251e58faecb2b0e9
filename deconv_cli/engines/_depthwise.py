"""Depthwise transposed convolution (one input channel per group) compiled with numba: the `depthwise` path.

NumPy alone cannot run it fast: every formulation is several passes over the output for a handful of
multiply-adds per element (dw 64->64 32x32 k4s2: 20 ms phase path against onnxruntime's 10 ms). This kernel
makes one pass per tap over one output plane that stays in cache. It is imported only when ``choose_path``
picks the path, which it does only where numba is installed (the ``fast`` extra) and the work is large enough
to pay numba's import (about 0.5 s once per process, compiled code cached on disk), so ``deconv shape`` and
small ``deconv run`` calls never load it. Work items are (sample x channel) ranges run by the engine's own
threads (``nogil``), so the engine's thread budget holds: no numba thread pool.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _planes(x, w, b, y, start, stop, stride, dilation, lo):
    """Output planes [start, stop) of (N * C_out) for x (N, C_in, L0, L1, L2), w (C_in, M, K0, K1, K2),
    y (N, C_out, O0, O1, O2), C_out = C_in * M; bias b (C_out,) (zeros for none)."""
    channels, mult = w.shape[0], w.shape[1]
    k0, k1, k2 = w.shape[2], w.shape[3], w.shape[4]
    l0, l1, l2 = x.shape[2], x.shape[3], x.shape[4]
    o0n, o1n, o2n = y.shape[2], y.shape[3], y.shape[4]
    for plane in range(start, stop):
        n, co = plane // (channels * mult), plane % (channels * mult)
        c, m = co // mult, co % mult
        out = y[n, co]
        out[:] = b[co]
        for t0 in range(k0):
            for i0 in range(l0):
                q0 = i0 * stride[0] + t0 * dilation[0] - lo[0]
                if q0 < 0 or q0 >= o0n:
                    continue
                for t1 in range(k1):
                    for i1 in range(l1):
                        q1 = i1 * stride[1] + t1 * dilation[1] - lo[1]
                        if q1 < 0 or q1 >= o1n:
                            continue
                        for t2 in range(k2):
                            wv = w[c, m, t0, t1, t2]
                            # inputs whose output q2 = i2*s + t2*d - lo lies in [0, O2)
                            off = t2 * dilation[2] - lo[2]
                            i2a = max(0, -(off // stride[2]))
                            i2b = min(l2, (o2n - 1 - off) // stride[2] + 1)
                            for i2 in range(i2a, i2b):
                                out[q0, q1, i2 * stride[2] + off] += wv * x[n, c, i0, i1, i2]


def items(x, w, b, y, config, out_spatial, acc, parts: int) -> list:
    """Work items for the engine's threads: ``parts`` ranges of output planes, each one kernel call."""
    from functools import partial

    pad = (1,) * (3 - config.rank)  # rank 1 and 2 as 3-D with leading unit dimensions
    x3 = np.ascontiguousarray(x.reshape(x.shape[:2] + pad + x.shape[2:]), dtype=acc)
    w3 = np.ascontiguousarray(w.reshape(w.shape[:2] + pad + w.shape[2:]), dtype=acc)
    direct = y.dtype == acc and y.flags.c_contiguous
    y3 = (y if direct else np.empty(y.shape, dtype=acc)).reshape(y.shape[:2] + pad + tuple(out_spatial))
    b3 = np.zeros(config.out_channels, dtype=acc) if b is None else np.ascontiguousarray(b, dtype=acc)
    stride, dilation = np.array(pad + config.stride), np.array(pad + config.dilation)
    lo = np.array((0,) * len(pad) + tuple(c[0] for c in config.crops))
    planes = y.shape[0] * y.shape[1]
    bounds = [planes * i // parts for i in range(parts + 1)]
    work = [partial(_planes, x3, w3, b3, y3, p0, p1, stride, dilation, lo)
            for p0, p1 in zip(bounds, bounds[1:]) if p1 > p0]
    if direct:
        return work
    # a float16 or strided (channels-last) output: planes computed in float32, then one cast/copy each
    return [partial(_then_copy, item, y, y3.reshape(y.shape), p0, p1, y.shape[1])
            for item, (p0, p1) in zip(work, [(p0, p1) for p0, p1 in zip(bounds, bounds[1:]) if p1 > p0])]


def _then_copy(item, y, buffer, p0, p1, channels):
    item()
    for plane in range(p0, p1):
        n, co = divmod(plane, channels)
        y[n, co] = buffer[n, co]
