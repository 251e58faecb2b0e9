"""Keras style: output lengths and TensorFlow's crop split, layouts, exact error lines, the 'same' defect,
express round trip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import deconv_cli
from deconv_cli.conventions import keras
from deconv_cli.core.config import DeconvConfig
from deconv_cli.core.errors import ConfigError


def parse(input_shape, weight_shape, bias_shape=None, quirks=False, **options):
    return keras.parse(options, input_shape=input_shape, weight_shape=weight_shape, bias_shape=bias_shape, quirks=quirks)


@pytest.mark.parametrize(
    "input_shape, weight_shape, options, crops, output_shape",
    [
        # 'valid' without output_padding: L*s + max(kd - s, 0); past full with zeros when s > kd
        ((1, 5, 2), (3, 3, 2), dict(strides=2), ((0, 0),), (1, 11, 3)),
        ((1, 3, 2), (2, 3, 2), dict(strides=4), ((0, -2),), (1, 12, 3)),
        # 'same' without output_padding: L*s, crop start max(full - out, 0)//2
        ((1, 5, 2), (3, 3, 2), dict(strides=2, padding="same"), ((0, 1),), (1, 10, 3)),
        ((1, 3, 2), (3, 3, 2), dict(dilation_rate=2, padding="SAME"), ((2, 2),), (1, 3, 3)),
        # with output_padding: (L-1)*s + kd - 2*(kd//2) + op, then TensorFlow's split
        ((1, 5, 2), (3, 3, 2), dict(strides=2, padding="same", output_padding=1), ((0, 1),), (1, 10, 3)),
        ((1, 4, 2), (4, 3, 2), dict(strides=2, padding="same", output_padding=1), ((1, 2),), (1, 7, 3)),
        ((1, 3, 2), (5, 3, 2), dict(strides=2, padding="same", output_padding=1), ((1, 2),), (1, 6, 3)),
        ((1, 5, 2), (3, 3, 2), dict(strides=2, output_padding=1), ((0, -1),), (1, 12, 3)),
        # an empty output is fine
        ((1, 1, 2), (2, 3, 2), dict(padding="same", output_padding=0), ((1, 1),), (1, 0, 3)),
        # 2-D, 3-D, channels_first
        ((1, 3, 4, 2), (2, 3, 3, 2), dict(strides=(2, 3), padding="same", output_padding=(1, 2)),
         ((0, 1), (0, 0)), (1, 5, 12, 3)),
        ((1, 2, 3, 4), (3, 2, 3, 2), dict(strides=(2, 3), output_padding=(1, 2), data_format="channels_first"),
         ((0, -1), (0, -2)), (1, 3, 8, 13)),
        ((1, 3, 1, 3, 2), (2, 3, 2, 2, 2), dict(strides=2, padding="same"), ((0, 0), (0, 1), (0, 0)), (1, 6, 2, 6, 2)),
    ],
)
def test_shapes(input_shape, weight_shape, options, crops, output_shape):
    assert parse(input_shape, weight_shape, **options).config.crops == crops
    assert deconv_cli.derive(input_shape, weight_shape, style="keras", **options).output_shape == output_shape


def test_layouts_and_notes():
    parsed = parse((1, 4, 5, 3), (3, 2, 4, 3), strides=2, padding="same", output_padding=1)
    config = parsed.config
    assert config.channels_last and config.weight_perm == (3, 2, 0, 1)
    assert (config.in_channels, config.out_channels, config.kernel) == (3, 4, (3, 2))
    assert parsed.dim_notes[0] == ("padding='same', output_padding 1: out = (4-1)*2 + 3 - 2*1 + 1 = 8 "
                                   "(kd = 3, pad = kd//2 = 1)",
                                   "crop start max(9 - 8, 0)//2 = 0 (TensorFlow's split) -> crop (0, 1)")
    first = parse((1, 3, 4, 5), (3, 3, 2, 3), data_format="channels_first")
    assert not first.config.channels_last and first.config.in_channels == 3
    assert "channels_first: computed by TensorFlow's default (oneDNN) CPU kernels" in first.notes[1]
    assert len(parse((1, 4, 2), (3, 3, 2), dilation_rate=2).notes) == 2 and len(parsed.notes) == 1


def test_kernel_is_not_flipped():
    """W[i, o, k] = kernel[k, o, i]: a one-hot tap at k=0 lands at the start of the output."""
    x = np.ones((1, 1, 1), np.float32)
    w = np.zeros((3, 1, 1), np.float32)
    w[0, 0, 0] = 1.0
    y = deconv_cli.deconvolve(x, w, style="keras")
    assert y.reshape(-1).tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "input_shape, weight_shape, bias_shape, options, message",
    [
        ((1, 5, 2), (3, 3, 2), None, dict(strides=2, output_padding=2),
         "output_padding=2 must be strictly less than strides=2 in every dimension (dimension 0: 2 >= 2; "
         "Keras 3.15 rejects it)."),
        ((1, 5, 2), (3, 3, 2), None, dict(strides=2, dilation_rate=2),
         "strides=2 > 1 together with dilation_rate=2 > 1 is not supported (Keras 3.15 rejects it). "
         "Use strides 1 or dilation_rate 1."),
        ((1, 5, 2), (3, 3, 2), None, dict(filters=4),
         "filters=4 but the kernel has 3 filters (axis -2 of (k..., filters, C_in); Keras 3.15 rejects it). Pass filters=3."),
        ((1, 5, 3), (3, 3, 2), None, {},
         "the input has 3 channels but the kernel (3, 3, 2) is (k..., filters, C_in) for C_in 2 (Keras 3.15 rejects it: "
         "weight shape not compatible). Keras kernels are (k..., filters, C_in); check data_format."),
        ((1, 5, 2), (3, 3, 2), None, dict(padding="causal"),
         "padding='causal' must be 'valid' or 'same' (Keras 3.15 rejects it). Use padding='valid' or 'same'."),
        ((5, 2), (3, 3, 2), None, {},
         "input has 2 dimensions (5, 2) but the 1-D kernel (3, 3, 2) needs 3: (N, *spatial, C) (Keras 3.15 "
         "Conv1DTranspose has no unbatched input and rejects it). Add a batch axis of 1."),
        ((1, 5, 2), (3, 3, 2), (3,), dict(use_bias=False),
         "use_bias=False but a bias tensor was given. Drop --bias or set use_bias=True."),
        ((1, 5, 2), (3, 3, 2), (4,), {}, "bias has shape (4,); Keras 3.15 needs (3,) for 3 filters."),
        ((1, 5, 4), (3, 3, 2), None, dict(groups=2), "unknown option 'groups' for style keras. Keras takes: "
         "data_format, dilation_rate, filters, kernel_size, output_padding, padding, strides, use_bias."),
    ],
)
def test_error_lines(input_shape, weight_shape, bias_shape, options, message):
    with pytest.raises(ConfigError) as err:
        parse(input_shape, weight_shape, bias_shape, **options)
    assert str(err.value) == message
    assert err.value.exit_code == 2


@pytest.mark.parametrize(
    "options",
    [dict(strides=0), dict(dilation_rate=0), dict(kernel_size=0), dict(kernel_size=2), dict(filters=0),
     dict(output_padding=-1, strides=2), dict(output_padding=(1, 1), strides=2), dict(data_format="NHWC"),
     dict(padding=((1, 1),)), dict(padding="full"), dict(use_bias=True)],
)
def test_rejected(options):
    with pytest.raises(ConfigError):
        parse((1, 5, 2), (3, 3, 2), **options)


def test_same_even_kernel_defect():
    """TensorFlow's kernel fails where 'same' + even kd + output_padding 0: computed and warned by default."""
    default = parse((1, 4, 2), (2, 3, 2), strides=2, padding="same", output_padding=0)
    assert default.config.crops == ((1, 1),)
    assert len(default.warnings) == 1 and "Keras 3.15 on TensorFlow fails" in default.warnings[0]
    with pytest.raises(ConfigError, match="could not create a primitive"):
        parse((1, 4, 2), (2, 3, 2), quirks=True, strides=2, padding="same", output_padding=0)
    assert not parse((1, 4, 2), (2, 3, 2), strides=2, padding="same", output_padding=1).warnings
    assert not parse((1, 1, 2), (2, 3, 2), quirks=True, padding="same", output_padding=0).warnings  # empty output


def test_express_channels_first_and_groups():
    config = deconv_cli.derive((1, 4, 5, 5), (4, 2, 3, 3), stride=2, padding=1).config
    e = keras.express(config, (1, 4, 5, 5))
    assert e.expressible and e.options == {"strides": 2, "data_format": "channels_first", "padding": "same",
                                           "output_padding": 0}
    # PyTorch's padding=1, output_padding=1 crops (1, 0): Keras's 'same' puts the odd unit at the end
    torch_like = deconv_cli.derive((1, 4, 5, 5), (4, 2, 3, 3), stride=2, padding=1, output_padding=1).config
    assert keras.express(torch_like, (1, 4, 5, 5)).crop == ((1, 0), (1, 0))
    assert e.weight_shape == (3, 3, 2, 4) and e.input_shape == (1, 4, 5, 5)
    grouped = deconv_cli.derive((1, 4, 5, 5), (4, 1, 3, 3), groups=2).config
    assert not keras.express(grouped, (1, 4, 5, 5)).expressible


def test_express_avoids_the_defective_spelling():
    config = parse((1, 4, 2), (2, 3, 2), strides=2, padding="same", output_padding=0).config
    e = keras.express(config, (1, 2, 4))
    assert not e.expressible and e.crop == ((1, 1),)
    assert not parse(e.input_shape, e.weight_shape, quirks=True, **e.options).warnings  # runs in the release


@st.composite
def configs(draw):
    rank = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    if draw(st.booleans()):
        stride, dilation = tuple(draw(st.integers(1, 4)) for _ in range(rank)), (1,) * rank
    else:
        stride, dilation = (1,) * rank, tuple(draw(st.integers(1, 3)) for _ in range(rank))
    spatial = tuple(draw(st.integers(1, 6)) for _ in range(rank))
    channels_last = draw(st.booleans())
    options = dict(strides=stride, dilation_rate=dilation, padding=draw(st.sampled_from(["valid", "same"])),
                   data_format="channels_last" if channels_last else "channels_first")
    if draw(st.booleans()):
        options["output_padding"] = tuple(draw(st.integers(0, s - 1)) for s in stride)
    c_in, c_out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    batch = draw(st.integers(1, 2))
    shape = (batch, *spatial, c_in) if channels_last else (batch, c_in, *spatial)
    return options, shape, (*kernel, c_out, c_in), (batch, c_in, *spatial)


@settings(max_examples=300, deadline=None)
@given(configs())
def test_express_round_trip(case):
    options, shape, weight_shape, canonical = case
    parsed = parse(shape, weight_shape, **options)
    e = keras.express(parsed.config, canonical)
    if parsed.warnings:  # the release's defect: the nearest working spelling and a crop
        assert not e.expressible
        return
    assert e.expressible, e.reason
    assert tuple(e.input_shape) == tuple(shape) and tuple(e.weight_shape) == tuple(weight_shape)
    assert parse(e.input_shape, e.weight_shape, **e.options).config == parsed.config


def test_round_trip_from_torch_every_crop():
    """A canonical config with any crop either spells exactly or names the crop to apply."""
    config = DeconvConfig(kernel=(3,), stride=(2,), dilation=(1,), crops=((2, -1),), groups=1, in_channels=2,
                          out_channels=3)
    e = keras.express(config, (1, 2, 5))
    assert not e.expressible and e.crop is not None
    back = parse(e.input_shape, e.weight_shape, **e.options).config
    assert tuple((lo + a, hi + b) for (lo, hi), (a, b) in zip(back.crops, e.crop)) == config.crops


def _golden_files(tmp_path, name):
    from pathlib import Path

    with np.load(Path(__file__).parent.parent / "golden" / "keras.npz") as arrays:
        for k in "xwby":
            if f"{name}__{k}" in arrays:
                np.save(tmp_path / f"{k}.npy", arrays[f"{name}__{k}"])


def test_cli_run_and_batch_match_keras(tmp_path, monkeypatch):
    """`deconv run` and `deconv batch` with --style keras reproduce a recorded Keras output from files."""
    from click.testing import CliRunner

    from deconv_cli.cli import cli

    _golden_files(tmp_path, "k2d_s2_same_op1")
    monkeypatch.chdir(tmp_path)
    sets = ["--set", "strides=2", "--set", "padding=same", "--set", "output_padding=1"]
    result = CliRunner().invoke(cli, ["run", "x.npy", "w.npy", "--bias", "b.npy", "--style", "keras", *sets,
                                      "-o", "out.npy", "--expect", "y.npy"])
    assert result.exit_code == 0, result.output
    (tmp_path / "jobs.jsonl").write_text(
        '{"input": "x.npy", "weight": "w.npy", "bias": "b.npy", "style": "keras", "output": "batch.npy", '
        '"set": {"strides": 2, "padding": "same", "output_padding": 1}}\n')
    result = CliRunner().invoke(cli, ["batch", "jobs.jsonl", "-j", "1"])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load("batch.npy"), np.load("y.npy"), rtol=1e-4, atol=1e-4)


def test_cli_rejection_is_one_line_exit_2_and_no_file(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from deconv_cli.cli import cli

    _golden_files(tmp_path, "k1d_s2_valid")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["run", "x.npy", "w.npy", "--style", "keras", "--set", "strides=2",
                                      "--set", "dilation_rate=2", "-o", "out.npy"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "Error: strides=2 > 1 together with dilation_rate=2 > 1 is not supported (Keras 3.15 rejects it). "
        "Use strides 1 or dilation_rate 1."]
    assert not (tmp_path / "out.npy").exists()
