"""One transposed-convolution algorithm family, written against an array namespace ``xp`` (numpy or cupy).

Canonical tensors: input (N, C_in, *L), weight (C_in, C_out/g, *k), output (N, C_out, *out); the full
index of output position ``o`` is ``f = o + lo`` and input ``i`` reaches it through tap ``t`` when
``f = i*s + t*d``. Two paths compute the same sum; ``choose_path`` picks one by measured rules.

``phase`` (sub-pixel): output positions ``o = p + s*q`` of one phase ``p`` (per dim, ``0 <= p < s``) are
reached only by the taps with ``(t*d - p - lo) % s == 0``, from input ``i = q - m_t`` where
``m_t = (t*d - p - lo) // s``. So every phase is an ordinary correlation: gather the shifted input
slabs of its taps into columns (zero where ``i`` leaves the input), one GEMM per group

    Y_p[g, co, n, q] = sum_(ci, t) W[g, co, ci, t] * X_p[g, ci, t, n, q]          # batch folded into N

and every output element is written exactly once (bias and the float16 cast fused into that write).

``scatter`` (GEMM + col2im): one GEMM per group and chunk of taps gives the contribution of every input
position, ``cols[g, t, co, n, i]``; each tap's slab is added into the output at ``o = i*s + t*d - lo``.

Two more candidates were built and measured on the benchmark suite and removed because no configuration
picked them (see git history, "per-tap GEMM path" and "depthwise paths"): one GEMM per tap over the whole
input accumulated per phase (lost or tied everywhere; best case hifigan, equal to scatter), and a GEMM-free
depthwise multiply-add (13.1 ms against 8.4 ms for phase on dw_64to64).

Work is cut into items that write disjoint parts of the output (phases x batch x row blocks, or batch x
output-channel blocks) and whose buffers stay under ``COLUMN_BUDGET_BYTES``; a backend may run the items on
several threads (``parallel_map``). Crops of either sign only change index ranges: nothing outside the
output is computed, and positions no tap reaches get the bias alone.
"""

from __future__ import annotations

import functools
import itertools
import math
from functools import partial

from ..config import DeconvConfig, Shape

COLUMN_BUDGET_BYTES = 4 << 20
MIN_ITEM_BYTES = 1 << 20  # smaller work is not worth a thread hand-off
FOLD_BATCH_BELOW = 256  # scatter: images smaller than this fold the batch into one GEMM (dcgan 4x4)
PATHS = ("phase", "scatter")


def to_canonical_input(x, config: DeconvConfig, xp):
    """File layout -> (N, C_in, *spatial), a view where possible."""
    if not config.batched:
        x = x[None]
    if config.channels_last:
        x = xp.moveaxis(x, config.rank + 1, 1)
    return x


def to_canonical_weight(w, config: DeconvConfig, xp):
    """File layout -> (C_in, C_out/g, *k): the config's permutation, then a plain reshape."""
    if config.weight_perm is not None:
        w = xp.transpose(w, config.weight_perm)
    return xp.reshape(w, config.weight_shape)


def compute_dtype(dtype, xp):
    """float16 (and anything narrower) accumulates in float32; float32/float64 in themselves."""
    dtype = xp.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"unsupported dtype {dtype}")
    return xp.dtype(xp.float32) if dtype.itemsize < 4 else dtype


def tap_range(size_in: int, size_out: int, offset: int, stride: int) -> tuple[int, int, int]:
    """For o = i*stride + offset, the input range [i0, i1) with o in [0, size_out), and o at i0."""
    i0 = max(0, -(offset // stride))  # ceil(-offset / stride)
    i1 = max(i0, min(size_in, (size_out - 1 - offset) // stride + 1))
    return i0, i1, i0 * stride + offset


SCATTER_OUTPUT_BYTES = 2 << 20  # per-sample output that the scatter's read-modify-write passes keep in cache


def choose_path(config: DeconvConfig, out_spatial: Shape) -> str:
    """The path for a problem, by rules measured on the benchmark suite (``deconv bench --paths``).

    With G = C_in/g * K * N * prod(L) gathered input columns (phase) against S = C_out/g * K * N * prod(L)
    output columns (scatter), each scatter column element costing a read-modify-write of the output:
    - scatter when no two taps share an output element (d*(k-1) < s in every dim, e.g. k2s2 U-Net
      up-convolutions): one GEMM for all taps and every output element written once;
    - scatter when C_out/g is at most a quarter of C_in/g (ms_doc 16->3, dcgan 128->3: 5x, 5x faster);
    - scatter when 3*C_out/g < 2*C_in/g and one sample's output stays in cache (dcgan 512->256, the
      dilation-2 case); not for large outputs (3-D U-Net k3s2, hifigan: phase equal or faster);
    - scatter when there are more phases than taps and more than 64 of them (a large stride with a larger
      dilation): each phase is a tiny GEMM plus Python work, and s=60, d=70 on a 6x6 input took 0.6 s
      against 0.01 s for scatter (s=200, d=240: 5.8 s against 0.03 s; s=500, d=600 ran 40 s);
    - phase otherwise (fcn, grouped and depthwise, few input channels: mge_doc 3->64 is 4x faster than scatter).
    """
    g = config.groups
    cin_g, cout_g = config.in_channels // g, config.out_channels // g
    if all(d * (k - 1) < s for k, s, d in zip(config.kernel, config.stride, config.dilation)):
        return "scatter"
    phases = math.prod(min(s, o) for s, o in zip(config.stride, out_spatial))
    if phases > 64 and phases > math.prod(config.kernel):
        return "scatter"
    if 4 * cout_g <= cin_g:
        return "scatter"
    if 3 * cout_g < 2 * cin_g and config.out_channels * math.prod(out_spatial) * 4 <= SCATTER_OUTPUT_BYTES:
        return "scatter"
    return "phase"


def deconvolve(x, w, bias, config: DeconvConfig, out_spatial: Shape, *, xp, path=None, parallel_map=None):
    """Run the transposed convolution; ``x``/``w``/``bias`` in the config's file layouts.

    Returns the output in the config's layout and the input's dtype (float16 accumulates in float32).
    ``path`` forces a path; ``parallel_map(fn, items)`` runs independent work items (default: one after another).
    """
    out_dtype = xp.dtype(x.dtype)
    x = to_canonical_input(x, config, xp)
    w = to_canonical_weight(w, config, xp)
    acc = compute_dtype(out_dtype, xp)
    n = x.shape[0]
    y_file = xp.empty(config.output_shape(n if config.batched else None, tuple(out_spatial)), dtype=out_dtype)
    y = to_canonical_input(y_file, config, xp)  # the same layout rule maps the output to (N, C, *out)
    b = None if bias is None else xp.asarray(bias).reshape(-1).astype(acc, copy=False)
    if y.size == 0:  # an empty batch (or no output channel): nothing to compute
        return y_file
    if x.size == 0:  # no input channel: every position gets the bias alone
        _fill_bias(y, b, xp)
        return y_file
    # The phase path multiplies the zero padding around the input by every tap; a NaN or Inf tap would turn
    # positions no input reaches into NaN. The scatter path multiplies real input only, as the definition.
    path = path or ("scatter" if not bool(xp.isfinite(w).all()) else choose_path(config, tuple(out_spatial)))
    items = _ITEMS[path](x, w, b, y, config, tuple(out_spatial), acc, xp)
    if parallel_map is None or len(items) < 2:
        for item in items:
            item()
    else:
        parallel_map(_call, items)
    return y_file


def _call(item):
    return item()


def _budget(unit: int, total: int) -> int:
    """Bytes per work item: about half the work (two items for two threads), within [MIN_ITEM, COLUMN] bytes."""
    return min(COLUMN_BUDGET_BYTES, max(unit, min(MIN_ITEM_BYTES, COLUMN_BUDGET_BYTES), total // 2))


def _split(total: int, per_unit: int, budget: int) -> list[tuple[int, int]]:
    """Cut [0, total) into near-equal blocks of at most max(1, budget // per_unit) units, an even number
    of them where possible so that two threads finish together (dcgan 512->256: 5 items -> 6)."""
    count = -(-total // max(1, budget // max(per_unit, 1)))
    if count > 1 and count % 2 and count < total:
        count += 1
    bounds = [total * i // count for i in range(count + 1)]
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


def _blocks(batch: int, rows: int, bytes_per_row: int) -> list:
    """(batch range, row range) pairs under the budget, two at least where the work is large enough."""
    per_sample = rows * bytes_per_row
    budget = _budget(bytes_per_row, batch * per_sample)
    if per_sample <= budget:
        return [(bs, (0, rows)) for bs in _split(batch, per_sample, budget)]
    return [((i, i + 1), rs) for i in range(batch) for rs in _split(rows, bytes_per_row, budget)]


# --- phase (sub-pixel) path -------------------------------------------------------------------------


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
def _gather_plan(tap_list: tuple, q_shape: Shape, rows: tuple[int, int], spatial_in: Shape) -> tuple:
    """Per tap: None (it misses this row block) or (column slices, input slices, border slices to zero)."""
    plan = []
    for tap in tap_list:
        dst, src, borders = [], [], []
        for a, (_, m) in enumerate(tap):
            lo, hi = rows if a == 0 else (0, q_shape[a])
            q0, q1 = max(lo, m), min(hi, spatial_in[a] + m)
            if q1 <= q0:
                plan.append(None)
                break
            dst.append(slice(q0 - lo, q1 - lo))
            src.append(slice(q0 - m, q1 - m))
            lead = (slice(None),) * (3 + a)  # (g, C_in/g, nb, *spatial) of one tap's column
            if q0 > lo:
                borders.append(lead + (slice(0, q0 - lo),))
            if q1 < hi:
                borders.append(lead + (slice(q1 - lo, hi - lo),))
        else:
            plan.append(((Ellipsis, *dst), (Ellipsis, *src), tuple(borders)))
    return tuple(plan)


def _phase_items(x, w, b, y, config: DeconvConfig, out_spatial: Shape, acc, xp) -> list:
    g = config.groups
    cin_g, cout_g = config.in_channels // g, config.out_channels // g
    n, spatial_in = x.shape[0], tuple(x.shape[2:])
    w_flat = xp.reshape(w, (config.in_channels, cout_g, -1))
    items = []
    for view, q_shape, tap_list, flat in _phase_plan(config, spatial_in, tuple(out_spatial)):
        y_phase = y[view]
        if tap_list is None:
            items.append(partial(_fill_bias, y_phase, b, xp))
            continue
        taps = len(tap_list)
        # (C_in, C_out/g, T) -> (g, C_out/g, C_in/g * T): the left operand of the phase's GEMM; all phases
        # together hold one copy of the weight
        wp = xp.reshape(w_flat[:, :, flat], (g, cin_g, cout_g, taps)).astype(acc, copy=False)
        wp = xp.ascontiguousarray(xp.reshape(xp.transpose(wp, (0, 2, 1, 3)), (g, cout_g, cin_g * taps)))
        row_bytes = (config.in_channels * taps + config.out_channels) * math.prod(q_shape[1:]) * acc.itemsize
        for batch_range, row_range in _blocks(n, q_shape[0], row_bytes):
            items.append(partial(_phase_item, x, wp, b, y_phase, tap_list, q_shape, batch_range, row_range,
                                 config, acc, xp))
    return items


def _fill_bias(y_view, b, xp):
    if b is None:
        y_view[...] = 0
    else:
        y_view[...] = xp.reshape(b, (1, -1) + (1,) * (y_view.ndim - 2))


def _phase_item(x, wp, b, y_phase, tap_list, q_shape, batch_range, row_range, config, acc, xp):
    """Gather one block's columns, one GEMM per group, one fused bias + cast + strided write."""
    g = config.groups
    cin_g = config.in_channels // g
    (b0, b1), (r0, r1) = batch_range, row_range
    nb, block = b1 - b0, (r1 - r0, *q_shape[1:])
    spatial_in = tuple(x.shape[2:])
    # (nb, C_in, *L) -> (g, C_in/g, nb, *L), a view
    xs = xp.moveaxis(xp.reshape(x[b0:b1], (nb, g, cin_g, *spatial_in)), 0, 2)
    cols = xp.empty((g, cin_g, len(tap_list), nb, *block), dtype=acc)
    for j, entry in enumerate(_gather_plan(tap_list, q_shape, (r0, r1), spatial_in)):
        col = cols[:, :, j]
        if entry is None:
            col[...] = 0
            continue
        dst, src, borders = entry
        col[dst] = xs[src]  # the float16 -> float32 conversion happens here, one block at a time
        for border in borders:  # zero where the tap reads outside the input
            col[border] = 0
    res = xp.matmul(wp, xp.reshape(cols, (g, cin_g * len(tap_list), -1)))  # (g, C_out/g, nb * prod(block))
    res = xp.reshape(res, (config.out_channels, nb, *block))
    _write(y_phase[b0:b1, :, r0:r1], res, b, xp)


def _write(target, res, b, xp):
    """target (nb, C, ...) = res (C, nb, ...) + bias, one strided pass over the output.

    Measured: the bias added in place on the contiguous ``res`` and then a plain strided copy beat one
    fused three-operand ufunc (0.25 vs 0.37 ms per block); a contiguous float16 cast before the strided
    copy beats a casting strided copy (numpy's float16 conversion vectorizes on contiguous data only).
    """
    if b is not None:
        res += xp.reshape(b, (-1,) + (1,) * (res.ndim - 1))
    if target.dtype != res.dtype:
        res = res.astype(target.dtype)
    target[...] = xp.moveaxis(res, 0, 1)


# --- scatter (GEMM + col2im) path -------------------------------------------------------------------


def _scatter_items(x, w, b, y, config: DeconvConfig, out_spatial: Shape, acc, xp) -> list:
    g = config.groups
    cin_g, cout_g = config.in_channels // g, config.out_channels // g
    n, spatial_in = x.shape[0], tuple(x.shape[2:])
    taps = math.prod(config.kernel)
    # (C_in, C_out/g, K) -> (g, C_in/g, C_out/g * K); the GEMM reads its transpose (rows (co, tap)) in place
    wt = xp.reshape(w, (g, cin_g, cout_g * taps)).astype(acc, copy=False)
    in_bytes = config.in_channels * math.prod(spatial_in) * acc.itemsize
    out_bytes = config.out_channels * math.prod(out_spatial) * acc.itemsize
    col_bytes = config.out_channels * taps * math.prod(spatial_in) * acc.itemsize
    per_sample = in_bytes + col_bytes + (out_bytes if y.dtype != acc else 0)
    items = []
    if n > 1 and per_sample * n > COLUMN_BUDGET_BYTES // 2:
        for batch_range in _split(n, per_sample, _budget(per_sample, per_sample * n)):
            items.append(partial(_scatter_item, x, wt, b, y, batch_range, (0, cout_g), config, out_spatial, acc, xp))
        return items
    per_channel = col_bytes // config.out_channels * g + (out_bytes // config.out_channels * g if y.dtype != acc else 0)
    for b0 in range(n):
        for channel_range in _split(cout_g, per_channel, _budget(per_channel, per_channel * cout_g)):
            items.append(partial(_scatter_item, x, wt, b, y, (b0, b0 + 1), channel_range, config, out_spatial, acc, xp))
    return items


def _scatter_item(x, wt, b, y, batch_range, channel_range, config, out_spatial, acc, xp):
    """Columns for a batch block and output-channel block, then one strided add per tap."""
    g, rank = config.groups, config.rank
    cin_g, cout_g = config.in_channels // g, config.out_channels // g
    (b0, b1), (c0, c1) = batch_range, channel_range
    nb, cb = b1 - b0, c1 - c0
    spatial_in = tuple(x.shape[2:])
    taps, length = math.prod(config.kernel), math.prod(spatial_in)
    rows = xp.swapaxes(wt[:, :, c0 * taps:c1 * taps], 1, 2)  # (g, cb * K, C_in/g), a view
    if nb == 1 or length >= FOLD_BATCH_BELOW:
        # one GEMM per sample and group straight from the input: (nb, g, cb * K, prod(L)), no input copy
        xs = xp.reshape(x[b0:b1], (nb, g, cin_g, length)).astype(acc, copy=False)
        cols = xp.reshape(xp.matmul(rows[None], xs), (nb, g, cb, taps, *spatial_in))
        tap_cols = lambda j: cols[:, :, :, j]  # noqa: E731
    else:
        # small images: fold the batch into the GEMM's N, (g, C_in/g, nb * prod(L)) by one copy
        xs = xp.empty((g, cin_g, nb, length), dtype=acc)
        xs[...] = xp.moveaxis(xp.reshape(x[b0:b1], (nb, g, cin_g, length)), 0, 2)
        cols = xp.reshape(xp.matmul(rows, xp.reshape(xs, (g, cin_g, -1))), (g, cb, taps, nb, *spatial_in))
        tap_cols = lambda j: xp.moveaxis(cols[:, :, j], 2, 0)  # noqa: E731
    target = xp.reshape(y[b0:b1], (nb, g, cout_g, *out_spatial))[:, :, c0:c1]
    bias = None if b is None else xp.reshape(b, (1, g, cout_g) + (1,) * rank)[:, :, c0:c1]
    disjoint, covered = _tap_cover(config, spatial_in, out_spatial)
    # Taps that never share an output element are written once (bias and cast fused); others accumulate.
    accum = target if disjoint or target.dtype == acc else xp.empty(target.shape, dtype=acc)
    if not covered:  # positions no tap reaches keep the bias alone
        accum[...] = 0 if bias is None else bias
    for j, (src, dst) in enumerate(_tap_slices(config, spatial_in, out_spatial)):
        if src is None:
            continue
        part = tap_cols(j)[(Ellipsis, *src)]  # (nb, g, cb, *L)
        if not disjoint:
            accum[(Ellipsis, *dst)] += part
        elif bias is None:
            accum[(Ellipsis, *dst)] = part
        else:
            xp.add(part, bias, out=accum[(Ellipsis, *dst)])
    if accum is not target:
        target[...] = accum


@functools.lru_cache(maxsize=256)
def _tap_slices(config: DeconvConfig, spatial_in: Shape, out_spatial: Shape) -> tuple:
    """Per tap (row-major): (input slices, output slices) of its scatter, or (None, None) if it misses."""
    return tuple(_tap_slices_uncached(config, spatial_in, out_spatial))


def _tap_slices_uncached(config: DeconvConfig, spatial_in: Shape, out_spatial: Shape):
    per_dim = []
    for a in range(config.rank):
        options = []
        for t in range(config.kernel[a]):
            offset = t * config.dilation[a] - config.crops[a][0]
            i0, i1, o0 = tap_range(spatial_in[a], out_spatial[a], offset, config.stride[a])
            options.append(None if i1 == i0 else (slice(i0, i1), slice(o0, o0 + (i1 - i0 - 1) * config.stride[a] + 1, config.stride[a])))
        per_dim.append(options)
    for tap in itertools.product(*per_dim):
        if any(part is None for part in tap):
            yield None, None
        else:
            yield tuple(src for src, _ in tap), tuple(dst for _, dst in tap)


@functools.lru_cache(maxsize=256)
def _tap_cover(config: DeconvConfig, spatial_in: Shape, out_spatial: Shape) -> tuple[bool, bool]:
    """(no two taps reach one output element, every output element is reached)."""
    disjoint = all(d * (k - 1) < s for k, s, d in zip(config.kernel, config.stride, config.dilation))
    if not disjoint:
        return False, False
    for a in range(config.rank):
        reached = 0
        for t in range(config.kernel[a]):
            i0, i1, _ = tap_range(spatial_in[a], out_spatial[a], t * config.dilation[a] - config.crops[a][0], config.stride[a])
            reached += i1 - i0
        if reached != out_spatial[a]:
            return True, False
    return True, True


_ITEMS = {"phase": _phase_items, "scatter": _scatter_items}
