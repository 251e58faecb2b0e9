"""What every algorithm shares: the canonical layouts, the work-item budget and the tap geometry.

Canonical tensors: input (N, C_in, *L), weight (C_in, C_out/g, *k), output (N, C_out, *out); the full
index of output position ``o`` is ``f = o + lo`` and input ``i`` reaches it through tap ``t`` when
``f = i*s + t*d``. Crops of either sign only change index ranges: nothing outside the output is computed,
and positions no tap reaches get the bias alone.

Work is cut into items that write disjoint parts of the output (phases x batch x row blocks, or batch x
output-channel blocks) and whose buffers stay under ``column_cap`` (``COLUMN_BUDGET_BYTES``, or a twelfth of
the tensors); a backend may run the items on several threads. Where one unit of work is over the cap, the
item makes its buffers a part at a time into one buffer; two threads' items then hold about a sixth of the
tensors, within the 25% memory target (every suite configuration 1.00-1.23x input + weight + output,
``python -m deconv_cli.bench.suite --memory-probe``, 2 threads).
"""

from __future__ import annotations

import functools
import itertools
import math

from ..core.config import DeconvConfig, Shape

COLUMN_BUDGET_BYTES = 4 << 20
MIN_COLUMN_BYTES = 256 << 10  # the memory cap never cuts items below this
MIN_ITEM_BYTES = 1 << 20  # smaller work is not worth a thread hand-off


def to_canonical_input(x, config: DeconvConfig, xp):
    """File layout -> (N, C_in, *spatial), a view where possible."""
    if not config.batched:
        x = x[None]
    if config.channels_last:
        x = xp.moveaxis(x, config.rank + 1, 1)
    return x


def to_canonical_weight(w, config: DeconvConfig, xp):
    """File layout -> (C_in, C_out/g, *k): the config's permutation, a plain reshape, then the kernel reversed
    where the config says so (a contiguous copy: every algorithm reads the weight as C-ordered rows)."""
    if config.weight_perm is not None:
        w = w.transpose(config.weight_perm)
    w = w.reshape(config.weight_shape)
    if config.flip:
        w = xp.ascontiguousarray(w[(..., *[slice(None, None, -1)] * config.rank)])
    return w


def compute_dtype(dtype, xp):
    """float16 (and anything narrower) accumulates in float32; float32/float64 in themselves."""
    dtype = xp.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"unsupported dtype {dtype}")
    return xp.dtype(xp.float32) if dtype.itemsize < 4 else dtype


def all_finite(a, xp) -> bool:
    """Whether no element is NaN or Inf: min and max propagate NaN and show an Inf, and make no temporary.
    ``isfinite(w).all()`` made a bool array of the weight's size first (dcgan 512->256: 2 MB against 14.7 MB
    of tensors) and took the same time (8 MB weight: 0.26-0.36 ms, min and max 0.33-0.35 ms). One pass first:
    a finite sum means every element is finite; only a sum that is not (NaN or Inf somewhere, or finite values
    overflowing it) runs the exact check (tiny's 144-element weight: 4 us for min and max, 2 for the sum).
    Callers silence NumPy's overflow warning (the engine runs under ``errstate(all="ignore")``)."""
    if a.size == 0 or bool(xp.isfinite(a.sum())):
        return True
    return bool(xp.isfinite(a.min()) & xp.isfinite(a.max()))


def tap_range(size_in: int, size_out: int, offset: int, stride: int) -> tuple[int, int, int]:
    """For o = i*stride + offset, the input range [i0, i1) with o in [0, size_out), and o at i0."""
    i0 = max(0, -(offset // stride))  # ceil(-offset / stride)
    i1 = max(i0, min(size_in, (size_out - 1 - offset) // stride + 1))
    return i0, i1, i0 * stride + offset


def column_cap(tensor_bytes: int) -> int:
    """Buffer bytes per work item for one call: ``COLUMN_BUDGET_BYTES``, or a twelfth of input + weight +
    output where that is less, so that two threads' items (columns and GEMM result each) stay near the 25%
    of DESIGN.md's memory target. Measured above the tensors: g4 +50% with 4 MiB items, +12% with a
    twelfth; a sixteenth (+12%) was 1.3-1.6x slower on g4 and dw, an eighth (+27%) no faster than a twelfth."""
    return min(COLUMN_BUDGET_BYTES, max(MIN_COLUMN_BYTES, tensor_bytes // 12))


def item_budget(unit: int, total: int, cap: int) -> int:
    """Bytes per work item: about half the work (two items for two threads), within [MIN_ITEM, cap] bytes."""
    return min(cap, max(unit, min(MIN_ITEM_BYTES, cap), total // 2))


def split(total: int, per_unit: int, budget: int, even: bool = True) -> list[tuple[int, int]]:
    """Cut [0, total) into near-equal blocks of at most max(1, budget // per_unit) units, an even number
    of them where possible (``even``) so that two threads finish together (dcgan 512->256: 5 items -> 6)."""
    count = -(-total // max(1, budget // max(per_unit, 1)))
    if even and count > 1 and count % 2 and count < total:
        count += 1
    bounds = [total * i // count for i in range(count + 1)]
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


def blocks(batch: int, shape: Shape, position_bytes: int, cap: int) -> list:
    """(batch range, box) pairs under the budget, two at least where the work is large enough; a box is
    ((lo, hi), ...) over the leading dims of ``shape`` (the others whole): row blocks, or where one row is over
    the cap (even with its taps in chunks, ``_tap_chunks``), single rows cut along the next dim."""
    row_bytes = position_bytes * math.prod(shape[1:])
    per_sample = shape[0] * row_bytes
    budget = item_budget(min(row_bytes, cap), batch * per_sample, cap)
    if per_sample <= budget:
        return [(bs, ((0, shape[0]),)) for bs in split(batch, per_sample, budget)]
    return [((i, i + 1), box) for i in range(batch) for box in boxes(shape, position_bytes, budget)]


def boxes(shape: Shape, position_bytes: int, budget: int, even: bool = True) -> list:
    """Boxes over the leading dims of ``shape`` under the budget: blocks of the first dim, or where one of its
    slices is over the budget, each slice cut along the next dim (down to single positions of the last) into
    as few blocks as fit, not an even count: every block is an item, and small items cost (of_doc 16->33 in
    boxes, 2 threads: 106 items 1.1-1.2x the time of 42 row items, 128 with even counts slower still)."""
    inner = position_bytes * math.prod(shape[1:])
    if inner <= budget or len(shape) == 1:
        return [(block,) for block in split(shape[0], inner, budget, even)]
    return [((r, r + 1), *box) for r in range(shape[0]) for box in boxes(shape[1:], position_bytes, budget, False)]


def fill_bias(y_view, b, xp):
    if b is None:
        y_view[...] = 0
    else:
        y_view[...] = xp.reshape(b, (1, -1) + (1,) * (y_view.ndim - 2))


def write(target, res, b, xp):
    """target (nb, C, ...) = res (C, nb, ...) + bias, one strided pass over the output.

    Measured: the bias added in place on the contiguous ``res`` and then a plain strided copy beat one
    fused three-operand ufunc (0.25 vs 0.37 ms per block); a contiguous float16 cast before the strided
    copy beats a casting strided copy (numpy's float16 conversion vectorizes on contiguous data only).
    """
    if b is not None:
        res += xp.reshape(b, (-1,) + (1,) * (res.ndim - 1))
    if target.dtype != res.dtype:
        res = res.astype(target.dtype)
    target[...] = res.swapaxes(0, 1)


@functools.lru_cache(maxsize=256)
def tap_slices(config: DeconvConfig, spatial_in: Shape, out_spatial: Shape) -> tuple:
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
def tap_cover(config: DeconvConfig, spatial_in: Shape, out_spatial: Shape) -> tuple[bool, bool]:
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
