"""The NumPy engine against the naive reference: random ranks, strides, dilations, groups, crops, dtypes,
layouts; and the adjoint identity <conv(y), x> == <y, deconv(x)>, which needs no golden file."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import reference_conv, reference_deconv

from deconv_cli.core.config import DeconvConfig
from deconv_cli.core.shapes import derive
from deconv_cli.engines import numpy_engine


@st.composite
def configs(draw, max_rank=3):
    rank = draw(st.integers(1, max_rank))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin_g, cout_g = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    spatial = tuple(draw(st.integers(1, 5 if rank < 3 else 3)) for _ in range(rank))
    crops = []
    for n, k, s, d in zip(spatial, kernel, stride, dilation):
        full = (n - 1) * s + d * (k - 1) + 1
        lo = draw(st.integers(-3, full))
        hi = draw(st.integers(-3, full - lo))
        crops.append((lo, hi))
    config = DeconvConfig(
        kernel=kernel, stride=stride, dilation=dilation, crops=tuple(crops), groups=groups,
        in_channels=cin_g * groups, out_channels=cout_g * groups,
    )
    batch = draw(st.integers(1, 3))
    return config, (batch, config.in_channels, *spatial)


def _run(config, x, w, b):
    record = derive(config, x.shape)
    return numpy_engine.deconvolve(x, w, b, config, record.output_spatial)


def _tensors(rng, config, input_shape, dtype=np.float32, bias=True):
    x = rng.standard_normal(input_shape).astype(dtype)
    w = rng.standard_normal(config.weight_shape).astype(dtype)
    b = rng.standard_normal(config.out_channels).astype(dtype) if bias else None
    return x, w, b


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=configs(), bias=st.booleans(), seed=st.integers(0, 2**31))
def test_matches_reference(case, bias, seed):
    config, input_shape = case
    x, w, b = _tensors(np.random.default_rng(seed), config, input_shape, bias=bias)
    got = _run(config, x, w, b)
    want = reference_deconv(x, w, b, stride=config.stride, dilation=config.dilation, crops=config.crops, groups=config.groups)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max(initial=0)))


@settings(max_examples=60, deadline=None)
@given(case=configs(), seed=st.integers(0, 2**31))
def test_adjoint_identity(case, seed):
    """deconv is the adjoint of the strided, dilated, padded, grouped convolution: <deconv(x), y> == <x, conv(y)>."""
    config, input_shape = case
    rng = np.random.default_rng(seed)
    x, w, _ = _tensors(rng, config, input_shape, dtype=np.float64, bias=False)
    y = _run(config, x, w, None)
    probe = rng.standard_normal(y.shape)
    lhs = float(np.vdot(y, probe))
    back = reference_conv(probe, w, stride=config.stride, dilation=config.dilation, crops=config.crops,
                          groups=config.groups, spatial_in=input_shape[2:])
    rhs = float(np.vdot(x, back))
    assert lhs == pytest.approx(rhs, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("dtype, tol", [(np.float16, 2e-2), (np.float32, 1e-5), (np.float64, 1e-12)])
def test_dtypes_keep_their_type_and_accumulate_wide(rng, dtype, tol):
    config = DeconvConfig(kernel=(4, 4), stride=(2, 2), dilation=(1, 1), crops=((1, 1), (1, 1)), groups=1,
                          in_channels=64, out_channels=3)
    x, w, b = _tensors(rng, config, (2, 64, 6, 6), dtype=dtype)
    got = _run(config, x, w, b)
    assert got.dtype == dtype
    want = reference_deconv(x, w, b, stride=(2, 2), dilation=(1, 1), crops=config.crops, groups=1)
    # fp16 out with fp32 accumulation: within fp16 rounding of the exact result (64 products summed)
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol * np.abs(want).max())


def test_channels_last_and_unbatched_layouts(rng):
    base = dict(kernel=(3, 2), stride=(2, 3), dilation=(1, 2), crops=((1, 0), (0, -1)), groups=2, in_channels=4, out_channels=6)
    first = DeconvConfig(**base)
    x, w, b = _tensors(rng, first, (2, 4, 5, 4))
    want = _run(first, x, w, b)
    last = DeconvConfig(**base, channels_last=True)
    got = _run(last, np.ascontiguousarray(np.moveaxis(x, 1, -1)), w, b)
    np.testing.assert_allclose(got, np.moveaxis(want, 1, -1), rtol=1e-6, atol=1e-6)
    single = DeconvConfig(**base, batched=False)
    np.testing.assert_allclose(_run(single, x[1], w, b), want[1], rtol=1e-6, atol=1e-6)


def test_weight_permutation_is_applied_before_the_reshape(rng):
    """A channels-last weight (C_in, *k, C_out/g) is reordered by weight_perm, then reshaped."""
    base = dict(kernel=(3, 2), stride=(2, 2), dilation=(1, 1), crops=((0, 0), (0, 0)), groups=1, in_channels=4, out_channels=5)
    x, w, b = _tensors(rng, DeconvConfig(**base), (1, 4, 3, 3))
    want = _run(DeconvConfig(**base), x, w, b)
    permuted = DeconvConfig(**base, weight_perm=(0, 3, 1, 2))
    np.testing.assert_allclose(_run(permuted, x, np.ascontiguousarray(np.moveaxis(w, 1, -1)), b), want, rtol=1e-6)


def test_bias_reaches_positions_outside_the_full_result(rng):
    """Negative crops add positions that hold only the bias (docs/CONVENTIONS.md section 0)."""
    config = DeconvConfig(kernel=(1,), stride=(4,), dilation=(1,), crops=((-2, -1),), groups=1, in_channels=1, out_channels=1)
    x = np.array([[[1.0, 2.0]]], dtype=np.float32)
    w = np.ones((1, 1, 1), dtype=np.float32)
    got = _run(config, x, w, np.array([0.5], dtype=np.float32))
    np.testing.assert_array_equal(got[0, 0], [0.5, 0.5, 1.5, 0.5, 0.5, 0.5, 2.5, 0.5])


def test_large_batches_are_processed_in_chunks(rng, monkeypatch):
    """A small column budget forces many chunks; the result must not change."""
    from deconv_cli.engines import _common

    config = DeconvConfig(kernel=(3, 3), stride=(2, 2), dilation=(1, 1), crops=((1, 0), (1, 0)), groups=1, in_channels=3, out_channels=2)
    x, w, b = _tensors(rng, config, (7, 3, 4, 4))
    want = _run(config, x, w, b)
    monkeypatch.setattr(_common, "COLUMN_BUDGET_BYTES", 1)
    np.testing.assert_allclose(_run(config, x, w, b), want, rtol=1e-6, atol=1e-6)
