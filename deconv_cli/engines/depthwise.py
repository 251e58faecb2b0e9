"""Depthwise transposed convolution (one input channel per group) compiled with numba: the `depthwise` path.

NumPy alone cannot run it fast: every formulation is several passes over the output for a handful of
multiply-adds per element (dw 64->64 32x32 k4s2: 20 ms phase path against onnxruntime's 10 ms). This kernel
writes each output row once, from contiguous per-tap multiply-adds (see ``_planes``). It is imported only when ``dispatch.choose_path``
picks the path, which it does only where numba is installed (a dependency; an install may lack it) and the work is large enough
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
    y (N, C_out, O0, O1, O2), all C-contiguous, C_out = C_in * M; bias b (C_out,) (zeros for none).

    Output-centric, one output row (q0, q1) at a time and, along the last axis, one stride phase ``p`` at a
    time: the phase's elements ``q2 = p + s*r`` read input ``i2 = r - shift`` through each tap with
    ``(t2*d - p - lo) % s == 0``, so every tap is one contiguous multiply-add over a phase buffer that stays
    in L1 (1-D slices indexed from 0: numba vectorizes that loop, not one with possibly negative indices),
    and each output element is stored once. The taps that reach each residue class and phase are tabled
    once per call, so no tap is tested per row. Taps are summed from the bias in the order (t0, t1, t2), as
    the scatter definition's loop does: bit-identical to it. One thread, against one strided
    read-modify-write pass per tap (the kernel before): dw 64->64 32x32 k4s2 7.5 / 11.0 ms, 3x3 stride 1
    3.1 / 8.3, fcn_g21 (k16 s8) 9.3 / 35.4, 8x64 channels 32x32 k16s8 75 / 168.
    """
    channels, mult = w.shape[0], w.shape[1]
    k0, k1, k2 = w.shape[2], w.shape[3], w.shape[4]
    l0, l1, l2 = x.shape[2], x.shape[3], x.shape[4]
    o0n, o1n, o2n = y.shape[2], y.shape[3], y.shape[4]
    s0, s1, s2 = stride[0], stride[1], stride[2]
    d0, d1, d2 = dilation[0], dilation[1], dilation[2]
    lo0, lo1, lo2 = lo[0], lo[1], lo[2]
    # the taps that reach a full index of each residue class (axes 0, 1), and each phase's taps (axis 2),
    # in increasing tap order: no modulo in the loops below
    taps0, count0 = np.empty((s0, k0), np.int64), np.zeros(s0, np.int64)
    for t in range(k0):
        rho = (t * d0) % s0
        taps0[rho, count0[rho]] = t
        count0[rho] += 1
    taps1, count1 = np.empty((s1, k1), np.int64), np.zeros(s1, np.int64)
    for t in range(k1):
        rho = (t * d1) % s1
        taps1[rho, count1[rho]] = t
        count1[rho] += 1
    phases = min(s2, o2n)
    taps2, shifts2, count2 = np.empty((phases, k2), np.int64), np.empty((phases, k2), np.int64), np.zeros(phases, np.int64)
    for p in range(phases):
        for t in range(k2):
            g = t * d2 - p - lo2
            if g % s2 == 0:
                taps2[p, count2[p]] = t
                shifts2[p, count2[p]] = g // s2
                count2[p] += 1
    phase = np.empty((o2n + s2 - 1) // s2 + 1, dtype=y.dtype)
    for plane in range(start, stop):
        n, co = plane // (channels * mult), plane % (channels * mult)
        c, m = co // mult, co % mult
        xp = x[n, c].ravel()
        yp = y[n, co].ravel()
        wp = w[c, m].ravel()
        for q0 in range(o0n):
            rho0 = (q0 + lo0) % s0
            for q1 in range(o1n):
                rho1 = (q1 + lo1) % s1
                obase = (q0 * o1n + q1) * o2n
                for p in range(phases):
                    length = (o2n - p + s2 - 1) // s2
                    for r in range(length):
                        phase[r] = b[co]
                    for j0 in range(count0[rho0]):
                        t0 = taps0[rho0, j0]
                        f0 = q0 + lo0 - t0 * d0
                        if f0 < 0 or f0 >= l0 * s0:
                            continue
                        for j1 in range(count1[rho1]):
                            t1 = taps1[rho1, j1]
                            f1 = q1 + lo1 - t1 * d1
                            if f1 < 0 or f1 >= l1 * s1:
                                continue
                            xbase = ((f0 // s0) * l1 + f1 // s1) * l2
                            for j2 in range(count2[p]):
                                t2, shift = taps2[p, j2], shifts2[p, j2]
                                ra = max(0, shift)
                                rb = min(length, l2 + shift)
                                if rb <= ra:
                                    continue
                                wv = wp[(t0 * k1 + t1) * k2 + t2]
                                src = xp[xbase + ra - shift: xbase + rb - shift]
                                dst = phase[ra:rb]
                                for j in range(rb - ra):
                                    dst[j] += wv * src[j]
                    for r in range(length):
                        yp[obase + p + s2 * r] = phase[r]


def items(x, w, b, y, config, out_spatial, acc, xp, cap: int) -> list:
    """Work items for the engine's threads: up to eight ranges of output planes, each one kernel call
    (NumPy arrays, one input channel per group; ``cap`` is not needed: the kernel makes no columns)."""
    from functools import partial

    parts = min(8, y.shape[0] * y.shape[1])
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
