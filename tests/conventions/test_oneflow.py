"""OneFlow style: option tables -> crops/output shapes, exact error lines, express round trip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import deconv_cli
from deconv_cli.conventions import oneflow
from deconv_cli.core.config import DeconvConfig
from deconv_cli.core.errors import ConfigError


def parse(input_shape, weight_shape, bias_shape=None, **options):
    return oneflow.parse(options, input_shape=input_shape, weight_shape=weight_shape, bias_shape=bias_shape)


@pytest.mark.parametrize(
    "input_shape, weight_shape, options, crops, output_shape",
    [
        # the seed page's module example, at its own input size
        ((1, 16, 10, 50, 100), (16, 33, 3, 5, 2), dict(stride=(2, 1, 1), padding=(0, 4, 2)),
         ((0, 0), (4, 4), (2, 2)), (1, 33, 21, 46, 97)),
        ((1, 2, 5), (2, 3, 3), dict(stride=2, padding=1, output_padding=1), ((1, 0),), (1, 3, 10)),
        # outside PyTorch's domain: OneFlow accepts any output_padding and negative padding
        ((1, 2, 3), (2, 2, 2), dict(stride=2, output_padding=2), ((0, -2),), (1, 2, 8)),
        ((1, 2, 3), (2, 2, 3), dict(stride=2, padding=-1), ((-1, -1),), (1, 2, 9)),
        ((1, 2, 4), (2, 3, 3), dict(stride=2, output_padding=-1), ((0, 1),), (1, 3, 8)),
        ((1, 4, 3, 4), (4, 2, 3, 3), dict(groups=2, stride=2, padding=1), ((1, 1), (1, 1)), (1, 4, 5, 7)),
        ((1, 2, 5), (2, 2, 3), dict(dilation=3, output_padding=2), ((0, -2),), (1, 2, 13)),
    ],
)
def test_shapes(input_shape, weight_shape, options, crops, output_shape):
    assert parse(input_shape, weight_shape, **options).config.crops == crops
    assert deconv_cli.derive(input_shape, weight_shape, style="oneflow", **options).output_shape == output_shape


@pytest.mark.parametrize(
    "input_shape, weight_shape, bias_shape, options, message",
    [
        ((1, 4, 5), (4, 3, 3), None, dict(groups=3),
         "groups=3 must divide input channels 4 (OneFlow does not check it and returns a wrong-shaped result with "
         "9 channels; nn.ConvTranspose1d asserts). Pick a group count that divides the channels."),
        ((1, 2, 4), (2, 3, 3), None, dict(stride=0),
         "stride=0 must be positive (OneFlow does not check it and returns a garbage shape)."),
        ((1, 2, 4), (2, 3, 3), None, dict(padding=3),
         "calculated output size 0 is too small (OneFlow rejects it: every output dimension must be >= 1). "
         "Reduce padding or raise output_padding."),
        ((2, 4), (2, 3, 3), None, {},
         "input has 2 dimensions (2, 4); OneFlow's conv_transpose needs (N, C, *spatial) with 1 to 3 spatial dims "
         "(it has no unbatched input)."),
        ((1, 2, 4), (2, 3, 3, 3), None, {},
         "weight has 4 dimensions (2, 3, 3, 3) for a 1-D input (OneFlow rejects it: (4 vs 3)). "
         "OneFlow's weight is (C_in, C_out/groups, *kernel) with 1 kernel dims."),
        ((1, 2, 4), (2, 3, 3), (1, 3), {},
         "bias has shape (1, 3); OneFlow (a 1-D bias) needs (3,) for 3 output channels."),
        ((1, 2, 4), (2, 3, 3), None, dict(padding_mode="reflect"),
         "padding_mode='reflect': OneFlow 0.9.0 transposed convolutions only pad with zeros."),
        ((1, 2, 4), (2, 3, 3), None, dict(padding=(1, 5)),
         "padding=(1, 5) has 2 values for a 1-D convolution (OneFlow keeps the shape of the first 1 but computes "
         "different values: silent garbage). Pass 1 values."),
        ((1, 2, 4), (2, 3, 3), None, dict(output_size=(7,)), "unknown option 'output_size' for style oneflow. Did you mean 'output_padding'?"),
    ],
)
def test_error_lines(input_shape, weight_shape, bias_shape, options, message):
    with pytest.raises(ConfigError) as err:
        parse(input_shape, weight_shape, bias_shape, **options)
    assert str(err.value) == message


def test_unbatched_rejected():
    with pytest.raises(ConfigError, match="no unbatched input"):
        parse((2, 4), (2, 3, 3, 3))


def test_dtypes():
    assert oneflow.DTYPES == ("float32", "float64")
    with pytest.raises(ConfigError, match="OneFlow 0.9.0 does not compute in float16"):
        deconv_cli.conventions.plan.plan("oneflow", {}, (1, 2, 4), (2, 3, 3), dtypes={"input": "float16", "weight": "float16"})
    with pytest.raises(ConfigError, match="mixed dtypes"):
        deconv_cli.conventions.plan.plan("oneflow", {}, (1, 2, 4), (2, 3, 3), dtypes={"input": "float32", "weight": "float64"})


def test_module_keywords_checked():
    parse((1, 4, 3, 3), (4, 3, 2, 3), in_channels=4, out_channels=6, kernel_size=(2, 3), groups=2, bias=False)
    with pytest.raises(ConfigError, match=r"kernel_size=\(2, 2\) does not match the weight's kernel"):
        parse((1, 2, 4, 4), (2, 3, 3, 3), kernel_size=2)
    with pytest.raises(ConfigError, match="bias=True but no bias tensor was given"):
        parse((1, 2, 4), (2, 3, 3), bias=True)


def test_no_warnings_out_of_domain():
    """Out-of-torch-domain values are valid OneFlow results, not defects: notes, no warning."""
    parsed = parse((1, 2, 3), (2, 2, 3), stride=2, output_padding=5, padding=-1)
    assert not parsed.warnings
    assert any("outside PyTorch's range" in n for n in parsed.dim_notes[0])


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
        lo = draw(st.integers(-3, full - 1))
        hi = draw(st.integers(-3, full - lo - 1))
        crops.append((lo, hi))
    config = DeconvConfig(kernel=kernel, stride=stride, dilation=dilation, crops=tuple(crops), groups=groups,
                          in_channels=groups * draw(st.integers(1, 3)), out_channels=groups * draw(st.integers(1, 3)))
    return config, (draw(st.integers(1, 3)), config.in_channels, *spatial)


@settings(max_examples=200, deadline=None)
@given(configs())
def test_express_round_trip(case):
    config, input_shape = case
    e = oneflow.express(config, input_shape)
    assert e.expressible and e.weight == "as is"
    assert parse(e.input_shape, e.weight_shape, **e.options).config == config
