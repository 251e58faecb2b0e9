"""Every engine path (phase, scatter, direct, depthwise, ort) against the naive oracle, and the rules that pick them."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import reference_deconv

from deconv_cli.core.config import DeconvConfig
from deconv_cli.core.shapes import full_length
from deconv_cli.engines import _common, dispatch, numpy_engine, phase, scatter, shift
from deconv_cli.engines import threads as engine_threads

PATHS = dispatch.PATHS


def _config(kernel, stride, dilation, crops, groups, cin, cout, **layout):
    return DeconvConfig(kernel=tuple(kernel), stride=tuple(stride), dilation=tuple(dilation), crops=tuple(crops),
                        groups=groups, in_channels=cin, out_channels=cout, **layout)


def _out_spatial(config, spatial):
    return tuple(full_length(n, k, s, d) - lo - hi for n, k, s, d, (lo, hi)
                 in zip(spatial, config.kernel, config.stride, config.dilation, config.crops))


def _check(config, x, w, b, path, dtype=np.float64, **kwargs):
    """Run one path on canonical-layout tensors (re-laid per config) and compare with the oracle."""
    spatial = x.shape[2:]
    want = reference_deconv(x, w, b, stride=config.stride, dilation=config.dilation, crops=config.crops,
                            groups=config.groups)
    xf, wf, bf = x, w, b
    if config.channels_last:
        xf = np.moveaxis(x, 1, -1)
    if not config.batched:
        xf = xf[0]
    xf, wf = xf.astype(dtype), wf.astype(dtype)
    bf = None if b is None else bf.astype(dtype)
    got = numpy_engine.deconvolve(xf, wf, bf, config, _out_spatial(config, spatial), path=path, **kwargs)
    assert got.dtype == dtype
    if not config.batched:
        got = got[None]
    if config.channels_last:
        got = np.moveaxis(got, -1, 1)
    scale = max(1.0, float(np.abs(want).max()))
    tol = {np.float16: 4e-3, np.float32: 2e-6, np.float64: 1e-12}[dtype]
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=0, atol=tol * scale * 4)


def _tensors(rng, config, batch, spatial, dtype=np.float64):
    # float16 inputs are rounded first so that the oracle sees exactly what the engine sees
    x = rng.standard_normal((batch, config.in_channels, *spatial)).astype(dtype).astype(np.float64)
    w = rng.standard_normal(config.weight_shape).astype(dtype).astype(np.float64)
    b = rng.standard_normal(config.out_channels).astype(dtype).astype(np.float64)
    return x, w, b


CASES = {
    "1d_s3_crop_both_signs": (_config((4,), (3,), (1,), ((2, -3),), 1, 3, 2), 2, (5,)),
    "2d_stride_dilation": (_config((3, 2), (2, 3), (2, 1), ((1, 0), (0, 2)), 1, 4, 3), 2, (4, 5)),
    "2d_groups": (_config((3, 3), (2, 2), (1, 1), ((1, 1), (1, 0)), 2, 4, 6), 3, (3, 4)),
    "2d_negative_crops_bias_only": (_config((2, 2), (3, 2), (1, 1), ((-2, -3), (-1, 1)), 1, 2, 2), 1, (3, 3)),
    "2d_crop_past_input": (_config((3, 3), (2, 2), (1, 1), ((5, 0), (0, 6)), 1, 2, 3), 2, (4, 5)),
    "3d_mixed": (_config((2, 3, 2), (2, 1, 2), (1, 2, 1), ((0, 1), (1, -1), (1, 1)), 1, 3, 2), 1, (3, 3, 4)),
    "3d_k2s2": (_config((2, 2, 2), (2, 2, 2), (1, 1, 1), ((0, 0),) * 3, 1, 4, 3), 2, (3, 4, 3)),
    "2d_k2s2_cropped_row_blocks": (_config((2, 3), (2, 3), (1, 1), ((1, 1), (0, 2)), 1, 3, 2), 2, (5, 4)),
    "2d_stride_divides_dilation": (_config((3, 3), (2, 2), (2, 2), ((2, 1), (2, 1)), 1, 3, 2), 2, (4, 4)),
    "2d_depthwise": (_config((4, 4), (2, 2), (1, 1), ((1, 1), (1, 1)), 4, 4, 4), 2, (5, 5)),
    "2d_depthwise_multiplier": (_config((3, 4), (2, 3), (2, 1), ((1, -2), (2, 1)), 3, 3, 6), 2, (4, 5)),
    "1d_depthwise": (_config((5,), (3,), (2,), ((3, -1),), 2, 2, 2), 2, (7,)),
    "3d_depthwise": (_config((2, 3, 2), (2, 1, 2), (1, 2, 1), ((0, 1), (1, -1), (1, 1)), 3, 3, 3), 1, (3, 3, 4)),
    "2d_depthwise_s1_neg": (_config((3, 2), (1, 1), (1, 2), ((-1, 2), (0, -2)), 3, 3, 3), 1, (4, 5)),
    "channels_last": (_config((3, 3), (2, 2), (1, 1), ((1, 0), (1, 0)), 1, 3, 2, channels_last=True), 2, (4, 3)),
    "unbatched": (_config((3,), (2,), (1,), ((1, 1),), 1, 3, 2, batched=False), 1, (6,)),
    "unbatched_channels_last": (
        _config((2, 3), (2, 2), (1, 1), ((0, 1), (1, 0)), 2, 2, 4, batched=False, channels_last=True), 1, (3, 4)),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_every_path_matches_the_reference(name, dtype, rng):
    config, batch, spatial = CASES[name]
    x, w, b = _tensors(rng, config, batch, spatial, dtype)
    for path in PATHS:
        _check(config, x, w, b, path, dtype)
        _check(config, x, w, None, path, dtype)


@pytest.mark.parametrize("path", PATHS)
def test_float16_large_enough_for_several_items(path, rng, monkeypatch):
    """float16 in and out, converted block by block, across several threaded items and the unfolded GEMM."""
    monkeypatch.setattr(_common, "COLUMN_BUDGET_BYTES", 4096)
    monkeypatch.setattr(_common, "MIN_ITEM_BYTES", 1024)
    config = _config((3, 3), (2, 2), (1, 1), ((1, 0), (1, 0)), 1, 8, 6)
    x, w, b = _tensors(rng, config, 3, (17, 16), np.float16)
    _check(config, x, w, b, path, np.float16)


@pytest.mark.parametrize("fold_below", [1, 10**9])
@pytest.mark.parametrize("name", sorted(CASES))
def test_tiny_work_items_and_one_thread_change_nothing(name, fold_below, rng, monkeypatch):
    """A 1-byte budget cuts the work into the smallest items (per sample, row, channel); threads or not;
    the scatter's batch folded into its GEMM or one GEMM per sample."""
    config, batch, spatial = CASES[name]
    x, w, b = _tensors(rng, config, batch, spatial)
    monkeypatch.setattr(_common, "COLUMN_BUDGET_BYTES", 1)
    monkeypatch.setattr(scatter, "FOLD_BATCH_BELOW", fold_below)
    for threads in ("1", "2"):
        monkeypatch.setenv("DECONV_THREADS", threads)
        for path in PATHS:
            _check(config, x, w, b, path)


SMALL_IMAGES = {  # batch >= 2 and images under FOLD_BATCH_BELOW positions: the channels-last scatter items
    "overlapping_k4s2": (_config((4, 4), (2, 2), (1, 1), ((1, 1), (1, 1)), 1, 6, 5), 5, (4, 4)),
    "groups_crops_both_signs": (_config((3, 2), (2, 3), (2, 1), ((2, -1), (-2, 1)), 2, 4, 6), 3, (3, 5)),
    "1d_disjoint_gaps": (_config((2,), (3,), (1,), ((0, 0),), 1, 3, 4), 4, (7,)),
    "3d": (_config((2, 3, 2), (2, 1, 2), (1, 2, 1), ((0, 1), (1, -1), (1, 1)), 1, 3, 2), 3, (3, 3, 2)),
    "channels_last": (_config((3, 3), (2, 2), (1, 1), ((1, 0), (1, 0)), 1, 3, 2, channels_last=True), 4, (4, 3)),
}


@pytest.mark.parametrize("name", sorted(SMALL_IMAGES))
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_small_image_scatter_items_match_the_reference(name, dtype, rng, monkeypatch):
    """Batch blocks of small images take ``_scatter_small_item`` (GEMM with channels last, adds over channels):
    a per-item buffer cap of two samples' bytes gives several blocks, run on two threads."""
    config, batch, spatial = SMALL_IMAGES[name]
    out = _out_spatial(config, spatial)
    itemsize = np.dtype(np.float32 if dtype == np.float16 else dtype).itemsize
    length, taps = int(np.prod(spatial)), int(np.prod(config.kernel))
    per_sample = itemsize * (config.in_channels * length + config.out_channels * (taps * length + int(np.prod(out))))
    monkeypatch.setattr(_common, "column_cap", lambda tensor_bytes: 2 * per_sample)
    monkeypatch.setattr(scatter, "MIN_GEMM_COLUMNS", 1)
    monkeypatch.setenv("DECONV_THREADS", "2")
    calls = []
    real = scatter._scatter_small_item
    monkeypatch.setattr(scatter, "_scatter_small_item", lambda *a, **k: calls.append(a[4]) or real(*a, **k))
    x, w, b = _tensors(rng, config, batch, spatial, dtype)
    _check(config, x, w, b, "scatter", dtype)
    assert len(calls) >= 2 and sorted(r for block in calls for r in range(*block)) == list(range(batch))
    calls.clear()
    _check(config, x, w, None, "scatter", dtype)
    assert len(calls) >= 2


def test_weight_permutation_is_applied_on_every_path(rng):
    config = _config((3, 2), (2, 1), (1, 1), ((1, 0), (0, 0)), 1, 3, 2, weight_perm=(1, 0, 2, 3))
    x, w, b = _tensors(rng, config, 2, (3, 4))
    want = reference_deconv(x, w, b, stride=config.stride, dilation=config.dilation, crops=config.crops, groups=1)
    for path in PATHS:
        got = numpy_engine.deconvolve(x, np.ascontiguousarray(w.transpose(1, 0, 2, 3)), b, config,
                                      _out_spatial(config, (3, 4)), path=path)
        np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("perm", [False, True])
@pytest.mark.parametrize("kernel, stride, crops, groups, cin, cout, spatial", [
    ((3, 2), (2, 1), ((1, 0), (0, 0)), 1, 3, 2, (3, 4)),
    ((3,), (1,), ((1, 1),), 2, 4, 6, (7,)),
    ((2, 3, 2), (2, 1, 2), ((0, 1), (1, 1), (0, 0)), 1, 2, 3, (3, 2, 3)),
    ((4, 4), (2, 2), ((1, 1), (1, 1)), 8, 8, 8, (5, 6)),  # depthwise
])
def test_a_reversed_kernel_is_reversed_on_every_path(kernel, stride, crops, groups, cin, cout, spatial, perm, dtype,
                                                     rng):
    """``flip`` (JAX and Flax without transpose_kernel) equals the oracle on the file's kernel reversed, on every
    path, float32 included (the inline runners must not take it as it lies)."""
    config = _config(kernel, stride, (1,) * len(kernel), crops, groups, cin, cout, flip=True,
                     weight_perm=(1, 0, *range(2, len(kernel) + 2)) if perm else None)
    x, w, b = _tensors(rng, config, 2, spatial, dtype)
    want = reference_deconv(x, w, b, stride=config.stride, dilation=config.dilation, crops=config.crops, groups=groups)
    stored = w[(..., *[slice(None, None, -1)] * len(kernel))]
    stored = np.ascontiguousarray(stored.swapaxes(0, 1) if perm else stored).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for path in (*PATHS, None):
        got = numpy_engine.deconvolve(x.astype(dtype), stored, b.astype(dtype), config, _out_spatial(config, spatial),
                                      path=path)
        np.testing.assert_allclose(got, want, atol=tol * max(1.0, float(np.abs(want).max())), err_msg=str(path))
    if dtype == np.float32:  # the reusable runners take the general path for it
        for path in PATHS:
            assert numpy_engine.runner(config, _out_spatial(config, spatial), x.astype(dtype), stored, b.astype(dtype),
                                       path) is None


def test_channels_last_output_is_contiguous_in_its_own_layout(rng):
    config, batch, spatial = CASES["channels_last"]
    x, w, b = _tensors(rng, config, batch, spatial)
    got = numpy_engine.deconvolve(np.moveaxis(x, 1, -1), w, b, config, _out_spatial(config, spatial))
    assert got.flags.c_contiguous and got.shape[-1] == config.out_channels


# --- the dispatch rules, one representative shape each ----------------------------------------------


def _choose(kernel, stride, cin, cout, spatial, groups=1, dilation=None, batch=1, crops=None, ort=False):
    """The rule for a problem; ``ort=False`` (a float64 call, or the GPU) unless a test asks for onnxruntime."""
    rank = len(spatial)
    config = _config(kernel, stride, dilation or (1,) * rank, crops or ((0, 0),) * rank, groups, cin, cout)
    return dispatch.choose_path(config, _out_spatial(config, spatial), batch, spatial, ort=ort)


def test_rule_small_problems_pick_direct():
    assert _choose((3, 3), (1, 1), 4, 4, (8, 8)) == "direct"  # tiny: 4 * 9 * 10 * 10 dense columns
    assert _choose((3, 3), (2, 2), 8, 8, (16, 16), crops=((1, 1),) * 2) == "direct"  # 8 * 9 * 31 * 31
    # the same with four samples is 4 * 69192 elements, past DIRECT_MAX_ELEMENTS: the stride-2 phases win
    assert _choose((3, 3), (2, 2), 8, 8, (16, 16), crops=((1, 1),) * 2, batch=4) == "phase"


def test_rule_disjoint_taps_pick_scatter():
    assert _choose((2, 2, 2), (2, 2, 2), 64, 32, (32, 32, 32)) == "scatter"  # U-Net k2s2
    assert _choose((2,), (3,), 4, 64, (20000,)) == "scatter"  # k < s: gaps get the bias alone


def test_rule_few_output_channels_pick_scatter():
    assert _choose((4, 6, 2), (1, 1, 1), 16, 3, (10, 32, 32), batch=32) == "scatter"  # ms_doc 16->3
    assert _choose((4, 4), (2, 2), 128, 3, (32, 32), batch=64, crops=((1, 1),) * 2) == "scatter"


def test_rule_many_phases_with_few_channels_pick_shift(monkeypatch):
    assert _choose((16, 16), (8, 8), 21, 21, (64, 64), crops=((4, 4),) * 2) == "shift"  # fcn: 64 phases, 2.25x
    assert _choose((16, 16), (8, 8), 21, 21, (64, 64), crops=((4, 4),) * 2, ort=True) == "shift"
    assert _choose((64,), (32,), 8, 8, (500,), crops=((16, 16),)) == "shift"  # 1-D k = 2s: 32 x 3 / 64 = 1.5x
    assert _choose((64, 64), (32, 32), 8, 8, (20, 20), crops=((16, 16),) * 2) == "shift"  # FCN-32s: 1024 phases
    assert _choose((4, 4), (2, 2), 64, 64, (32, 32), groups=4, batch=8, crops=((1, 1),) * 2) == "phase"  # g4: 4 phases
    assert _choose((16, 16), (8, 8), 64, 64, (64, 64), crops=((4, 4),) * 2) == "phase"  # 64 x 64 channels: big GEMMs
    assert _choose((9, 9), (8, 8), 21, 21, (64, 64)) == "phase"  # 2 shifts a dim for 1.1 taps: 3.2x the work
    monkeypatch.setattr(dispatch, "numba_installed", lambda: False)
    assert _choose((16, 16), (8, 8), 21, 21, (64, 64), groups=21, crops=((4, 4),) * 2, ort=True) == "shift"  # fcn_g21


def test_rule_deep_1d_phases_pick_the_shift_path_one_gemm_per_phase():
    """1-D strides of 4 or more whose phases' GEMMs are deep (taps per phase x C_in/g >= 512) and whose taps
    are windows of the shifts: the shift path, one GEMM per phase (``shift_windowed``)."""
    def windowed(kernel, stride, cin, cout, spatial, crops=None, dilation=None):
        config = _config(kernel, stride, dilation or (1,) * len(spatial), crops or ((0, 0),) * len(spatial), 1, cin, cout)
        return shift.shift_windowed(config, _out_spatial(config, spatial))

    assert _choose((16,), (8,), 512, 256, (2000,), batch=4, crops=((4, 4),)) == "shift"  # hifigan: 2 x 512
    assert windowed((16,), (8,), 512, 256, (2000,), crops=((4, 4),))
    assert _choose((25,), (4,), 256, 128, (1024,), crops=((11, 10),)) == "shift"  # WaveGAN-like: 6.25 x 256
    assert windowed((25,), (4,), 256, 128, (1024,), crops=((11, 10),))
    assert not windowed((4,), (2,), 128, 64, (8000,), crops=((1, 1),))  # s = 2: the interleaving runs in pairs
    assert not windowed((8,), (4,), 16, 8, (20000,), crops=((2, 2),))  # 2 x 16: shallow GEMMs
    assert not windowed((16,), (8,), 512, 256, (2000,), dilation=(3,))  # phase taps three shifts apart
    assert not windowed((16, 1), (8, 1), 512, 256, (200, 10))  # 2-D: measured only in 1-D
    assert _choose((64,), (32,), 8, 8, (500,), crops=((16, 16),)) == "shift"  # few channels: the one big GEMM
    assert not windowed((64,), (32,), 8, 8, (500,), crops=((16, 16),))


WINDOWED = {  # 1-D problems whose phases' taps are windows of the shifts
    "k2s": (_config((8,), (4,), (1,), ((2, 2),), 1, 3, 2), 2, (9,)),
    "k_not_multiple": (_config((7,), (4,), (1,), ((3, -2),), 1, 3, 4), 2, (6,)),
    "k_below_s_bias_only_phases": (_config((3,), (5,), (1,), ((-2, 4),), 1, 2, 3), 3, (4,)),
    "groups": (_config((6,), (4,), (1,), ((1, 2),), 2, 4, 6), 2, (5,)),
    "crop_past_input": (_config((8,), (4,), (1,), ((20, -6),), 1, 2, 2), 1, (5,)),
    "unbatched_channels_last": (_config((8,), (4,), (1,), ((1, 0),), 1, 3, 2, batched=False, channels_last=True), 1, (7,)),
}


@pytest.mark.parametrize("name", sorted(WINDOWED))
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("budget", [1, 1 << 30])
def test_shift_path_gemm_per_phase_matches_the_reference(name, dtype, budget, rng, monkeypatch):
    """The shift path with one GEMM per phase window, forced by lowering its thresholds; row-block items
    (a 1-byte budget) and one item per call, two threads."""
    monkeypatch.setattr(shift, "SHIFT_WINDOW_MIN_STRIDE", 1)
    monkeypatch.setattr(shift, "SHIFT_WINDOW_MIN_DEPTH", 0)
    monkeypatch.setattr(_common, "COLUMN_BUDGET_BYTES", budget)
    monkeypatch.setenv("DECONV_THREADS", "2")
    config, batch, spatial = WINDOWED[name]
    assert shift.shift_windowed(config, _out_spatial(config, spatial))
    x, w, b = _tensors(rng, config, batch, spatial, dtype)
    _check(config, x, w, b, "shift", dtype)
    _check(config, x, w, None, "shift", dtype)


def test_rule_narrowing_with_small_output_picks_scatter():
    assert _choose((4, 4), (2, 2), 512, 256, (4, 4), batch=64, crops=((1, 1),) * 2) == "scatter"  # dcgan


def test_rule_narrowing_with_large_output_picks_phase():
    assert _choose((3, 3, 3), (2, 2, 2), 64, 32, (32, 32, 32), crops=((1, 0),) * 3) == "phase"  # U-Net k3s2
    assert _choose((16,), (8,), 512, 256, (2000,), batch=4, crops=((4, 4),), dilation=(3,)) == "phase"  # no windows


def test_rule_widening_grouped_and_depthwise_pick_phase():
    assert _choose((3, 3, 3), (2, 2, 2), 3, 64, (32, 32, 32), batch=2, crops=((1, 1),) * 3) == "phase"
    assert _choose((4, 4), (2, 2), 64, 64, (32, 32), groups=4, batch=8) == "phase"


def test_rule_large_depthwise_picks_the_compiled_kernel_where_numba_is_installed(monkeypatch):
    monkeypatch.setattr(dispatch, "numba_installed", lambda: True)
    assert _choose((4, 4), (2, 2), 64, 64, (32, 32), groups=64, batch=8) == "depthwise"  # dw: 8.4 M MACs
    assert _choose((16, 16), (8, 8), 21, 21, (64, 64), groups=21, crops=((4, 4),) * 2) == "depthwise"  # fcn_g21
    assert _choose((4, 4), (2, 2), 64, 64, (32, 32), groups=64, batch=1) == "phase"  # 1 M MACs: not worth numba
    assert _choose((4, 4), (2, 2), 64, 64, (32, 32), groups=4, batch=8) == "phase"  # g4: C_in/g = 16
    monkeypatch.setattr(dispatch, "numba_installed", lambda: False)
    assert _choose((4, 4), (2, 2), 64, 64, (32, 32), groups=64, batch=8) == "phase"


def test_rule_onnxruntime_where_installed_for_float32_with_enough_work(monkeypatch):
    """The suite's configurations where onnxruntime's kernel measured faster, and those where it did not."""
    monkeypatch.setattr(dispatch, "ort_installed", lambda: True)
    monkeypatch.setattr(dispatch, "numba_installed", lambda: True)
    ort = partial(_choose, ort=True)
    assert ort((4, 6, 2), (1, 1, 1), 16, 3, (10, 32, 32), batch=32) == "ort"  # ms_doc 16->3 (few outputs)
    assert ort((3, 3), (2, 2), 64, 32, (32, 32), dilation=(2, 2), crops=((2, 1),) * 2, batch=8) == "ort"  # dil2
    assert ort((4, 4), (2, 2), 64, 64, (32, 32), groups=4, batch=8, crops=((1, 1),) * 2) == "ort"  # g4
    # fcn's 64 phases take the shift path first; with 8 phases onnxruntime's columns decide (44 MB here
    # against 12 MB of tensors: not onnxruntime)
    assert ort((16, 16), (8, 8), 21, 21, (64, 64), crops=((4, 4),) * 2) == "shift"
    assert ort((8, 4), (4, 2), 21, 21, (128, 128), crops=((2, 2), (1, 1))) == "phase"
    assert ort((8, 8), (4, 4), 21, 21, (32, 32), crops=((2, 2),) * 2, batch=16) == "shift"
    assert ort((4, 4), (2, 2), 128, 3, (32, 32), batch=64, crops=((1, 1),) * 2) == "ort"  # dcgan 128->3
    # not: 4x4 images (16 columns per GEMM), channels widening or many, disjoint taps, depthwise, small work
    assert ort((4, 4), (2, 2), 512, 256, (4, 4), batch=64, crops=((1, 1),) * 2) == "scatter"  # dcgan 512->256
    assert ort((3, 3, 3), (2, 2, 2), 3, 64, (32, 32, 32), batch=2, crops=((1, 1),) * 3) == "phase"  # mge_doc
    assert ort((3, 3, 3), (2, 2, 2), 64, 32, (32, 32, 32), crops=((1, 0),) * 3) == "phase"  # U-Net k3s2
    assert ort((16,), (8,), 512, 256, (2000,), batch=4, crops=((4, 4),)) == "shift"  # hifigan: GEMM per phase
    assert ort((2, 2, 2), (2, 2, 2), 64, 32, (32, 32, 32)) == "scatter"  # U-Net k2s2
    assert ort((16, 16), (8, 8), 21, 21, (64, 64), groups=21, crops=((4, 4),) * 2) == "depthwise"  # fcn_g21
    assert ort((3, 3), (2, 2), 16, 8, (32, 32), dilation=(2, 2)) == "scatter"  # 1.2 M multiply-adds
    assert ort((3, 3), (1, 1), 4, 4, (8, 8)) == "direct"  # tiny
    # without numba the depthwise fcn_g21 goes to onnxruntime; without onnxruntime nothing does
    monkeypatch.setattr(dispatch, "numba_installed", lambda: False)
    assert ort((16, 16), (8, 8), 21, 21, (64, 64), groups=21, crops=((4, 4),) * 2) == "shift"
    assert ort((4, 4), (2, 2), 32, 32, (32, 32), groups=32, batch=32, crops=((1, 1),) * 2) == "ort"  # a dw, 4 phases
    monkeypatch.setattr(dispatch, "ort_installed", lambda: False)
    assert ort((4, 4), (2, 2), 32, 32, (32, 32), groups=32, batch=32, crops=((1, 1),) * 2) == "phase"


def test_ort_only_for_float32_on_numpy(rng, monkeypatch):
    """float16 and float64 calls, and forced ``ort`` on them, take the rules without onnxruntime."""
    pytest.importorskip("onnxruntime")
    config = _config((4, 4), (2, 2), (1, 1), ((1, 1),) * 2, 2, 32, 32)  # g4-like: 33.5 M multiply-adds
    picked = []
    real = dispatch.choose_path
    monkeypatch.setattr(dispatch, "choose_path", lambda *a, **k: picked.append(real(*a, **k)) or picked[-1])
    x, w, b = _tensors(rng, config, 16, (16, 16), np.float32)
    for dtype in (np.float32, np.float64, np.float16):
        numpy_engine.deconvolve(x.astype(dtype), w.astype(dtype), b.astype(dtype), config, (32, 32))
    assert picked == ["ort", "phase", "phase"]
    picked.clear()
    _check(config, x[:, :, :8, :8], w, b, "ort", np.float64)  # forced: falls back to the rule without it
    assert picked == ["phase"]


def test_the_gpu_engine_never_runs_ort():
    """CuPy arrays (the GPU engine's ``xp``) never take onnxruntime, whatever the dtype; NumPy float32 only."""
    import types

    cupy_like = types.SimpleNamespace(__name__="cupy", dtype=np.dtype, float32=np.float32)
    assert not any(dispatch.ort_runs(cupy_like, dtype) for dtype in (np.float16, np.float32, np.float64))
    assert [dispatch.ort_runs(np, dtype) for dtype in (np.float16, np.float64)] == [False, False]
    assert dispatch.ort_runs(np, np.float32) == dispatch.ort_installed()


def test_ort_sessions_are_cached_per_problem(rng):
    pytest.importorskip("onnxruntime")
    from deconv_cli.engines import ort

    ort._session.cache_clear()
    config, batch, spatial = CASES["2d_groups"]
    x, w, b = _tensors(rng, config, batch, spatial, np.float32)
    _check(config, x, w, b, "ort", np.float32)
    made = ort._session.cache_info().misses  # one model per shape of batch slice (ort.batch_parts)
    tensor_bytes = 4 * (x.size + w.size + batch * config.out_channels * math.prod(_out_spatial(config, spatial)))
    assert made == len({b1 - b0 for b0, b1 in ort.batch_parts(config, x.shape, tensor_bytes, engine_threads())})
    for _ in range(2):
        _check(config, x, w, b, "ort", np.float32)
    _check(config, x, w, None, "ort", np.float32)
    assert ort._session.cache_info().misses == 2 * made  # without a bias: other models; the repeats made none


def test_rule_more_phases_than_taps_picks_scatter():
    """A large stride under a larger dilation: thousands of one-column phases (s=200, d=240 took 5.8 s)."""
    assert _choose((3, 3), (200, 200), 4, 3, (6, 6), dilation=(240, 240)) == "scatter"
    assert _choose((3, 3), (60, 60), 4, 8, (6, 6), dilation=(70, 70)) == "scatter"
    assert _choose((3, 3), (3, 3), 4, 8, (6, 6), dilation=(2, 2), batch=64) == "phase"  # 9 phases, 9 taps


# --- properties over random configurations, for each path -------------------------------------------


@st.composite
def problems(draw):
    rank = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    spatial = tuple(draw(st.integers(1, 5 if rank < 3 else 3)) for _ in range(rank))
    crops = []
    for n, k, s, d in zip(spatial, kernel, stride, dilation):
        full = full_length(n, k, s, d)
        lo = draw(st.integers(-3, full - 1))
        hi = draw(st.integers(-3, full - lo - 1))
        crops.append((lo, hi))
    groups = draw(st.integers(1, 3))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    config = _config(kernel, stride, dilation, crops, groups, cin, cout,
                     channels_last=draw(st.booleans()), batched=draw(st.booleans()))
    batch = draw(st.integers(1, 3)) if config.batched else 1
    return config, batch, spatial, draw(st.integers(0, 2**31 - 1)), draw(st.booleans())


_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("path", PATHS)
@_SETTINGS
@given(problem=problems())
def test_property_gemm_paths_match_the_reference(path, problem):
    config, batch, spatial, seed, with_bias = problem
    x, w, b = _tensors(np.random.default_rng(seed), config, batch, spatial)
    _check(config, x, w, b if with_bias else None, path, np.float32)


@_SETTINGS
@given(problem=problems())
def test_property_chosen_path_matches_the_reference(problem):
    config, batch, spatial, seed, with_bias = problem
    x, w, b = _tensors(np.random.default_rng(seed), config, batch, spatial)
    _check(config, x, w, b if with_bias else None, None, np.float64)


# --- work items within the memory target --------------------------------------------------------------


def test_column_cap_is_a_twelfth_of_the_tensors_within_bounds():
    assert _common.column_cap(1 << 30) == _common.COLUMN_BUDGET_BYTES
    assert _common.column_cap(12 << 20) == 1 << 20
    assert _common.column_cap(1000) == _common.MIN_COLUMN_BYTES


def test_scatter_makes_one_samples_columns_by_row_blocks_under_the_cap():
    """dil2-like (overlapping taps, at most MAX_BLOCKED_TAPS of them): one sample's columns exceed the cap, so
    each sample's item makes them an input-row block at a time, every block under the cap, all output
    channels in each GEMM."""
    config = _config((4, 4), (1, 1), (1, 1), ((0, 0), (0, 0)), 1, 4, 3)
    x = np.zeros((3, 4, 32, 32), dtype=np.float32)
    w = np.zeros(config.weight_shape, dtype=np.float32)
    y = np.empty((3, 3, 35, 35), dtype=np.float32)
    cap = 3 * 16 * 32 * 32 * 4 // 2  # half of one sample's columns
    items = scatter.items(x, w, None, y, config, (35, 35), np.dtype(np.float32), np, cap)
    assert [item.args[4:6] for item in items] == [((s, s + 1), (0, 3)) for s in range(3)]
    for item in items:
        blocks = item.args[6]
        assert blocks[0][0] == 0 and blocks[-1][1] == 32 and len(blocks) >= 2
        assert all(hi == lo2 for (_, hi), (lo2, _) in zip(blocks, blocks[1:]))
        assert all(3 * 16 * (hi - lo) * 32 * 4 <= cap for lo, hi in blocks)


def test_scatter_with_many_overlapping_taps_cuts_by_channel():
    """ms_doc-like (24 taps > MAX_BLOCKED_TAPS): items are (sample, channel block), all rows at once."""
    config = _config((4, 6), (1, 1), (1, 1), ((0, 0), (0, 0)), 1, 4, 3)
    x = np.zeros((3, 4, 32, 32), dtype=np.float32)
    w = np.zeros(config.weight_shape, dtype=np.float32)
    y = np.empty((3, 3, 35, 37), dtype=np.float32)
    cap = 3 * 24 * 32 * 32 * 4 // 2
    items = scatter.items(x, w, None, y, config, (35, 37), np.dtype(np.float32), np, cap)
    blocks = [(item.args[4], item.args[5]) for item in items]
    assert all(b1 - b0 == 1 for (b0, b1), _ in blocks) and all(c1 - c0 < 3 for _, (c0, c1) in blocks)
    assert sorted({b for b, _ in blocks}) == [(0, 1), (1, 2), (2, 3)] and all(len(item.args) == 6 for item in items)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1.0])
def test_all_finite_finds_any_nan_or_inf_without_a_temporary_the_arrays_size(dtype, value):
    a = np.ones((5, 7, 3), dtype=dtype)
    a[3, 6, 1] = value
    assert _common.all_finite(a, np) == (value == 1.0)
    assert _common.all_finite(a[:, ::3].transpose(2, 0, 1), np) == (value == 1.0)  # strided: column 6 kept
    assert _common.all_finite(a[:, :5], np) and _common.all_finite(a[:0], np)
    big = np.full(8, np.finfo(dtype).max, dtype=dtype)  # finite values whose sum overflows: the exact check says finite
    with np.errstate(all="ignore"):
        assert _common.all_finite(big, np) and _common.all_finite(np.append(big, dtype(value)), np) == (value == 1.0)


# suite configurations whose peak went over the memory target, scaled down: (config, batch, spatial, path)
OVER_THE_CAP = {
    "dil2_scatter_row_blocks": (_config((3, 3), (2, 2), (2, 2), ((2, 1), (2, 1)), 1, 64, 32), 8, (32, 32), "scatter"),
    "dcgan_scatter_batch_blocks": (_config((4, 4), (2, 2), (1, 1), ((1, 1), (1, 1)), 1, 256, 128), 64, (4, 4), "scatter"),
    "of_doc_phase_row_boxes": (
        _config((3, 5, 2), (2, 1, 1), (1, 1, 1), ((0, 0), (4, 4), (2, 2)), 1, 16, 33), 1, (6, 50, 100), "phase"),
}


@pytest.mark.parametrize("name", sorted(OVER_THE_CAP))
def test_items_in_turn_allocate_one_cap_beyond_the_output(name, rng):
    """Items run in turn (no thread pool) allocate at most one item's buffers beyond the output: the cap, plus
    a quarter and 64 KiB for the phase weights and the items themselves. Traced by tracemalloc (NumPy reports
    its buffers to it), so the bound is exact bytes, not resident pages; two threads then hold two caps, a
    sixth of the tensors. Before: dil2's row blocks held two column buffers (1.95 caps), dcgan's 8-sample
    items all channels' columns (2.96), of_doc's phase items whole rows (7.9)."""
    import tracemalloc

    config, batch, spatial, path = OVER_THE_CAP[name]
    out = _out_spatial(config, spatial)
    x = rng.standard_normal((batch, config.in_channels, *spatial), dtype=np.float32)
    w = rng.standard_normal(config.weight_shape, dtype=np.float32)
    b = rng.standard_normal(config.out_channels, dtype=np.float32)
    y_bytes = batch * config.out_channels * int(np.prod(out)) * 4
    cap = _common.column_cap(x.nbytes + w.nbytes + y_bytes)
    dispatch.deconvolve(x, w, b, config, out, xp=np, path=path)  # plans cached, as in a warm process
    tracemalloc.start()
    try:
        y = dispatch.deconvolve(x, w, b, config, out, xp=np, path=path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert y.nbytes == y_bytes
    assert peak - y_bytes <= cap * 5 // 4 + (64 << 10), f"{(peak - y_bytes) / cap:.2f} caps"


OF_DOC_LIKE = _config((3, 5, 2), (2, 1, 1), (1, 1, 1), ((0, 0), (4, 4), (2, 2)), 1, 4, 5)  # phase 0: 2 x 5 x 2 taps


def _phase_coverage(items, batch):
    """Per phase (its output view), how often each (sample, *Q) position is written by the items."""
    covered = {}
    for item in items:
        q_shape, (b0, b1), box = item.args[4], item.args[5], item.args[6]
        count = covered.setdefault(id(item.args[3]), np.zeros((batch, *q_shape), dtype=int))
        count[(slice(b0, b1), *(slice(lo, hi) for lo, hi in box))] += 1
    return covered


def test_phase_rows_over_the_cap_make_their_columns_a_tap_chunk_at_a_time(rng, monkeypatch):
    """of_doc-like (3-D, many taps per phase: one output row's columns over the cap): items stay whole rows,
    their taps cut into the fewest chunks whose columns, GEMM result and partial sum fit the cap; every
    position written once; the oracle's result."""
    config, batch, spatial = OF_DOC_LIKE, 2, (4, 10, 12)
    out = _out_spatial(config, spatial)
    x = np.zeros((batch, 4, *spatial), dtype=np.float32)
    w = np.zeros(config.weight_shape, dtype=np.float32)
    y = np.empty((batch, 5, *out), dtype=np.float32)
    row = out[1] * out[2] * 4  # one row's bytes per channel
    cap = (4 * 20 + 5) * row // 3
    items = phase.items(x, w, None, y, config, out, np.dtype(np.float32), np, cap)
    for item in items:
        parts, box = item.args[1], item.args[6]
        assert len(box) == 1 and box[0][1] - box[0][0] == 1 and len(parts) > 1
        assert (4 * max(len(taps) for taps, _ in parts) + 2 * 5) * row <= cap
        sizes = [len(taps) for taps, _ in parts]  # 20 taps (phase 0) or 10, at most 4 a chunk here
        assert len(parts) == -(-sum(sizes) // 4) and max(sizes) - min(sizes) <= 1
    assert all((c == 1).all() for c in _phase_coverage(items, batch).values())
    monkeypatch.setattr(_common, "COLUMN_BUDGET_BYTES", cap)
    for dtype in (np.float16, np.float32, np.float64):  # float16 adds its chunks in float32
        xf, wf, bf = _tensors(rng, config, batch, spatial, dtype)
        _check(config, xf, wf, bf, "phase", dtype)


def test_phase_rows_whose_single_tap_is_over_the_cap_are_cut_into_boxes(rng, monkeypatch):
    """Where even one tap's columns of a row (with the GEMM result and partial sum) are over the cap, rows are
    cut along the next dim into the fewest boxes under it, each covering its positions once."""
    config, batch, spatial = OF_DOC_LIKE, 2, (4, 10, 12)
    out = _out_spatial(config, spatial)
    x = np.zeros((batch, 4, *spatial), dtype=np.float32)
    w = np.zeros(config.weight_shape, dtype=np.float32)
    y = np.empty((batch, 5, *out), dtype=np.float32)
    cap = (4 + 2 * 5) * out[1] * out[2] * 4 - 1
    items = phase.items(x, w, None, y, config, out, np.dtype(np.float32), np, cap)
    for item in items:
        parts, q_shape, box = item.args[1], item.args[4], item.args[6]
        assert len(parts) == 1 and len(box) >= 2 and box[0][1] - box[0][0] == 1
        positions = np.prod([hi - lo for lo, hi in box]) * np.prod(q_shape[len(box):])
        assert (4 * len(parts[0][0]) + 5) * positions * 4 <= cap
    assert all((c == 1).all() for c in _phase_coverage(items, batch).values())
    monkeypatch.setattr(_common, "COLUMN_BUDGET_BYTES", cap)
    xf, wf, bf = _tensors(rng, config, batch, spatial, np.float32)
    _check(config, xf, wf, bf, "phase", np.float32)


@pytest.mark.parametrize("fold_below", [1, 10**9])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_scatter_batch_items_over_the_cap_make_columns_a_channel_block_at_a_time(fold_below, dtype, rng, monkeypatch):
    """dcgan-like (4x4 images, batch items of at least MIN_GEMM_COLUMNS input positions, which puts one
    item's columns over the cap): each item keeps all output channels but makes its columns a channel block
    at a time, the input copy, accumulator (or channels-last block, for small images) and one block's columns
    under the cap; the oracle's result, small images channels last or not."""
    monkeypatch.setattr(scatter, "FOLD_BATCH_BELOW", fold_below)
    config = _config((4, 4), (2, 2), (1, 1), ((1, 1), (1, 1)), 1, 8, 6)
    batch, spatial, out = 8, (4, 4), (8, 8)
    acc = np.dtype(np.float32)
    cap = 24 * 1024
    x = np.zeros((batch, 8, *spatial), dtype=dtype)
    w = np.zeros(config.weight_shape, dtype=dtype)
    y = np.empty((batch, 6, *out), dtype=dtype)
    (item,) = scatter.items(x, w, None, y, config, out, acc, np, cap)
    small = item.func is scatter._scatter_small_item
    assert small == (fold_below > 16)
    if small:
        batch_range, channels = item.args[4:6]
    else:
        batch_range, channel_range, channels = item.args[4], item.args[5], item.args[7]
        assert channel_range == (0, 6)
    per_sample = (8 * 16 + 6 * 16 * 16 + (6 * 64 if small or dtype == np.float16 else 0)) * acc.itemsize
    assert per_sample <= cap < 8 * per_sample and batch_range == (0, 8)  # 8 samples make 128 input positions
    per_channel = (16 * 16 + (64 if small else 0)) * acc.itemsize  # one output channel of one sample: columns
    assert 1 <= channels < 6 and per_sample * 8 - (6 - channels) * 8 * per_channel <= cap  # (and its block)
    monkeypatch.setattr(_common, "COLUMN_BUDGET_BYTES", cap)
    xf, wf, bf = _tensors(rng, config, batch, spatial, dtype)
    _check(config, xf, wf, bf, "scatter", dtype)


def test_disjoint_covering_scatter_is_cut_into_row_blocks(rng, monkeypatch):
    """k2s2-like taps that cover the output: items are (sample, channel block, input-row block), and a cap
    of one row and one channel per item still gives the oracle's result, crops included."""
    config, batch, spatial = CASES["2d_k2s2_cropped_row_blocks"]
    assert _common.tap_cover(config, spatial, _out_spatial(config, spatial)) == (True, True)
    x, w, b = _tensors(rng, config, batch, spatial, np.float32)
    y = np.empty((batch, config.out_channels, *_out_spatial(config, spatial)), dtype=np.float32)
    items = scatter.items(x, w, b, y, config, _out_spatial(config, spatial), np.dtype(np.float32), np, 1)
    assert sorted(item.args[-1] for item in items) == sorted([((r, r + 1),) for r in range(5)] * batch * 2)
    monkeypatch.setattr(_common, "COLUMN_BUDGET_BYTES", 1)
    _check(config, x, w, b, "scatter", np.float32)


G4_LIKE = _config((4, 4), (2, 2), (1, 1), ((1, 1), (1, 1)), 4, 16, 16)  # its column buffers: a fifth of the tensors


@pytest.mark.parametrize("config, batch, spatial, nodes", [
    (G4_LIKE, 9, (8, 8), [(4, 1), (5, 1)]),  # two slices, one onnxruntime thread each
    (G4_LIKE, 1, (8, 8), [(1, 2)]),  # a batch of one: one node on both threads
    (CASES["2d_groups"][0], 5, CASES["2d_groups"][2], [(5, 2)]),  # two column buffers would pass the memory margin
])
def test_ort_runs_one_single_thread_node_per_batch_slice(config, batch, spatial, nodes, rng, monkeypatch):
    """Two threads: the batch is cut in slices, each a one-thread node on one of the engine's threads, where
    their column buffers fit the memory margin (the inline runner and the general path alike). Same numbers."""
    pytest.importorskip("onnxruntime")
    from deconv_cli.engines import ort

    monkeypatch.setenv("DECONV_THREADS", "2")
    x, w, b = (a.astype(np.float32) for a in _tensors(rng, config, batch, spatial, np.float32))
    calls = []
    real = ort._session
    monkeypatch.setattr(ort, "_session", lambda *a: calls.append((a[1][0], a[4])) or real(*a))
    out = _out_spatial(config, spatial)
    want = reference_deconv(x, w, b, stride=config.stride, dilation=config.dilation, crops=config.crops,
                            groups=config.groups)
    tol = 2e-5 * max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(numpy_engine.deconvolve(x, w, b, config, out, path="ort"), want, atol=tol)  # inline
    assert sorted(calls) == nodes
    calls.clear()
    with numpy_engine.thread_budget() as parallel_map:  # the general path's items
        y = dispatch.deconvolve(x, w, b, config, out, xp=np, path="ort", parallel_map=parallel_map)
    np.testing.assert_allclose(y, want, atol=tol)
    assert sorted(calls) == nodes
