"""``direct`` (dense im2col, small problems): one gather of every tap at every output position, ``cols[n,
(ci, t), o] = x[n, ci, i]`` with ``i*s = o + lo - t*d`` (zero where no such input exists), one GEMM and one
write. It multiplies the zeros of the taps that miss, and spends a handful of NumPy calls in all: for problems
this small the count of calls is the cost. The bias rides the GEMM as one more weight column against a row of
ones that the gather reads from slots holding 1 (one call less than adding it after: tiny 0.9 us a call).
``inline_direct`` makes a per-problem runner with every shape and index worked out once, which the NumPy
engine calls without a thread budget.
"""

from __future__ import annotations

import functools
import math
from functools import partial

from ..core.config import DeconvConfig, Shape
from . import _common

DIRECT_MAX_ELEMENTS = 1 << 17  # dense im2col columns (N * C_in * K * prod(out)) of the direct path
SINGLE_THREAD_GEMM_MACS = 1 << 18  # OpenBLAS runs a GEMM this small on one thread whatever its setting
SCRATCH_KEEP_BYTES = 64 << 10  # inline columns kept for the next call up to this: tiny (14 KiB) 0.6 us a call less


@functools.lru_cache(maxsize=64)
def inline_direct(config: DeconvConfig, out_spatial: Shape, x_shape: Shape, dtype, w_shape: Shape, w_dtype, b_dtype):
    """For a problem that ``runs_inline``, a function ``run(x, w, bias)`` (NumPy arrays of these shapes and
    dtypes, given as anything ``numpy.dtype`` takes: the engine passes type characters, which hash faster than
    dtype objects; ``b_dtype`` None for no bias) that makes ``run_item``'s NumPy calls and next to nothing else,
    every shape and the gather index worked out once per problem, and the same bytes. It returns ``None`` where
    the weight's sum is not finite (NaN or Inf in it, or an overflow): the caller then takes the general path,
    which checks exactly and picks scatter for NaN or Inf. ``None`` for any other problem, an empty one, or a
    layout that needs moving (channels last, a weight permutation or a reversed kernel).

    It keeps its scratch (the flat input, the columns and the weight matrix) for the next call on any thread,
    and makes no thread budget: one GEMM this small runs on one thread. Steady state, tiny 4->4 8x8 k3 back to
    back: 8.7 us a call with the bias added after the GEMM, 7.8 with it in the GEMM; NumPy's calls are about 5."""
    import numpy

    batch, dtype = x_shape[0] if config.batched else 1, numpy.dtype(dtype)
    if not runs_inline(config, out_spatial, batch) or 0 in x_shape or 0 in out_spatial or \
            dtype.kind != "f" or config.out_channels == 0 or config.channels_last or \
            config.weight_perm is not None or config.flip or math.prod(w_shape) != math.prod(config.weight_shape):
        return None
    g, c_in, c_out = config.groups, config.in_channels, config.out_channels
    spatial_in = tuple(x_shape[a] for a in config.input_axes()[2])
    bias = b_dtype is not None
    index = direct_index(config, spatial_in, out_spatial, bias)
    acc = _common.compute_dtype(dtype, numpy)
    length, taps, rows = math.prod(spatial_in), math.prod(config.kernel), index.shape[1]
    # the GEMM (batch, g, C_out/g, O) = (g, C_out/g, rows) @ (batch, g, rows, O) with its leading ones dropped
    # (a 2-D matmul is the cheaper call)
    batches, groups = (batch,) if batch > 1 else (), (g,) if g > 1 else ()
    x_rows, w_split = (batch, c_in, length), (g, c_in // g, c_out // g, taps)
    y_shape = config.output_shape(batch if config.batched else None, out_spatial)
    same, keep = acc == dtype, batch * index.size * acc.itemsize <= SCRATCH_KEEP_BYTES
    isfinite, total, matmul, errstate = math.isfinite, numpy.add.reduce, numpy.matmul, numpy.errstate
    spare: list = []  # scratch no call holds now: list.pop and list.append are atomic, so threads never share one

    def scratch():
        xe, x_in = flat_input(batch, c_in, length, acc, numpy)
        wk, w_in, b_in = weight_matrix(config, rows, acc, numpy)
        cols = numpy.empty((batch,) + index.shape, dtype=acc)
        return x_in, xe, cols, cols.reshape(*batches, *groups, rows, -1), w_in, b_in, wk.reshape(*groups, -1, rows)

    def run(x, w, bias):  # run_item's calls, canonical layouts (channels first, the weight in order)
        with errstate(all="ignore"):  # per call: NumPy 1.x's errstate keeps its saved state on the instance
            if not isfinite(total(w, axis=None)):
                return None
            try:
                item = spare.pop()
            except IndexError:
                item = scratch()
            x_in, xe, cols, cols_gemm, w_in, b_in, wk = item
            x_in[...] = x.reshape(x_rows)
            xe.take(index, axis=1, out=cols, mode="clip")  # every index is in range; "raise" copies first (+1 us)
            w_in[...] = w.reshape(w_split).transpose(0, 2, 1, 3)  # cast to the accumulator as it is copied
            if bias is not None:
                b_in[...] = bias.reshape(b_in.shape)
            res = matmul(wk, cols_gemm)
            if keep:
                spare.append(item)
            return res.reshape(y_shape) if same else res.astype(dtype).reshape(y_shape)

    return run


def runs_inline(config: DeconvConfig, out_spatial: Shape, batch: int) -> bool:
    """Whether the problem is one small direct-path GEMM (``choose_path``'s first rule, at most
    ``SINGLE_THREAD_GEMM_MACS`` multiply-adds), which needs neither item threads nor a BLAS thread limit: the
    engine runs it as it stands, saving the thread budget's cost on calls that take tens of microseconds."""
    columns = batch * config.in_channels * math.prod(config.kernel) * math.prod(out_spatial)
    return columns <= DIRECT_MAX_ELEMENTS and columns * config.out_channels // config.groups <= SINGLE_THREAD_GEMM_MACS


@functools.lru_cache(maxsize=256)
def direct_index(config: DeconvConfig, spatial_in: Shape, out_spatial: Shape, bias: bool):
    """(G, C_in/G * K + bias, prod(out)) index into ``flat_input``'s buffer: row (ci, t) of group g holds the
    position of the input that tap t of channel g*C_in/G + ci brings to each output, or the channel's slot of 0
    where t misses it; with ``bias`` a last row of each group reads a slot of 1."""
    import numpy

    length, g, c_in = math.prod(spatial_in), config.groups, config.in_channels
    flat = numpy.zeros((1,) * (2 * config.rank), dtype=numpy.intp)
    valid = numpy.ones_like(flat, dtype=bool)
    for a in range(config.rank):
        t = numpy.arange(config.kernel[a])[:, None]
        o = numpy.arange(out_spatial[a])[None, :]
        f = o + config.crops[a][0] - t * config.dilation[a]  # = i * s where input i reaches o through t
        i = f // config.stride[a]
        ok = (f % config.stride[a] == 0) & (i >= 0) & (i < spatial_in[a])
        shape = [1] * (2 * config.rank)
        shape[a], shape[config.rank + a] = config.kernel[a], out_spatial[a]
        flat = flat + (i * math.prod(spatial_in[a + 1:])).reshape(shape)
        valid = valid & ok.reshape(shape)
    taps, positions, cig, slots = math.prod(config.kernel), math.prod(out_spatial), c_in // g, length + 2
    tap = numpy.where(valid, flat, length).reshape(taps, positions)
    index = (numpy.arange(c_in)[:, None, None] * slots + tap).reshape(g, cig * taps, positions)
    if bias:  # each group's first channel's slot of 1
        ones = numpy.arange(0, c_in, cig)[:, None, None] * slots + length + 1
        index = numpy.concatenate([index, numpy.broadcast_to(ones, (g, 1, positions))], axis=1)
    return index


def flat_input(batch: int, c_in: int, length: int, acc, xp):
    """The buffer ``direct_index`` reads, (batch, C_in * (L + 2)): each channel's L values, then a slot of 0
    and a slot of 1; and the (batch, C_in, L) view that takes the input."""
    xe = xp.zeros((batch, c_in, length + 2), dtype=acc)
    xe[:, :, -1] = 1
    return xe.reshape(batch, -1), xe[:, :, :length]


def weight_matrix(config: DeconvConfig, rows: int, acc, xp):
    """The GEMM's (G, C_out/G, rows) left operand; the (G, C_out/G, C_in/G, K) view that takes the weight's
    (G, C_in/G, C_out/G, K) transposed; and the (G, C_out/G) view of the bias column (None without one)."""
    g, c_in, c_out, taps = config.groups, config.in_channels, config.out_channels, math.prod(config.kernel)
    wk, k = xp.empty((g, c_out // g, rows), dtype=acc), c_in // g * taps
    return wk, wk[:, :, :k].reshape(g, c_out // g, c_in // g, taps), wk[:, :, k] if rows > k else None


def items(x, w, b, y, config: DeconvConfig, out_spatial: Shape, acc, xp, cap: int) -> list:
    return [partial(run_item, x, w, b, y, config, out_spatial, acc, xp)]


def run_item(x, w, b, y, config, out_spatial, acc, xp):
    """One gather of every tap at every output position (zero where it misses, 1 in the bias row), one GEMM,
    one write.

    Computes the taps that miss (up to stride^rank times the phase path's multiply-adds) to spend a handful
    of NumPy calls in all: for problems this small the calls are the cost (tiny: 0.24 -> 0.05 ms).
    """
    g, c_in, c_out = config.groups, config.in_channels, config.out_channels
    n, spatial_in = x.shape[0], tuple(x.shape[2:])
    index = direct_index(config, spatial_in, tuple(out_spatial), b is not None)
    if xp.__name__ != "numpy":
        index = xp.asarray(index)
    xe, x_in = flat_input(n, c_in, math.prod(spatial_in), acc, xp)
    x_in[...] = x.reshape(x_in.shape)
    wk, w_in, b_in = weight_matrix(config, index.shape[1], acc, xp)
    w_in[...] = w.reshape(g, c_in // g, c_out // g, -1).transpose(0, 2, 1, 3)
    if b is not None:
        b_in[...] = b.reshape(b_in.shape)
    y[...] = xp.matmul(wk, xe.take(index, axis=1)).reshape(y.shape)  # (n, g, C_out/g, O) = (N, C_out, *out)
