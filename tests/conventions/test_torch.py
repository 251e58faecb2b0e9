"""torch style: options + shapes -> canonical config, and the exact error lines."""

from __future__ import annotations

import pytest

from deconv_cli import derive
from deconv_cli.core.errors import ConfigError


@pytest.mark.parametrize(
    "input_shape, weight_shape, options, crops, output_shape",
    [
        ((1, 4, 5, 5), (4, 2, 3, 3), {}, ((0, 0), (0, 0)), (1, 2, 7, 7)),
        ((1, 4, 5, 5), (4, 2, 3, 3), dict(stride=2, padding=1, output_padding=1), ((1, 0), (1, 0)), (1, 2, 10, 10)),
        ((1, 4, 5, 5), (4, 2, 3, 3), dict(stride=(2, 1), padding=(0, 1), output_padding=(1, 0)), ((0, -1), (1, 1)), (1, 2, 12, 5)),
        # output_padding may reach the dilation when the stride is smaller (docs/CONVENTIONS.md section 8, E5)
        ((1, 4, 5), (4, 2, 3), dict(dilation=3, output_padding=2), ((0, -2),), (1, 2, 13)),
        ((4, 5, 5), (4, 2, 3, 3), dict(stride=2), ((0, 0), (0, 0)), (2, 11, 11)),  # unbatched
        ((1, 4, 5, 5), (4, 1, 3, 3), dict(groups=4, stride=2), ((0, 0), (0, 0)), (1, 4, 11, 11)),  # depthwise
        ((1, 4, 5, 5), (4, 2, 3, 3), dict(stride=2, padding=1, output_size=(10, 10)), ((1, 0), (1, 0)), (1, 2, 10, 10)),
        ((1, 4, 5, 5), (4, 2, 3, 3), dict(stride=2, padding=1, output_size=(1, 2, 9, 10)), ((1, 1), (1, 0)), (1, 2, 9, 10)),
        # OneFlow's seed example, torch rules (docs/CONVENTIONS.md section 3)
        ((20, 16, 10, 50, 100), (16, 33, 3, 5, 2), dict(stride=(2, 1, 1), padding=(0, 4, 2)), ((0, 0), (4, 4), (2, 2)), (20, 33, 21, 46, 97)),
        ((1, 3, 32, 32, 32), (3, 64, 3, 3, 3), dict(stride=2, padding=1, in_channels=3, out_channels=64, kernel_size=3, bias=False),
         ((1, 1),) * 3, (1, 64, 63, 63, 63)),
    ],
)
def test_options_to_config(input_shape, weight_shape, options, crops, output_shape):
    record = derive(input_shape, weight_shape, style="torch", **options)
    assert record.config.crops == crops
    assert record.output_shape == output_shape


BASE = ((1, 4, 5, 5), (4, 2, 3, 3))


@pytest.mark.parametrize(
    "options, bias_shape, message",
    [
        (dict(stride=0), None, "stride=0: non-positive stride is not supported (PyTorch rejects it)."),
        (dict(dilation=(1, 0)), None, "dilation=(1, 0): dilation should be greater than zero (PyTorch rejects it)."),
        (dict(padding=-1), None, "padding=-1: negative padding is not supported (PyTorch rejects it)."),
        (dict(stride=2, output_padding=2), None,
         "output_padding=2 must be smaller than either stride 2 or dilation 1 in every dimension (PyTorch rejects it)."),
        (dict(groups=3), None,
         "groups=3 must divide input channels 4 (PyTorch 2.13 rejects it). Pick a group count that divides the channels."),
        (dict(padding=4), None,
         "calculated output size (-1, -1) is too small (PyTorch needs every output dimension >= 1). Reduce padding."),
        (dict(stride=2, output_size=(12, 12)), None,
         "requested an output size of (12, 12), but valid sizes range from (11, 11) to (12, 12) (PyTorch rejects it)."
         .replace("(12, 12), but", "(13, 13), but")),
        (dict(padding="same"), None, "padding='same' must be an integer or a tuple of 2 integers."),
        (dict(stride=2.5), None, "stride=2.5 must be an integer."),
        (dict(stride=(1, 2, 3)), None, "stride=(1, 2, 3) has 3 values, expected 2."),
        (dict(padding_mode="reflect"), None,
         "padding_mode='reflect': PyTorch 2.13 transposed convolutions only pad with zeros."),
        (dict(kernel_size=4), None, "kernel_size=(4, 4) does not match the weight's kernel (3, 3) (PyTorch 2.13 checks this). "
         "Drop kernel_size or pass kernel_size=(3, 3)."),
        (dict(out_channels=3), None, "out_channels=3 but weight.shape[1] * groups is 2 (PyTorch 2.13 checks this). Pass out_channels=2."),
        (dict(bias=True), None, "bias=True but no bias tensor was given. Pass --bias FILE."),
        ({}, (1, 2, 1, 1), "bias has shape (1, 2, 1, 1); PyTorch (a 1-D bias) needs (2,) for 2 output channels."),
        (dict(strides=2), None, "unknown option 'strides' for style torch. Did you mean 'stride'?"),
    ],
)
def test_rejections(options, bias_shape, message):
    if "output_size" in options:
        options = dict(options, output_size=(13, 13))
    with pytest.raises(ConfigError) as err:
        derive(*BASE, style="torch", bias_shape=bias_shape, **options)
    assert str(err.value) == message
    assert err.value.exit_code == 2


@pytest.mark.parametrize(
    "input_shape, weight_shape, message",
    [
        ((1, 5, 5, 5), (4, 2, 3, 3), "weight of shape (4, 2, 3, 3) expects 4 input channels, but the input has 5 "
         "(PyTorch rejects it). PyTorch's weight is (C_in, C_out/groups, *kernel)."),
        ((5, 5), (4, 2, 3, 3), "input has 2 dimensions (5, 5); conv_transpose2d expects 3-D (unbatched) or 4-D (batched) input."),
        ((1, 4, 5, 5), (4, 2, 3, 3, 3, 3), "weight has 6 dimensions (4, 2, 3, 3, 3, 3); PyTorch needs (C_in, C_out/groups, "
         "*kernel) with 1 to 3 kernel dims."),
    ],
)
def test_shape_rejections(input_shape, weight_shape, message):
    with pytest.raises(ConfigError) as err:
        derive(input_shape, weight_shape, style="torch")
    assert str(err.value) == message


def test_notes_say_where_the_crop_came_from():
    record = derive(*BASE, style="torch", stride=2, padding=1, output_padding=1)
    assert record.dims[0].notes == ("padding=1, output_padding=1 -> crop (1, 0)",)
