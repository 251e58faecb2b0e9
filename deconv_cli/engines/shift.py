"""``shift`` (all phases in one GEMM, large strides with few channels): the phases of a stride ``s`` read the
input through only a few distinct shifts ``m = (t*d - p - lo) // s`` (k = 2s: three per dim); one weight
holds, for every phase and every shift, that phase's tap with that shift (zero where it has none), and one GEMM
over the input gathered at every shift gives every phase, written by one interleaving copy. Where each phase's
taps are a window of the shifts and its GEMM is deep (1-D hifigan), one GEMM per phase reads its window of
the same columns instead: no multiply-add wasted, and still one gather per shift and one interleaving write.
"""

from __future__ import annotations

import functools
import itertools
import math
from functools import partial

from ..core.config import DeconvConfig, Shape
from . import _common

SHIFT_WINDOW_MIN_STRIDE = 4  # the shift path's GEMM per phase (``shift_windowed``): 1-D strides from this ...
SHIFT_WINDOW_MIN_DEPTH = 512  # ... where each phase's GEMM has at least this depth (taps x C_in/g)


def shift_factor(config: DeconvConfig, out_spatial: Shape) -> float:
    """Multiply-adds of the shift path over the phase path's: every phase times every shift, over the taps."""
    dims, _ = _shift_plan(config, tuple(out_spatial))
    return math.prod(p * len(shifts) for p, _, shifts in dims) / math.prod(config.kernel)


def shift_windowed(config: DeconvConfig, out_spatial: Shape) -> bool:
    """Whether the shift path runs one GEMM per phase over its window of the shifted columns, no multiply-add
    wasted, rather than one GEMM of all phases: for 1-D problems with a stride of at least
    ``SHIFT_WINDOW_MIN_STRIDE`` whose phases' GEMMs are deep (taps per phase x C_in/g at least
    ``SHIFT_WINDOW_MIN_DEPTH``, so each runs near the BLAS peak) and whose taps are windows of the shifts.

    Against the phase path, which gathers every phase's taps apart and writes each phase with a stride-s pass
    over the output, it gathers the input once per shift and writes all phases in one interleaving pass
    (interleaved medians, 2 threads, ms, phase / windowed: hifigan 512->256 k16s8 323 / 291; 256->128 k16s8
    L16000 176 / 156; 256->128 k25s4 66 / 57; 16->8 k8s4 16.8 / 16.7). Not for s = 2, where the interleaving
    copy runs in pairs (64->64 k4s2: 14.3 / 22.8; 128->64: 23.2 / 30.5), nor in 2-D and 3-D, where it runs
    in short rows (dil2 15.3 / 24.9, U-Net k2s2 128->64 18.6 / 24.0, k3s2-like 2-D s=(2, 1) 14.1 / 17.6)."""
    if config.rank != 1 or min(config.stride[0], out_spatial[0]) < SHIFT_WINDOW_MIN_STRIDE:
        return False
    depth = math.prod(config.kernel) * (config.in_channels // config.groups) / min(config.stride[0], out_spatial[0])
    return depth >= SHIFT_WINDOW_MIN_DEPTH and _shift_windows(config, tuple(out_spatial)) is not None


def items(x, w, b, y, config: DeconvConfig, out_spatial: Shape, acc, xp, cap: int) -> list:
    """The columns hold the input shifted by every shift combination m, (g, M, C_in/g, nb, *block). One weight
    for all phases, (g, P * C_out/g, M * C_in/g): row (phase p, co), column (m, ci) holds the tap of phase p
    with shift m (zero where there is none), so one GEMM gives every phase at once; or, where the phases'
    taps are exact windows of the shifts (``shift_windowed``), one GEMM per phase over its window of the
    columns, no multiply-add wasted. Items are sample blocks or row blocks of the phases' rows."""
    g = config.groups
    cin_g, cout_g = config.in_channels // g, config.out_channels // g
    dims, table = _shift_plan(config, tuple(out_spatial))
    pc, mc = table.shape
    wz = xp.reshape(w, (config.in_channels, cout_g, -1)).astype(acc, copy=False)

    def weight(taps):  # (C_in, C_out/g, K)[:, :, taps] -> (g, C_out/g, len(taps) * C_in/g), columns (m, ci)
        part = xp.reshape(wz[:, :, xp.asarray(taps)], (g, cin_g, cout_g, len(taps)))
        return xp.ascontiguousarray(xp.reshape(xp.transpose(part, (0, 2, 3, 1)), (g, cout_g, -1)))

    if shift_windowed(config, tuple(out_spatial)):  # (phase range, column range, weight) per GEMM
        gemms = tuple(((j, j + 1), None, None) if window is None else
                      ((j, j + 1), (window[0] * cin_g, window[1] * cin_g), weight(table[j, window[0]:window[1]]))
                      for j, window in enumerate(_shift_windows(config, tuple(out_spatial))))  # (cached)
    else:  # every phase's row block over every shift; tap K (no tap) reads an appended zero
        wz = xp.concatenate([wz, xp.zeros((config.in_channels, cout_g, 1), dtype=acc)], axis=2)
        big = xp.reshape(weight(table.reshape(-1)), (g, cout_g, pc, mc * cin_g))
        gemms = (((0, pc), (0, mc * cin_g), xp.ascontiguousarray(xp.reshape(xp.swapaxes(big, 1, 2), (g, pc * cout_g, -1)))),)
    rows = tuple(r for _, r, _ in dims)
    row_bytes = (config.in_channels * mc + config.out_channels * pc) * acc.itemsize * math.prod(rows[1:])
    # the phase path's blocks, cut along the rows only (a one-dim shape: never into boxes)
    return [partial(_shift_item, x, gemms, b, y, dims, batch_range, row_range, config, acc, xp)
            for batch_range, (row_range,) in _common.blocks(x.shape[0], rows[:1], row_bytes, cap)]


def _shift_item(x, gemms, b, y, dims, batch_range, row_range, config, acc, xp):
    """Columns of the input shifted by every shift combination for rows [r0, r1), the GEMMs (``items``),
    then each phase's rows written (bias and cast fused) into its strided view of the output."""
    g = config.groups
    cin_g = config.in_channels // g
    (b0, b1), (r0, r1) = batch_range, row_range
    nb, spatial_in = b1 - b0, tuple(x.shape[2:])
    block = (r1 - r0, *(r for _, r, _ in dims[1:]))
    xs = xp.moveaxis(xp.reshape(x[b0:b1], (nb, g, cin_g, *spatial_in)), 0, 2)  # (g, C_in/g, nb, *L), a view
    cols = xp.empty((g, *(len(shifts) for _, _, shifts in dims), cin_g, nb, *block), dtype=acc)
    for combo in itertools.product(*(enumerate(shifts) for _, _, shifts in dims)):
        lead = (slice(None), *(j for j, _ in combo), slice(None), slice(None))
        dst, src = [], []
        for a, (_, m) in enumerate(combo):
            lo, hi = (r0, r1) if a == 0 else (0, block[a])
            q0, q1 = max(lo, m), min(hi, spatial_in[a] + m)  # rows r whose input r - m exists
            if q1 <= q0:
                cols[lead] = 0
                break
            dst.append(slice(q0 - lo, q1 - lo))
            src.append(slice(q0 - m, q1 - m))
            whole = (slice(None),) * a
            if q0 > lo:  # zero where the shift reads before the input ...
                cols[(*lead, *whole, slice(0, q0 - lo))] = 0
            if q1 < hi:  # ... or after it
                cols[(*lead, *whole, slice(q1 - lo, hi - lo))] = 0
        else:
            cols[(*lead, *dst)] = xs[(Ellipsis, *src)]
    cols = xp.reshape(cols, (g, -1, nb * math.prod(block)))
    cout_g, phases = config.out_channels // g, tuple(p for p, _, _ in dims)
    res = xp.empty((g, math.prod(phases) * cout_g, cols.shape[2]), dtype=acc)
    for (p0, p1), window, weight in gemms:
        if weight is None:  # a phase no tap reaches: its rows get the bias alone
            res[:, p0 * cout_g:p1 * cout_g] = 0
        elif xp.__name__ == "numpy":
            xp.matmul(weight, cols[:, window[0]:window[1]], out=res[:, p0 * cout_g:p1 * cout_g])
        else:  # (CuPy's matmul is not asked to write into a view strided across groups)
            res[:, p0 * cout_g:p1 * cout_g] = xp.matmul(weight, cols[:, window[0]:window[1]])
    if y.flags.c_contiguous and all(o == r * s == p * r for o, (p, r, _), s in zip(y.shape[2:], dims, config.stride)):
        # every phase has every row: one interleaving write per group, output position r*s + p, bias added first
        res = xp.reshape(res, (g, *phases, cout_g, nb, *block))
        if b is not None:
            res += xp.reshape(b, (g, *(1,) * len(phases), cout_g, 1, *(1,) * len(block)))
        split = xp.reshape(y, (y.shape[0], config.out_channels, *(v for p, r, _ in dims for v in (r, p))))
        if r0 or r1 != dims[0][1]:
            split = split[:, :, r0:r1]
        rank = len(phases)
        order = (rank + 1, rank, *(v for a in range(rank) for v in (rank + 2 + a, a)))  # nb, co, r0, p0, r1, p1, ...
        for gi in range(g):
            split[b0:b1, gi * cout_g:(gi + 1) * cout_g] = xp.transpose(res[gi], order)
        return
    res = xp.reshape(res, (g, math.prod(phases), cout_g, nb, *block))  # (g, P, C_out/g, nb, *block)
    for j, phase in enumerate(itertools.product(*(range(p) for p, _, _ in dims))):
        # phase p holds ceil((O - p) / s) rows; the block's share of them
        counts = [-(-(o - p) // s) for o, p, s in zip(y.shape[2:], phase, config.stride)]
        stop = min(r1, counts[0]) - r0
        if stop <= 0:
            continue
        view = (slice(b0, b1), slice(None), *(slice(p, None, s) for p, s in zip(phase, config.stride)))
        target = y[view][(slice(None), slice(None), slice(r0, r0 + stop), *(slice(0, c) for c in counts[1:]))]
        part = xp.reshape(res[:, j], (config.out_channels, nb, *block))
        _common.write(target, part[(slice(None), slice(None), slice(0, stop), *(slice(0, c) for c in counts[1:]))], b, xp)


@functools.lru_cache(maxsize=256)
def _shift_plan(config: DeconvConfig, out_spatial: Shape) -> tuple:
    """Per dim: (phases P = min(s, O), rows R = ceil(O/s) of the longest phase, the distinct input shifts
    (sorted)); and the (phase combination, shift combination) -> flat tap table (the kernel size K where no
    tap of that phase has that shift). Phase ``p`` takes the taps with ``(t*d - p - lo) % s == 0``, and output
    ``p + s*r`` reads input ``r - (t*d - p - lo) // s`` through tap t."""
    import numpy

    dims, per_dim = [], []
    for a in range(config.rank):
        s, d, lo, k = config.stride[a], config.dilation[a], config.crops[a][0], config.kernel[a]
        phases = min(s, out_spatial[a])
        taps = [{(t * d - p - lo) // s: t for t in range(k) if (t * d - p - lo) % s == 0} for p in range(phases)]
        shifts = tuple(sorted({m for by_shift in taps for m in by_shift}))
        dims.append((phases, -(-out_spatial[a] // s), shifts))
        per_dim.append(numpy.array([[by_shift.get(m, -1) for m in shifts] for by_shift in taps],
                                   dtype=numpy.intp).reshape(phases, len(shifts)))
    table = numpy.zeros([1, 1], dtype=numpy.intp)  # (phase combinations, shift combinations) of flat taps
    valid = numpy.ones([1, 1], dtype=bool)
    for a, taps in enumerate(per_dim):
        size = math.prod(config.kernel[a + 1:])
        table = (table[:, None, :, None] + numpy.maximum(taps, 0)[None, :, None, :] * size).reshape(
            table.shape[0] * taps.shape[0], table.shape[1] * taps.shape[1])
        valid = (valid[:, None, :, None] & (taps >= 0)[None, :, None, :]).reshape(table.shape)
    return tuple(dims), numpy.where(valid, table, math.prod(config.kernel))


@functools.lru_cache(maxsize=256)
def _shift_windows(config: DeconvConfig, out_spatial: Shape) -> tuple | None:
    """Per phase combination, the range [lo, hi) of shift combinations (row-major) that holds exactly its
    taps (``None`` for a phase no tap reaches), where every phase's taps form such a range (1-D strides with
    no dilation, or strides in the leading dim only); else ``None``."""
    _, table = _shift_plan(config, tuple(out_spatial))
    windows, none = [], math.prod(config.kernel)
    for row in table.tolist():
        used = [j for j, t in enumerate(row) if t != none]
        if used and used[-1] - used[0] + 1 != len(used):
            return None
        windows.append((used[0], used[-1] + 1) if used else None)
    return tuple(windows)
