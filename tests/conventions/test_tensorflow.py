"""TensorFlow style: which output_shape the forward convolution maps back, the crop of each padding, layouts,
exact error lines, express round trip."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import deconv_cli
from deconv_cli.conventions import tensorflow as tfs
from deconv_cli.core.errors import ConfigError


def parse(input_shape, weight_shape, bias_shape=None, **options):
    return tfs.parse(options, input_shape=input_shape, weight_shape=weight_shape, bias_shape=bias_shape)


@pytest.mark.parametrize(
    "input_shape, weight_shape, options, crops, output_shape",
    [
        # 'SAME' (default): ceil(O/s) == L; crop start max(full - O, 0)//2
        ((1, 5, 2), (3, 3, 2), dict(output_shape=[1, 10, 3], strides=2), ((0, 1),), (1, 10, 3)),
        ((1, 5, 2), (3, 3, 2), dict(output_shape=[1, 9, 3], strides=2), ((1, 1),), (1, 9, 3)),
        ((1, 3, 2), (2, 3, 2), dict(output_shape=[1, 11, 3], strides=4), ((0, -1),), (1, 11, 3)),
        ((1, 4, 2), (4, 3, 2), dict(output_shape=[1, 4, 3], strides=1), ((1, 2),), (1, 4, 3)),
        # 'VALID': floor((O - kd)/s) + 1 == L; crop start 0, zeros past full
        ((1, 5, 2), (3, 3, 2), dict(output_shape=[1, 12, 3], strides=2, padding="VALID"), ((0, -1),), (1, 12, 3)),
        # explicit pairs (2-D NHWC): the first value is the crop start, the rule takes floor
        ((1, 5, 5, 2), (3, 3, 4, 2), dict(output_shape=[1, 10, 10, 4], strides=2,
                                          padding=[[0, 0], [1, 1], [1, 1], [0, 0]]), ((1, 0), (1, 0)), (1, 10, 10, 4)),
        ((1, 4, 4, 2), (4, 4, 2, 2), dict(output_shape=[1, 6, 5, 2], strides=2,
                                          padding=[[0, 0], [2, 2], [3, 2], [0, 0]]), ((2, 2), (3, 2)), (1, 6, 5, 2)),
        # strides of rank+2 values, channels-first, spatial-only output_shape
        ((1, 2, 4, 4), (3, 3, 2, 2), dict(output_shape=[1, 2, 8, 12], strides=[1, 1, 2, 3], data_format="NCHW"),
         ((0, 1), (0, 0)), (1, 2, 8, 12)),
        ((1, 5, 5, 2), (3, 3, 4, 2), dict(output_shape=[10, 9], strides=2), ((0, 1), (1, 1)), (1, 10, 9, 4)),
        ((1, 5, 5, 2), (3, 3, 4, 2), dict(output_shape=[1, 5, 5, 4], strides=1, dilations=2), ((2, 2), (2, 2)),
         (1, 5, 5, 4)),
    ],
)
def test_shapes(input_shape, weight_shape, options, crops, output_shape):
    assert parse(input_shape, weight_shape, **options).config.crops == crops
    assert deconv_cli.derive(input_shape, weight_shape, style="tensorflow", **options).output_shape == output_shape


def test_layouts_and_notes():
    parsed = parse((1, 5, 5, 2), (3, 3, 4, 2), output_shape=[1, 9, 10, 4], strides=2)
    assert parsed.config.channels_last and parsed.config.weight_perm == (3, 2, 0, 1)
    assert parsed.dim_notes[0] == ("output size 9: the forward convolution gives ceil(9/2) = 5 = input 5",
                                   "'SAME': crop start max(11 - 9, 0)//2 = 1 -> crop (1, 1)")
    first = parse((1, 2, 5, 5), (3, 3, 4, 2), output_shape=[1, 4, 10, 10], strides=2, data_format="NCHW")
    assert not first.config.channels_last and "NCHW: computed by TensorFlow's default (oneDNN)" in first.notes[1]


@pytest.mark.parametrize(
    "input_shape, weight_shape, bias_shape, options, message",
    [
        ((1, 5, 2), (3, 3, 2), None, dict(output_shape=[1, 8, 3], strides=2),
         "output_shape size 8 in spatial dimension 0 does not map back to the input length 5: ceil(8/2) = 4, not 5 "
         "(TensorFlow 2.21 rejects it: Size of out_backprop doesn't match computed). Pick an output size the forward "
         "convolution maps to the input (see deconv shape --style tensorflow)."),
        ((1, 5, 2), (3, 3, 2), None, dict(output_shape=[1, 10, 3], strides=2, padding=[[0, 0], [1, 1], [0, 0]]),
         "padding=[[0, 0], [1, 1], [0, 0]]: conv1d_transpose takes 'SAME' or 'VALID' only; explicit pairs exist for "
         "2-D only (TensorFlow 2.21: Expected string for argument 'padding')."),
        ((1, 5, 2), (3, 3, 2), None, dict(output_shape=[1, 10, 3], strides=2, padding="same"),
         "padding='same' must be 'SAME' or 'VALID' (upper case; TensorFlow 2.21 rejects it). Use padding='SAME' or 'VALID'."),
        ((1, 5, 5, 2), (3, 3, 4, 2), None, dict(output_shape=[1, 10, 10], strides=2),
         "output_shape=[1, 10, 10] has 3 values; conv2d_transpose needs 4 (N, *spatial, C_out) or the 2 spatial sizes "
         "(TensorFlow 2.21 rejects it or aborts the process)."),
        ((1, 5, 2), (3, 3, 2), (3,), dict(output_shape=[1, 10, 3], strides=2),
         "tf.nn.conv1d_transpose takes no bias. Drop --bias (add it after with tf.nn.bias_add)."),
        ((1, 5, 2), (3, 3, 2), None, dict(output_shape=[1, 10, 3]),
         "strides is required by tf.nn.conv1d_transpose. Give it with --set strides=VALUE."),
    ],
)
def test_error_lines(input_shape, weight_shape, bias_shape, options, message):
    with pytest.raises(ConfigError) as err:
        parse(input_shape, weight_shape, bias_shape, **options)
    assert str(err.value) == message
    assert err.value.exit_code == 2


@pytest.mark.parametrize(
    "options",
    [dict(strides=0), dict(strides=[2, 2, 2]), dict(strides=[2, 2, 2, 2]), dict(dilations=0),
     dict(data_format="NCW"), dict(data_format="channels_last"), dict(output_shape=[2, 10, 10, 4]),
     dict(output_shape=[1, 10, 10, 3]), dict(padding="FULL"), dict(padding=[[1, 0], [1, 1], [1, 1], [0, 0]]),
     dict(padding=[[0, 0], [-1, 1], [1, 1], [0, 0]]), dict(output_shape=[1, 12, 10, 4]), dict(output_shape=[10])],
)
def test_rejected(options):
    with pytest.raises(ConfigError):
        parse((1, 5, 5, 2), (3, 3, 4, 2), **{"output_shape": [1, 10, 10, 4], "strides": 2, **options})


def test_spatial_output_shape_only_in_2d():
    with pytest.raises(ConfigError, match="conv3d_transpose needs 5"):
        parse((1, 2, 2, 2, 2), (2, 2, 2, 3, 2), output_shape=[4, 4, 3], strides=2)
    with pytest.raises(ConfigError, match="conv1d_transpose needs 3"):
        parse((1, 5, 2), (3, 3, 2), output_shape=[10], strides=2)


def test_unbatched_and_input_channels_rejected():
    with pytest.raises(ConfigError, match="no unbatched input"):
        parse((5, 5, 2), (3, 3, 4, 2), output_shape=[10, 10, 4], strides=2)
    with pytest.raises(ConfigError, match="the input has 3 channels"):
        parse((1, 5, 5, 3), (3, 3, 4, 2), output_shape=[1, 10, 10, 4], strides=2)


def test_filters_are_not_flipped():
    x = np.ones((1, 1, 1), np.float32)
    w = np.zeros((3, 1, 1), np.float32)
    w[0, 0, 0] = 1.0
    y = deconv_cli.deconvolve(x, w, style="tensorflow", output_shape=[1, 3, 1], strides=1, padding="VALID")
    assert y.reshape(-1).tolist() == [1.0, 0.0, 0.0]


def test_express_from_torch():
    config = deconv_cli.derive((1, 4, 5, 5), (4, 2, 3, 3), stride=2, padding=1).config
    e = tfs.express(config, (1, 4, 5, 5))
    assert e.expressible and e.options == {"output_shape": [1, 2, 9, 9], "strides": 2, "data_format": "NCHW"}
    assert e.weight_shape == (3, 3, 2, 4)
    # PyTorch's padding=1, output_padding=1 crops (1, 0): 'SAME' splits the other way; NCHW has no pairs
    torch_like = deconv_cli.derive((1, 4, 5, 5), (4, 2, 3, 3), stride=2, padding=1, output_padding=1).config
    near = tfs.express(torch_like, (1, 4, 5, 5))
    assert near.crop == ((1, 0), (1, 0)) and near.options["padding"] == "VALID"
    # the nearest spelling's output, cropped as told, is the PyTorch result: nothing it dropped is needed
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 4, 5, 5)), rng.standard_normal((4, 2, 3, 3))
    want = deconv_cli.deconvolve(x, w, stride=2, padding=1, output_padding=1)
    got = deconv_cli.deconvolve(x, w.transpose(2, 3, 1, 0), style="tensorflow", **near.options)
    np.testing.assert_allclose(got[:, :, 1:, 1:], want, atol=1e-12)
    # an extension past what 'SAME'/'VALID' reach: the nearest spelling and the crop
    odd = replace(config, crops=((-3, 0), (0, -3)))
    e = tfs.express(odd, (1, 4, 5, 5))
    assert not e.expressible and e.crop is not None


@st.composite
def records(draw):
    rank = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    spatial = tuple(draw(st.integers(1, 6)) for _ in range(rank))
    channels_last = draw(st.booleans())
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    out = []
    for n, k, s, d in zip(spatial, kernel, stride, dilation):
        kd = d * (k - 1) + 1
        sizes = ([o for o in range(max(1, (n - 1) * s + 1), n * s + 1)] if padding == "SAME"
                 else [o for o in range(kd, (n - 1) * s + kd + s) if (o - kd) // s + 1 == n])
        out.append(draw(st.sampled_from(sizes)))
    c_in, c_out, batch = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    shape = (batch, *spatial, c_in) if channels_last else (batch, c_in, *spatial)
    formats = tfs.DATA_FORMATS[rank]
    options = dict(output_shape=[batch, *out, c_out] if channels_last else [batch, c_out, *out], strides=stride,
                   dilations=dilation, padding=padding, data_format=formats[0 if channels_last else 1])
    return options, shape, (*kernel, c_out, c_in), (batch, c_in, *spatial)


@settings(max_examples=300, deadline=None)
@given(records())
def test_express_round_trip(case):
    options, shape, weight_shape, canonical = case
    parsed = parse(shape, weight_shape, **options)
    e = tfs.express(parsed.config, canonical)
    assert e.expressible, e.reason
    assert tuple(e.input_shape) == tuple(shape) and tuple(e.weight_shape) == tuple(weight_shape)
    assert parse(e.input_shape, e.weight_shape, **e.options).config == parsed.config


def test_reachable_and_target_shape_in_the_data_format():
    """deconv shape lists the output sizes the forward convolution maps back and writes output_shape in the
    data_format's order (NHWC here)."""
    from deconv_cli.conventions.plan import reachable, solve

    record = deconv_cli.derive((1, 5, 5, 4), (3, 3, 2, 4), style="tensorflow", strides=2, output_shape=[1, 9, 10, 2])
    assert [dict(r["output_shape"]) for r in reachable(record)] == [{9: 9, 10: 10}] * 2
    solved = solve(record, (10, 9))
    assert dict(solved.options)["output_shape"] == (1, 10, 9, 2) and solved.output_shape == (1, 10, 9, 2)
    first = deconv_cli.derive((1, 4, 5, 5), (3, 3, 2, 4), style="tensorflow", strides=2, data_format="NCHW",
                              output_shape=[1, 2, 9, 10])
    assert dict(solve(first, (10, 9)).options)["output_shape"] == (1, 2, 10, 9)


def test_cli_run_matches_tensorflow_and_rejects_in_one_line(tmp_path, monkeypatch):
    from pathlib import Path

    from click.testing import CliRunner

    from deconv_cli.cli import cli

    with np.load(Path(__file__).parent.parent / "golden" / "tensorflow.npz") as arrays:
        for k in "xwy":
            np.save(tmp_path / f"{k}.npy", arrays[f"tf2d_explicit_asym__{k}"])
    monkeypatch.chdir(tmp_path)
    sets = ["--set", "strides=2", "--set", "padding=[[0,0],[1,0],[1,1],[0,0]]"]
    result = CliRunner().invoke(cli, ["run", "x.npy", "w.npy", "--style", "tensorflow", *sets,
                                      "--set", "output_shape=[1,10,9,4]", "-o", "out.npy", "--expect", "y.npy"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["run", "x.npy", "w.npy", "--style", "tensorflow", *sets,
                                      "--set", "output_shape=[1,12,9,4]", "-o", "bad.npy"])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("Error: output_shape size 12 in spatial dimension 0 does not map back")
    assert not (tmp_path / "bad.npy").exists()
