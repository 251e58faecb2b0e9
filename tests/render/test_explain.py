"""deconv explain / shape --all-styles / reachable sizes and --target-shape."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deconv_cli import conventions, derive
from deconv_cli.cli import cli, parse_set
from deconv_cli.conventions.plan import reachable, solve
from deconv_cli.core.errors import ConfigError
from deconv_cli.execution.job import plan
from deconv_cli.render.explain import explain

STYLES = sorted(conventions.STYLES)


def _operation(config):
    """The config without its layout fields: what a re-spelling must preserve."""
    return replace(config, batched=True, channels_last=False, weight_perm=None)


@st.composite
def onnx_records(draw):
    """Random deconvolutions spelled in ONNX (explicit asymmetric pads reach every crop >= 0)."""
    rank = draw(st.integers(2, 3))
    groups = draw(st.sampled_from([1, 2]))
    kernel = [draw(st.integers(1, 4)) for _ in range(rank)]
    strides = [draw(st.integers(1, 3)) for _ in range(rank)]
    spatial = [draw(st.integers(2, 6)) for _ in range(rank)]
    pads = [draw(st.integers(0, 2)) for _ in range(2 * rank)]
    output_padding = [draw(st.integers(0, s - 1)) for s in strides]
    try:
        return derive((1, 2 * groups, *spatial), (2 * groups, draw(st.integers(1, 2)), *kernel), style="onnx",
                      strides=strides, pads=pads, output_padding=output_padding, group=groups)
    except ConfigError:
        return None


@pytest.mark.parametrize("style", STYLES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(record=onnx_records())
def test_round_trip_through_every_style(style, record):
    """parse(explain(config)) gives the same canonical operation whenever the style can express it."""
    if record is None:
        return
    explanation = explain(record, style)
    e = explanation.expression
    if e.expressible:
        again = plan(style, e.options, e.input_shape, e.weight_shape)
        assert _operation(again.config) == _operation(record.config)
        assert explanation.output_shape == again.output_shape
        # the printed KEY=VALUE strings parse back to the same options
        assert parse_set(tuple(explanation.set)) == {k: v for k, v in e.options.items()}
    else:
        # the nearest spelling and the crop to apply; no options at all where the style has no spelling
        # (Keras has no groups)
        assert e.reason and (e.crop is not None or (not e.options and "no groups" in e.reason))


def test_torch_cannot_do_asymmetric_pads_and_says_how_to_crop():
    record = derive((1, 4, 5, 5), (4, 2, 3, 3), style="onnx", strides=[2, 2], pads=[1, 0, 2, 1])
    e = explain(record, "torch").expression
    assert not e.expressible
    assert e.options == {"stride": 2, "padding": (1, 0)}
    assert e.crop == ((0, 1), (0, 1))


def test_explain_json_contract_and_round_trip_through_the_cli():
    runner = CliRunner()
    result = runner.invoke(cli, ["explain", "--style", "onnx", "--input-shape", "1,4,5,5", "--weight-shape", "4,2,3,3",
                                 "--set", "strides=[2,2]", "--set", "pads=[1,1,0,0]", "--to", "torch", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert {"style", "set", "expressible", "weight", "crop"} <= set(record)
    assert record == {**record, "style": "torch", "set": ["stride=2", "padding=1", "output_padding=1"],
                      "expressible": True, "crop": None, "output_shape": [1, 2, 10, 10]}
    args = ["shape", "--style", "torch", "--input-shape", "1,4,5,5", "--weight-shape", "4,2,3,3", "--json"]
    for item in record["set"]:
        args += ["--set", item]
    assert json.loads(runner.invoke(cli, args).stdout)["output_shape"] == [1, 2, 10, 10]


def test_explain_text():
    result = CliRunner().invoke(cli, ["explain", "--input-shape", "1,4,5,5", "--weight-shape", "4,2,3,3", "--set", "stride=2",
                                      "--set", "padding=1", "--to", "onnx"])
    assert result.stdout.splitlines()[:3] == [
        "torch -> onnx: expressible",
        "  deconv shape --style onnx --input-shape 1,4,5,5 --weight-shape 4,2,3,3 --set 'strides=[2,2]' --set 'pads=[1,1,1,1]'",
        "  output: (1, 2, 9, 9)",
    ]


def test_all_styles_table_lists_every_style():
    result = CliRunner().invoke(cli, ["shape", "--input-shape", "1,4,5,5", "--weight-shape", "4,2,3,3", "--set", "stride=2",
                                      "--all-styles", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["all_styles"]
    assert [r["style"] for r in rows] == list(conventions.STYLES)


def test_reachable_sizes_and_the_option_value_for_each():
    record = derive((1, 4, 5, 5), (4, 2, 3, 3), style="torch", stride=(2, 3), padding=1)
    assert reachable(record) == [
        {"output_padding": {9: 0, 10: 1}, "output_size": {9: 9, 10: 10}},
        {"output_padding": {13: 0, 14: 1, 15: 2}, "output_size": {13: 13, 14: 14, 15: 15}},
    ]
    onnx = reachable(derive((1, 4, 5, 5), (4, 2, 3, 3), style="onnx", strides=[2, 2]))
    assert onnx[0]["output_padding"] == {11: 0, 12: 1}
    assert min(onnx[0]["output_shape"]) == 1 and max(onnx[0]["output_shape"]) == 12  # full + output_padding + stride - 1


def test_solve_target_shape():
    record = derive((1, 4, 5, 5), (4, 2, 3, 3), style="torch", stride=(2, 3), padding=1)
    solved = solve(record, (10, 15))
    assert dict(solved.options)["output_padding"] == (1, 2)
    assert solved.output_shape == (1, 2, 10, 15)
    with pytest.raises(ConfigError) as err:
        solve(record, (12, 15))
    assert str(err.value) == (
        "no value of output_padding or output_size gives spatial output (12, 15) in style torch (reachable: H: 9..10 "
        "with output_padding, 9..10 with output_size; W: 13..15 with output_padding, 13..15 with output_size). "
        "Change stride, padding or kernel, or pick a reachable size."
    )


def test_target_shape_on_the_command_line():
    result = CliRunner().invoke(cli, ["shape", "--style", "onnx", "--input-shape", "1,4,5,5", "--weight-shape", "4,2,3,3",
                                      "--set", "strides=[2,2]", "--target-shape", "10,9", "--json"])
    record = json.loads(result.stdout)
    assert record["output_shape"] == [1, 2, 10, 9] and record["options"]["output_shape"] == [10, 9]


@pytest.mark.parametrize(
    "style, options, target, solved",
    [
        ("oneflow", dict(stride=2), (13, 12), {"output_padding": (2, 1)}),  # OneFlow takes any output_padding
        ("dragon", dict(strides=2), (10, 9), {"output_shape": (10, 9)}),  # output_shape <= full + output_padding
        ("megengine", dict(stride=(2, 2)), (12, 11), {"output_padding": (1, 0)}),
        ("mindspore", dict(out_channel=4, kernel_size=3, pad_mode="pad", stride=2, input_size=(1, 2, 11, 11)), (12, 11),
         {"input_size": (1, 2, 12, 11)}),
    ],
)
def test_every_style_solves_its_own_size_option(style, options, target, solved):
    record = solve(derive((1, 4, 5, 5), (4, 2, 3, 3), style=style, **options), target)
    assert record.output_spatial == target
    assert {k: v for k, v in record.options if k in solved} == solved
