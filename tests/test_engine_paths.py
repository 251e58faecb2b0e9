"""Every engine path (phase, scatter) against the naive oracle, and the rules that pick them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import reference_deconv

from deconv_cli.config import DeconvConfig
from deconv_cli.engines import _generic, numpy_engine
from deconv_cli.shapes import full_length

PATHS = _generic.PATHS


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
    "2d_stride_divides_dilation": (_config((3, 3), (2, 2), (2, 2), ((2, 1), (2, 1)), 1, 3, 2), 2, (4, 4)),
    "2d_depthwise": (_config((4, 4), (2, 2), (1, 1), ((1, 1), (1, 1)), 4, 4, 4), 2, (5, 5)),
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
    monkeypatch.setattr(_generic, "COLUMN_BUDGET_BYTES", 4096)
    monkeypatch.setattr(_generic, "MIN_ITEM_BYTES", 1024)
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
    monkeypatch.setattr(_generic, "COLUMN_BUDGET_BYTES", 1)
    monkeypatch.setattr(_generic, "FOLD_BATCH_BELOW", fold_below)
    for threads in ("1", "2"):
        monkeypatch.setenv("DECONV_THREADS", threads)
        for path in PATHS:
            _check(config, x, w, b, path)


def test_weight_permutation_is_applied_on_every_path(rng):
    config = _config((3, 2), (2, 1), (1, 1), ((1, 0), (0, 0)), 1, 3, 2, weight_perm=(1, 0, 2, 3))
    x, w, b = _tensors(rng, config, 2, (3, 4))
    want = reference_deconv(x, w, b, stride=config.stride, dilation=config.dilation, crops=config.crops, groups=1)
    for path in PATHS:
        got = numpy_engine.deconvolve(x, np.ascontiguousarray(w.transpose(1, 0, 2, 3)), b, config,
                                      _out_spatial(config, (3, 4)), path=path)
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_channels_last_output_is_contiguous_in_its_own_layout(rng):
    config, batch, spatial = CASES["channels_last"]
    x, w, b = _tensors(rng, config, batch, spatial)
    got = numpy_engine.deconvolve(np.moveaxis(x, 1, -1), w, b, config, _out_spatial(config, spatial))
    assert got.flags.c_contiguous and got.shape[-1] == config.out_channels


# --- the dispatch rules, one representative shape each ----------------------------------------------


def _choose(kernel, stride, cin, cout, spatial, groups=1, dilation=None, batch=1, crops=None):
    rank = len(spatial)
    config = _config(kernel, stride, dilation or (1,) * rank, crops or ((0, 0),) * rank, groups, cin, cout)
    return _generic.choose_path(config, _out_spatial(config, spatial))


def test_rule_disjoint_taps_pick_scatter():
    assert _choose((2, 2, 2), (2, 2, 2), 64, 32, (32, 32, 32)) == "scatter"  # U-Net k2s2
    assert _choose((2,), (3,), 4, 64, (100,)) == "scatter"  # k < s: gaps get the bias alone


def test_rule_few_output_channels_pick_scatter():
    assert _choose((4, 6, 2), (1, 1, 1), 16, 3, (10, 32, 32), batch=32) == "scatter"  # ms_doc 16->3
    assert _choose((4, 4), (2, 2), 128, 3, (32, 32), batch=64, crops=((1, 1),) * 2) == "scatter"


def test_rule_narrowing_with_small_output_picks_scatter():
    assert _choose((4, 4), (2, 2), 512, 256, (4, 4), batch=64, crops=((1, 1),) * 2) == "scatter"  # dcgan


def test_rule_narrowing_with_large_output_picks_phase():
    assert _choose((3, 3, 3), (2, 2, 2), 64, 32, (32, 32, 32), crops=((1, 0),) * 3) == "phase"  # U-Net k3s2
    assert _choose((16,), (8,), 512, 256, (2000,), batch=4, crops=((4, 4),)) == "phase"  # hifigan


def test_rule_widening_grouped_and_depthwise_pick_phase():
    assert _choose((3, 3, 3), (2, 2, 2), 3, 64, (32, 32, 32), batch=2, crops=((1, 1),) * 3) == "phase"
    assert _choose((16, 16), (8, 8), 21, 21, (64, 64), crops=((4, 4),) * 2) == "phase"
    assert _choose((4, 4), (2, 2), 64, 64, (32, 32), groups=4, batch=8) == "phase"
    assert _choose((4, 4), (2, 2), 64, 64, (32, 32), groups=64, batch=8) == "phase"


def test_rule_more_phases_than_taps_picks_scatter():
    """A large stride under a larger dilation: thousands of one-column phases (s=200, d=240 took 5.8 s)."""
    assert _choose((3, 3), (200, 200), 4, 3, (6, 6), dilation=(240, 240)) == "scatter"
    assert _choose((3, 3), (60, 60), 4, 8, (6, 6), dilation=(70, 70)) == "scatter"
    assert _choose((3, 3), (3, 3), 4, 8, (6, 6), dilation=(2, 2)) == "phase"  # 9 phases, 9 taps


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
