"""Flax style: lax's padding through ConvTranspose's keywords, the reversed kernel, batch axes, the recorded
rejections (one line naming the keyword), the policy cases against Flax's recorded outputs, express round trip,
and the CLI from real files (tests/test_goldens.py checks every accepted golden's numbers)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import deconv_cli
from deconv_cli.cli import cli
from deconv_cli.conventions import flax
from deconv_cli.core.config import DeconvConfig
from deconv_cli.core.errors import ConfigError
from tests.reference import reference_deconv

GOLDEN = Path(__file__).parent.parent / "golden"
RECORD = json.loads((GOLDEN / "flax.json").read_text())


def parse(input_shape, weight_shape, bias_shape=None, **options):
    return flax.parse(options, input_shape=input_shape, weight_shape=weight_shape, bias_shape=bias_shape)


def _options(case) -> dict:
    return {key: ast.literal_eval(text) for key, text in case["options"].items()}


def _arrays(name):
    with np.load(GOLDEN / "flax.npz") as arrays:
        return {k: arrays[f"{name}__{k}"] for k in "xwby" if f"{name}__{k}" in arrays}


def test_the_record_is_big_enough():
    cases = RECORD["cases"]
    accepted = [c for c in cases if c["expect"] == "ok"]
    assert len(accepted) >= 60 and len(cases) - len(accepted) >= 15
    assert {len(c["weight_shape"]) - 2 for c in accepted} == {1, 2, 3}
    assert {c["dtype"] for c in accepted} == {"float16", "float32", "float64"}


@pytest.mark.parametrize(
    "input_shape, weight_shape, options, crops, output_shape",
    [
        # 'SAME' (the default): out = L*s, crop start 0 when s >= kd else (kd - s)//2
        ((1, 5, 2), (3, 2, 3), dict(strides=2), ((0, 1),), (1, 10, 3)),
        ((1, 5, 2), (4, 2, 3), dict(strides=2), ((1, 1),), (1, 10, 3)),
        ((1, 4, 2), (2, 2, 3), dict(strides=3), ((0, -1),), (1, 12, 3)),
        # 'VALID': out = (L-1)*s + max(kd, s)
        ((1, 3, 2), (2, 2, 3), dict(strides=4, padding="VALID"), ((0, -2),), (1, 12, 3)),
        # ints and pairs pad the stride-dilated input: crop kd-1 - p
        ((1, 4, 2), (3, 2, 3), dict(strides=2, padding=0), ((2, 2),), (1, 5, 3)),
        ((1, 5, 2), (3, 2, 3), dict(strides=2, padding=[(0, 3)]), ((2, -1),), (1, 10, 3)),
        ((1, 4, 5, 2), (3, 4, 2, 3), dict(strides=2, padding=(1, (0, 2))), ((1, 1), (3, 1)), (1, 7, 8, 3)),
        # a tuple of two ints on a 2-D conv is per-dim symmetric, not (low, high)
        ((1, 4, 5, 2), (3, 3, 2, 3), dict(strides=2, padding=(1, 2)), ((1, 1), (0, 0)), (1, 7, 11, 3)),
        # other strings at stride 1: the forward convolution's padding
        ((1, 6, 2), (4, 2, 3), dict(padding="same"), ((2, 1),), (1, 6, 3)),
        # unbatched: (L, C)
        ((5, 2), (3, 2, 3), dict(strides=2), ((0, 1),), (10, 3)),
        # an output below zero long is an empty axis, as JAX gives
        ((1, 3, 2), (3, 2, 3), dict(padding=((-3, 0),)), ((5, 0),), (1, 0, 3)),
    ],
)
def test_shapes(input_shape, weight_shape, options, crops, output_shape):
    assert parse(input_shape, weight_shape, **options).config.crops == crops
    assert deconv_cli.derive(input_shape, weight_shape, style="flax", **options).output_shape == output_shape


def test_layouts_and_notes():
    parsed = parse((1, 4, 5, 3), (3, 2, 3, 4), strides=2)
    config = parsed.config
    assert config.channels_last and config.batched and config.flip and config.weight_perm == (2, 3, 0, 1)
    assert (config.in_channels, config.out_channels, config.kernel) == (3, 4, (3, 2))
    assert parsed.dim_notes[0] == ("kd = 1*(3-1) + 1 = 3, full (L-1)*s + kd = 9",
                                   "'SAME': output L*s = 8, crop start (kd 3 - s 2)//2 = 0")
    assert parsed.notes[0].startswith("transpose_kernel=False: kernel (*kernel_size, C_in, features) is the forward")
    tk = parse((4, 5, 3), (3, 2, 4, 3), transpose_kernel=True).config
    assert not tk.flip and not tk.batched and tk.weight_perm == (3, 2, 0, 1) and tk.out_channels == 4


@pytest.mark.parametrize("transpose, tap, want", [(False, 0, [0.0, 0.0, 1.0]), (True, 0, [1.0, 0.0, 0.0])])
def test_kernel_orientation(transpose, tap, want):
    """transpose_kernel=False keeps the forward convolution's kernel: its first tap lands last."""
    x = np.ones((1, 1, 1), np.float32)
    w = np.zeros((3, 1, 1), np.float32)
    w[tap, 0, 0] = 1.0
    y = deconv_cli.deconvolve(x, w, style="flax", padding="VALID", transpose_kernel=transpose)
    assert y.reshape(-1).tolist() == want


# the keyword (or the tensor) each recorded rejection's line must name
NAMED = {
    "bad_kernel_size_mismatch": "kernel_size=", "bad_kernel_size_int_2d": "kernel_size=3 (an int is a 1-D kernel)",
    "bad_features_mismatch": "features=4", "bad_in_channels": "the input has 3 channels",
    "bad_tk_orientation": "transpose_kernel=False", "bad_padding_causal": "padding='CAUSAL'",
    "bad_padding_reflect": "padding='REFLECT'", "bad_lower_same_s2": "padding='same' with strides",
    "bad_lower_valid_s2": "padding='valid' with strides", "bad_padding_two_ints_1d": "padding=(1, 2)",
    "bad_padding_one_pair_2d": "padding=[(1, 1)]", "bad_padding_triple": "padding=((1, 2, 3),)",
    "bad_padding_float": "padding=1.5", "bad_strides_length": "strides=(2, 2)",
    "bad_dilation_length": "kernel_dilation=(2, 2, 2)", "bad_strides_zero": "strides=0",
    "bad_strides_negative": "strides=-1", "bad_dilation_zero": "kernel_dilation=0",
    "bad_negative_pad_too_large": "padding (-6, 0)", "bad_use_bias_without_bias": "use_bias=True",
    "bad_bias_shape": "bias has shape (4,)", "bad_input_rank": "input has 1 dimensions",
    "bad_padding_string": "padding='FULL'",
}


@pytest.mark.parametrize("case", [c for c in RECORD["cases"] if c["expect"] == "reject"], ids=lambda c: c["name"])
def test_every_recorded_rejection_is_one_line_naming_the_keyword(case):
    x = np.zeros(case["input_shape"], case["dtype"])
    w = np.zeros(case["weight_shape"], case["dtype"])
    b = None if case["bias_shape"] is None else np.zeros(case["bias_shape"], case["dtype"])
    with pytest.raises(ConfigError) as err:
        deconv_cli.deconvolve(x, w, b, style="flax", **_options(case))
    line = str(err.value)
    assert err.value.exit_code == 2 and "\n" not in line
    assert NAMED[case["name"]] in line and "Flax 0.12" in line


def _policy(name):
    return next(c for c in RECORD["policy"] if c["name"] == name)


@pytest.mark.parametrize("name", ["policy_circular_1d", "policy_circular_2d_tk"])
def test_circular_is_refused_and_is_valid_folded(name):
    """Flax's CIRCULAR is the 'VALID' result folded with period L*s (recorded), which no crop gives."""
    case, arrays = _policy(name), _arrays(name)
    options = _options(case)
    with pytest.raises(ConfigError, match=r"^padding='CIRCULAR' wraps .* not a crop") as err:
        deconv_cli.deconvolve(arrays["x"], arrays["w"], style="flax", **options)
    assert err.value.exit_code == 2
    # the recipe the hint names reproduces Flax's numbers: VALID, zero-pad to whole periods, then fold
    y = deconv_cli.deconvolve(arrays["x"], arrays["w"], style="flax", **dict(options, padding="VALID"))
    transpose = options.get("transpose_kernel", False)
    stride = options["strides"]
    for axis, n in enumerate(arrays["x"].shape[1:-1]):
        period = n * stride
        diff = -(y.shape[axis + 1] - period) % (2 * period)
        head, tail = (diff // 2, -(-diff // 2)) if transpose else (-(-diff // 2), diff // 2)
        pads = [(0, 0)] * y.ndim
        pads[axis + 1] = (head, tail)
        padded = np.pad(y, pads)
        y = sum(np.take(padded, range(m * period, (m + 1) * period), axis=axis + 1)
                for m in range(padded.shape[axis + 1] // period))
    np.testing.assert_allclose(y, arrays["y"], rtol=1e-4, atol=1e-4)


def test_two_batch_axes_are_refused_and_the_reshape_gives_flaxs_result():
    case, arrays = _policy("policy_two_batch_axes"), _arrays("policy_two_batch_axes")
    with pytest.raises(ConfigError) as err:
        deconv_cli.deconvolve(arrays["x"], arrays["w"], arrays["b"], style="flax", **_options(case))
    assert str(err.value).endswith("Reshape the input to (-1, 5, 2) and the output back.")
    x = arrays["x"].reshape(-1, 5, 2)
    y = deconv_cli.deconvolve(x, arrays["w"], arrays["b"], style="flax", **_options(case))
    np.testing.assert_allclose(y.reshape(arrays["y"].shape), arrays["y"], rtol=1e-5, atol=1e-5)


def test_a_bias_that_use_bias_false_would_ignore_is_refused():
    case, arrays = _policy("policy_use_bias_false_ignores_bias"), _arrays("policy_use_bias_false_ignores_bias")
    with pytest.raises(ConfigError, match="would ignore it silently"):
        deconv_cli.deconvolve(arrays["x"], arrays["w"], arrays["b"], style="flax", **_options(case))
    y = deconv_cli.deconvolve(arrays["x"], arrays["w"], style="flax", **_options(case))  # as Flax computed it
    np.testing.assert_allclose(y, arrays["y"], rtol=1e-5, atol=1e-5)


def test_mixed_dtypes_point_to_the_cast_that_gives_flaxs_dtype():
    case, arrays = _policy("policy_fp16_input_fp32_params"), _arrays("policy_fp16_input_fp32_params")
    assert case["output_dtype"] == "float32" and arrays["x"].dtype == np.float16
    with pytest.raises(ConfigError) as err:
        deconv_cli.deconvolve(arrays["x"], arrays["w"], arrays["b"], style="flax", **_options(case))
    assert "Flax 0.12 promotes them to float32" in str(err.value) and "--cast float32" in str(err.value)
    y = deconv_cli.deconvolve(arrays["x"].astype(np.float32), arrays["w"], arrays["b"], style="flax", **_options(case))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, arrays["y"], rtol=1e-5, atol=1e-5)


def test_cli_cast_gives_flaxs_promoted_result(tmp_path, monkeypatch):
    _files(tmp_path, "policy_fp16_input_fp32_params")
    monkeypatch.chdir(tmp_path)
    args = ["run", "x.npy", "w.npy", "--bias", "b.npy", "--style", "flax", "--set", "strides=2", "-o", "out.npy"]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2 and "--cast float32" in refused.stderr and not (tmp_path / "out.npy").exists()
    result = CliRunner().invoke(cli, [*args, "--cast", "float32", "--expect", "y.npy"])
    assert result.exit_code == 0, result.output
    assert np.load("out.npy").dtype == np.float32


def test_the_shape_xla_aborts_on_is_computed():
    """XLA's CPU compiler aborts the process here (recorded); deconv computes lax's arithmetic."""
    case = next(c for c in RECORD["crashes"] if c["name"] == "f3_pad0_middle_one")
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(case["input_shape"]), rng.standard_normal(case["weight_shape"])
    config = parse(x.shape, w.shape, **_options(case)).config
    y = deconv_cli.deconvolve(x, w, style="flax", **_options(case))
    assert y.shape == (1, 4, 1, 4, 2)  # (L-1)*s + 1 + 0 + 0 - (k-1): the middle length is 1
    canonical_w = np.ascontiguousarray(w.transpose(3, 4, 0, 1, 2)[:, :, ::-1, ::-1, ::-1])
    want = reference_deconv(np.moveaxis(x, -1, 1), canonical_w, None, stride=config.stride, dilation=config.dilation,
                            crops=config.crops, groups=1)
    np.testing.assert_allclose(y, np.moveaxis(want, 1, -1), atol=1e-12)


def test_express_from_torch_spells_every_crop_with_pairs():
    config = deconv_cli.derive((1, 4, 5, 5), (4, 2, 3, 3), stride=2, padding=1, output_padding=1).config
    e = flax.express(config, (1, 4, 5, 5))
    assert e.expressible and e.options == {"features": 2, "kernel_size": (3, 3), "strides": 2,
                                           "transpose_kernel": True, "padding": ((1, 2), (1, 2))}
    assert e.input_shape == (1, 5, 5, 4) and e.weight_shape == (3, 3, 2, 4)
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 4, 5, 5)), rng.standard_normal((4, 2, 3, 3))
    want = deconv_cli.deconvolve(x, w, stride=2, padding=1, output_padding=1)
    got = deconv_cli.deconvolve(np.moveaxis(x, 1, -1), w.transpose(2, 3, 1, 0), style="flax", **e.options)
    np.testing.assert_allclose(np.moveaxis(got, -1, 1), want, atol=1e-12)
    same = deconv_cli.derive((1, 4, 5, 5), (4, 2, 4, 4), stride=2, padding=1).config
    assert flax.express(same, (1, 4, 5, 5)).options["padding"] == "SAME"
    grouped = deconv_cli.derive((1, 4, 5, 5), (4, 1, 3, 3), groups=2).config
    assert not flax.express(grouped, (1, 4, 5, 5)).expressible


@st.composite
def cases(draw):
    rank = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    spatial = tuple(draw(st.integers(1, 5)) for _ in range(rank))
    padding = draw(st.one_of(st.sampled_from(["SAME", "VALID"]), st.integers(-1, 3),
                             st.tuples(*[st.tuples(st.integers(-1, 3), st.integers(-1, 3)) for _ in range(rank)])))
    c_in, c_out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    transpose = draw(st.booleans())
    lead = draw(st.sampled_from([(), (2,)]))
    shape = (*lead, *spatial, c_in)
    weight = (*kernel, *((c_out, c_in) if transpose else (c_in, c_out)))
    options = dict(strides=stride, kernel_dilation=dilation, padding=padding, transpose_kernel=transpose)
    return options, shape, weight, ((lead or (1,))[0], c_in, *spatial)


@settings(max_examples=300, deadline=None)
@given(cases())
def test_express_round_trip(case):
    options, shape, weight_shape, canonical = case
    try:
        parsed = parse(shape, weight_shape, **options)
    except ConfigError:
        return  # a negative padding past the dilated input: JAX's rejection
    e = flax.express(parsed.config, canonical)
    if not e.expressible:  # only an empty axis reached by more than one spelling's worth of negative padding
        assert any(n == 0 for n in deconv_cli.derive(shape, weight_shape, style="flax", **options).output_spatial)
        return
    assert tuple(e.input_shape) == tuple(shape)
    back = parse(e.input_shape, e.weight_shape, **e.options).config
    assert (back.crops, back.stride, back.dilation, back.batched) == (parsed.config.crops, parsed.config.stride,
                                                                      parsed.config.dilation, parsed.config.batched)


def test_round_trip_from_any_canonical_crop():
    config = DeconvConfig(kernel=(3,), stride=(2,), dilation=(1,), crops=((2, -1),), groups=1, in_channels=2,
                          out_channels=3)
    e = flax.express(config, (1, 2, 5))
    assert e.expressible and e.options["padding"] == ((0, 3),)


# ------------------------------------------------------------------------------------------------ the CLI

def _files(tmp_path, name):
    for k, v in _arrays(name).items():
        np.save(tmp_path / f"{k}.npy", v)


def test_cli_run_batch_and_rejection(tmp_path, monkeypatch):
    _files(tmp_path, "f2_pairs")
    monkeypatch.chdir(tmp_path)
    sets = ["--set", "strides=2", "--set", "padding=((1,0),(2,1))"]
    result = CliRunner().invoke(cli, ["run", "x.npy", "w.npy", "--bias", "b.npy", "--style", "flax", *sets,
                                      "-o", "out.npy", "--expect", "y.npy"])
    assert result.exit_code == 0, result.output
    (tmp_path / "jobs.jsonl").write_text(
        '{"input": "x.npy", "weight": "w.npy", "bias": "b.npy", "style": "flax", "output": "batch.npy", '
        '"set": {"strides": 2, "padding": [[1, 0], [2, 1]]}}\n')
    result = CliRunner().invoke(cli, ["batch", "jobs.jsonl", "-j", "1"])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load("batch.npy"), np.load("y.npy"), rtol=1e-4, atol=1e-4)
    result = CliRunner().invoke(cli, ["run", "x.npy", "w.npy", "--bias", "b.npy", "--style", "flax",
                                      "--set", "padding=CIRCULAR", "-o", "bad.npy"])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("Error: padding='CIRCULAR' wraps")
    assert not (tmp_path / "bad.npy").exists()


def test_cli_shape_explain_and_styles(tmp_path, monkeypatch):
    _files(tmp_path, "f1_unbatched")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["shape", "x.npy", "w.npy", "--style", "flax", "--set", "strides=2", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["output_shape"] == [10, 3]
    # to torch and back: the torch spelling of Flax's reversed kernel, and Flax's spelling of it
    result = CliRunner().invoke(cli, ["explain", "x.npy", "w.npy", "--style", "flax", "--set", "strides=2",
                                      "--set", "padding=VALID", "--to", "torch", "--json"])
    assert result.exit_code == 0, result.output
    explained = json.loads(result.stdout)
    assert "reverse the kernel axes (2,)" in explained["weight"] and explained["expressible"]
    assert explained["input"] == "add a batch axis: x[None]; move channels to axis 1: np.moveaxis(x, 2, 1)"
    assert explained["set"] == ["stride=2"] and explained["output_shape"] == [1, 3, 11]
    result = CliRunner().invoke(cli, ["explain", "--style", "torch", "--input-shape", "1,2,5", "--weight-shape",
                                      "2,3,3", "--set", "stride=2", "--set", "padding=1", "--to", "flax", "--json"])
    assert result.exit_code == 0, result.output
    explained = json.loads(result.stdout)
    # torch's padding=1 crops (1, 1); lax pads the dilated input by kd-1 - 1 = 1 on each side
    assert explained["set"] == ["features=3", "kernel_size=(3,)", "strides=2", "transpose_kernel=True", "padding=1"]
    back = CliRunner().invoke(cli, ["shape", "--style", "flax", "--input-shape", "1,5,2", "--weight-shape", "3,3,2",
                                    *[w for s in explained["set"] for w in ("--set", s)], "--json"])
    assert json.loads(back.stdout)["output_shape"] == [1, 9, 3]
    result = CliRunner().invoke(cli, ["explain", "x.npy", "w.npy", "--style", "flax", "--set", "strides=2",
                                      "--to", "flax", "--code"])
    assert result.exit_code == 0, result.output
    compile(result.stdout, "flax.py", "exec")
    assert "nn.ConvTranspose(features=3, kernel_size=(3,), strides=2, transpose_kernel=True" in result.stdout
    result = CliRunner().invoke(cli, ["styles", "flax"])
    assert result.exit_code == 0 and "transpose_kernel" in result.stdout and "Flax 0.12" in result.stdout


def test_cli_detect_searches_flax(tmp_path, monkeypatch):
    """detect reads channels-first files; Flax takes channels-last data only, so it finds the configuration and
    the readings but no Flax spelling runs on those files (the torch one does)."""
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((1, 2, 5)), rng.standard_normal((2, 3, 3))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    np.save(tmp_path / "y.npy", deconv_cli.deconvolve(x, w, stride=2))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["detect", "x.npy", "w.npy", "y.npy", "--style", "flax", "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["tried"] > 0
