"""megengine style: conv_transpose2d/3d and ConvTranspose2d/3d keywords -> canonical config."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import deconv_cli
from deconv_cli.conventions import megengine as mge
from deconv_cli.core.config import DeconvConfig
from deconv_cli.core.errors import ConfigError
from deconv_cli.execution.job import plan

GOLDEN = Path(__file__).parent.parent / "golden" / "megengine.json"
T2 = {"padding": (0, 0), "dilation": (1, 1)}


@pytest.mark.parametrize(
    "options, x, w, want_crops, want_out",
    [
        # seed: ConvTranspose3d(3, 64, 3, stride=2, padding=1)
        ({"in_channels": 3, "out_channels": 64, "kernel_size": 3, "stride": 2, "padding": 1},
         (16, 3, 32, 32, 32), (3, 64, 3, 3, 3), ((1, 1),) * 3, (16, 64, 63, 63, 63)),
        ({"stride": (2, 3), "padding": (1, 2)}, (1, 4, 5, 6), (4, 3, 4, 3), ((1, 1), (2, 2)), (1, 3, 10, 14)),
        ({"stride": (2, 2), "output_padding": (1, 0), **T2}, (1, 4, 5, 5), (4, 3, 3, 3), ((0, -1), (0, 0)), (1, 3, 12, 11)),
        # grouped weight (g, C_in/g, C_out/g, k...): C_in = g*w[1], C_out = g*w[2]
        ({"groups": 2}, (1, 4, 5, 5), (2, 2, 3, 3, 3), ((0, 0),) * 2, (1, 6, 7, 7)),
        ({"groups": 2, "stride": 2, "padding": 1}, (1, 4, 3, 3, 3), (2, 2, 1, 2, 2, 2), ((1, 1),) * 3, (1, 2, 4, 4, 4)),
        ({"stride": 2, "padding": (1, 1, 1), "dilation": (1, 1, 1), "output_padding": 1}, (1, 2, 3, 3, 3),
         (2, 3, 3, 3, 3), ((1, 0),) * 3, (1, 3, 6, 6, 6)),
    ],
)
def test_configs(options, x, w, want_crops, want_out):
    record = plan("megengine", options, x, w)
    assert record.config.crops == want_crops
    assert record.output_shape == want_out
    assert record.warnings == ()


def test_grouped_weight_is_a_plain_reshape_of_the_canonical_one(rng):
    x = rng.standard_normal((1, 4, 3, 3)).astype(np.float32)
    w = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)  # canonical (C_in, C_out/g, k...)
    want = deconv_cli.deconvolve(x, w, style="torch", groups=2, stride=2)
    got = deconv_cli.deconvolve(x, w.reshape(2, 2, 3, 2, 2), style="megengine", groups=2, stride=2)
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("bias", [(1, 6, 1, 1), (6,)])
def test_bias_shapes(bias):
    record = plan("megengine", {}, (1, 4, 3, 3), (4, 6, 3, 3), bias)
    assert record.output_shape == (1, 6, 5, 5)
    assert bool(record.notes) == (bias == (6,))


@pytest.mark.parametrize(
    "options, x, w, line",
    [
        ({"stride": 0}, (1, 2, 4, 4), (2, 2, 3, 3), "stride=0 must be positive (MegEngine 1.13 dies with SIGFPE, a division by zero)."),
        ({"stride": (2, 2), "output_padding": (2, 0), **T2}, (1, 2, 4, 4), (2, 2, 3, 3),
         "output_padding=(2, 0): output_padding[0] should be less than stride[0] = 2 "
         "(MegEngine 1.13 rejects it; dilation does not relax this)."),
        ({}, (4, 3, 3, 3), (4, 2, 3, 3, 3),
         "weight has 5 dimensions (4, 2, 3, 3, 3); with groups=1 MegEngine 1.13 needs (C_in, C_out, k...) "
         "(4 dimensions; it fails: assertion `filter.ndim == img_ndim + 2')."),
        ({"groups": 2}, (1, 4, 5, 5), (4, 1, 2, 3, 3),
         "groups=2 but the weight (4, 1, 2, 3, 3) has 4 groups in its first dimension (MegEngine 1.13 would silently "
         "use 4 groups). Pass groups=4 or reshape the weight."),
        ({"padding": (1, 1, 1)}, (1, 2, 4, 4), (2, 2, 3, 3),
         "padding=(1, 1, 1) has 3 values for a 2-D convolution (MegEngine 1.13 uses only the first 2). Give 2 values."),
    ],
)
def test_error_lines(options, x, w, line):
    with pytest.raises(ConfigError) as err:
        plan("megengine", options, x, w)
    assert str(err.value) == line


@pytest.mark.parametrize(
    "options, x, w, match",
    [
        ({"dilation": 0}, (1, 2, 4, 4), (2, 2, 3, 3), "dilation=0 must be positive"),
        ({"padding": -1}, (1, 2, 4, 4), (2, 2, 3, 3), "must not be negative"),
        ({"output_padding": (-1, 0), "stride": (2, 2), **T2}, (1, 2, 4, 4), (2, 2, 3, 3), "must not be negative"),
        ({"stride": (1, 1), "dilation": (2, 2), "padding": (0, 0), "output_padding": (1, 1)}, (1, 2, 4, 4),
         (2, 2, 3, 3), "dilation does not relax this"),
        ({"groups": 2}, (1, 4, 5, 5), (4, 1, 3, 3), r"filter.ndim == img_ndim \+ 3"),
        ({}, (1, 3, 5, 5), (4, 2, 3, 3), "cflt.ocpg"),
        ({}, (1, 4, 5), (4, 2, 3), "no 1-D transposed convolution"),
        ({"padding": 2}, (1, 2, 2, 2), (2, 2, 3, 3), r"i > pad \* 2"),
        ({"in_channels": 3, "groups": 2}, (1, 4, 3, 3), (2, 2, 1, 3, 3), "divisible by groups"),
        ({"kernel_size": 2}, (1, 2, 4, 4), (2, 2, 3, 3), "does not match the weight's kernel"),
        ({"padding_mode": "reflect"}, (1, 2, 4, 4), (2, 2, 3, 3), "only pad with zeros"),
        ({"bias": True}, (1, 2, 4, 4), (2, 2, 3, 3), "no bias tensor"),
    ],
)
def test_rejects(options, x, w, match):
    with pytest.raises(ConfigError, match=match):
        plan("megengine", options, x, w)


def test_float64_is_refused_not_silently_downcast():
    with pytest.raises(ConfigError, match="does not compute in float64") as err:
        plan("megengine", {}, (1, 2, 4, 4), (2, 2, 3, 3), dtypes={"input": "float64", "weight": "float64"})
    assert "float32" in str(err.value)


# --- the three 1.13 defects: documented result + one warning; quirks=True: the released behaviour

OP01 = ({"stride": (2, 2), "output_padding": (0, 1), **T2}, (1, 4, 5, 5), (4, 3, 3, 3))


def test_ignored_output_padding_w_warns_and_computes_documented():
    record = plan("megengine", *OP01)
    assert record.output_shape == (1, 3, 11, 12)
    assert len(record.warnings) == 1 and "ignores output_padding[1]=1" in record.warnings[0]


def test_ignored_output_padding_w_reproduced_with_quirks():
    record = plan("megengine", *OP01, quirks=True)
    assert record.output_shape == (1, 3, 11, 11) and record.warnings == ()
    # the ignored value is not even range-checked by 1.13
    assert plan("megengine", {**OP01[0], "output_padding": (0, 5)}, *OP01[1:], quirks=True).output_shape == (1, 3, 11, 11)
    with pytest.raises(ConfigError):
        plan("megengine", {**OP01[0], "output_padding": (0, 5)}, *OP01[1:])


@pytest.mark.parametrize(
    "options, x, w, match",
    [
        ({"groups": 2, "stride": (2, 2), "output_padding": (1, 1), **T2}, (1, 4, 5, 5), (2, 2, 2, 3, 3), "groups=2 with output_padding"),
        ({"stride": 2, "output_padding": (1, 1), **T2}, (1, 2, 4, 4), (2, 2, 3, 3), "indexes stride with"),
        ({"stride": (2, 2, 2), "output_padding": 1}, (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), "indexes padding, dilation"),
    ],
)
def test_failing_defects_warn_or_reject_with_quirks(options, x, w, match):
    record = plan("megengine", options, x, w)
    assert len(record.warnings) == 1 and match in record.warnings[0]
    with pytest.raises(ConfigError, match=match):
        plan("megengine", options, x, w, quirks=True)


def test_module_arguments_dodge_the_int_defect():
    options = {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}
    record = plan("megengine", options, (2, 4, 5, 5), (4, 6, 3, 3), quirks=True)
    assert record.output_shape == (2, 6, 10, 10) and record.warnings == ()


@pytest.mark.parametrize("case", json.loads(GOLDEN.read_text())["quirk_rejects"], ids=lambda c: c["name"])
def test_golden_quirk_rejects(case):
    options = {k: ast.literal_eval(v) for k, v in case["options"].items()}
    shapes = (case["input_shape"], case["weight_shape"], case["bias_shape"])
    with pytest.raises(ConfigError):
        plan("megengine", options, *shapes, quirks=True)
    assert plan("megengine", options, *shapes).warnings


# --- express: the inverse

@pytest.mark.parametrize("rank", [2, 3])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_express_round_trip(rank, data):
    dims = data.draw(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2),
                                        st.integers(-2, 3), st.integers(-2, 3)), min_size=rank, max_size=rank))
    groups = data.draw(st.sampled_from([1, 2]))
    cfg = DeconvConfig(kernel=tuple(d[1] for d in dims), stride=tuple(d[2] for d in dims),
                       dilation=tuple(d[3] for d in dims), crops=tuple((d[4], d[5]) for d in dims), groups=groups,
                       in_channels=2 * groups, out_channels=3 * groups)
    x = (1, 2 * groups, *(d[0] for d in dims))
    e = mge.express(cfg, x)
    if e.expressible:
        parsed = mge.parse(e.options, input_shape=e.input_shape, weight_shape=e.weight_shape)
        assert parsed.config == cfg and parsed.warnings == ()
        # the spelling also runs on the released 1.13 (quirks) with the same result
        assert mge.parse(e.options, input_shape=e.input_shape, weight_shape=e.weight_shape, quirks=True).config == cfg
    elif e.crop is not None:
        near = mge.parse(e.options, input_shape=e.input_shape, weight_shape=e.weight_shape, quirks=True).config
        assert tuple((lo + a, hi + b) for (lo, hi), (a, b) in zip(near.crops, e.crop)) == cfg.crops


def test_express_grouped_weight_recipe():
    cfg = mge.parse({"groups": 2, "stride": 2}, input_shape=(1, 4, 3, 3), weight_shape=(2, 2, 3, 3, 3)).config
    e = mge.express(cfg, (1, 4, 3, 3))
    assert e.expressible and e.weight == "reshape to (g, C_in/g, C_out/g, k...)" and e.weight_shape == (2, 2, 3, 3, 3)
    cfg_op = DeconvConfig(kernel=(3, 3), stride=(2, 2), dilation=(1, 1), crops=((1, 0), (1, 0)), groups=2,
                          in_channels=4, out_channels=6)
    e = mge.express(cfg_op, (1, 4, 3, 3))
    assert not e.expressible and "groups>1 with output_padding" in e.reason and "output_padding" not in e.options
    near = mge.parse(e.options, input_shape=e.input_shape, weight_shape=e.weight_shape).config
    assert tuple((lo + a, hi + b) for (lo, hi), (a, b) in zip(near.crops, e.crop)) == cfg_op.crops
