"""Which algorithm a problem takes, and the one driver that runs any of them.

Every algorithm module (``direct``, ``phase``, ``shift``, ``scatter``, ``depthwise``, ``ort``) has the same
entry point, ``items(x, w, b, y, config, out_spatial, acc, xp, cap) -> list`` of work items (no-argument
callables writing disjoint parts of ``y``), on canonical tensors (``_common``). ``choose_path`` reads
``RULES`` top to bottom: the first rule whose test holds names the path. The measurements behind each
threshold (2 threads, interleaved medians, ms; ``deconv bench --paths``) are on the rule's line.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable
from typing import NamedTuple

from ..core.config import DeconvConfig, Shape
from . import _common, direct, phase, scatter, shift

PATHS = ("phase", "scatter", "direct", "depthwise", "ort", "shift")
DEPTHWISE_MIN_MACS = 4 << 20  # numba's import (0.5 s, once) pays off: dw 8.4 M MACs phase 16.3 / depthwise 7.1
ORT_MIN_MACS = 16 << 20  # onnxruntime's import + first session (45-60 ms, once) pay off: 1.2 M MACs ort 0.36 / scatter 0.8
ORT_MIN_POSITIONS = 256  # one GEMM per sample: dcgan 512->256 at 4x4 ort 60.6 / scatter 45.0
ORT_MAX_CHANNEL_PRODUCT = 1024  # above, phase GEMMs near peak: U-Net k3s2 64->32 ort 70.7 / phase 68.1
SHIFT_MIN_PHASES = 16  # many small phase GEMMs: fcn k16s8 phase 50 / ort 37 / shift 30; g4 (4 phases) ort 14.9 / shift 27.8
SHIFT_MAX_FACTOR = 2.5  # wasted MACs (every phase x every shift / taps) at most: fcn's k = 2s is 2.25
SCATTER_OUTPUT_BYTES = 2 << 20  # one sample's output in cache: dil2 phase 15.1 / scatter 12.0; U-Net k3s2 (big) 100 / 116


class Problem(NamedTuple):
    """The quantities the rules read, worked out once per problem."""

    config: DeconvConfig
    out_spatial: Shape
    batch: int
    in_spatial: Shape | None
    ort: bool  # whether onnxruntime's kernel can run this call (float32 on NumPy)
    cin_g: int
    cout_g: int
    macs: int  # multiply-adds of the definition (0 where the input's extent is unknown)
    phases: int

    @classmethod
    def of(cls, config, out_spatial, batch, in_spatial, ort) -> Problem:
        g = config.groups
        cout_g = config.out_channels // g
        macs = 0 if in_spatial is None else \
            batch * config.in_channels * math.prod(in_spatial) * cout_g * math.prod(config.kernel)
        phases = math.prod(min(s, o) for s, o in zip(config.stride, out_spatial))
        return cls(config, tuple(out_spatial), batch, in_spatial, ort, config.in_channels // g, cout_g, macs, phases)


def _dense_columns(p: Problem) -> bool:
    return p.batch * p.config.in_channels * math.prod(p.config.kernel) * math.prod(p.out_spatial) <= direct.DIRECT_MAX_ELEMENTS


def _depthwise(p: Problem) -> bool:
    return p.cin_g == 1 and p.in_spatial is not None and p.macs >= DEPTHWISE_MIN_MACS and numba_installed()


def _disjoint_taps(p: Problem) -> bool:
    return all(d * (k - 1) < s for k, s, d in zip(p.config.kernel, p.config.stride, p.config.dilation))


def _sparse_phases(p: Problem) -> bool:
    return p.phases > 64 and p.phases > math.prod(p.config.kernel)


def _many_phases(p: Problem) -> bool:
    return p.phases >= SHIFT_MIN_PHASES and p.cin_g * p.cout_g <= ORT_MAX_CHANNEL_PRODUCT and \
        shift.shift_factor(p.config, p.out_spatial) <= SHIFT_MAX_FACTOR


def _deep_1d_phases(p: Problem) -> bool:
    return shift.shift_windowed(p.config, p.out_spatial)


def _few_outputs(p: Problem) -> bool:
    return 4 * p.cout_g <= p.cin_g


def _narrowing(p: Problem) -> bool:
    return 3 * p.cout_g < 2 * p.cin_g and \
        p.config.out_channels * math.prod(p.out_spatial) * 4 <= SCATTER_OUTPUT_BYTES


def _onnxruntime(p: Problem) -> bool:
    if not (p.ort and p.in_spatial is not None and p.cout_g <= p.cin_g and p.macs >= ORT_MIN_MACS):
        return False
    positions, taps = math.prod(p.in_spatial), math.prod(p.config.kernel)
    if positions < ORT_MIN_POSITIONS or not (_few_outputs(p) or _narrowing(p) or
                                             p.cin_g * p.cout_g <= ORT_MAX_CHANNEL_PRODUCT):
        return False
    tensors = (p.batch * p.config.in_channels * positions + p.config.in_channels * p.cout_g * taps
               + p.batch * p.config.out_channels * math.prod(p.out_spatial))
    return 4 * p.cout_g * taps * positions <= tensors and ort_installed()  # its columns within 25% of the tensors


class Rule(NamedTuple):
    path: str
    test: Callable[[Problem], bool]
    why: str


# First match wins. Times: ms, 2 threads, interleaved medians, the path named first against the one it beat.
RULES = (
    Rule("direct", _dense_columns, "dense columns <= 128 Ki: the call count is the cost (tiny 0.32 / scatter 0.37 / phase 0.52)"),
    Rule("depthwise", _depthwise, "one input channel per group, >= 4 M MACs, numba (dw 7.1 / phase 16.3; fcn_g21 13.8 / 36.8)"),
    Rule("scatter", _disjoint_taps, "no two taps share an output (k2s2): each output written once (U-Net 64->32 51 / phase 82)"),
    Rule("scatter", _sparse_phases, "more phases than taps and > 64: tiny per-phase GEMMs (s60 d70 6x6: 10 / phase 600)"),
    Rule("shift", _many_phases, ">= 16 phases, narrow channels, <= 2.5x MACs: one GEMM for all (fcn 30 / ort 37 / phase 50)"),
    Rule("shift", _deep_1d_phases, "1-D stride >= 4, phase GEMMs >= 512 deep: one gather per shift (hifigan 291 / phase 323)"),
    Rule("ort", _onnxruntime, "float32, >= 16 M MACs, >= 256 positions, narrow or narrowing (dil2 1.65 / scatter 5.1; g4 2.7 / phase 7.8)"),
    Rule("scatter", _few_outputs, "C_out/g <= C_in/g / 4: the GEMM's small side (ms_doc 132 / phase 660; dcgan 128->3 51 / 526)"),
    Rule("scatter", _narrowing, "3 C_out/g < 2 C_in/g, output in cache (dcgan 512->256 174 / phase 202; dil2 12.0 / 15.1)"),
    Rule("phase", lambda p: True, "otherwise: each output written once (fcn 219 / 220; of_doc 229 / scatter 768)"),
)


def choose_path(config: DeconvConfig, out_spatial: Shape, batch: int = 1, in_spatial: Shape | None = None, *,
                ort: bool = True) -> str:
    """The path the first matching rule of ``RULES`` names. Where it picks phase, shift or direct, a weight
    holding NaN or Inf takes scatter instead (``deconvolve``): those paths multiply the zero padding around
    the input by every tap, which would turn positions no input reaches into NaN."""
    problem = Problem.of(config, out_spatial, batch, None if in_spatial is None else tuple(in_spatial), ort)
    return next(rule.path for rule in RULES if rule.test(problem))


@functools.lru_cache(maxsize=1)
def numba_installed() -> bool:
    """Whether the compiled depthwise kernel can run (numba installed: a dependency an install may lack)."""
    import importlib.util

    return importlib.util.find_spec("numba") is not None


@functools.lru_cache(maxsize=1)
def ort_installed() -> bool:
    """Whether the ``ort`` path can run (onnxruntime installed: a dependency an install may lack)."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def ort_runs(xp, dtype) -> bool:
    """The ``ort`` path runs float32 on NumPy only: onnxruntime's CPU ConvTranspose has no float64 kernel and no
    float16 one on many builds, and the GPU engine keeps its own paths."""
    return xp.__name__ == "numpy" and dtype == xp.float32 and ort_installed()  # a dtype or a scalar type


def runnable(path: str, config: DeconvConfig, x, y, xp) -> str:
    """The path itself, or where it cannot run here the one that stands in: the compiled depthwise kernel
    needs NumPy, numba and one input channel per group (else phase); onnxruntime needs ``ort_runs`` (else
    the rules' pick without it)."""
    if path == "depthwise" and (config.in_channels != config.groups or xp.__name__ != "numpy" or not numba_installed()):
        return "phase"
    if path == "ort" and not ort_runs(xp, y.dtype):
        return choose_path(config, tuple(y.shape[2:]), x.shape[0], tuple(x.shape[2:]), ort=False)
    return path


def items_of(path: str) -> Callable:
    """The algorithm module's ``items``: the NumPy-only ones imported with this module, depthwise (numba) and
    ort (onnxruntime) on first use, so that small calls never load those libraries."""
    module = _LOADED.get(path) or importlib.import_module(f"{__package__}.{path}")
    return module.items


_LOADED = {"direct": direct, "phase": phase, "scatter": scatter, "shift": shift}


@functools.lru_cache(maxsize=64)
def inline_ort(config: DeconvConfig, out_spatial: Shape, x_shape: Shape, dtype, w_shape: Shape, w_dtype, b_dtype,
               forced: bool = False):
    """For a float32 problem that takes the ``ort`` path (``choose_path``'s pick, or ``forced``), a function
    ``run(x, w, bias, threads, parallel_map)`` that runs onnxruntime's node on each batch slice with everything
    else worked out once per problem (``ort.runner``): no BLAS limit to hold (the nodes run no BLAS) and no
    item machinery. ``None`` for any other problem: another dtype, channels last, a weight permutation or reversed
    kernel, a negative crop (positions outside the node's output), an empty problem, or no onnxruntime. Dtypes are given as
    ``numpy.dtype`` takes them (the engine passes type characters)."""
    import numpy

    f32 = numpy.dtype(numpy.float32)
    if numpy.dtype(dtype) != f32 or numpy.dtype(w_dtype) != f32 or (b_dtype is not None and numpy.dtype(b_dtype) != f32):
        return None
    if config.channels_last or config.weight_perm is not None or config.flip or any(lo < 0 or hi < 0 for lo, hi in config.crops) or \
            math.prod(w_shape) != math.prod(config.weight_shape) or 0 in x_shape or 0 in out_spatial or \
            config.out_channels == 0 or not ort_installed():
        return None
    canonical = tuple(x_shape) if config.batched else (1, *x_shape)
    if not forced and choose_path(config, out_spatial, canonical[0], canonical[2:]) != "ort":
        return None
    from . import ort

    return ort.runner(config, canonical, config.output_shape(x_shape[0] if config.batched else None, out_spatial),
                      b_dtype is not None)


def forget_sessions() -> None:
    """Drop every cached onnxruntime session (a forked child cannot use its parent's: their threads are gone)."""
    inline_ort.cache_clear()
    import sys

    ort = sys.modules.get(f"{__package__}.ort")
    if ort is not None:
        ort.forget_sessions()


def deconvolve(x, w, bias, config: DeconvConfig, out_spatial: Shape, *, xp, path=None, parallel_map=None):
    """Run the transposed convolution; ``x``/``w``/``bias`` in the config's file layouts.

    Returns the output in the config's layout and the input's dtype (float16 accumulates in float32).
    ``path`` forces a path; ``parallel_map(fn, items)`` runs independent work items (default: one after another).
    """
    out_dtype = xp.dtype(x.dtype)
    x = _common.to_canonical_input(x, config, xp)
    w = _common.to_canonical_weight(w, config, xp)
    acc = _common.compute_dtype(out_dtype, xp)
    n = x.shape[0]
    y_file = xp.empty(config.output_shape(n if config.batched else None, tuple(out_spatial)), dtype=out_dtype)
    y = _common.to_canonical_input(y_file, config, xp)  # the same layout rule maps the output to (N, C, *out)
    b = None if bias is None else xp.asarray(bias).reshape(-1).astype(acc, copy=False)
    if y.size == 0:  # an empty batch (or no output channel): nothing to compute
        return y_file
    if x.size == 0:  # no input channel: every position gets the bias alone
        _common.fill_bias(y, b, xp)
        return y_file
    # Scatter, onnxruntime's kernel (GEMM then col2im) and the compiled depthwise kernel multiply real input
    # only, as the definition does, and skip the pass over the weight that the other paths need.
    if path is None:
        path = choose_path(config, tuple(out_spatial), n, tuple(x.shape[2:]), ort=ort_runs(xp, out_dtype))
        exact = path in ("scatter", "ort") or (path == "depthwise" and xp.__name__ == "numpy")
        if not exact and not _common.all_finite(w, xp):
            path = "scatter"
    if path == "direct":  # one item, no thread hand-off: called as it stands (its problems take microseconds)
        direct.run_item(x, w, b, y, config, tuple(out_spatial), acc, xp)
        return y_file
    cap = _common.column_cap(x.nbytes + w.nbytes + y.nbytes)
    items = items_of(runnable(path, config, x, y, xp))(x, w, b, y, config, tuple(out_spatial), acc, xp, cap)
    if parallel_map is None or len(items) < 2:
        for item in items:
            item()
    else:
        parallel_map(_call, items)
    return y_file


def _call(item):
    return item()
