"""mindspore style: ops.Conv3DTranspose / ops.Conv2DTranspose keywords -> canonical config."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deconv_cli.conventions import mindspore as ms
from deconv_cli.core.config import DeconvConfig
from deconv_cli.core.errors import ConfigError
from deconv_cli.execution.job import plan

GOLDEN = Path(__file__).parent.parent / "golden" / "mindspore.json"


def crops(options, x, w, **kw):
    return plan("mindspore", options, x, w, **kw).config.crops


@pytest.mark.parametrize(
    "options, x, w, want_crops, want_out",
    [
        # seed: default 'valid'
        ({}, (2, 16, 10, 32, 32), (16, 3, 4, 6, 2), ((0, 0),) * 3, (2, 3, 13, 37, 33)),
        # 'valid' with stride > dilated kernel: zero tail n*s
        ({"stride": 4}, (1, 2, 3, 3, 3), (2, 2, 1, 1, 1), ((0, -3),) * 3, (1, 2, 12, 12, 12)),
        # 'same': T = dk - s, larger half at the end; T < 0 appends zeros
        ({"pad_mode": "same", "stride": 3}, (1, 2, 6, 6, 6), (2, 2, 5, 5, 5), ((1, 1),) * 3, (1, 2, 18, 18, 18)),
        ({"pad_mode": "SAME", "stride": (1, 1, 1), "dilation": (1, 3, 3)}, (1, 2, 5, 5, 5), (2, 2, 4, 4, 4),
         ((1, 2), (4, 5), (4, 5)), (1, 2, 5, 5, 5)),
        ({"pad_mode": "same", "stride": 4}, (1, 2, 3, 3, 3), (2, 2, 1, 1, 1), ((0, -3),) * 3, (1, 2, 12, 12, 12)),
        # 'pad': 6-tuple order (d_head, d_tail, top, bottom, left, right), output_padding real rows
        ({"pad_mode": "pad", "pad": (1, 0, 2, 1, 0, 2), "stride": 2, "output_padding": (1, 0, 1)},
         (1, 2, 4, 3, 4), (2, 2, 3, 3, 3), ((1, -1), (2, 1), (0, 1)), (1, 2, 9, 4, 8)),
        ({"pad_mode": "PAD", "pad": 1}, (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), ((1, 1),) * 3, (1, 2, 3, 3, 3)),
        # group: C_out = weight.shape[1] * group
        ({"group": 2}, (1, 4, 3, 3, 3), (4, 2, 3, 3, 3), ((0, 0),) * 3, (1, 4, 5, 5, 5)),
        # output size 0 is allowed (MindSpore returns an empty tensor)
        ({"pad_mode": "pad", "pad": (0, 1, 0, 0, 0, 0)}, (1, 2, 1, 3, 3), (2, 2, 1, 3, 3),
         ((0, 1), (0, 0), (0, 0)), (1, 2, 0, 5, 5)),
        # Conv2DTranspose: input_size picks the size; seed
        ({"input_size": (10, 32, 32, 32)}, (10, 32, 30, 30), (32, 32, 3, 3), ((0, 0),) * 2, (10, 32, 32, 32)),
        ({"stride": 2, "input_size": (1, 3, 12, 11)}, (1, 2, 5, 5), (2, 3, 3, 3), ((0, -1), (0, 0)), (1, 3, 12, 11)),
        ({"stride": 2, "input_size": (1, 3, 2, 7)}, (1, 2, 1, 3), (2, 3, 3, 3), ((0, 1), (0, 0)), (1, 3, 2, 7)),
        ({"pad_mode": "pad", "pad": (1, 0, 0, 2), "stride": (2, 3), "input_size": (1, 3, 9, 15)},
         (1, 2, 4, 5), (2, 3, 3, 4), ((1, -1), (0, 1)), (1, 3, 9, 15)),
        ({"pad_mode": "same", "stride": 2, "input_size": (1, 3, 5, 8)}, (1, 2, 3, 4), (2, 3, 3, 3),
         ((1, 1), (0, 1)), (1, 3, 5, 8)),
        ({"pad_mode": "pad", "pad": 1, "pad_list": (0, 0, 2, 1), "stride": 2, "input_size": (1, 3, 7, 4)},
         (1, 2, 3, 3), (2, 3, 3, 3), ((0, 0), (2, 1)), (1, 3, 7, 4)),
        ({"stride": (1, 1, 2, 2), "input_size": (1, 3, 7, 7)}, (1, 2, 3, 3), (2, 3, 3, 3), ((0, 0),) * 2, (1, 3, 7, 7)),
    ],
)
def test_configs(options, x, w, want_crops, want_out):
    record = plan("mindspore", options, x, w)
    assert record.config.crops == want_crops
    assert record.output_shape == want_out
    assert record.config.weight_perm is None and not record.config.channels_last


def test_bias_is_an_extension_with_a_note():
    record = plan("mindspore", {}, (1, 2, 3, 3, 3), (2, 4, 2, 2, 2), (4,))
    assert any("take no bias" in n for n in record.notes)
    with pytest.raises(ConfigError, match=r"bias has shape \(1, 4, 1, 1, 1\)"):
        plan("mindspore", {}, (1, 2, 3, 3, 3), (2, 4, 2, 2, 2), (1, 4, 1, 1, 1))


def test_unchecked_channels_are_noted_not_rejected():
    record = plan("mindspore", {"in_channel": 5}, (1, 4, 2, 2, 2), (4, 2, 2, 2, 2))
    assert any("in_channel=5" in n for n in record.notes)


@pytest.mark.parametrize(
    "options, x, w, line",
    [
        ({"dilation": 2}, (1, 2, 3, 3, 3), (2, 2, 3, 3, 3),
         "dilation=2: the depth of parameter 'dilation' must be 1 (ops.Conv3DTranspose rejects it). "
         "Use dilation=(1, 2, 2)."),
        ({"pad": 1}, (1, 2, 3, 3, 3), (2, 2, 3, 3, 3),
         "pad=1: the 'pad' must be zero when 'pad_mode' is not \"pad\" (ops.Conv3DTranspose rejects it). "
         "Set pad_mode='pad'."),
        ({"pad_mode": "PAD", "pad": 1, "input_size": (1, 3, 5, 5)}, (1, 2, 3, 3), (2, 3, 3, 3),
         "pad=1: the 'pad' must be zero when 'pad_mode' is not \"pad\" (the check compares the raw string: "
         "write pad_mode='pad', not 'PAD') (ops.Conv2DTranspose rejects it). Set pad_mode='pad'."),
        ({"stride": 2, "input_size": (1, 3, 13, 9)}, (1, 2, 5, 4), (2, 3, 3, 3),
         "input_size H=13 does not fit dout's 5: with pad_mode='valid' a forward Conv2D of the result must give back 5, "
         "so H must be in [11, 12] (MindSpore 2.10 CPU fails: could not create a primitive descriptor). "
         "Pass input_size=(1, 3, ...) with H in [11, 12]."),
        ({"stride": 2}, (1, 2, 5, 4), (2, 3, 3, 3),
         "ops.Conv2DTranspose needs input_size, the result's shape (N, C_out, H, W). Pass input_size=(1, 3, 11, 9)."),
        ({}, (1, 2, 5), (2, 3, 3),
         "input has 3 dimensions (1, 2, 5); the mindspore style covers ops.Conv2DTranspose (N, C, H, W) and "
         "ops.Conv3DTranspose (N, C, D, H, W): no unbatched input, and 1-D (nn.Conv1dTranspose) is out of scope. "
         "For 1-D, add a unit H axis: input (N, C, 1, L), weight (C_in, C_out/group, 1, k)."),
    ],
)
def test_error_lines(options, x, w, line):
    with pytest.raises(ConfigError) as err:
        plan("mindspore", options, x, w)
    assert str(err.value) == line


@pytest.mark.parametrize(
    "options, x, w, match",
    [
        ({"stride": (1, 1, 2, 2, 2)}, (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), "has 5 values"),
        ({"pad_mode": "pad", "output_padding": (0, 2, 0), "stride": 2}, (1, 2, 3, 3, 3), (2, 2, 3, 3, 3),
         r"output_padding_h must be in \[0, max\(stride_h, dilation_h\)\)"),
        ({"pad_mode": "same", "output_padding": 1, "stride": 2}, (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), "must be zero"),
        ({"group": 4, "out_channel": 2}, (1, 4, 3, 3, 3), (4, 1, 3, 3, 3), r"must be in \[1, 2\]"),
        ({}, (1, 1, 1, 1, 1), (1, 1, 8, 7, 7), "392 taps"),
        ({"stride": (257, 1, 1)}, (1, 2, 2, 2, 2), (2, 2, 1, 1, 1), r"depth stride must be in \[1, 256\]"),
        ({"kernel_size": 2, "input_size": (1, 3, 7, 7), "stride": 2}, (1, 2, 3, 3), (2, 3, 3, 3), "silently use"),
        ({"pad_list": (1, 1, 1, 1), "input_size": (1, 3, 7, 7), "stride": 2}, (1, 2, 3, 3), (2, 3, 3, 3),
         "silently ignore"),
        ({"output_padding": 1, "input_size": (1, 3, 7, 7)}, (1, 2, 3, 3), (2, 3, 3, 3), "ops.Conv3DTranspose"),
        ({"data_format": "NHWC", "input_size": (1, 3, 5, 5)}, (1, 2, 3, 3), (2, 3, 3, 3), "GPU-only"),
        ({"mode": 2}, (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), "must be 1"),
        ({"padmode": "same"}, (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), "Did you mean 'pad_mode'"),
    ],
)
def test_rejects(options, x, w, match):
    with pytest.raises(ConfigError, match=match):
        plan("mindspore", options, x, w)


def test_float64_rejected():
    with pytest.raises(ConfigError, match="does not compute in float64"):
        plan("mindspore", {}, (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), dtypes={"input": "float64", "weight": "float64"})


# --- the CPU output_padding defect: documented [0, max(stride, dilation)) + warning; quirks: reject

CPU_CASE = ({"pad_mode": "pad", "dilation": (1, 2, 1), "output_padding": (0, 1, 0)}, (1, 2, 3, 3, 3), (2, 2, 2, 2, 2))


def test_output_padding_cpu_defect_warns_and_computes_documented():
    record = plan("mindspore", *CPU_CASE)
    assert record.output_shape == (1, 2, 4, 6, 4)
    assert len(record.warnings) == 1 and "MindSpore 2.10 CPU fails" in record.warnings[0]


def test_output_padding_cpu_defect_rejected_with_quirks():
    with pytest.raises(ConfigError, match="output_padding_h=1 >= stride_h=1"):
        plan("mindspore", *CPU_CASE, quirks=True)


def test_no_warning_on_plain_configs():
    assert plan("mindspore", {"pad_mode": "pad", "pad": 1, "stride": 2, "output_padding": 1},
                (1, 2, 3, 3, 3), (2, 2, 3, 3, 3)).warnings == ()


def _golden_quirk_rejects():
    return json.loads(GOLDEN.read_text())["quirk_rejects"]


@pytest.mark.parametrize("case", _golden_quirk_rejects(), ids=lambda c: c["name"])
def test_golden_quirk_rejects(case):
    options = {k: ast.literal_eval(v) for k, v in case["options"].items()}
    shapes = (case["input_shape"], case["weight_shape"], case["bias_shape"])
    with pytest.raises(ConfigError):
        plan("mindspore", options, *shapes, quirks=True)
    assert plan("mindspore", options, *shapes).warnings


# --- express: the inverse

def _configs(rank):
    dims = st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(-2, 3), st.integers(-2, 3))
    return st.tuples(st.lists(dims, min_size=rank, max_size=rank), st.sampled_from([1, 2]), st.integers(1, 3))


def _build(rank, dims, groups, batch):
    kernel = tuple(d[1] for d in dims)
    cfg = DeconvConfig(kernel=kernel, stride=tuple(d[2] for d in dims), dilation=(1,) * rank,
                       crops=tuple((d[3], d[4]) for d in dims), groups=groups, in_channels=2 * groups,
                       out_channels=3 * groups)
    return cfg, (batch, 2 * groups, *(d[0] for d in dims))


@pytest.mark.parametrize("rank", [2, 3])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_express_round_trip(rank, data):
    dims, groups, batch = data.draw(_configs(rank))
    cfg, x = _build(rank, dims, groups, batch)
    fulls = [(n - 1) * s + k for (n, k, s, _, _) in dims]
    if any(f - lo - hi < 0 for f, (lo, hi) in zip(fulls, cfg.crops)):
        return
    e = ms.express(cfg, x)
    if e.expressible:
        assert ms.parse(e.options, input_shape=e.input_shape, weight_shape=e.weight_shape).config == cfg
    elif e.crop is None:
        assert e.reason
    else:
        assert e.reason
        near = ms.parse(e.options, input_shape=e.input_shape, weight_shape=e.weight_shape).config
        assert tuple((lo + a, hi + b) for (lo, hi), (a, b) in zip(near.crops, e.crop)) == cfg.crops


def test_express_examples():
    cfg = ms.parse({"pad_mode": "same", "stride": 2}, input_shape=(1, 2, 3, 3, 3), weight_shape=(2, 2, 3, 3, 3)).config
    e = ms.express(cfg, (1, 2, 3, 3, 3))
    assert e.expressible and e.options["pad"] == (0, 1, 0, 1, 0, 1) and e.options["pad_mode"] == "pad"
    cfg1 = DeconvConfig(kernel=(3,), stride=(2,), dilation=(1,), crops=((1, 0),), groups=1, in_channels=2, out_channels=2)
    e1 = ms.express(cfg1, (1, 2, 5))
    assert not e1.expressible and "1-D" in e1.reason and e1.input_shape == (1, 2, 1, 5)
