"""One transposed-convolution algorithm family, written against an array namespace ``xp`` (numpy or cupy).

Canonical tensors: input (N, C_in, *L), weight (C_in, C_out/g, *k), output (N, C_out, *out); the full
index of output position ``o`` is ``f = o + lo`` and input ``i`` reaches it through tap ``t`` when
``f = i*s + t*d``. Six paths compute the same sum; ``choose_path`` picks one by measured rules.

``phase`` (sub-pixel): output positions ``o = p + s*q`` of one phase ``p`` (per dim, ``0 <= p < s``) are
reached only by the taps with ``(t*d - p - lo) % s == 0``, from input ``i = q - m_t`` where
``m_t = (t*d - p - lo) // s``. So every phase is an ordinary correlation: gather the shifted input
slabs of its taps into columns (zero where ``i`` leaves the input), one GEMM per group

    Y_p[g, co, n, q] = sum_(ci, t) W[g, co, ci, t] * X_p[g, ci, t, n, q]          # batch folded into N

and every output element is written exactly once (bias and the float16 cast fused into that write).

``scatter`` (GEMM + col2im): one GEMM per group and chunk of taps gives the contribution of every input
position, ``cols[g, t, co, n, i]``; each tap's slab is added into the output at ``o = i*s + t*d - lo``.

``depthwise`` (one input channel per group): a numba kernel, ``_depthwise``, where numba is installed.

``ort`` (float32 on the CPU): onnxruntime's ConvTranspose kernel (MLAS), ``_ort``, where onnxruntime is installed.

``shift`` (all phases in one GEMM, large strides with few channels): the phases of a stride ``s`` read the
input through only a few distinct shifts ``m = (t*d - p - lo) // s`` (k = 2s: three per dim); one weight
holds, for every phase and every shift, that phase's tap with that shift (zero where it has none), and one GEMM
over the input gathered at every shift gives every phase, written by one interleaving copy. Where each phase's
taps are a window of the shifts and its GEMM is deep (1-D hifigan), one GEMM per phase reads its window of
the same columns instead: no multiply-add wasted, and still one gather per shift and one interleaving write.

``direct`` (dense im2col, small problems): one gather of every tap at every output position, ``cols[n,
(ci, t), o] = x[n, ci, i]`` with ``i*s = o + lo - t*d`` (zero where no such input exists), one GEMM and one
write. It multiplies the zeros of the taps that miss, and spends five NumPy calls in all.

Two more candidates were built and measured on the benchmark suite and removed because no configuration
picked them (see git history, "per-tap GEMM path" and "depthwise paths"): one GEMM per tap over the whole
input accumulated per phase (lost or tied everywhere; best case hifigan, equal to scatter), and a GEMM-free
depthwise multiply-add (13.1 ms against 8.4 ms for phase on dw_64to64).

Work is cut into items that write disjoint parts of the output (phases x batch x row blocks, or batch x
output-channel blocks) and whose buffers stay under ``_column_cap`` (``COLUMN_BUDGET_BYTES``, or a twelfth of
the tensors); a backend may run the items on several threads (``parallel_map``). Where one unit of work is
over the cap, the item makes its buffers a part at a time into one buffer: a phase row's columns a chunk of
taps at a time (GEMMs added), a scatter item's a row block or an output-channel block at a time; two
threads' items then hold about a sixth of the tensors, within DESIGN.md's 25% (every suite configuration
1.00-1.23x input + weight + output, ``python -m deconv_cli.bench.suite --memory-probe``, 2 threads).
Crops of either sign only change index ranges: nothing outside the
output is computed, and positions no tap reaches get the bias alone.
"""

from __future__ import annotations

import functools
import itertools
import math
from functools import partial

from ..core.config import DeconvConfig, Shape

COLUMN_BUDGET_BYTES = 4 << 20
MIN_COLUMN_BYTES = 256 << 10  # the memory cap never cuts items below this
MIN_GEMM_COLUMNS = 128  # scatter batch items: input positions per GEMM, at least
ROW_BLOCK_BYTES = 512 << 10  # scatter row blocks: columns that stay in L2 between the GEMM and the adds
MAX_BLOCKED_TAPS = 16  # overlapping taps: row blocks only up to this many taps (one add per tap per block)
MIN_ITEM_BYTES = 1 << 20  # smaller work is not worth a thread hand-off
FOLD_BATCH_BELOW = 256  # scatter: images smaller than this fold the batch into one GEMM (dcgan 4x4)
PATHS = ("phase", "scatter", "direct", "depthwise", "ort", "shift")


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
        w = w.transpose(config.weight_perm)
    return w.reshape(config.weight_shape)


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


SCATTER_OUTPUT_BYTES = 2 << 20  # per-sample output that the scatter's read-modify-write passes keep in cache
DIRECT_MAX_ELEMENTS = 1 << 17  # dense im2col columns (N * C_in * K * prod(out)) of the direct path
SINGLE_THREAD_GEMM_MACS = 1 << 18  # OpenBLAS runs a GEMM this small on one thread whatever its setting
# (interface/gemm.c's threshold; measured with 2 BLAS threads: no worker-thread CPU time at 2^18 multiply-adds,
# some at 2^19)
DEPTHWISE_MIN_MACS = 4 << 20  # the compiled depthwise kernel only where the work pays numba's import
ORT_MIN_MACS = 16 << 20  # onnxruntime only where the work is worth its import and session (about 55 ms, once)
ORT_MIN_POSITIONS = 256  # onnxruntime runs one GEMM per sample: at least this many input positions in it
SHIFT_MIN_PHASES = 16  # the shift path where the phases are many (and so their GEMMs small) ...
SHIFT_MAX_FACTOR = 2.5  # ... and its extra multiply-adds (every phase times every shift) at most this factor
SHIFT_WINDOW_MIN_STRIDE = 4  # the shift path's GEMM per phase (``shift_windowed``): 1-D strides from this ...
SHIFT_WINDOW_MIN_DEPTH = 512  # ... where each phase's GEMM has at least this depth (taps x C_in/g)
ORT_MAX_CHANNEL_PRODUCT = 1024  # (C_in/g) * (C_out/g): above it the phase GEMMs run near the BLAS peak


@functools.lru_cache(maxsize=1)
def numba_installed() -> bool:
    """Whether the compiled depthwise kernel can run (numba installed: a dependency, which an install may lack); not imported here."""
    import importlib.util

    return importlib.util.find_spec("numba") is not None


@functools.lru_cache(maxsize=1)
def ort_installed() -> bool:
    """Whether the ``ort`` path can run (onnxruntime installed: a dependency, which an install may lack); not imported here."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


@functools.lru_cache(maxsize=64)
def inline_direct(config: DeconvConfig, out_spatial: Shape, x_shape: Shape, dtype, w_shape: Shape, w_dtype, b_dtype):
    """For a problem that ``runs_inline``, a function ``run(x, w, bias)`` (NumPy arrays of these shapes and
    dtypes, given as anything ``numpy.dtype`` takes: the engine passes type characters, which hash faster than
    dtype objects; ``b_dtype`` None for no bias) that makes the direct path's NumPy calls and next to nothing else,
    every shape and the gather index worked out once per problem. It returns ``None`` where the weight's sum
    is not finite (NaN or Inf in it, or an overflow): the caller then takes the general path, which checks
    exactly and picks scatter for NaN or Inf. ``None`` for any other problem, an empty one, or a layout that
    needs moving (channels last, a weight permutation).

    Its Python is kept to a few lines because a call after an idle pause runs cold, where every distinct line
    and NumPy entry point costs (tiny 4->4 8x8 k3, each call after 100 ms idle as in the bench, medians in
    shuffled order, us: through the general path 344, this function 205, onnxruntime's peer 245-257, the
    NumPy calls alone 106; ``ndarray.sum`` cost 15-20 more than ``np.add.reduce``, and adding the bias in
    place on the GEMM's result 65-70 more than ``np.add`` into the output)."""
    import numpy

    batch, dtype = x_shape[0] if config.batched else 1, numpy.dtype(dtype)
    if not runs_inline(config, out_spatial, batch) or 0 in x_shape or 0 in out_spatial or \
            dtype.kind != "f" or config.out_channels == 0 or config.channels_last or \
            config.weight_perm is not None or math.prod(w_shape) != math.prod(config.weight_shape):
        return None
    g, c_in, c_out = config.groups, config.in_channels, config.out_channels
    spatial_in = tuple(x_shape[a] for a in config.input_axes()[2])
    index = _direct_index(config, spatial_in, out_spatial)
    acc = compute_dtype(dtype, numpy)
    length, taps = math.prod(spatial_in), math.prod(config.kernel)
    x_rows, xe_shape = (batch, c_in, length), (batch, c_in, length + 1)
    cols_shape = (batch, g, c_in // g * taps, -1)
    w_split, wk_shape = (g, c_in // g, c_out // g, taps), (g, c_out // g, -1)
    y_shape, res_shape, bias_shape = config.output_shape(batch if config.batched else None, out_spatial), \
        (batch, c_out, -1), (-1, 1)
    w_cast, b_cast = numpy.dtype(w_dtype) != acc, b_dtype is not None and numpy.dtype(b_dtype) != acc
    isfinite, total, add, matmul, empty = math.isfinite, numpy.add.reduce, numpy.add, numpy.matmul, numpy.empty

    def run(x, w, bias):  # _direct_item's calls, canonical layouts (channels first, the weight in order)
        if not isfinite(total(w, axis=None)):
            return None
        y = empty(y_shape, dtype=dtype)
        xe = empty(xe_shape, dtype=acc)  # the input with one zero slot after each channel
        xe[:, :, :length] = x.reshape(x_rows)
        xe[:, :, length] = 0
        wk = (w.reshape(w_split).astype(acc) if w_cast else w.reshape(w_split)).transpose(0, 2, 1, 3).reshape(wk_shape)
        res = matmul(wk, xe.take(index, axis=2).reshape(cols_shape)).reshape(res_shape)
        if bias is None:
            y.reshape(res_shape)[...] = res
        else:
            add(res, (bias.astype(acc) if b_cast else bias).reshape(bias_shape), out=y.reshape(res_shape))
        return y

    return run


@functools.lru_cache(maxsize=64)
def inline_ort(config: DeconvConfig, out_spatial: Shape, x_shape: Shape, dtype, w_shape: Shape, w_dtype, b_dtype,
               forced: bool = False):
    """For a float32 problem that takes the ``ort`` path (``choose_path``'s pick, or ``forced``), a function
    ``run(x, w, bias, threads)`` that runs onnxruntime's node with everything else worked out once per problem
    (``_ort.runner``): no thread budget (the node runs on onnxruntime's threads, not the BLAS) and no item
    machinery. ``None`` for any other problem: another dtype, channels last, a weight permutation, a negative
    crop (positions outside the node's output), an empty problem, or no onnxruntime. Dtypes are given as
    ``numpy.dtype`` takes them (the engine passes type characters)."""
    import numpy

    f32 = numpy.dtype(numpy.float32)
    if numpy.dtype(dtype) != f32 or numpy.dtype(w_dtype) != f32 or (b_dtype is not None and numpy.dtype(b_dtype) != f32):
        return None
    if config.channels_last or config.weight_perm is not None or any(lo < 0 or hi < 0 for lo, hi in config.crops) or \
            math.prod(w_shape) != math.prod(config.weight_shape) or 0 in x_shape or 0 in out_spatial or \
            config.out_channels == 0 or not ort_installed():
        return None
    canonical = tuple(x_shape) if config.batched else (1, *x_shape)
    if not forced and choose_path(config, out_spatial, canonical[0], canonical[2:]) != "ort":
        return None
    from . import _ort

    return _ort.runner(config, canonical, config.output_shape(x_shape[0] if config.batched else None, out_spatial),
                       b_dtype is not None)


def forget_sessions() -> None:
    """Drop every cached onnxruntime session (a forked child cannot use its parent's: their threads are gone)."""
    inline_ort.cache_clear()
    import sys

    ort = sys.modules.get(__package__ + "._ort")
    if ort is not None:
        ort._session.cache_clear()


def runs_inline(config: DeconvConfig, out_spatial: Shape, batch: int) -> bool:
    """Whether the problem is one small direct-path GEMM (``choose_path``'s first rule, at most
    ``SINGLE_THREAD_GEMM_MACS`` multiply-adds), which needs neither item threads nor a BLAS thread limit: the
    engine runs it as it stands, saving the thread budget's cost on calls that take tens of microseconds."""
    columns = batch * config.in_channels * math.prod(config.kernel) * math.prod(out_spatial)
    return columns <= DIRECT_MAX_ELEMENTS and columns * config.out_channels // config.groups <= SINGLE_THREAD_GEMM_MACS


def choose_path(config: DeconvConfig, out_spatial: Shape, batch: int = 1, in_spatial: Shape | None = None, *,
                ort: bool = True) -> str:
    """The path for a problem, by rules measured on the benchmark suite (``deconv bench --paths``).

    Re-measured on the BLAS's native kernels (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset; on this AVX2
    machine, an AMD EPYC without AVX-512, OpenBLAS's native choice is its Haswell kernels), 2 threads,
    medians, two suite runs; path times in ms, phase / scatter [/ direct]. The rules did not change; the
    direct rule is new. First rule that matches:
    - direct when its dense columns (N * C_in * K * prod(out)) are at most 128 Ki elements: for problems
      this small the count of NumPy calls is the cost (tiny 4->4 8x8 k3: 0.52 / 0.37 / 0.32 in the suite,
      0.12-0.17 / 0.11-0.15 / 0.05-0.06 in a tight loop; 8->8 16x16 k3s2 (69 Ki): 0.71 / 0.19 / 0.19;
      2x16->16 16x16 k4s2 (512 Ki): 0.77 / 0.79 / 1.18, so not above);
    - depthwise (one input channel per group) when numba is installed and the work is at least 4 M
      multiply-adds (phase / depthwise / ort, interleaved: dw 8.4 M, 16.3 / 7.1 / 10.3; fcn_g21 22 M, 36.8 / 13.8 /
      55.5; 3x3 stride 1, 4.7 M: 11.9 / 3.2 / 3.6; 3x3 stride 2, 19 M: 46.6 / 22.5 / 25.5); below that
      numba's import (0.5 s, once per process) would cost more than it saves, so small calls never load it;
    - scatter when no two taps share an output element (d*(k-1) < s in every dim, e.g. k2s2 U-Net
      up-convolutions): one GEMM for all taps and every output element written once (U-Net 64->32:
      82 / 51, 32->16: 104 / 87 and 48 / 54, 128->64: 66 / 44 and 19 / 11);
    - ort (onnxruntime's ConvTranspose, ``_ort``), when ``ort`` (float32 on NumPy) and onnxruntime is
      installed, C_out/g <= C_in/g, each sample has at least 256 input positions (onnxruntime runs one GEMM
      per sample: dcgan 512->256 at 4x4 took 60.6 / scatter 45.0), the channels are narrowed by the two
      scatter rules below or (C_in/g)(C_out/g) <= 1024 (above that the phase GEMMs run near the BLAS peak:
      3-D U-Net k3s2 64->32 70.7 / phase 68.1, hifigan 348.5 / 312.7), and the work is at least 16 M
      multiply-adds: its import and first session cost 45-60 ms once per process (1.2 M multiply-adds: 0.36
      against scatter's 0.8 per call); and its column buffer (C_out/g * K * prod(L), one group of one
      sample) is at most a quarter of input + weight + output, DESIGN.md's memory target (fcn: 88 MB
      against 21.8 MB of tensors, peak 110 MB; ms_doc 5.9 MB against 25.8, peak 31.6). Native kernels, ``deconv bench --paths``, 2 threads, ms, ort / the
      path it replaced: ms_doc 36.0 / 63.3 (scatter), dil2 4.9 / 7.8 (scatter), g4 9.5 / 13.5 (phase), (fcn
      26.6 / 33.2 (phase), but over the memory target), dcgan 128->3 11.8 / 10.8 (scatter; 13.9 / 14.2 in another run: a tie); not where
      the channels widen (of_doc 16->33: 70.5 / phase 41.1, mge_doc 3->64: 157 / 53) or the taps are
      disjoint (U-Net k2s2: 28.4 / 24.6, 37.7 / 28.7; 128->64: 11.0 / 12.2, a tie). Without numba,
      depthwise work of 16 M multiply-adds or more goes here too (fcn_g21: 25.6 / phase 38.0);
    - shift when there are at least 16 phases, (C_in/g)(C_out/g) <= 1024 and every phase times every input
      shift is at most 2.5x the taps (the FCN upsamplers, k = 2s: 2.25x): the phases' GEMMs are many and
      small (fcn 21->21 k16s8: 64 GEMMs of 21 x 84 x 4096), one GEMM of all phases over the input shifted
      9 ways runs near the BLAS peak (2 threads, interleaved: fcn phase 49.6-51.3 / ort 37.2-38.4 / shift
      29.9-30.8; fcn_g21 without numba: 43.3 / 33.0 / 17.4); not for few phases (g4, 4 phases: ort 14.9 /
      shift 27.8; dcgan 128->3: 21.0 / 77.8);
    - shift, one GEMM per phase, for deep 1-D strides (``shift_windowed``: stride >= 4, taps per phase x
      C_in/g >= 512, each phase's taps a window of the shifts; hifigan 512->256 k16s8: phase 323 / shift 291 /
      ort 358, interleaved, 2 threads); it precedes onnxruntime (256->128 k16s8 L16000: 156 / ort 177);
    - scatter when C_out/g is at most a quarter of C_in/g (ms_doc 16->3: 660 / 132, 1575 / 328;
      dcgan 128->3: 526 / 51, 279 / 28);
    - scatter when 3*C_out/g < 2*C_in/g and one sample's output stays in cache (dcgan 512->256: 202 / 174,
      288 / 240; dil2: 15.1 / 12.0, 11.9 / 10.5); not for large outputs (3-D U-Net k3s2: 100 / 116,
      262 / 262; hifigan: 1455 / 2039, 1705 / 1749);
    - phase otherwise (fcn: 220 / 219, 163 / 264; fcn_g21: 110 / 563; g4: 56 / 120; dw: 20 / 51;
      of_doc: 229 / 768; few input channels, mge_doc 3->64: 87 / 467).
    The rule for a large stride under a larger dilation comes before the channel rules: scatter when there
    are more phases than taps and more than 64 of them (each phase is a tiny GEMM plus Python work; s=60,
    d=70 on a 6x6 input took 0.6 s against 0.01 s for scatter; s=200, d=240: 5.8 s against 0.03 s).
    Where the rules pick phase, shift or direct, a weight holding NaN or Inf takes scatter instead
    (``deconvolve``): those paths multiply the zero padding around the input by every tap, which would turn
    positions no input reaches into NaN; scatter, ort and depthwise multiply real input only.
    """
    g = config.groups
    cin_g, cout_g = config.in_channels // g, config.out_channels // g
    if batch * config.in_channels * math.prod(config.kernel) * math.prod(out_spatial) <= DIRECT_MAX_ELEMENTS:
        return "direct"
    if cin_g == 1 and in_spatial is not None and numba_installed() and \
            batch * config.in_channels * math.prod(in_spatial) * cout_g * math.prod(config.kernel) >= DEPTHWISE_MIN_MACS:
        return "depthwise"
    if all(d * (k - 1) < s for k, s, d in zip(config.kernel, config.stride, config.dilation)):
        return "scatter"
    phases = math.prod(min(s, o) for s, o in zip(config.stride, out_spatial))
    if phases > 64 and phases > math.prod(config.kernel):
        return "scatter"
    if phases >= SHIFT_MIN_PHASES and cin_g * cout_g <= ORT_MAX_CHANNEL_PRODUCT and \
            shift_factor(config, tuple(out_spatial)) <= SHIFT_MAX_FACTOR:
        return "shift"
    if shift_windowed(config, tuple(out_spatial)):
        return "shift"
    few_outputs = 4 * cout_g <= cin_g
    narrowing = 3 * cout_g < 2 * cin_g and config.out_channels * math.prod(out_spatial) * 4 <= SCATTER_OUTPUT_BYTES
    if ort and in_spatial is not None and cout_g <= cin_g and math.prod(in_spatial) >= ORT_MIN_POSITIONS and \
            (few_outputs or narrowing or cin_g * cout_g <= ORT_MAX_CHANNEL_PRODUCT) and ort_installed() and \
            batch * config.in_channels * math.prod(in_spatial) * cout_g * math.prod(config.kernel) >= ORT_MIN_MACS:
        # onnxruntime's column buffer, one group of one sample, within a quarter of input + weight + output
        tensors = (batch * config.in_channels * math.prod(in_spatial) + config.in_channels * cout_g * math.prod(config.kernel)
                   + batch * config.out_channels * math.prod(out_spatial))
        if 4 * cout_g * math.prod(config.kernel) * math.prod(in_spatial) <= tensors:
            return "ort"
    if few_outputs or narrowing:
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
    # The phase, shift and direct paths multiply the zero padding around the input by every tap: a NaN or
    # Inf tap would turn positions no input reaches into NaN, so a weight holding one takes scatter. Scatter,
    # onnxruntime's kernel (GEMM then col2im) and the compiled depthwise kernel multiply real input only, as
    # the definition does, and skip that pass over the weight (cold, about 70 us before dil2's 6 ms call).
    if path is None:
        path = choose_path(config, tuple(out_spatial), n, tuple(x.shape[2:]), ort=_ort_runs(xp, out_dtype))
        exact = path in ("scatter", "ort") or (path == "depthwise" and xp.__name__ == "numpy")
        if not exact and not all_finite(w, xp):
            path = "scatter"
    if path == "direct":  # one item, no thread hand-off: called as it stands (its problems take microseconds)
        _direct_item(x, w, b, y, config, tuple(out_spatial), acc, xp)
        return y_file
    cap = _column_cap(x.nbytes + w.nbytes + y.nbytes)
    items = _ITEMS[path](x, w, b, y, config, tuple(out_spatial), acc, xp, cap)
    if parallel_map is None or len(items) < 2:
        for item in items:
            item()
    else:
        parallel_map(_call, items)
    return y_file


def _call(item):
    return item()


def _column_cap(tensor_bytes: int) -> int:
    """Buffer bytes per work item for one call: ``COLUMN_BUDGET_BYTES``, or a twelfth of input + weight +
    output where that is less, so that two threads' items (columns and GEMM result each) stay near the 25%
    of DESIGN.md's memory target. Measured above the tensors: g4 +50% with 4 MiB items, +12% with a
    twelfth; a sixteenth (+12%) was 1.3-1.6x slower on g4 and dw, an eighth (+27%) no faster than a twelfth."""
    return min(COLUMN_BUDGET_BYTES, max(MIN_COLUMN_BYTES, tensor_bytes // 12))


def _budget(unit: int, total: int, cap: int) -> int:
    """Bytes per work item: about half the work (two items for two threads), within [MIN_ITEM, cap] bytes."""
    return min(cap, max(unit, min(MIN_ITEM_BYTES, cap), total // 2))


def _split(total: int, per_unit: int, budget: int, even: bool = True) -> list[tuple[int, int]]:
    """Cut [0, total) into near-equal blocks of at most max(1, budget // per_unit) units, an even number
    of them where possible (``even``) so that two threads finish together (dcgan 512->256: 5 items -> 6)."""
    count = -(-total // max(1, budget // max(per_unit, 1)))
    if even and count > 1 and count % 2 and count < total:
        count += 1
    bounds = [total * i // count for i in range(count + 1)]
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


def _blocks(batch: int, shape: Shape, position_bytes: int, cap: int) -> list:
    """(batch range, box) pairs under the budget, two at least where the work is large enough; a box is
    ((lo, hi), ...) over the leading dims of ``shape`` (the others whole): row blocks, or where one row is over
    the cap (even with its taps in chunks, ``_tap_chunks``), single rows cut along the next dim."""
    row_bytes = position_bytes * math.prod(shape[1:])
    per_sample = shape[0] * row_bytes
    budget = _budget(min(row_bytes, cap), batch * per_sample, cap)
    if per_sample <= budget:
        return [(bs, ((0, shape[0]),)) for bs in _split(batch, per_sample, budget)]
    return [((i, i + 1), box) for i in range(batch) for box in _boxes(shape, position_bytes, budget)]


def _boxes(shape: Shape, position_bytes: int, budget: int, even: bool = True) -> list:
    """Boxes over the leading dims of ``shape`` under the budget: blocks of the first dim, or where one of its
    slices is over the budget, each slice cut along the next dim (down to single positions of the last) into
    as few blocks as fit, not an even count: every block is an item, and small items cost (of_doc 16->33 in
    boxes, 2 threads: 106 items 1.1-1.2x the time of 42 row items, 128 with even counts slower still)."""
    inner = position_bytes * math.prod(shape[1:])
    if inner <= budget or len(shape) == 1:
        return [(block,) for block in _split(shape[0], inner, budget, even)]
    return [((r, r + 1), *box) for r in range(shape[0]) for box in _boxes(shape[1:], position_bytes, budget, False)]


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


def _phase_items(x, w, b, y, config: DeconvConfig, out_spatial: Shape, acc, xp, cap: int) -> list:
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
        chunks = _tap_chunks(len(tap_list), config, math.prod(q_shape[1:]) * acc.itemsize, cap)
        # (C_in, C_out/g, T) -> (g, C_out/g, C_in/g * T) per chunk of taps: the left operands of the phase's
        # GEMMs; all phases together hold one copy of the weight
        wp = xp.reshape(w_flat[:, :, flat], (g, cin_g, cout_g, len(tap_list))).astype(acc, copy=False)
        parts = tuple((tap_list[t0:t1], xp.ascontiguousarray(
            xp.reshape(xp.transpose(wp[..., t0:t1], (0, 2, 1, 3)), (g, cout_g, cin_g * (t1 - t0)))))
            for t0, t1 in chunks)
        most = max(t1 - t0 for t0, t1 in chunks)
        position_bytes = (config.in_channels * most + config.out_channels * min(2, len(chunks))) * acc.itemsize
        for batch_range, box in _blocks(n, q_shape, position_bytes, cap):
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


def _fill_bias(y_view, b, xp):
    if b is None:
        y_view[...] = 0
    else:
        y_view[...] = xp.reshape(b, (1, -1) + (1,) * (y_view.ndim - 2))


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
    _write(y_phase[(slice(b0, b1), slice(None), *(slice(lo, hi) for lo, hi in box))], res, b, xp)


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
    target[...] = res.swapaxes(0, 1)


# --- shift path: every phase of a large stride in one GEMM -------------------------------------------


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


def shift_factor(config: DeconvConfig, out_spatial: Shape) -> float:
    """Multiply-adds of the shift path over the phase path's: every phase times every shift, over the taps."""
    dims, _ = _shift_plan(config, tuple(out_spatial))
    return math.prod(p * len(shifts) for p, _, shifts in dims) / math.prod(config.kernel)


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


def _shift_items(x, w, b, y, config: DeconvConfig, out_spatial: Shape, acc, xp, cap: int) -> list:
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
            for batch_range, (row_range,) in _blocks(x.shape[0], rows[:1], row_bytes, cap)]


def _shift_item(x, gemms, b, y, dims, batch_range, row_range, config, acc, xp):
    """Columns of the input shifted by every shift combination for rows [r0, r1), the GEMMs (``_shift_items``),
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
        _write(target, part[(slice(None), slice(None), slice(0, stop), *(slice(0, c) for c in counts[1:]))], b, xp)


# --- scatter (GEMM + col2im) path -------------------------------------------------------------------


def _scatter_items(x, w, b, y, config: DeconvConfig, out_spatial: Shape, acc, xp, cap: int) -> list:
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
        ranges = _split(n, per_sample, max(floor, _budget(per_sample, per_sample * n, cap)))
        nb = max(b1 - b0 for b0, b1 in ranges)
        fixed = nb * (in_bytes if small else per_sample - col_bytes)  # the input copy (and an accumulator)
        channels = max(1, min(cout_g, (cap - fixed) // max(1, nb * (per_sample - fixed // nb) // cout_g)))
        if small:
            return [partial(_scatter_small_item, x, wt, b, y, batch_range, channels, config=config,
                            out_spatial=out_spatial, acc=acc, xp=xp) for batch_range in ranges]
        return [item(batch_range, (0, cout_g), (None,), channels) for batch_range in ranges]
    per_channel = col_bytes // config.out_channels * g + (out_bytes // config.out_channels * g if y.dtype != acc else 0)
    disjoint = _tap_cover(config, spatial_in, tuple(out_spatial)) == (True, True)
    if y.dtype != acc or (taps > MAX_BLOCKED_TAPS and not disjoint):
        # a float32 accumulator per item, or many overlapping taps (each row block costs one add per tap:
        # ms_doc's 48 taps in 1-row blocks took 4x the time): (sample, channel block) items under the cap
        return [item((b0, b0 + 1), channel_range) for b0 in range(n)
                for channel_range in _split(cout_g, per_channel, _budget(per_channel, per_channel * cout_g, cap))]
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
        channels = min(channels, max(1, -(-cout_g // 2)) if col_bytes >= 2 * MIN_ITEM_BYTES else cout_g)
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
    disjoint, covered = _tap_cover(config, spatial_full, out_spatial)
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
            for j, (src, dst) in enumerate(_tap_slices(config, spatial_full, out_spatial)):
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
        for j, (src, dst) in enumerate(_tap_slices(config, spatial_in, out_spatial)):
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


# --- direct (dense im2col) path, for small problems ---------------------------------------------------


@functools.lru_cache(maxsize=256)
def _direct_index(config: DeconvConfig, spatial_in: Shape, out_spatial: Shape):
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


def _direct_items(x, w, b, y, config: DeconvConfig, out_spatial: Shape, acc, xp, cap: int) -> list:
    return [partial(_direct_item, x, w, b, y, config, out_spatial, acc, xp)]


def _direct_item(x, w, b, y, config, out_spatial, acc, xp):
    """One gather of every tap at every output position (zero where it misses), one GEMM, one write.

    Computes the taps that miss (up to stride^rank times the phase path's multiply-adds) to spend a handful
    of NumPy calls in all: for problems this small the calls are the cost (tiny: 0.24 -> 0.05 ms).
    """
    g, c_in, c_out = config.groups, config.in_channels, config.out_channels
    n, spatial_in = x.shape[0], x.shape[2:]
    length, taps = math.prod(spatial_in), math.prod(config.kernel)
    index = _direct_index(config, tuple(spatial_in), tuple(out_spatial))
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


def _depthwise_items(x, w, b, y, config: DeconvConfig, out_spatial: Shape, acc, xp, cap: int) -> list:
    """The compiled depthwise kernel (``_depthwise``, numba) on NumPy; elsewhere, or for other groupings, or
    without numba, the phase path."""
    if config.in_channels != config.groups or xp.__name__ != "numpy" or not numba_installed():
        return _phase_items(x, w, b, y, config, out_spatial, acc, xp, cap)
    from . import _depthwise

    return _depthwise.items(x, w, b, y, config, out_spatial, acc, parts=min(8, y.shape[0] * y.shape[1]))


def _ort_runs(xp, dtype) -> bool:
    """The ``ort`` path runs float32 on NumPy only: onnxruntime's CPU ConvTranspose has no float64 kernel and no
    float16 one on many builds, and the GPU engine keeps its own paths."""
    return xp.__name__ == "numpy" and dtype == xp.float32 and ort_installed()  # a dtype or a scalar type


def _ort_items(x, w, b, y, config: DeconvConfig, out_spatial: Shape, acc, xp, cap: int) -> list:
    """onnxruntime's kernel (``_ort``) on the engine's threads, as one item; where it cannot run (another
    dtype or array library, or no onnxruntime) the path the rules pick without it."""
    if not _ort_runs(xp, y.dtype):
        path = choose_path(config, tuple(out_spatial), x.shape[0], tuple(x.shape[2:]), ort=False)
        return _ITEMS[path](x, w, b, y, config, out_spatial, acc, xp, cap)
    from . import _ort, numpy_engine

    return [partial(_ort.run, x, w, b, y, config, tuple(out_spatial), numpy_engine.threads())]


_ITEMS = {"phase": _phase_items, "scatter": _scatter_items, "direct": _direct_items, "depthwise": _depthwise_items,
          "ort": _ort_items, "shift": _shift_items}
