"""Paddle style: every padding form, 'same', output_padding/output_size, the release's quirks under DESIGN.md's
policy, exact error lines, every golden through the CLI, explain/--code, detect and the express round trip."""

from __future__ import annotations

import ast
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import deconv_cli
from deconv_cli.cli import cli
from deconv_cli.conventions import STYLES, paddle
from deconv_cli.core.errors import ConfigError

GOLDEN = Path(__file__).parent.parent / "golden"
RECORD = json.loads((GOLDEN / "paddle.json").read_text())
# an interpreter with paddlepaddle installed (never a dependency of deconv): the snippets run there when it is set
PADDLE_PYTHON = os.environ.get("DECONV_PADDLE_PYTHON")


def parse(input_shape, weight_shape, bias_shape=None, quirks=False, **options):
    return paddle.parse(options, input_shape=input_shape, weight_shape=weight_shape, bias_shape=bias_shape,
                        quirks=quirks)


def _options(case) -> dict:
    return {k: ast.literal_eval(v) for k, v in case["options"].items()}


@pytest.mark.parametrize(
    "input_shape, weight_shape, options, crops, output_shape",
    [
        # int, nd ints, 2*nd ints (before, after per dim), nested pairs in data_format order
        ((1, 2, 5), (2, 3, 3), dict(stride=2, padding=1), ((1, 1),), (1, 3, 9)),
        ((1, 2, 5), (2, 3, 3), dict(stride=2, padding=[1, 2]), ((1, 2),), (1, 3, 8)),
        ((1, 2, 4, 4), (2, 3, 3, 3), dict(stride=2, padding=[1, 0]), ((1, 1), (0, 0)), (1, 3, 7, 9)),
        ((1, 2, 4, 4), (2, 3, 3, 3), dict(stride=2, padding=[1, 2, 0, 3]), ((1, 2), (0, 3)), (1, 3, 6, 6)),
        ((1, 4, 3, 2), (2, 2, 3, 3), dict(stride=2, padding=[[0, 0], [1, 0], [2, 1], [0, 0]], data_format="NHWC"),
         ((1, 0), (2, 1)), (1, 8, 4, 2)),
        ((1, 2, 4, 3), (2, 2, 3, 3), dict(stride=2, padding=((0, 0), (0, 0), (1, 2), (0, 1))), ((1, 2), (0, 1)),
         (1, 2, 6, 6)),
        # 'same' on the input: L5 s2 k3 -> 9, L4 s2 k3 -> 8, L3 s4 k2 -> 10; 'valid' crops nothing
        ((1, 2, 5), (2, 3, 3), dict(stride=2, padding="same"), ((1, 1),), (1, 3, 9)),
        ((1, 2, 4), (2, 3, 3), dict(stride=2, padding="SAME"), ((0, 1),), (1, 3, 8)),
        ((1, 2, 3), (2, 3, 2), dict(stride=4, padding="same"), ((0, 0),), (1, 3, 10)),
        ((1, 2, 5), (2, 3, 3), dict(stride=3, padding="valid"), ((0, 0),), (1, 3, 15)),
        # output_padding at the end; output_size picks the length in [infer, infer + stride)
        ((1, 2, 5), (2, 3, 3), dict(stride=2, padding="same", output_padding=1), ((1, 0),), (1, 3, 10)),
        ((1, 2, 5), (2, 3, 3), dict(stride=2, padding=1, output_size=[10]), ((1, 0),), (1, 3, 10)),
        ((1, 2, 4, 5), (2, 3, 3, 3), dict(stride=(2, 3), padding=1, output_size=[8, 15]), ((1, 0), (1, -1)),
         (1, 3, 8, 15)),
        # an empty output is an empty output, as in Paddle
        ((1, 2, 3), (2, 3, 3), dict(padding=[2, 3]), ((2, 3),), (1, 3, 0)),
    ],
)
def test_shapes(input_shape, weight_shape, options, crops, output_shape):
    assert parse(input_shape, weight_shape, **options).config.crops == crops
    assert deconv_cli.derive(input_shape, weight_shape, style="paddle", **options).output_shape == output_shape


def test_layouts_and_notes():
    parsed = parse((1, 5, 4, 2), (2, 3, 3, 3), stride=2, padding="same", data_format="NHWC")
    config = parsed.config
    assert config.channels_last and config.weight_perm is None
    assert (config.in_channels, config.out_channels, config.groups) == (2, 3, 1)
    assert parsed.dim_notes[0] == (
        "padding='same': total = max((ceil(5/2) - 1)*2 + k 3 - 5, 0) = 2, (lo, hi) = (1, 1), infer = (5-1)*2 + 3 - 2 = 9",
        "output_padding 0: 0 more at the end -> crop (1, 1)")
    assert parse((1, 4, 6), (4, 2, 3), groups=2).config.out_channels == 4


@pytest.mark.parametrize(
    "input_shape, weight_shape, bias_shape, options, message",
    [
        ((1, 2, 5), (2, 3, 3), None, dict(stride=0),
         "stride=0 must be positive (Paddle 3.3.1 rejects it: The stride of Op(Conv) should be larger than 0)."),
        ((1, 3, 5), (3, 2, 3), None, dict(groups=2),
         "groups=2 must divide input channels 3 (Paddle 3.3.1 rejects it: the channel of input must be divisible by "
         "groups). Pick a group count that divides the channels."),
        ((1, 2, 4, 4), (2, 3, 3, 3), None, dict(padding=[1, 1, 1]),
         "padding=[1, 1, 1] has 3 values; Conv2DTranspose takes 2 (per dim) or 4 (before, after per dim) "
         "(Paddle 3.3.1 rejects it: In valid padding)."),
        ((1, 2, 5), (2, 3, 3), None, dict(padding="FULL"),
         "padding='FULL': Unknown padding, it can only be 'SAME' or 'VALID' (Paddle 3.3.1 rejects it). "
         "Use 'same', 'valid' or explicit sizes."),
        ((1, 2, 4, 4), (2, 3, 3, 3), None, dict(data_format="NCL"),
         "data_format='NCL': Conv2DTranspose takes NCHW or NHWC (Paddle 3.3.1 rejects it). Use data_format='NCHW'."),
        ((1, 2, 5), (2, 3, 3), None, dict(stride=2, dilation=4, output_padding=3),
         "output_padding=3 should not be greater than stride=2 (Paddle 3.3.1 Conv1DTranspose rejects it)."),
        ((1, 2, 5), (2, 3, 3), None, dict(stride=2, output_padding=[0], output_size=[11]),
         "output_padding=[0] together with output_size: Conv1DTranspose refuses both (output_padding option is "
         "mutually exclusive with output_size; Paddle 3.3.1 rejects it). Drop output_padding."),
        ((1, 2, 5), (2, 3, 3), None, dict(stride=2, padding=1, output_size=[8]),
         "output_size=8 should not be less than the inferred output size (9,) (dimension 0: 8 < 9; Paddle 3.3.1 "
         "rejects it)."),
        ((1, 2, 3, 3), (2, 3, 3, 3), None, dict(padding=3),
         "the output size (-1, -1) is negative (Paddle 3.3.1 does not check it: the call fails (PreconditionNotMet) "
         "or returns a tensor of negative shape that crashes the process when read). Reduce padding."),
        ((1, 2, 5), (2, 3, 3), (3,), dict(bias_attr=False), "bias_attr=False but a bias tensor was given. "
         "Drop --bias or drop bias_attr=False."),
        ((1, 2, 5), (2, 3, 3), None, dict(pad_mode="same"),
         "unknown option 'pad_mode' for style paddle. Paddle takes: bias_attr, data_format, dilation, groups, "
         "in_channels, kernel_size, out_channels, output_padding, output_size, padding, stride."),
        ((1, 2, 5), (2, 3, 3), None, dict(dilation=0),
         "dilation=0: Paddle 3.3.1 accepts dilation 0 and sums every kernel tap onto one position; deconv refuses it. "
         "Sum the weight over that kernel axis and use kernel size 1."),
    ],
)
def test_error_lines(input_shape, weight_shape, bias_shape, options, message):
    with pytest.raises(ConfigError) as err:
        parse(input_shape, weight_shape, bias_shape, **options)
    assert str(err.value) == message
    assert err.value.exit_code == 2


def test_same_with_dilation_quirk():
    """The release replaces the dilation by 1 for 'same': documented dilation and a warning by default."""
    default = parse((1, 2, 4), (2, 3, 3), stride=2, dilation=2, padding="same")
    assert default.config.dilation == (2,) and default.config.crops == ((1, 2),)
    assert len(default.warnings) == 1 and "replaces dilation=2 by 1 for padding='same'" in default.warnings[0]
    released = parse((1, 2, 4), (2, 3, 3), quirks=True, stride=2, dilation=2, padding="same")
    assert released.config.dilation == (1,) and released.config.crops == ((0, 1),)
    assert not parse((1, 2, 4), (2, 3, 3), stride=2, padding="same").warnings


def test_output_padding_below_dilation_quirk():
    """op in [stride, max(stride, dilation)): computed with a warning; the release's kernel fails (--quirks)."""
    default = parse((1, 2, 4, 4), (2, 3, 3, 3), dilation=2, output_padding=1)
    assert default.config.crops == ((0, -1), (0, -1)) and "fails in Paddle 3.3.1's CPU kernel" in default.warnings[0]
    with pytest.raises(ConfigError, match="its CPU kernel then fails"):
        parse((1, 2, 4, 4), (2, 3, 3, 3), quirks=True, dilation=2, output_padding=1)
    with pytest.raises(ConfigError, match="should be less than either stride"):
        parse((1, 2, 4, 4), (2, 3, 3, 3), dilation=2, output_padding=2)


def test_output_size_drops_output_padding_in_2d_with_a_warning():
    parsed = parse((1, 2, 4, 5), (2, 3, 3, 3), stride=2, padding=1, output_padding=1, output_size=[7, 9])
    assert parsed.config.crops == ((1, 1), (1, 1))
    assert parsed.warnings == ("Conv2DTranspose ignores output_padding=1 when output_size is given (undocumented); "
                               "computing output_size=(7, 9)",)
    assert not parse((1, 2, 5), (2, 3, 3), stride=2, output_padding=0, output_size=[12]).warnings  # 1-D: int 0 passes


def test_out_channels_not_divisible_by_groups():
    """Paddle silently outputs out_channels//groups*groups channels: refused, or the release's result with --quirks,
    checked against what Paddle computed."""
    case = next(c for c in RECORD["refused"] if c["name"] == "refuse_out_channels_not_divisible")
    options = _options(case)
    with np.load(GOLDEN / "paddle.npz") as arrays:
        x, w, y = (arrays[f"{case['name']}__{k}"] for k in "xwy")
    with pytest.raises(ConfigError) as err:
        deconv_cli.deconvolve(x, w, style="paddle", **options)
    assert str(err.value).startswith("out_channels=5 is not divisible by groups=2: Paddle 3.3.1 does not check it and "
                                     "silently outputs 4 channels")
    got = deconv_cli.deconvolve(x, w, style="paddle", quirks=True, **options)
    assert got.shape == y.shape == (1, 4, 7)
    np.testing.assert_allclose(got, y, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="Broadcast dimension mismatch"):
        parse((1, 4, 5), (4, 2, 3), (5,), quirks=True, out_channels=5, groups=2)


def test_dilation_zero_is_refused_and_says_what_paddle_computes():
    case = next(c for c in RECORD["refused"] if c["name"] == "refuse_dilation_zero")
    with np.load(GOLDEN / "paddle.npz") as arrays:
        x, w, y = (arrays[f"{case['name']}__{k}"] for k in "xwy")
    for quirks in (False, True):
        with pytest.raises(ConfigError, match="sums every kernel tap onto one position"):
            deconv_cli.deconvolve(x, w, style="paddle", quirks=quirks, dilation=0)
    # what the message tells: the weight summed over the kernel axis, kernel size 1
    np.testing.assert_allclose(deconv_cli.deconvolve(x, w.sum(axis=2, keepdims=True), style="paddle"), y,
                               rtol=1e-5, atol=1e-5)


def test_golden_counts():
    cases = RECORD["cases"]
    assert sum(c["expect"] == "ok" for c in cases) >= 60 and sum(c["expect"] == "reject" for c in cases) >= 15
    shapes = {len(c["weight_shape"]) - 2 for c in cases if c["expect"] == "ok"}
    assert shapes == {1, 2, 3}


def _save_case(folder: Path, case) -> list[str]:
    """The case's tensors as .npy files (zeros for a rejected case): run/explain arguments."""
    args = []
    with np.load(GOLDEN / "paddle.npz") as arrays:
        for role in "xwb":
            shape = case["input_shape" if role == "x" else "weight_shape" if role == "w" else "bias_shape"]
            if shape is None:
                continue
            key = f"{case['name']}__{role}"
            value = arrays[key] if key in arrays else np.zeros(shape, dtype=case["dtype"])
            np.save(folder / f"{role}.npy", value)
            args += ["--bias", str(folder / "b.npy")] if role == "b" else [str(folder / f"{role}.npy")]
    return args + [item for key, value in case["options"].items() for item in ("--set", f"{key}={value}")]


@pytest.mark.parametrize("case", [c for c in RECORD["cases"] if c["expect"] == "ok"], ids=lambda c: c["name"])
def test_cli_run_matches_paddle(case, tmp_path):
    args = _save_case(tmp_path, case) + ["--style", "paddle", "-o", str(tmp_path / "y_out.npy"), "-q"]
    with np.load(GOLDEN / "paddle.npz") as arrays:
        np.save(tmp_path / "want.npy", arrays[f"{case['name']}__y"])
    if case.get("quirks"):
        args.append("--quirks")
    result = CliRunner().invoke(cli, ["run", *args, "--expect", str(tmp_path / "want.npy")])
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "y_out.npy").shape == tuple(case["output_shape"])


# the keyword (or word) each rejection's line must name
REJECTED_NAMES = {
    "bad_float16": "float16", "bad_stride_zero": "stride", "bad_groups_in_channels": "groups",
    "bad_groups_zero": "groups", "bad_padding_negative": "padding", "bad_padding_length": "padding",
    "bad_padding_full": "padding", "bad_padding_nested_channel": "padding", "bad_data_format_rank": "data_format",
    "bad_unbatched": "batch", "bad_input_channels": "channels", "bad_kernel_size": "kernel_size",
    "bad_out_channels": "out_channels", "bad_op_ge_stride_and_dilation": "output_padding",
    "bad_op_1d_above_stride": "output_padding", "bad_output_size_small": "output_size",
    "bad_output_size_large": "output_size", "bad_output_size_length": "output_size",
    "bad_1d_output_size_with_op": "output_size", "bad_unknown_keyword": "pad_mode", "bad_bias_shape": "bias",
    "bad_output_length_1d": "padding", "bad_output_length_2d_negative": "padding",
    "bad_output_length_2d_both_negative": "padding", "bad_output_length_3d_negative": "padding",
}


@pytest.mark.parametrize("case", [c for c in RECORD["cases"] if c["expect"] == "reject"], ids=lambda c: c["name"])
def test_cli_rejects_in_one_line(case, tmp_path):
    out = tmp_path / "y_out.npy"
    result = CliRunner().invoke(cli, ["run", *_save_case(tmp_path, case), "--style", "paddle", "-o", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert REJECTED_NAMES[case["name"]] in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("case", RECORD["quirk_rejects"], ids=lambda c: c["name"])
def test_cli_kernel_failures_warn_by_default_and_fail_with_quirks(case, tmp_path):
    args = [*_save_case(tmp_path, case), "--style", "paddle", "-o", str(tmp_path / "y.npy")]
    default = CliRunner().invoke(cli, ["run", *args])
    assert default.exit_code == 0, default.output
    assert "Warning: " in default.stderr and "CPU kernel" in default.stderr
    released = CliRunner().invoke(cli, ["run", *args, "--quirks", "--force"])
    assert released.exit_code == 2 and len(released.stderr.strip().splitlines()) == 1


def test_cli_shape_and_styles():
    result = CliRunner().invoke(cli, ["shape", "--style", "paddle", "--input-shape", "1,2,5,4", "--weight-shape",
                                      "2,3,3,3", "--set", "stride=2", "--set", "padding=same", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["output_shape"] == [1, 3, 9, 8]
    styles = CliRunner().invoke(cli, ["styles", "paddle"])
    assert styles.exit_code == 0 and styles.stdout.startswith("paddle (Paddle 3.3.1; dtypes float32, float64)")
    assert all(key in styles.stdout for key in paddle.KEYWORDS)


SNIPPET_CASES = [
    ["--style", "torch", "--set", "stride=2", "--set", "padding=1", "--set", "output_padding=1"],
    ["--style", "paddle", "--set", "stride=2", "--set", "padding=same", "--set", "data_format=NHWC"],
    ["--style", "torch", "--set", "dilation=3", "--set", "output_padding=2"],  # a crop paddle cannot express
]


@pytest.mark.parametrize("sets", SNIPPET_CASES, ids=["torch", "paddle-nhwc", "torch-crop"])
def test_explain_to_paddle_code(sets, tmp_path):
    """The snippet compiles; with DECONV_PADDLE_PYTHON (an interpreter with paddlepaddle) it runs and its y
    equals what deconv run writes."""
    rng = np.random.default_rng(0)
    rank = 1 if "torch" in sets else 2
    x_shape = (1, 2, 5) if rank == 1 else (1, 5, 4, 2)
    np.save(tmp_path / "x.npy", rng.standard_normal(x_shape).astype(np.float32))
    np.save(tmp_path / "w.npy", rng.standard_normal((2, 3, 3) if rank == 1 else (2, 3, 3, 3)).astype(np.float32))
    np.save(tmp_path / "b.npy", rng.standard_normal(3).astype(np.float32))
    files = [str(tmp_path / "x.npy"), str(tmp_path / "w.npy"), "--bias", str(tmp_path / "b.npy")]
    result = CliRunner().invoke(cli, ["explain", *files, *sets, "--to", "paddle", "--code"])
    assert result.exit_code == 0, result.output
    code = result.stdout
    compile(code, "<paddle snippet>", "exec")
    assert f"paddle.nn.Conv{rank}DTranspose(" in code and "layer.weight.set_value(W)" in code
    assert CliRunner().invoke(cli, ["run", *files, *sets, "-o", str(tmp_path / "y.npy"), "-q"]).exit_code == 0
    if not PADDLE_PYTHON:
        pytest.skip("DECONV_PADDLE_PYTHON is not set: compile-checked only")
    check = code + f"\nassert np.allclose(y, np.load({str(tmp_path / 'y.npy')!r}), rtol=1e-5, atol=1e-5)\nprint('same')\n"
    run = subprocess.run([PADDLE_PYTHON, "-c", check], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("same"), run.stderr[-2000:]


def test_explain_to_paddle_json():
    result = CliRunner().invoke(cli, ["explain", "--style", "torch", "--input-shape", "1,4,5,5", "--weight-shape",
                                      "4,2,3,3", "--set", "stride=2", "--set", "padding=1", "--to", "paddle", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["expressible"] and record["set"] == ["stride=2", "padding=1"] and record["crop"] is None
    assert "as is" in record["weight"]


def test_detect_finds_a_paddle_spelling(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((1, 4, 6, 6)), rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(2)
    monkeypatch.chdir(tmp_path)
    for name, value in (("x", x), ("w", w), ("b", b)):
        np.save(f"{name}.npy", value)
    np.save("y.npy", deconv_cli.deconvolve(x, w, b, style="paddle", stride=2, padding=[0, 1, 1, 0]))
    result = CliRunner().invoke(cli, ["detect", "x.npy", "w.npy", "y.npy", "--bias", "b.npy", "--style", "paddle",
                                      "--top", "1"])
    assert result.exit_code == 0, result.output
    line = next(s for s in result.stdout.splitlines() if "deconv run" in s).strip()
    assert line == ("deconv run x.npy w.npy --bias b.npy --style paddle --set stride=2 --set 'padding=[0,1,1,0]' "
                    "--expect y.npy")


@st.composite
def layers(draw):
    rank = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    spatial = tuple(draw(st.integers(1, 6)) for _ in range(rank))
    channels_last = draw(st.booleans())
    groups = draw(st.integers(1, 2))
    form = draw(st.sampled_from(["int", "per_dim", "pairs", "same", "valid"]))
    if form == "same":
        padding, dilation = "same", (1,) * rank
    elif form == "valid":
        padding = "valid"
    elif form == "int":
        padding = draw(st.integers(0, 2))
    elif form == "per_dim":
        padding = [draw(st.integers(0, 2)) for _ in range(rank)]
    else:
        padding = [draw(st.integers(0, 2)) for _ in range(2 * rank)]
    options = dict(stride=stride, dilation=dilation, padding=padding, groups=groups,
                   data_format=paddle.DATA_FORMATS[rank][1 if channels_last else 0])
    if draw(st.booleans()):
        options["output_padding"] = tuple(draw(st.integers(0, s - 1)) for s in stride)
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    batch = draw(st.integers(1, 2))
    shape = (batch, *spatial, c_in) if channels_last else (batch, c_in, *spatial)
    return options, shape, (c_in, c_out // groups, *kernel), (batch, c_in, *spatial)


@settings(max_examples=300, deadline=None)
@given(layers())
def test_express_round_trip(case):
    options, shape, weight_shape, canonical = case
    try:
        parsed = parse(shape, weight_shape, **options)
    except ConfigError as err:  # a negative output length
        assert "is negative" in str(err)
        return
    e = paddle.express(parsed.config, canonical)
    assert e.expressible, e.reason
    assert tuple(e.input_shape) == tuple(shape) and tuple(e.weight_shape) == tuple(weight_shape)
    assert parse(e.input_shape, e.weight_shape, **e.options).config == parsed.config


def test_express_from_other_styles():
    config = deconv_cli.derive((1, 4, 5, 5), (4, 2, 3, 3), stride=2, padding=1, output_padding=1).config
    e = paddle.express(config, (1, 4, 5, 5))
    assert e.expressible and e.options == {"stride": 2, "padding": 1, "output_padding": 1}
    keras_like = deconv_cli.derive((1, 5, 5, 4), (3, 3, 2, 4), style="keras", strides=2, padding="same").config
    e = paddle.express(keras_like, (1, 4, 5, 5))
    assert e.expressible and e.options == {"stride": 2, "data_format": "NHWC", "padding": [0, 1, 0, 1]}
    assert e.input_shape == (1, 5, 5, 4) and e.weight_shape == (4, 2, 3, 3)
    # output_padding 2 with dilation 3, stride 1: Paddle's kernel takes op < stride only; the rest is a crop
    dilated = deconv_cli.derive((1, 2, 5), (2, 3, 3), dilation=3, output_padding=2).config
    near = paddle.express(dilated, (1, 2, 5))
    assert not near.expressible and near.crop == ((0, -2),) and near.options == {"dilation": 3}
    unbatched = deconv_cli.derive((2, 5), (2, 3, 3), stride=2).config
    e = paddle.express(unbatched, (2, 5))
    assert not e.expressible and e.crop == ((0, 0),) and "no unbatched input" in e.reason


@pytest.mark.parametrize("target", sorted(STYLES))
def test_explain_from_paddle_to_every_style(target):
    """A channels-last, grouped Paddle layer with 'same' padding, written in every style: the printed keywords give
    back the same output shape (or a crop is named), and the snippet compiles."""
    args = ["--style", "paddle", "--input-shape", "1,5,4,4", "--weight-shape", "4,3,3,3", "--bias-shape", "6",
            "--set", "stride=2", "--set", "padding=same", "--set", "groups=2", "--set", "data_format=NHWC"]
    result = CliRunner().invoke(cli, ["explain", *args, "--to", target, "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["style"] == target
    if record["expressible"]:  # the printed keywords give the same output, in the target's layout
        shape = CliRunner().invoke(cli, ["shape", "--style", target, "--input-shape", ",".join(map(str, record["input_shape"])),
                                         "--weight-shape", ",".join(map(str, record["weight_shape"])),
                                         *[v for item in record["set"] for v in ("--set", item)], "--json"])
        assert shape.exit_code == 0, shape.output
        assert json.loads(shape.stdout)["output_shape"] == record["output_shape"]
        assert sorted(record["output_shape"]) == sorted([1, 6, 9, 8])  # L5 -> 9, L4 -> 8
    code = CliRunner().invoke(cli, ["explain", *args, "--to", target, "--code"])
    if code.exit_code == 2:  # no spelling at all (Keras and TensorFlow have no groups)
        assert code.stderr.startswith(f"Error: no runnable {target} code for this configuration")
        return
    assert code.exit_code == 0, code.output
    compile(code.stdout, f"<{target} snippet>", "exec")
