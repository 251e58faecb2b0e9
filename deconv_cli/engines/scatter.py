"""``scatter`` (GEMM + col2im): one GEMM per group and chunk of taps gives the contribution of every input
position, ``cols[g, t, co, n, i]``; each tap's slab is added into the output at ``o = i*s + t*d - lo``.
It multiplies real input only (no zero padding), so it is also the path for a weight holding NaN or Inf.
"""

from __future__ import annotations

import math
from functools import partial

from ..core.config import DeconvConfig, Shape
from . import _common

MIN_GEMM_COLUMNS = 128  # scatter batch items: input positions per GEMM, at least
ROW_BLOCK_BYTES = 512 << 10  # scatter row blocks: columns that stay in L2 between the GEMM and the adds
MAX_BLOCKED_TAPS = 16  # overlapping taps: row blocks only up to this many taps (one add per tap per block)
FOLD_BATCH_BELOW = 256  # scatter: images smaller than this fold the batch into one GEMM (dcgan 4x4)


def items(x, w, b, y, config: DeconvConfig, out_spatial: Shape, acc, xp, cap: int) -> list:
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

    def item(*blocks):  # (batch range, channel range[, row blocks]) -> one work item
        return partial(_scatter_item, x, wt, b, y, *blocks, config=config, out_spatial=out_spatial, acc=acc, xp=xp)

    small = math.prod(spatial_in) < FOLD_BATCH_BELOW
    if small:  # the channels-last item below holds its output block in a float32 buffer too
        per_sample = in_bytes + col_bytes + out_bytes
    if n > 1 and per_sample * n > cap // 2 and per_sample <= cap:  # else one sample's columns are cut
        # at least MIN_GEMM_COLUMNS input positions per item, so that the GEMM does not re-read the weight for
        # a handful of columns (dcgan 512->256, 4x4 images, 8 MB weight: 2-sample items 1.3x slower); where
        # that puts an item over the cap, it makes its columns (and a small-image item its channels-last
        # block) an output-channel block at a time, from one input copy (dcgan 512->256: 8-sample items of
        # 2.9 MB against a 1.2 MB cap, peak 1.46x the tensors; in 3 channel blocks 1.19x, 1.03-1.04x the time
        # (medians, 2 threads); with the block whole, 5 channel blocks were needed and took 1.04-1.11x; as
        # items of their own the channel blocks copied the input thrice, 5-7% slower)
        floor = per_sample * -(-MIN_GEMM_COLUMNS // math.prod(spatial_in))
        ranges = _common.split(n, per_sample, max(floor, _common.item_budget(per_sample, per_sample * n, cap)))
        nb = max(b1 - b0 for b0, b1 in ranges)
        fixed = nb * (in_bytes if small else per_sample - col_bytes)  # the input copy (and an accumulator)
        channels = max(1, min(cout_g, (cap - fixed) // max(1, nb * (per_sample - fixed // nb) // cout_g)))
        if small:
            return [partial(_scatter_small_item, x, wt, b, y, batch_range, channels, config=config,
                            out_spatial=out_spatial, acc=acc, xp=xp) for batch_range in ranges]
        return [item(batch_range, (0, cout_g), (None,), channels) for batch_range in ranges]
    per_channel = col_bytes // config.out_channels * g + (out_bytes // config.out_channels * g if y.dtype != acc else 0)
    disjoint = _common.tap_cover(config, spatial_in, tuple(out_spatial)) == (True, True)
    if y.dtype != acc or (taps > MAX_BLOCKED_TAPS and not disjoint):
        # a float32 accumulator per item, or many overlapping taps (each row block costs one add per tap:
        # ms_doc's 48 taps in 1-row blocks took 4x the time): (sample, channel block) items under the cap
        return [item((b0, b0 + 1), channel_range) for b0 in range(n)
                for channel_range in _common.split(cout_g, per_channel, _common.item_budget(per_channel, per_channel * cout_g, cap))]
    # One sample's columns are made an input-row block at a time, each block's columns under the cap and
    # ROW_BLOCK_BYTES (in L2 between the GEMM and the strided adds; 512 KiB against the cap measured 0.55-0.85x
    # the time on dil2 and U-Net 32->16), with as many output channels per GEMM as the cap allows (dil2: 288
    # GEMM rows instead of 90). Taps that are disjoint and cover the output write disjoint output
    # rows from disjoint input rows, so there every row block is an item (U-Net k2s2: 0.5-0.66x the time);
    # otherwise neighbouring blocks add into shared rows, so one item runs its blocks in turn and items split
    # by sample and channel block.
    per_row = per_channel // spatial_in[0]
    channels = max(1, min(cout_g, cap // per_row))
    if n == 1 and not disjoint:  # two items at least for two threads, where the work is worth it
        channels = min(channels, max(1, -(-cout_g // 2)) if col_bytes >= 2 * _common.MIN_ITEM_BYTES else cout_g)
    # disjoint: row blocks are items, cap-sized (512 KiB items: 0.5x onnxruntime's speed against 1.2-1.7x,
    # thread hand-offs); overlapping: row blocks inside one item, L2-sized
    rows = max(1, (cap if disjoint else min(cap, ROW_BLOCK_BYTES)) // (channels * per_row))
    row_blocks = [(r0, min(spatial_in[0], r0 + rows)) for r0 in range(0, spatial_in[0], rows)]
    channel_blocks = [(c0, min(cout_g, c0 + channels)) for c0 in range(0, cout_g, channels)]
    if disjoint:
        return [item((b0, b0 + 1), cb, (rb,)) for b0 in range(n) for cb in channel_blocks for rb in row_blocks]
    return [item((b0, b0 + 1), cb, tuple(row_blocks)) for b0 in range(n) for cb in channel_blocks]


def _scatter_item(x, wt, b, y, batch_range, channel_range, row_blocks=(None,), gemm_channels=None, *, config,
                  out_spatial, acc, xp):
    """Columns for a batch block and output-channel block, an input-row block (``None``: all rows) and
    ``gemm_channels`` output channels (``None``: all) at a time, then one strided add per tap."""
    g, rank = config.groups, config.rank
    cin_g, cout_g = config.in_channels // g, config.out_channels // g
    (b0, b1), (c0, c1) = batch_range, channel_range
    nb = b1 - b0
    spatial_full = tuple(x.shape[2:])
    taps = math.prod(config.kernel)
    target = xp.reshape(y[b0:b1], (nb, g, cout_g, *out_spatial))[:, :, c0:c1]
    bias = None if b is None else xp.reshape(b, (1, g, cout_g) + (1,) * rank)[:, :, c0:c1]
    disjoint, covered = _common.tap_cover(config, spatial_full, out_spatial)
    # Taps that never share an output element are written once (bias and cast fused); others accumulate.
    accum = target if disjoint or target.dtype == acc else xp.empty(target.shape, dtype=acc)
    if not covered:  # positions no tap reaches keep the bias alone
        accum[...] = 0 if bias is None else bias
    unfold = (2, 0, 1, *range(3, 3 + rank))  # a folded tap's (g, cb, nb, *L) -> (nb, g, cb, *L)
    step = -(-(c1 - c0) // -(-(c1 - c0) // (gemm_channels or c1 - c0)))  # equal blocks of at most gemm_channels
    buffer = None  # every GEMM writes into one buffer: a fresh result would keep the last block's alive
    for row_range in row_blocks:
        xb = x[b0:b1] if row_range is None else x[b0:b1, :, row_range[0]:row_range[1]]
        spatial_in = tuple(xb.shape[2:])
        length = math.prod(spatial_in)
        folded = nb > 1 and length < FOLD_BATCH_BELOW
        if not folded:  # one GEMM per sample and group straight from the input, no input copy
            xs = xp.reshape(xb, (nb, g, cin_g, length)).astype(acc, copy=False)
        else:  # small images: fold the batch into the GEMM's N, (g, C_in/g, nb * prod(L)) by one copy
            xs = xp.empty((g, cin_g, nb, length), dtype=acc)
            xs[...] = xp.moveaxis(xp.reshape(xb, (nb, g, cin_g, length)), 0, 2)
            xs = xp.reshape(xs, (g, cin_g, -1))
        for s0 in range(c0, c1, step):
            s1 = min(c1, s0 + step)
            rows = xp.swapaxes(wt[:, :, s0 * taps:s1 * taps], 1, 2)  # (g, cb * K, C_in/g), a view
            shape = (g, (s1 - s0) * taps, nb * length) if folded else (nb, g, (s1 - s0) * taps, length)
            if buffer is None:
                buffer = xp.empty(math.prod(shape), dtype=acc)  # the first block is the largest
            out = xp.reshape(buffer[:math.prod(shape)], shape)
            if folded:
                cols = xp.reshape(xp.matmul(rows, xs, out=out), (g, s1 - s0, taps, nb, *spatial_in))
            else:
                cols = xp.reshape(xp.matmul(rows[None], xs, out=out), (nb, g, s1 - s0, taps, *spatial_in))
            sub = accum[:, :, s0 - c0:s1 - c0]
            sub_bias = None if bias is None else bias[:, :, s0 - c0:s1 - c0]
            if disjoint and sub_bias is not None:
                # the bias added once on the contiguous columns, then plain strided copies: a fused
                # three-operand add per tap took 1.1-1.4x the item time (interleaved, 2 threads, U-Net k2s2
                # 128->64 16.7 / 14.8 ms, 64->32 33.6 / 23.7, 32->16 33.4 / 29.4; the same bytes)
                cols += (xp.reshape(sub_bias, (g, s1 - s0, 1, 1) + (1,) * rank) if folded
                         else xp.reshape(sub_bias, (1, g, s1 - s0, 1) + (1,) * rank))
                sub_bias = None
            for j, (src, dst) in enumerate(_common.tap_slices(config, spatial_full, out_spatial)):
                if src is not None and row_range is not None:
                    src, dst = _rows_of(src, dst, row_range, config.stride[0])
                if src is None:
                    continue
                part = (cols[:, :, j].transpose(unfold) if folded else cols[:, :, :, j])[(Ellipsis, *src)]  # (nb, g, cb, *L)
                if not disjoint:
                    sub[(Ellipsis, *dst)] += part
                elif sub_bias is None:
                    sub[(Ellipsis, *dst)] = part
                else:
                    xp.add(part, sub_bias, out=sub[(Ellipsis, *dst)])
    if accum is not target:
        target[...] = accum


def _scatter_small_item(x, wt, b, y, batch_range, gemm_channels=None, *, config, out_spatial, acc, xp):
    """Scatter for a block of samples with small images (fewer than ``FOLD_BATCH_BELOW`` positions), channels
    last: one GEMM per group ``(nb*L, C_in/g) @ (C_in/g, C_out/g*K)`` (the weight as it lies, no copy) gives
    every tap's slab with the output channels next to last, so each add into a channels-last float32 block
    runs over C_out/g elements (K apart) instead of a 4x4 image's rows of 4; one transposing copy writes the
    block.
    dcgan 512->256 (4x4 images, k4s2), one thread: 123 ms with channels-first adds, of which 66 in the GEMMs.
    Taps are added in order from the bias, as in ``_scatter_item``. The slabs and the block are made
    ``gemm_channels`` output channels (``None``: all) at a time, which keeps the item under the cap.
    """
    g = config.groups
    cin_g, cout_g = config.in_channels // g, config.out_channels // g
    b0, b1 = batch_range
    nb, spatial_in = b1 - b0, tuple(x.shape[2:])
    length, taps = math.prod(spatial_in), math.prod(config.kernel)
    xs = xp.empty((g, nb, length, cin_g), dtype=acc)  # the block's input, channels last per group
    xs[...] = xp.moveaxis(xp.reshape(x[b0:b1], (nb, g, cin_g, length)), 1, 0).transpose(0, 1, 3, 2)
    xs = xp.reshape(xs, (g, nb * length, cin_g))
    rank = len(spatial_in)
    step = -(-cout_g // -(-cout_g // (gemm_channels or cout_g)))  # equal blocks of at most gemm_channels
    buffer = xp.empty(g * nb * length * step * taps, dtype=acc)
    blocks = xp.empty(nb * math.prod(out_spatial) * g * step, dtype=acc)
    regroup = (1, *range(2, 2 + rank), 0, 2 + rank)  # (g, nb, *L', cb) -> (nb, *L', g, cb)
    target = xp.reshape(y[b0:b1], (nb, g, cout_g, *out_spatial))
    bias = None if b is None else xp.reshape(b, (g, cout_g))
    for c0 in range(0, cout_g, step):
        c1 = min(cout_g, c0 + step)
        shape = (g, nb * length, (c1 - c0) * taps)
        cols = xp.matmul(xs, wt[:, :, c0 * taps:c1 * taps], out=xp.reshape(buffer[:math.prod(shape)], shape))
        cols = xp.reshape(cols, (g, nb, *spatial_in, c1 - c0, taps))
        shape = (nb, *out_spatial, g, c1 - c0)
        block = xp.reshape(blocks[:math.prod(shape)], shape)
        block[...] = 0 if bias is None else bias[:, c0:c1]
        for j, (src, dst) in enumerate(_common.tap_slices(config, spatial_in, out_spatial)):
            if src is None:
                continue
            part = cols[(slice(None), slice(None), *src, slice(None), j)]  # (g, nb, *L', cb)
            block[(slice(None), *dst)] += part.transpose(regroup)
        target[:, :, c0:c1] = block.transpose(0, rank + 1, rank + 2, *range(1, rank + 1))


def _rows_of(src, dst, row_range, stride):
    """A tap's (input, output) slices cut to input rows [r0, r1), the input slice relative to r0."""
    (r0, r1), (i0, i1), o0 = row_range, (src[0].start, src[0].stop), dst[0].start
    a0, a1 = max(i0, r0), min(i1, r1)
    if a1 <= a0:
        return None, None
    first = o0 + (a0 - i0) * stride
    return (slice(a0 - r0, a1 - r0), *src[1:]), (slice(first, first + (a1 - a0 - 1) * stride + 1, stride), *dst[1:])
