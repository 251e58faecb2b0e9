"""``phase`` (sub-pixel): output positions ``o = p + s*q`` of one phase ``p`` (per dim, ``0 <= p < s``) are
reached only by the taps with ``(t*d - p - lo) % s == 0``, from input ``i = q - m_t`` where
``m_t = (t*d - p - lo) // s``. So every phase is an ordinary correlation: gather the shifted input
slabs of its taps into columns (zero where ``i`` leaves the input), one GEMM per group

    Y_p[g, co, n, q] = sum_(ci, t) W[g, co, ci, t] * X_p[g, ci, t, n, q]          # batch folded into N

and every output element is written exactly once (bias and the float16 cast fused into that write).
"""

from __future__ import annotations

import functools
import itertools
import math
from functools import partial

from ..core.config import DeconvConfig, Shape
from . import _common


def items(x, w, b, y, config: DeconvConfig, out_spatial: Shape, acc, xp, cap: int) -> list:
    g = config.groups
    cin_g, cout_g = config.in_channels // g, config.out_channels // g
    n, spatial_in = x.shape[0], tuple(x.shape[2:])
    w_flat = xp.reshape(w, (config.in_channels, cout_g, -1))
    items = []
    for view, q_shape, tap_list, flat in _phase_plan(config, spatial_in, tuple(out_spatial)):
        y_phase = y[view]
        if tap_list is None:
            items.append(partial(_common.fill_bias, y_phase, b, xp))
            continue
        chunks = _tap_chunks(len(tap_list), config, math.prod(q_shape[1:]) * acc.itemsize, cap)
        # (C_in, C_out/g, T) -> (g, C_out/g, C_in/g * T) per chunk of taps: the left operands of the phase's
        # GEMMs; all phases together hold one copy of the weight
        wp = xp.reshape(w_flat[:, :, flat], (g, cin_g, cout_g, len(tap_list))).astype(acc, copy=False)
        parts = tuple((tap_list[t0:t1], xp.ascontiguousarray(
            xp.reshape(xp.transpose(wp[..., t0:t1], (0, 2, 1, 3)), (g, cout_g, cin_g * (t1 - t0)))))
            for t0, t1 in chunks)
        most = max(t1 - t0 for t0, t1 in chunks)
        position_bytes = (config.in_channels * most + config.out_channels * min(2, len(chunks))) * acc.itemsize
        for batch_range, box in _common.blocks(n, q_shape, position_bytes, cap):
            items.append(partial(_phase_item, x, parts, b, y_phase, q_shape, batch_range, box, config, acc, xp))
    return items


def _tap_chunks(taps: int, config: DeconvConfig, row_bytes: int, cap: int) -> tuple:
    """The phase's taps in one chunk, or where one output row's columns (``row_bytes`` a channel) are over
    the cap, in the fewest chunks whose columns, GEMM result and partial sum stay under it: an item then
    makes a row's columns a chunk at a time and adds the chunks' GEMMs (of_doc 16->33: 6.3 MB rows against
    a 2.6 MB cap, peak 1.43x the tensors with two threads; in chunks of 4 taps 1.15x, at the same speed:
    interleaved medians 0.94-1.04x). Rows cut into boxes under the cap instead took
    1.1-1.2x the time on two threads (2.5x the items, each tap's copy smaller); where even one tap is over,
    rows are cut into boxes."""
    if (config.in_channels * taps + config.out_channels) * row_bytes <= cap:
        return ((0, taps),)
    per_chunk = (cap // row_bytes - 2 * config.out_channels) // config.in_channels
    if per_chunk < 1:
        return ((0, taps),)
    count = -(-taps // per_chunk)
    bounds = [taps * i // count for i in range(count + 1)]
    return tuple(zip(bounds, bounds[1:]))


def _phase_item(x, parts, b, y_phase, q_shape, batch_range, box, config, acc, xp):
    """Gather one block's columns, one GEMM per group, one fused bias + cast + strided write; with several
    (taps, weight) parts, the columns a part at a time into one buffer and the parts' GEMMs added."""
    g = config.groups
    cin_g = config.in_channels // g
    b0, b1 = batch_range
    nb, block = b1 - b0, (*(hi - lo for lo, hi in box), *q_shape[len(box):])
    spatial_in = tuple(x.shape[2:])
    # (nb, C_in, *L) -> (g, C_in/g, nb, *L), a view
    xs = xp.reshape(x[b0:b1], (nb, g, cin_g, *spatial_in)).transpose(1, 2, 0, *range(3, 3 + len(spatial_in)))
    size = g * cin_g * nb * math.prod(block)
    buffer = xp.empty(size * max(len(tap_list) for tap_list, _ in parts), dtype=acc)
    res = part_sum = None
    for tap_list, wp in parts:
        cols = xp.reshape(buffer[:size * len(tap_list)], (g, cin_g, len(tap_list), nb, *block))
        for dst, src, borders in _gather_plan(tap_list, q_shape, box, spatial_in):
            if src is None:  # the tap misses this box
                cols[dst] = 0
                continue
            cols[dst] = xs[src]  # the float16 -> float32 conversion happens here, one block at a time
            for border in borders:  # zero where the tap reads outside the input
                cols[border] = 0
        cols = xp.reshape(cols, (g, cin_g * len(tap_list), -1))
        if res is None:
            res = xp.matmul(wp, cols)  # (g, C_out/g, nb * prod(block))
        else:
            part_sum = xp.matmul(wp, cols, out=part_sum)
            res += part_sum
    res = xp.reshape(res, (config.out_channels, nb, *block))
    _common.write(y_phase[(slice(b0, b1), slice(None), *(slice(lo, hi) for lo, hi in box))], res, b, xp)


def _phase_taps(config: DeconvConfig, spatial_in: Shape, out_spatial: Shape, phase: Shape):
    """Per dim: the phase's length Q and its taps [(t, m)], keeping only taps that reach the input."""
    dims = []
    for a, p in enumerate(phase):
        s, d, lo = config.stride[a], config.dilation[a], config.crops[a][0]
        q = (out_spatial[a] - p + s - 1) // s
        taps = [(t, (t * d - p - lo) // s) for t in range(config.kernel[a]) if (t * d - p - lo) % s == 0]
        taps = [(t, m) for t, m in taps if max(0, m) < min(q, spatial_in[a] + m)]
        dims.append((q, taps))
    return dims


@functools.lru_cache(maxsize=256)
def _phase_plan(config: DeconvConfig, spatial_in: Shape, out_spatial: Shape) -> tuple:
    """Per phase: (output view, Q, taps or None for a bias-only phase, flat tap indices). Pure ints."""
    plan = []
    for phase in itertools.product(*(range(min(s, o)) for s, o in zip(config.stride, out_spatial))):
        dims = _phase_taps(config, spatial_in, out_spatial, phase)
        view = (slice(None), slice(None)) + tuple(slice(p, None, s) for p, s in zip(phase, config.stride))
        q_shape = tuple(q for q, _ in dims)
        if any(not taps for _, taps in dims):
            plan.append((view, q_shape, None, None))
            continue
        tap_list = tuple(itertools.product(*(taps for _, taps in dims)))
        flat = [sum(t * math.prod(config.kernel[a + 1:]) for a, (t, _) in enumerate(tap)) for tap in tap_list]
        plan.append((view, q_shape, tap_list, flat))
    return tuple(plan)


@functools.lru_cache(maxsize=1024)
def _gather_plan(tap_list: tuple, q_shape: Shape, box: tuple, spatial_in: Shape) -> tuple:
    """Per tap j: (column index, input index, border indices to zero) into the columns (g, C_in/g, T, nb,
    *block) and the input (g, C_in/g, nb, *L); the input index is None where the tap misses this box (its
    column is zero). The box gives (lo, hi) for the leading dims, the others whole. Whole indices, so that
    a tap costs two NumPy calls: items are many where rows are cut into boxes."""
    plan = []
    whole = (slice(None),) * 2
    for j, tap in enumerate(tap_list):
        lead = (*whole, j, slice(None))  # one tap's column, all channels and samples
        dst, src, borders = [], [], []
        for a, (_, m) in enumerate(tap):
            lo, hi = box[a] if a < len(box) else (0, q_shape[a])
            q0, q1 = max(lo, m), min(hi, spatial_in[a] + m)
            if q1 <= q0:
                plan.append((lead, None, ()))
                break
            dst.append(slice(q0 - lo, q1 - lo))
            src.append(slice(q0 - m, q1 - m))
            if q0 > lo:
                borders.append((*lead, *(slice(None),) * a, slice(0, q0 - lo)))
            if q1 < hi:
                borders.append((*lead, *(slice(None),) * a, slice(q1 - lo, hi - lo)))
        else:
            plan.append(((*lead, *dst), (*whole, slice(None), *src), tuple(borders)))
    return tuple(plan)
