"""Dragon style: option tables -> crops/output shapes, exact error lines, quirks, express round trip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import deconv_cli
from deconv_cli.conventions import dragon
from deconv_cli.core.config import DeconvConfig
from deconv_cli.core.errors import ConfigError


def parse(input_shape, weight_shape, bias_shape=None, quirks=False, **options):
    return dragon.parse(options, input_shape=input_shape, weight_shape=weight_shape, bias_shape=bias_shape, quirks=quirks)


@pytest.mark.parametrize(
    "input_shape, weight_shape, options, crops, output_shape",
    [
        # kernel_shape defaults to 3
        ((2, 3, 5), (3, 2, 3), {}, ((0, 0),), (2, 2, 7)),
        # pads of length r are symmetric, 2r are [begins..., ends...]
        ((1, 2, 5), (2, 2, 3), dict(strides=2, pads=(1, 2)), ((1, 2),), (1, 2, 8)),
        ((1, 2, 4, 4), (2, 2, 3, 3), dict(strides=2, pads=(0, 1, 2, 1)), ((0, 2), (1, 1)), (1, 2, 7, 7)),
        # other lengths are normalised like strides: 3-D (1, 0, 2, 2) is (1, 0, 2) on both sides
        ((1, 2, 3, 3, 3), (2, 2, 3, 3, 3), dict(strides=2, pads=(1, 0, 2, 2)), ((1, 1), (0, 0), (2, 2)), (1, 2, 5, 7, 3)),
        ((1, 2, 2, 3, 3), (2, 2, 2, 2, 2), dict(kernel_shape=2, strides=(2, 1)), ((0, 0),) * 3, (1, 2, 4, 4, 4)),
        # output_padding: not range-checked, negative allowed
        ((1, 2, 4), (2, 2, 3), dict(output_padding=[5]), ((0, -5),), (1, 2, 11)),
        ((1, 2, 4), (2, 3, 3), dict(output_padding=[-1]), ((0, 1),), (1, 3, 5)),
        ((1, 2, 3), (2, 2, 3), dict(strides=2, pads=-1), ((-1, -1),), (1, 2, 9)),
        # SAME*: P = max(0, full - O); SAME_UPPER puts the odd unit at the end, SAME/SAME_LOWER at the beginning
        ((1, 2, 5), (2, 2, 3), dict(strides=2, padding="SAME", output_shape=[10]), ((1, 0),), (1, 2, 10)),
        ((1, 2, 5), (2, 2, 3), dict(strides=2, padding="SAME_UPPER", output_shape=[10]), ((0, 1),), (1, 2, 10)),
        ((1, 2, 5), (2, 2, 3), dict(strides=2, padding="SAME_LOWER", output_shape=[10]), ((1, 0),), (1, 2, 10)),
        # output_shape with VALID switches to SAME and ignores pads
        ((1, 2, 5), (2, 2, 3), dict(strides=2, pads=3, output_shape=[8]), ((2, 1),), (1, 2, 8)),
        # past full only with output_padding
        ((1, 2, 4), (2, 2, 3), dict(strides=2, output_padding=[2], output_shape=[11]), ((0, -2),), (1, 2, 11)),
        # NHWC, also 1-D and 3-D: (N, *spatial, C) with weight (C_in, *k, C_out/group)
        ((1, 3, 4, 5, 4), (4, 3, 3, 3, 2), dict(data_format="NHWC"), ((0, 0),) * 3, (1, 5, 6, 7, 2)),
        ((1, 4, 2), (2, 3, 3), dict(data_format="NHWC"), ((0, 0),), (1, 6, 3)),
        # only the element count: (3, 2, 1, 1, 1) for 2 input channels is (2, 3, 1, 1, 1)
        ((1, 2, 2, 2, 2), (3, 2, 1, 1, 1), dict(kernel_shape=1, strides=2), ((0, 0),) * 3, (1, 3, 3, 3, 3)),
        ((1, 2, 4), (2, 3, 3), dict(output_shape=[0]), ((3, 3),), (1, 3, 0)),
    ],
)
def test_shapes(input_shape, weight_shape, options, crops, output_shape):
    assert parse(input_shape, weight_shape, **options).config.crops == crops
    assert deconv_cli.derive(input_shape, weight_shape, style="dragon", **options).output_shape == output_shape


def test_layouts():
    config = parse((1, 3, 4, 5, 4), (4, 3, 3, 3, 2), data_format="NHWC").config
    assert config.channels_last and config.weight_perm == (0, 4, 1, 2, 3)
    parsed = parse((1, 2, 2, 2, 2), (3, 2, 1, 1, 1), kernel_shape=1, strides=2)
    assert parsed.config.weight_perm is None and parsed.config.weight_shape == (2, 3, 1, 1, 1)
    assert "Dragon checks only the weight's element count: (3, 2, 1, 1, 1) is read as (2, 3, 1, 1, 1)" in parsed.notes
    assert parse((1, 2, 4), (2, 3, 3), (1, 3, 1)).config.out_channels == 3  # bias: only its count


@pytest.mark.parametrize(
    "input_shape, weight_shape, bias_shape, options, message",
    [
        ((1, 2, 4), (2, 3, 1), None, {},
         "kernel_shape=3 does not match the weight's kernel 1 (Dragon aborts on the element count or reads the weight "
         "with the wrong kernel; kernel_shape defaults to 3). Pass kernel_shape=1."),
        ((1, 2, 4), (2, 3, 3), None, dict(output_shape=[7]),
         "output_shape[0]=7 is too large: at most 6 (full 6 + output_padding 0; Dragon aborts: The output shape is "
         "incorrect). Pass output_padding with at least 1 in dim 0."),
        ((1, 4, 4, 2), (2, 3, 3, 3), None, dict(group=2, data_format="NHWC"),
         "group=2 with data_format=NHWC: Dragon aborts (GroupConv(NHWC) is not supported). Use NCHW."),
        ((1, 2, 4), (2, 3, 3), None, dict(padding="same", output_shape=[6]),
         "padding='same': Unsupported padding algorithm (Dragon rejects it). Use one of VALID, SAME, SAME_UPPER, SAME_LOWER."),
        ((1, 2, 4), (2, 3, 3), None, dict(padding="SAME"),
         "padding=SAME needs output_shape (Dragon rejects it: Excepted <output_shape> for same padding)."),
        ((1, 2, 4), (2, 3, 3), (4,), {},
         "bias has shape (4,) (4 elements) but there are 3 output channels (Dragon aborts: Check failed: "
         "count == Input(2).count())."),
        ((1, 4, 4), (4, 2, 3), None, dict(group=3),
         "group=3 must divide input channels 4 (Dragon does not check it and returns garbage). "
         "Pick a group count that divides the channels."),
        ((1, 2, 4, 4), (2, 3, 3, 3), None, dict(output_padding=[1]),
         "output_padding=(1,) has 1 values for a 2-D convolution (Dragon aborts: Check failed: num_output_padding == 0 "
         "|| num_output_padding == num_axes_). Pass 2 values."),
        ((1, 2, 4), (2, 3, 3), None, dict(pads=4),
         "calculated output size -2 is negative (Dragon aborts: Check failed: d >= 0). Reduce pads."),
    ],
)
def test_error_lines(input_shape, weight_shape, bias_shape, options, message):
    with pytest.raises(ConfigError) as err:
        parse(input_shape, weight_shape, bias_shape, **options)
    assert str(err.value) == message


@pytest.mark.parametrize(
    "options",
    [dict(strides=0), dict(dilations=0), dict(group=0), dict(output_shape=6), dict(output_shape=[-1]),
     dict(data_format="NCDHW"), dict(output_shape=[6, 6])],
)
def test_rejected(options):
    with pytest.raises(ConfigError):
        parse((1, 2, 4), (2, 3, 3), **options)


def test_seed_example_1x1_path_rejected():
    """The seed's conv3d_transpose example: right shape from Dragon, values misplaced by its 1x1 GEMM path."""
    with pytest.raises(ConfigError, match="1x1 GEMM path"):
        parse((1, 2, 2, 2, 2), (3, 2, 1, 1, 1), kernel_shape=1, output_shape=(3, 3, 3), output_padding=(1, 1, 1))
    # as printed in the seed (no output_padding) Dragon aborts
    with pytest.raises(ConfigError, match="at most 2"):
        parse((1, 2, 2, 2, 2), (3, 2, 1, 1, 1), kernel_shape=1, output_shape=(3, 3, 3))


def test_express_avoids_1x1_path():
    config = parse((1, 2, 3, 3), (2, 3, 1, 1), kernel_shape=1, pads=(0, 0, -1, 0)).config
    e = dragon.express(config, (1, 2, 3, 3))
    assert e.options["pads"] == [0, 0, -1, 0] and "output_padding" not in e.options
    assert parse(e.input_shape, e.weight_shape, **e.options).config == config


def test_express_nhwc():
    config = parse((1, 4, 3, 3), (3, 3, 3, 2), strides=2, data_format="NHWC").config
    e = dragon.express(config, (1, 3, 4, 3))
    assert e.input_shape == (1, 4, 3, 3) and e.weight_shape == (3, 3, 3, 2)
    assert e.weight == "transpose to (C_in, k..., C_out/group)" and e.options["data_format"] == "NHWC"


def test_int_output_padding_quirk():
    default = parse((1, 2, 5), (2, 2, 3), strides=2, pads=1, output_padding=1)
    assert default.config.crops == ((1, 0),)
    assert len(default.warnings) == 1 and "Dragon 0.3.0 ignores output_padding=1" in default.warnings[0]
    quirky = parse((1, 2, 5), (2, 2, 3), quirks=True, strides=2, pads=1, output_padding=1)
    assert quirky.config.crops == ((1, 1),) and not quirky.warnings
    assert not parse((1, 2, 5), (2, 2, 3), output_padding=0).warnings


def test_dtypes():
    with pytest.raises(ConfigError, match="Dragon 0.3.0 does not compute in float16"):
        deconv_cli.deconvolve(np.zeros((1, 2, 4), "float16"), np.zeros((2, 3, 3), "float16"), style="dragon")


@st.composite
def configs(draw):
    rank = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    spatial = tuple(draw(st.integers(1, 6)) for _ in range(rank))
    crops = []
    for n, k, s, d in zip(spatial, kernel, stride, dilation):
        full = (n - 1) * s + d * (k - 1) + 1
        lo = draw(st.integers(-3, full))
        crops.append((lo, draw(st.integers(-3, full - lo))))
    channels_last = groups == 1 and draw(st.booleans())
    config = DeconvConfig(kernel=kernel, stride=stride, dilation=dilation, crops=tuple(crops), groups=groups,
                          in_channels=groups * draw(st.integers(1, 3)), out_channels=groups * draw(st.integers(1, 3)),
                          channels_last=channels_last)
    return config, (draw(st.integers(1, 3)), config.in_channels, *spatial)


def _layout_free(config):
    return (config.kernel, config.stride, config.dilation, config.crops, config.groups, config.in_channels, config.out_channels)


@settings(max_examples=300, deadline=None)
@given(configs())
def test_express_round_trip(case):
    config, input_shape = case
    e = dragon.express(config, input_shape)
    assert e.expressible
    back = parse(e.input_shape, e.weight_shape, **e.options).config
    assert _layout_free(back) == _layout_free(config)
    assert back.channels_last == config.channels_last
