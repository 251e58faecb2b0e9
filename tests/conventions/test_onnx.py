"""onnx style: every auto_pad mode and target shape, the spec/onnxruntime split, and error lines."""

from __future__ import annotations

import pytest

from deconv_cli import derive
from deconv_cli.core.errors import ConfigError

X1, W1 = (1, 1, 5), (1, 1, 3)  # full = (5-1)*2 + 3 = 11 with strides 2


@pytest.mark.parametrize(
    "options, crop, out",
    [
        (dict(strides=2), (0, 0), 11),
        (dict(strides=2, pads=[1, 2]), (1, 2), 8),
        (dict(strides=2, pads=[1, 1], output_padding=1), (1, 0), 10),
        (dict(strides=2, auto_pad="VALID", output_padding=1), (0, -1), 12),
        (dict(strides=2, auto_pad="SAME_UPPER"), (0, 1), 10),  # docs/CONVENTIONS.md section 8, E2
        (dict(strides=2, auto_pad="SAME_LOWER"), (1, 0), 10),
        (dict(strides=2, auto_pad="SAME_UPPER", output_padding=1), (1, 0), 10),  # T = 11 + 1 - 10 = 2
        (dict(strides=2, output_shape=[10]), (1, 0), 10),  # NOTSET + output_shape: ceil
        (dict(strides=2, output_shape=[9], auto_pad="SAME_UPPER"), (1, 1), 9),
        (dict(strides=2, output_shape=[8], auto_pad="SAME_LOWER"), (2, 1), 8),
        (dict(strides=2, pads=[3, 3], output_shape=[10]), (1, 0), 10),  # output_shape decides
        (dict(strides=2, dilations=2, output_padding=1), (0, -1), 14),
    ],
)
def test_one_axis(options, crop, out):
    record = derive(X1, W1, style="onnx", **options)
    assert record.config.crops == (crop,)
    assert record.output_shape == (1, 1, out)
    assert not record.warnings


@pytest.mark.parametrize(
    "options, spec_crop, ort_crop, says",
    [
        # n=2, k=1, s=4: full 5 < n*s = 8 (docs/CONVENTIONS.md section 6.3)
        (dict(strides=4, auto_pad="SAME_UPPER"), (-2, -1), (0, 0),
         "auto_pad=SAME_UPPER: target n*s = 8 is longer than full + output_padding = 5: the ONNX spec pads 2 bias-only "
         "position(s) at the start and 1 at the end (length 8), onnxruntime (1.31 and 1.32) does not pad (length 5)"),
        (dict(strides=4, auto_pad="SAME_LOWER"), (-1, -2), (0, 0),
         "auto_pad=SAME_LOWER: target n*s = 8 is longer than full + output_padding = 5: the ONNX spec pads 1 bias-only "
         "position(s) at the start and 2 at the end (length 8), onnxruntime (1.31 and 1.32) does not pad (length 5)"),
        (dict(strides=4, output_shape=[7]), (-1, -1), (0, -2),
         "output_shape 7 is longer than full + output_padding = 5: the ONNX spec pads 1 bias-only position(s) at the "
         "start and 1 at the end (length 7), onnxruntime (1.31 and 1.32) pads all 2 at the end (length 7)"),
    ],
)
def test_spec_versus_onnxruntime(options, spec_crop, ort_crop, says):
    """The warning says what the spec gives, what onnxruntime gives, and what --quirks does."""
    spec = derive((1, 1, 2), (1, 1, 1), style="onnx", **options)
    assert spec.config.crops == (spec_crop,)
    assert spec.warnings == (f"axis L: {says}; deconv computes the spec, --quirks gives onnxruntime's result",)
    ort = derive((1, 1, 2), (1, 1, 1), style="onnx", quirks=True, **options)
    assert ort.config.crops == (ort_crop,)
    assert not ort.warnings


def test_equal_configs_from_different_spellings():
    """torch padding/output_padding, onnx pads, onnx output_shape: one deconvolution, one config."""
    x, w = (1, 4, 5, 6), (4, 2, 3, 3)
    torch = derive(x, w, style="torch", stride=2, padding=1, output_padding=1).config
    pads = derive(x, w, style="onnx", strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]).config
    target = derive(x, w, style="onnx", strides=[2, 2], output_shape=[10, 12], auto_pad="SAME_LOWER").config
    assert torch == pads == target


BASE = ((1, 4, 5, 5), (4, 2, 3, 3))


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(auto_pad="same"), "auto_pad='same': unknown AutoPadType string. Use one of NOTSET, SAME_UPPER, SAME_LOWER, VALID."),
        (dict(auto_pad="VALID", pads=[0, 0, 0, 0]),
         "pads cannot be used together with auto_pad=VALID (onnxruntime rejects the model). Drop pads or set auto_pad=NOTSET."),
        (dict(pads=[1, 1]), "pads=(1, 1) has 2 values, expected 4."),
        (dict(pads=[1, 1, -1, 1]), "pads=(1, 1, -1, 1) must not be negative (onnxruntime rejects it)."),
        (dict(strides=[0, 1]), "strides=(0, 1) must be positive (onnxruntime rejects it)."),
        (dict(output_padding=[1, 0]), "output_padding[0] (1) must be at least 0 and less than the stride (1) (onnxruntime rejects it)."),
        (dict(dilations=3, output_padding=[1, 0]),
         "output_padding[0] (1) must be at least 0 and less than the stride (1) (onnxruntime rejects it; dilation does not "
         "relax this)."),
        (dict(group=3), "groups=3 must divide input channels 4 (ONNX rejects it). Pick a group count that divides the channels."),
        (dict(kernel_shape=[2, 2]), "kernel_shape=(2, 2) does not match the weight's kernel (3, 3) (ONNX checks this). "
         "Drop kernel_shape or pass kernel_shape=(3, 3)."),
        (dict(output_shape=[9, 9, 9]), "output_shape=(9, 9, 9) has 3 values, expected 2."),
        (dict(output_shape=[7, 10]),
         "output_shape[1]=10 is inconsistent with the input: at most 7 is reachable (full 7 + output_padding 0 + stride 1 "
         "- 1; onnxruntime rejects it)."),
        (dict(pads=[4, 4, 4, 4]), "computed output dimension (-1, -1) is <= 0 (onnxruntime rejects it). Reduce pads."),
        (dict(padding=1), "unknown option 'padding' for style onnx. Did you mean 'pads'?"),
    ],
)
def test_rejections(options, message):
    with pytest.raises(ConfigError) as err:
        derive(*BASE, style="onnx", **options)
    assert str(err.value) == message


def test_unbatched_and_rank_mismatch_are_rejected():
    with pytest.raises(ConfigError, match="weight tensor spatial rank does not match"):
        derive((4, 5, 5), (4, 2, 3, 3), style="onnx")
    with pytest.raises(ConfigError, match="bias has shape"):
        derive(*BASE, style="onnx", bias_shape=(1, 2, 1, 1))


def test_no_warning_where_spec_and_onnxruntime_agree():
    """T = -1 with the ceil split puts no zero at the start: both give crop (0, -1)."""
    record = derive((1, 2, 4), (2, 2, 3), style="onnx", strides=[3], output_shape=[13])
    assert record.config.crops == ((0, -1),) and not record.warnings
