"""``direct`` (dense im2col, small problems): one gather of every tap at every output position, ``cols[n,
(ci, t), o] = x[n, ci, i]`` with ``i*s = o + lo - t*d`` (zero where no such input exists), one GEMM and one
write. It multiplies the zeros of the taps that miss, and spends five NumPy calls in all: for problems this
small the count of calls is the cost. ``inline_direct`` makes a per-problem runner with every shape and
index worked out once, which the NumPy engine calls without a thread budget.
"""

from __future__ import annotations

import functools
import math
from functools import partial

from ..core.config import DeconvConfig, Shape
from . import _common, wanted_threads

DIRECT_MAX_ELEMENTS = 1 << 17  # dense im2col columns (N * C_in * K * prod(out)) of the direct path
SINGLE_THREAD_GEMM_MACS = 1 << 18  # OpenBLAS runs a GEMM this small on one thread whatever its setting
SCRATCH_KEEP_BYTES = 64 << 10  # inline columns kept for the next call up to this: tiny (14 KiB) 0.6 us a call less


@functools.lru_cache(maxsize=64)
def inline_direct(config: DeconvConfig, out_spatial: Shape, x_shape: Shape, dtype, w_shape: Shape, w_dtype, b_dtype):
    """For a problem that ``runs_inline``, a function ``run(x, w, bias)`` (NumPy arrays of these shapes and
    dtypes, given as anything ``numpy.dtype`` takes: the engine passes type characters, which hash faster than
    dtype objects; ``b_dtype`` None for no bias) that makes the direct path's NumPy calls and next to nothing else,
    every shape and the gather index worked out once per problem. It returns ``None`` where the weight's sum
    is not finite (NaN or Inf in it, or an overflow): the caller then takes the general path, which checks
    exactly and picks scatter for NaN or Inf. ``None`` for any other problem, an empty one, or a layout that
    needs moving (channels last, a weight permutation or a reversed kernel).

    Steady state, tiny 4->4 8x8 k3 back to back, us a call: 10.6 before this runner kept its scratch (the
    padded input and the columns, reused by the next call on any thread), gathered with ``mode="clip"`` and
    dropped unit axes from the GEMM; 8.0 after, of which NumPy's calls are about 6."""
    import numpy

    batch, dtype = x_shape[0] if config.batched else 1, numpy.dtype(dtype)
    if not runs_inline(config, out_spatial, batch) or 0 in x_shape or 0 in out_spatial or \
            dtype.kind != "f" or config.out_channels == 0 or config.channels_last or \
            config.weight_perm is not None or config.flip or math.prod(w_shape) != math.prod(config.weight_shape):
        return None
    g, c_in, c_out = config.groups, config.in_channels, config.out_channels
    spatial_in = tuple(x_shape[a] for a in config.input_axes()[2])
    index = direct_index(config, spatial_in, out_spatial)
    acc = _common.compute_dtype(dtype, numpy)
    length, taps = math.prod(spatial_in), math.prod(config.kernel)
    # the GEMM (batch, g, C_out/g, O) = (g, C_out/g, C_in/g K) @ (batch, g, C_in/g K, O), leading ones dropped
    # (a 2-D matmul is the cheaper call); the bias as (g, C_out/g, 1) broadcasts against it
    batches, groups = (batch,) if batch > 1 else (), (g,) if g > 1 else ()
    x_rows, w_split, wk_shape = (batch, c_in, length), (g, c_in // g, c_out // g, taps), (*groups, c_out // g, -1)
    cols_shape, bias_shape = (*batches, *groups, c_in // g * taps, -1), (*groups, c_out // g, 1)
    y_shape = config.output_shape(batch if config.batched else None, out_spatial)
    w_cast, b_cast = numpy.dtype(w_dtype) != acc, b_dtype is not None and numpy.dtype(b_dtype) != acc
    same, keep = acc == dtype, batch * c_in * taps * math.prod(out_spatial) * acc.itemsize <= SCRATCH_KEEP_BYTES
    isfinite, total, add, matmul, errstate = math.isfinite, numpy.add.reduce, numpy.add, numpy.matmul, numpy.errstate
    spare: list = []  # scratch no call holds now: list.pop and list.append are atomic, so threads never share one

    def scratch():  # the input with one zero slot after each channel, and the gathered columns
        xe = numpy.zeros((batch, c_in, length + 1), dtype=acc)
        cols = numpy.empty((batch, c_in) + index.shape, dtype=acc)
        return xe[:, :, :length], xe, cols, cols.reshape(cols_shape)

    def run(x, w, bias):  # run_item's calls, canonical layouts (channels first, the weight in order)
        wanted_threads()  # a bad DECONV_THREADS is an error here too
        with errstate(all="ignore"):  # per call: NumPy 1.x's errstate keeps its saved state on the instance
            return _run(x, w, bias)

    def _run(x, w, bias):
        if not isfinite(total(w, axis=None)):
            return None
        try:
            item = spare.pop()
        except IndexError:
            item = scratch()
        x_in, xe, cols, cols_g = item
        x_in[...] = x.reshape(x_rows)
        xe.take(index, axis=2, out=cols, mode="clip")  # every index is in range; "raise" copies first (+1 us)
        wk = (w.reshape(w_split).astype(acc) if w_cast else w.reshape(w_split)).transpose(0, 2, 1, 3).reshape(wk_shape)
        res = matmul(wk, cols_g)
        if keep:
            spare.append(item)
        if bias is not None:
            add(res, (bias.astype(acc) if b_cast else bias).reshape(bias_shape), out=res)
        return res.reshape(y_shape) if same else res.astype(dtype).reshape(y_shape)

    return run


def runs_inline(config: DeconvConfig, out_spatial: Shape, batch: int) -> bool:
    """Whether the problem is one small direct-path GEMM (``choose_path``'s first rule, at most
    ``SINGLE_THREAD_GEMM_MACS`` multiply-adds), which needs neither item threads nor a BLAS thread limit: the
    engine runs it as it stands, saving the thread budget's cost on calls that take tens of microseconds."""
    columns = batch * config.in_channels * math.prod(config.kernel) * math.prod(out_spatial)
    return columns <= DIRECT_MAX_ELEMENTS and columns * config.out_channels // config.groups <= SINGLE_THREAD_GEMM_MACS


@functools.lru_cache(maxsize=256)
def direct_index(config: DeconvConfig, spatial_in: Shape, out_spatial: Shape):
    """(K, prod(out)) flat input index of tap t at output o, or prod(L) (a zero slot) where t misses o."""
    import numpy

    length = math.prod(spatial_in)
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
    index = numpy.where(valid, flat, length).reshape(math.prod(config.kernel), math.prod(out_spatial))
    return index


def items(x, w, b, y, config: DeconvConfig, out_spatial: Shape, acc, xp, cap: int) -> list:
    return [partial(run_item, x, w, b, y, config, out_spatial, acc, xp)]


def run_item(x, w, b, y, config, out_spatial, acc, xp):
    """One gather of every tap at every output position (zero where it misses), one GEMM, one write.

    Computes the taps that miss (up to stride^rank times the phase path's multiply-adds) to spend a handful
    of NumPy calls in all: for problems this small the calls are the cost (tiny: 0.24 -> 0.05 ms).
    """
    g, c_in, c_out = config.groups, config.in_channels, config.out_channels
    n, spatial_in = x.shape[0], x.shape[2:]
    length, taps = math.prod(spatial_in), math.prod(config.kernel)
    index = direct_index(config, tuple(spatial_in), tuple(out_spatial))
    if xp.__name__ != "numpy":
        index = xp.asarray(index)
    xe = xp.empty((n, c_in, length + 1), dtype=acc)  # the input with one zero slot after each channel
    xe[:, :, :length] = x.reshape(n, c_in, length)
    xe[:, :, length] = 0
    cols = xe.take(index, axis=2).reshape(n, g, c_in // g * taps, -1)  # (n, C_in, K, O) gathered
    wk = w.reshape(g, c_in // g, c_out // g, taps).astype(acc, copy=False)
    wk = wk.transpose(0, 2, 1, 3).reshape(g, c_out // g, -1)
    res = xp.matmul(wk, cols).reshape(y.shape)  # (n, g, C_out/g, O) = (N, C_out, *out)
    if b is None:
        y[...] = res
    else:
        xp.add(res, b.reshape((-1,) + (1,) * config.rank), out=y)
