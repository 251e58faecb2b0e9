"""One transposed-convolution algorithm, written against an array namespace ``xp`` (numpy or cupy).

Canonical tensors: input (N, C_in, *L), weight (C_in, C_out/g, *k), output (N, C_out, *out).
For every kernel tap t (a Python loop over taps, never over elements), one GEMM per group gives the
contribution of all input positions i to output positions ``o = i*s + t*d - lo``:

    cols[n, g, co, t, i] = sum_ci W[g, ci, co, t] * X[n, g, ci, i]        # one matmul for all taps
    Y[n, g, co, o]      += cols[..., t, i]   for the i whose o lies in [0, out)

The i-range that lands inside the output is computed per tap and dimension, so crops of either sign
(padding, output_padding, target shapes) cost nothing extra and nothing outside the output is written.
The batch is processed in chunks so that the column buffer stays bounded.
"""

from __future__ import annotations

import itertools
import math

from ..config import DeconvConfig, Shape

COLUMN_BUDGET_BYTES = 64 << 20


def to_canonical_input(x, config: DeconvConfig, xp):
    """File layout -> (N, C_in, *spatial), a view where possible."""
    if not config.batched:
        x = x[None]
    if config.channels_last:
        rank = config.rank
        x = xp.moveaxis(x, rank + 1, 1)
    return x


def to_canonical_weight(w, config: DeconvConfig, xp):
    """File layout -> (C_in, C_out/g, *k): the config's permutation, then a plain reshape."""
    if config.weight_perm is not None:
        w = xp.transpose(w, config.weight_perm)
    return xp.reshape(w, config.weight_shape)


def from_canonical_output(y, config: DeconvConfig, xp):
    if config.channels_last:
        y = xp.moveaxis(y, 1, config.rank + 1)
    if not config.batched:
        y = y[0]
    return y


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


def deconvolve(x, w, bias, config: DeconvConfig, out_spatial: Shape, *, xp, out=None):
    """Run the transposed convolution; ``x``/``w``/``bias`` in the config's file layouts.

    Returns the output in the config's layout and the input's dtype (float16 accumulates in float32).
    """
    x = to_canonical_input(x, config, xp)
    w = to_canonical_weight(w, config, xp)
    out_dtype = xp.dtype(x.dtype)
    acc = compute_dtype(out_dtype, xp)
    n = x.shape[0]
    y = xp.empty((n, config.out_channels, *out_spatial), dtype=out_dtype) if out is None else out
    wg = _grouped_weight(w, config, acc, xp)
    per_sample = math.prod(wg.shape[:3]) * math.prod(x.shape[2:]) * acc.itemsize
    chunk = max(1, COLUMN_BUDGET_BYTES // max(per_sample, 1))
    b = None if bias is None else xp.asarray(bias).reshape(-1).astype(acc, copy=False)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        part = _compute_chunk(x[start:stop], wg, b, config, out_spatial, acc, xp)
        y[start:stop] = part if part.dtype == out_dtype else part.astype(out_dtype)
    return from_canonical_output(y, config, xp)


def _grouped_weight(w, config: DeconvConfig, acc, xp):
    """(C_in, C_out/g, *k) -> (g, C_out/g * K, C_in/g): the left operand of one matmul per group."""
    g = config.groups
    cin_g, cout_g = config.in_channels // g, config.out_channels // g
    taps = math.prod(config.kernel)
    wg = xp.reshape(w, (g, cin_g, cout_g * taps)).astype(acc, copy=False)
    return xp.ascontiguousarray(xp.swapaxes(wg, 1, 2))


def _compute_chunk(x, wg, bias, config: DeconvConfig, out_spatial: Shape, acc, xp):
    """One batch chunk: (n, C_in, *L) -> (n, C_out, *out) in the accumulation dtype."""
    n, g = x.shape[0], config.groups
    rank, kernel = config.rank, config.kernel
    spatial_in = tuple(x.shape[2:])
    cout_g = config.out_channels // g
    xg = xp.reshape(x.astype(acc, copy=False), (n, g, config.in_channels // g, math.prod(spatial_in)))
    cols = xp.matmul(wg[None], xg)  # (n, g, C_out/g * K, prod(L))
    cols = xp.reshape(cols, (n, g, cout_g, *kernel, *spatial_in))
    y = xp.zeros((n, g, cout_g, *out_spatial), dtype=acc)
    for tap in itertools.product(*(range(k) for k in kernel)):
        src, dst = [], []
        for axis in range(rank):
            offset = tap[axis] * config.dilation[axis] - config.crops[axis][0]
            s = config.stride[axis]
            i0, i1, o0 = tap_range(spatial_in[axis], out_spatial[axis], offset, s)
            src.append(slice(i0, i1))
            dst.append(slice(o0, o0 + (i1 - i0 - 1) * s + 1, s))
            if i1 == i0:
                break
        else:
            y[(Ellipsis, *dst)] += cols[(slice(None),) * 3 + tap + tuple(src)]
    y = xp.reshape(y, (n, config.out_channels, *out_spatial))
    if bias is not None:
        y += xp.reshape(bias, (1, -1) + (1,) * rank)
    return y
