"""JAX style: lax.conv_transpose's keywords, dimension_numbers (any rhs spec, spatial order from the rhs), the
reversed kernel, the recorded rejections (one line naming the keyword), the policy refusals, the express round
trip and the CLI from real files (tests/test_goldens.py checks every accepted golden's numbers)."""

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
from deconv_cli.conventions import jax
from deconv_cli.core.errors import ConfigError
from tests.reference import reference_deconv

GOLDEN = Path(__file__).parent.parent / "golden"
RECORD = json.loads((GOLDEN / "jax.json").read_text())
NCHW = ("NCHW", "OIHW", "NCHW")


def parse(input_shape, weight_shape, **options):
    return jax.parse(options, input_shape=input_shape, weight_shape=weight_shape)


def _options(case) -> dict:
    return {key: ast.literal_eval(text) for key, text in case["options"].items()}


def _arrays(name):
    with np.load(GOLDEN / "jax.npz") as arrays:
        return {k: arrays[f"{name}__{k}"] for k in "xwy" if f"{name}__{k}" in arrays}


def test_the_record_is_big_enough():
    cases = RECORD["cases"]
    accepted = [c for c in cases if c["expect"] == "ok"]
    assert len(accepted) >= 60 and len(cases) - len(accepted) >= 15
    assert {len(c["weight_shape"]) - 2 for c in accepted} == {1, 2, 3}
    assert {c["dtype"] for c in accepted} == {"float16", "float32", "float64"}
    specs = {(_options(c).get("dimension_numbers") or (None,))[0] for c in accepted}
    assert {"NCH", "NCHW", "NCDHW", "NHWC"} <= specs  # channels first and last


@pytest.mark.parametrize("input_shape, weight_shape, options, crops, output_shape", [
    # 'SAME': out = L*s, crop start 0 when s >= kd else (kd - s)//2
    ((1, 5, 2), (3, 2, 3), dict(strides=(2,), padding="SAME"), ((0, 1),), (1, 10, 3)),
    ((1, 5, 2), (4, 2, 3), dict(strides=(2,), padding="SAME"), ((1, 1),), (1, 10, 3)),
    # 'VALID': out = (L-1)*s + max(kd, s)
    ((1, 3, 2), (2, 2, 3), dict(strides=(4,), padding="VALID"), ((0, -2),), (1, 12, 3)),
    # pairs pad the stride-dilated input: crop kd-1 - p; with use_consistent_padding they are PyTorch's padding
    ((1, 5, 2), (3, 2, 3), dict(strides=(2,), padding=((1, 2),)), ((1, 0),), (1, 10, 3)),
    ((1, 5, 2), (3, 2, 3), dict(strides=(2,), padding=((1, 2),), use_consistent_padding=True), ((1, 2),), (1, 8, 3)),
    # stride 1 strings: the forward convolution's padding of kd
    ((1, 6, 2), (4, 2, 3), dict(strides=(1,), padding="same"), ((2, 1),), (1, 6, 3)),
    # the rhs's spatial order: 'WHIO' makes strides (W 2, H 3) and the kernel (W 3, H 2); deconv keeps (H, W):
    # H: (3-1)*3 + max(2, 3) = 9 of a full 8 (one zero past it), W: (4-1)*2 + max(3, 2) = 9
    ((1, 3, 4, 2), (3, 2, 2, 4), dict(strides=(2, 3), padding="VALID", dimension_numbers=("NHWC", "WHIO", "NHWC")),
     ((0, -1), (0, 0)), (1, 9, 9, 4)),
])
def test_shapes(input_shape, weight_shape, options, crops, output_shape):
    assert parse(input_shape, weight_shape, **options).config.crops == crops
    assert deconv_cli.derive(input_shape, weight_shape, style="jax", **options).output_shape == output_shape


def test_layouts_and_notes():
    parsed = parse((1, 4, 5, 3), (3, 2, 3, 4), strides=(2, 1), padding="SAME")
    config = parsed.config
    assert config.channels_last and config.flip and config.weight_perm == (2, 3, 0, 1)
    assert (config.in_channels, config.out_channels, config.kernel, config.stride) == (3, 4, (3, 2), (2, 1))
    assert parsed.dim_notes[0] == ("kd = 1*(3-1) + 1 = 3, full (L-1)*s + kd = 9",
                                   "'SAME': output L*s = 8, crop start (kd 3 - s 2)//2 = 0")
    assert parsed.notes[1].startswith("transpose_kernel=False: the rhs is the forward convolution's kernel (I = C_in)")
    torch_like = parse((1, 3, 4, 5), (3, 2, 3, 3), strides=(2, 2), padding="SAME", dimension_numbers=NCHW,
                       transpose_kernel=True).config
    assert not torch_like.flip and not torch_like.channels_last and torch_like.weight_perm is None
    swapped = parse((1, 3, 4, 2), (3, 2, 2, 4), strides=(2, 3), padding="VALID",
                    dimension_numbers=("NHWC", "WHIO", "NHWC")).config
    assert swapped.kernel == (2, 3) and swapped.stride == (3, 2) and swapped.weight_perm == (2, 3, 1, 0)


@pytest.mark.parametrize("transpose, want", [(False, [0.0, 0.0, 1.0]), (True, [1.0, 0.0, 0.0])])
def test_kernel_orientation(transpose, want):
    """transpose_kernel=False keeps the forward convolution's kernel: its first tap lands last."""
    x = np.ones((1, 1, 1), np.float32)
    w = np.zeros((3, 1, 1), np.float32)
    w[0, 0, 0] = 1.0
    y = deconv_cli.deconvolve(x, w, style="jax", strides=(1,), padding="VALID", transpose_kernel=transpose)
    assert y.reshape(-1).tolist() == want


NAMED = {  # what each recorded rejection's line must name
    "bad_strides_int": "strides=2", "bad_strides_length": "strides=(2, 2)", "bad_dilation_length": "rhs_dilation=",
    "bad_strides_zero": "strides=0", "bad_dilation_zero": "rhs_dilation=0", "bad_channels": "the lhs has 3 channels",
    "bad_tk_orientation": "transpose_kernel=True", "bad_lower_same_s2": "padding='same' with strides",
    "bad_unknown_string_s1": "padding='FULL'", "bad_unknown_string_s2": "padding='FULL'",
    "bad_pairs_count": "padding=((1, 1),)", "bad_padding_not_pairs": "padding=(1, 1)", "bad_padding_int": "padding=1",
    "bad_negative_too_large": "padding (-6, 0)", "bad_consistent_too_large": "padding (5, 5)",
    "bad_dims_two": "dimension_numbers=", "bad_dims_letters": "dimension_numbers=", "bad_rank": "lhs has 2 dimensions",
    "bad_mixed_dtypes": "mixed dtypes",
}


@pytest.mark.parametrize("case", [c for c in RECORD["cases"] if c["expect"] == "reject"], ids=lambda c: c["name"])
def test_every_recorded_rejection_is_one_line_naming_the_keyword(case):
    x = np.zeros(case["input_shape"], case["dtype"])
    w = np.zeros(case["weight_shape"], case.get("weight_dtype", case["dtype"]))
    with pytest.raises(ConfigError) as err:
        deconv_cli.deconvolve(x, w, style="jax", **_options(case))
    line = str(err.value)
    assert err.value.exit_code == 2 and "\n" not in line
    assert NAMED[case["name"]] in line


@pytest.mark.parametrize("name, message", [("policy_out_layout", "out spec 'NCHW' differs from the lhs spec 'NHWC'"),
                                           ("policy_batch_not_first", "deconv takes the batch first")])
def test_layouts_deconv_does_not_write_are_refused_with_the_transpose(name, message):
    """JAX computes these (recorded); transposing as the hint says gives its numbers."""
    case, arrays = next(c for c in RECORD["policy"] if c["name"] == name), _arrays(name)
    with pytest.raises(ConfigError, match=message):
        deconv_cli.deconvolve(arrays["x"], arrays["w"], style="jax", **_options(case))
    if name == "policy_out_layout":
        y = deconv_cli.deconvolve(arrays["x"], arrays["w"], style="jax", strides=(2, 2), padding="SAME")
        np.testing.assert_allclose(np.moveaxis(y, -1, 1), arrays["y"], rtol=1e-5, atol=1e-5)
    else:
        y = deconv_cli.deconvolve(arrays["x"].transpose(1, 0, 2, 3), arrays["w"], style="jax", strides=(2, 2),
                                  padding="SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        np.testing.assert_allclose(y.transpose(1, 0, 2, 3), arrays["y"], rtol=1e-5, atol=1e-5)


def test_the_shape_xla_aborts_on_is_computed():
    """XLA's CPU compiler aborts the process here (recorded); deconv computes lax's arithmetic."""
    case = next(c for c in RECORD["crashes"] if c["name"] == "j3_pad0_middle_one")
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(case["input_shape"]), rng.standard_normal(case["weight_shape"])
    config = parse(x.shape, w.shape, **_options(case)).config
    y = deconv_cli.deconvolve(x, w, style="jax", **_options(case))
    assert y.shape == (1, 4, 1, 4, 2)  # (L-1)*s + 1 + 0 + 0 - (k-1): the middle length is 1
    canonical_w = np.ascontiguousarray(w.transpose(3, 4, 0, 1, 2)[:, :, ::-1, ::-1, ::-1])
    want = reference_deconv(np.moveaxis(x, -1, 1), canonical_w, None, stride=config.stride, dilation=config.dilation,
                            crops=config.crops, groups=1)
    np.testing.assert_allclose(y, np.moveaxis(want, 1, -1), atol=1e-12)


def test_express_from_torch_takes_the_weight_as_it_lies():
    config = deconv_cli.derive((1, 4, 5, 5), (4, 2, 3, 3), stride=2, padding=1, output_padding=1).config
    e = jax.express(config, (1, 4, 5, 5))
    assert e.expressible and e.weight_shape == (4, 2, 3, 3) and e.input_shape == (1, 4, 5, 5)
    assert e.options == {"strides": (2, 2), "dimension_numbers": NCHW, "transpose_kernel": True,
                         "padding": ((1, 2), (1, 2))}
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 4, 5, 5)), rng.standard_normal((4, 2, 3, 3))
    np.testing.assert_allclose(deconv_cli.deconvolve(x, w, style="jax", **e.options),
                               deconv_cli.deconvolve(x, w, stride=2, padding=1, output_padding=1), atol=1e-12)
    grouped = deconv_cli.derive((1, 4, 5, 5), (4, 1, 3, 3), groups=2).config
    assert not jax.express(grouped, (1, 4, 5, 5)).expressible
    unbatched = deconv_cli.derive((4, 5), (4, 2, 3), stride=2).config
    assert not jax.express(unbatched, (1, 4, 5)).expressible


@st.composite
def cases(draw):
    rank = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    spatial = tuple(draw(st.integers(1, 5)) for _ in range(rank))
    padding = draw(st.one_of(st.sampled_from(["SAME", "VALID"]),
                             st.tuples(*[st.tuples(st.integers(-1, 3), st.integers(-1, 3)) for _ in range(rank)])))
    c_in, c_out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    transpose, last = draw(st.booleans()), draw(st.booleans())
    letters = jax.SPATIAL[rank]
    lhs = "N" + letters + "C" if last else "NC" + letters
    shape = (2, *spatial, c_in) if last else (2, c_in, *spatial)
    weight = (*kernel, *((c_in, c_out) if transpose else (c_out, c_in)))  # the rhs spec 'HW..OI'
    options = dict(strides=stride, rhs_dilation=dilation, padding=padding, transpose_kernel=transpose,
                   dimension_numbers=(lhs, letters + "OI", lhs), use_consistent_padding=draw(st.booleans()))
    return options, shape, weight, (2, c_in, *spatial)


@settings(max_examples=300, deadline=None)
@given(cases())
def test_express_round_trip(case):
    options, shape, weight_shape, canonical = case
    try:
        parsed = parse(shape, weight_shape, **options)
    except ConfigError:
        return  # a negative padding past the dilated input: JAX's rejection
    e = jax.express(parsed.config, canonical)
    if not e.expressible:  # an empty axis that no spelling reaches without JAX's rejection
        assert any(n == 0 for n in deconv_cli.derive(shape, weight_shape, style="jax", **options).output_spatial)
        return
    assert tuple(e.input_shape) == tuple(shape)
    back = parse(e.input_shape, e.weight_shape, **e.options).config
    assert (back.crops, back.stride, back.dilation, back.channels_last) == (
        parsed.config.crops, parsed.config.stride, parsed.config.dilation, parsed.config.channels_last)


# ------------------------------------------------------------------------------------------------ the CLI

def _files(tmp_path, name):
    for k, v in _arrays(name).items():
        np.save(tmp_path / f"{k}.npy", v)


def test_cli_run_batch_and_rejection(tmp_path, monkeypatch):
    _files(tmp_path, "j2_rhs_order_wh_pairs")
    monkeypatch.chdir(tmp_path)
    sets = ["--set", "strides=(1,2)", "--set", "padding=((2,0),(0,1))", "--set", "dimension_numbers=('NCHW','WHIO','NCHW')"]
    result = CliRunner().invoke(cli, ["run", "x.npy", "w.npy", "--style", "jax", *sets, "-o", "out.npy",
                                      "--expect", "y.npy"])
    assert result.exit_code == 0, result.output
    (tmp_path / "jobs.jsonl").write_text(
        '{"input": "x.npy", "weight": "w.npy", "style": "jax", "output": "batch.npy", "set": {"strides": [1, 2], '
        '"padding": [[2, 0], [0, 1]], "dimension_numbers": ["NCHW", "WHIO", "NCHW"]}}\n')
    result = CliRunner().invoke(cli, ["batch", "jobs.jsonl", "-j", "1"])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load("batch.npy"), np.load("y.npy"), rtol=1e-4, atol=1e-4)
    result = CliRunner().invoke(cli, ["run", "x.npy", "w.npy", "--style", "jax", "--set", "strides=2",
                                      "--set", "padding=SAME", *sets[-2:], "-o", "bad.npy"])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("Error: strides=2 must be a sequence") and not (tmp_path / "bad.npy").exists()


def test_cli_shape_explain_detect_and_styles(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((1, 2, 5)).astype(np.float32), rng.standard_normal((2, 3, 3)).astype(np.float32)
    for name, array in (("x", x), ("w", w), ("y", deconv_cli.deconvolve(x, w, stride=2, padding=1))):
        np.save(tmp_path / f"{name}.npy", array)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["explain", "x.npy", "w.npy", "--set", "stride=2", "--set", "padding=1",
                                      "--to", "jax", "--json"])
    assert result.exit_code == 0, result.output
    explained = json.loads(result.stdout)
    assert explained["expressible"] and "padding=((1,1),)" in explained["set"]
    code = CliRunner().invoke(cli, ["explain", "x.npy", "w.npy", "--set", "stride=2", "--set", "padding=1",
                                    "--to", "jax", "--code"]).stdout
    compile(code, "jax.py", "exec")
    assert "y = lax.conv_transpose(X, W, strides=(2,), dimension_numbers=('NCH', 'OIH', 'NCH')" in code
    back = CliRunner().invoke(cli, ["explain", "x.npy", "w.npy", "--style", "jax", *[w for s in explained["set"]
                                    for w in ("--set", s)], "--to", "torch", "--json"])
    assert json.loads(back.stdout)["set"] == ["stride=2", "padding=1"]
    found = CliRunner().invoke(cli, ["detect", "x.npy", "w.npy", "y.npy", "--style", "jax", "--json"])
    assert found.exit_code == 0, found.output
    assert "jax" in json.dumps(json.loads(found.stdout)["matches"][0])
    styles = CliRunner().invoke(cli, ["styles", "jax"])
    assert styles.exit_code == 0 and "dimension_numbers" in styles.stdout and "JAX 0.10" in styles.stdout
    flipped = CliRunner().invoke(cli, ["explain", "x.npy", "w.npy", "--style", "jax", "--set", "strides=(2,)",
                                       "--set", "padding=VALID", "--set", "dimension_numbers=('NCH','IOH','NCH')",
                                       "--to", "torch", "--code"])
    assert "W = np.ascontiguousarray(W[:, :, ::-1])  # the kernel reversed" in flipped.stdout
