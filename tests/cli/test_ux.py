"""A newcomer's first hour: named axes, answers ready to paste, sizes, --cast, clear onnx warnings, the API
and the docs agreeing, and `explain --code` snippets that compute what `deconv run` computes."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import deconv_cli
from deconv_cli import derive
from deconv_cli.cli import cli, parse_set
from deconv_cli.conventions import STYLES
from deconv_cli.conventions.plan import reachable

ROOT = Path(__file__).parent.parent.parent
SAMPLES = ROOT / "samples"


def invoke(*argv, env=None):
    return CliRunner().invoke(cli, list(argv), env=env)


# ---------------------------------------------------------------- 4. axes by name


@pytest.mark.parametrize("input_shape, weight_shape, options, names, tensor_axes", [
    ((1, 4, 9), (4, 2, 3), {}, ["L"], [2]),
    ((4, 9, 9), (4, 2, 3, 3), {}, ["H", "W"], [1, 2]),  # unbatched torch input
    ((1, 4, 5, 6, 7), (4, 2, 3, 3, 3), {}, ["D", "H", "W"], [2, 3, 4]),
])
def test_json_dims_name_the_axes(input_shape, weight_shape, options, names, tensor_axes):
    dims = derive(input_shape, weight_shape, **options).as_dict()["dims"]
    assert [d["axis"] for d in dims] == list(range(len(names)))
    assert [d["name"] for d in dims] == names and [d["tensor_axis"] for d in dims] == tensor_axes


def test_channels_last_axes_are_named_too():
    record = derive((1, 5, 5, 4), (4, 3, 3, 2), style="dragon", data_format="NHWC", kernel_shape=3)
    assert [(d.name, d.tensor_axis) for d in record.dims] == [("H", 1), ("W", 2)]


# ---------------------------------------------------------------- 5. answers ready to paste


def test_target_shape_prints_the_line_to_paste_and_it_gives_that_shape(tmp_path):
    result = invoke("shape", "--input-shape", "1,8,16,16", "--weight-shape", "8,4,4,4", "--set", "stride=2",
                    "--target-shape", "35,34")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-2:] == ["options for output (35, 34), to paste:",
                                               "  --set stride=2 --set 'output_padding=(1,0)'"]
    pasted = result.stdout.splitlines()[-1]
    again = subprocess.run(
        f"{shlex.quote(str(Path(sys.executable).parent / 'deconv'))} shape --input-shape 1,8,16,16 "
        f"--weight-shape 8,4,4,4 {pasted} --json", shell=True, executable="/bin/bash", capture_output=True, text=True,
        cwd=tmp_path)
    assert again.returncode == 0 and json.loads(again.stdout)["output_shape"] == [1, 4, 35, 34]
    data = json.loads(invoke("shape", "--input-shape", "1,8,16,16", "--weight-shape", "8,4,4,4", "--set", "stride=2",
                             "--target-shape", "35,34", "--json").stdout)
    assert data["set"] == ["stride=2", "output_padding=(1,0)"]


def test_explain_prints_the_options_to_paste():
    result = invoke("explain", "--style", "onnx", "--input-shape", "1,4,5,5", "--weight-shape", "4,2,3,3",
                    "--set", "strides=[2,2]", "--set", "auto_pad=SAME_UPPER", "--to", "dragon")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    at = lines.index("dragon options to paste:")
    words = shlex.split(lines[at + 1])
    options = parse_set(tuple(words[1::2]))
    assert words[::2] == ["--set"] * len(options)
    assert derive((1, 4, 5, 5), (4, 2, 3, 3), style="dragon", **options).output_shape == (1, 2, 10, 10)


# ---------------------------------------------------------------- 6. sizes


def test_shape_json_has_the_bytes_and_warns_over_the_budget():
    env = {"DECONV_MEMORY_BUDGET": "1K"}
    result = invoke("shape", str(SAMPLES / "torch_x.npy"), str(SAMPLES / "torch_w.npy"), "--bias",
                    str(SAMPLES / "torch_b.npy"), "--set", "stride=2", "--json", env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dtype"] == "float32"
    assert data["nbytes"] == {"input": 2 * 8 * 6 * 6 * 4, "weight": 8 * 4 * 4 * 4 * 4, "bias": 16,
                              "output": 2 * 4 * 14 * 14 * 4}
    warning = ("input + output are 8.4 KiB, more than the memory budget 1.0 KiB (DECONV_MEMORY_BUDGET): deconv run "
               "streams it tile by tile into .npy, .h5 or .zarr")
    assert data["warnings"] == [warning]
    assert result.stderr == f"Warning: {warning}\n"


def test_shape_text_prints_sizes_and_warns_about_disk_and_memory():
    result = invoke("shape", "--input-shape", "2,64,4096,4096,4096", "--weight-shape", "64,64,3,3,3",
                    "--set", "stride=2")
    assert result.exit_code == 0, result.output
    assert ("  bytes (float32, assumed: pass --cast to change): input 32.0 TiB (35,184,372,088,832), weight 432.0 KiB "
            "(442,368), output 256.1 TiB (281,578,068,509,184)") in result.stdout.splitlines()
    warnings = result.stderr.splitlines()
    assert warnings[0] == ("Warning: input + output are 288.1 TiB, more than the memory budget 2.0 GiB "
                           "(DECONV_MEMORY_BUDGET): deconv run streams it tile by tile into .npy, .h5 or .zarr")
    assert warnings[1].startswith("Warning: the output is 256.1 TiB, more than the ") and " free on the disk of " in warnings[1]


def test_run_json_has_the_bytes_and_the_budget_warning(tmp_path):
    out = tmp_path / "y.npy"
    result = invoke("run", str(SAMPLES / "torch_x.npy"), str(SAMPLES / "torch_w.npy"), "--set", "stride=2",
                    "-o", str(out), "--json", "-q", env={"DECONV_MEMORY_BUDGET": "6K"})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["nbytes"] == {"input": 2304, "weight": 2048, "bias": None, "output": 6272}
    assert data["warnings"] == ["input + output are 8.4 KiB, more than the memory budget 6.0 KiB (DECONV_MEMORY_BUDGET): "
                                "computing it tile by tile"]
    assert np.load(out).shape == (2, 4, 14, 14)


def test_run_words_the_budget_note_for_itself_and_quiet_silences_it(tmp_path):
    args = ["run", str(SAMPLES / "torch_x.npy"), str(SAMPLES / "torch_w.npy"), "--set", "stride=2"]
    loud = invoke(*args, "-o", str(tmp_path / "a.npy"), env={"DECONV_MEMORY_BUDGET": "6K"})
    assert loud.exit_code == 0, loud.output
    assert loud.stderr.splitlines()[0] == ("Warning: input + output are 8.4 KiB, more than the memory budget 6.0 KiB "
                                           "(DECONV_MEMORY_BUDGET): computing it tile by tile")
    quiet = invoke(*args, "-o", str(tmp_path / "b.npy"), "-q", env={"DECONV_MEMORY_BUDGET": "6K"})
    assert quiet.exit_code == 0 and quiet.stderr == ""
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_run_expect_quiet_prints_no_report_and_the_exit_code_still_tells(tmp_path):
    args = ["run", str(SAMPLES / "torch_x.npy"), str(SAMPLES / "torch_w.npy"), "--set", "stride=2"]
    assert invoke(*args, "-o", str(tmp_path / "y.npy"), "-q").exit_code == 0
    same = invoke(*args, "--expect", str(tmp_path / "y.npy"), "-q")
    assert same.exit_code == 0 and same.stdout == "" and same.stderr == ""
    np.save(tmp_path / "wrong.npy", np.load(tmp_path / "y.npy") + 1)
    wrong = invoke(*args, "--expect", str(tmp_path / "wrong.npy"), "-q")
    assert wrong.exit_code == 1 and wrong.stdout == "" and wrong.stderr == ""
    loud = invoke(*args, "--expect", str(tmp_path / "wrong.npy"))
    assert loud.exit_code == 1 and "MISMATCH" in loud.stderr


def test_batch_help_says_what_json_prints_and_when_output_is_needed():
    text = " ".join(invoke("batch", "--help").stdout.split())
    assert "--json Print one JSON record per job to stdout, as each job finishes." in text
    assert "one JSON object" not in text
    assert "output (required unless expect is given)" in text


def test_compare_json_on_different_shapes_prints_json(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 3), np.float32))
    np.save(tmp_path / "b.npy", np.zeros((3, 2), np.float32))
    result = invoke("compare", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"match": False, "shape": [2, 3], "expected_shape": [3, 2],
                                         "error": "shapes differ: actual (2, 3) vs expected (3, 2)."}
    assert result.stderr == "Error: shapes differ: actual (2, 3) vs expected (3, 2).\n"
    text = invoke("compare", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"))
    assert text.exit_code == 1 and text.stdout == ""


# ---------------------------------------------------------------- 7. --cast


@pytest.fixture
def mixed(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float16)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = np.arange(3, dtype=np.int64)
    for name, array in (("x", x), ("w", w), ("b", b)):
        np.save(tmp_path / f"{name}.npy", array)
    return tmp_path, x, w, b


def test_mixed_dtypes_are_refused_with_the_cast_to_use(mixed):
    folder, *_ = mixed
    result = invoke("run", str(folder / "x.npy"), str(folder / "w.npy"), "-o", str(folder / "y.npy"))
    assert result.exit_code == 2 and not (folder / "y.npy").exists()
    assert result.stderr == ("Error: mixed dtypes (input float16, weight float32); PyTorch 2.13 requires one dtype. "
                             "Cast all tensors to the same dtype (deconv run --cast float32).\n")


@pytest.mark.parametrize("budget", [None, "3K"])  # in memory, and streamed batch slice by batch slice
def test_cast_casts_every_tensor_before_planning(mixed, budget):
    folder, x, w, b = mixed
    out = folder / "y.npy"
    result = invoke("run", str(folder / "x.npy"), str(folder / "w.npy"), "--bias", str(folder / "b.npy"),
                    "--set", "stride=2", "--cast", "float32", "-o", str(out), "--json",
                    env={"DECONV_MEMORY_BUDGET": budget} if budget else None)
    assert result.exit_code == 0, result.output
    assert ("  note: --cast float32: all tensors are cast to float32 before planning (input float16 -> float32, "
            "weight float32, bias int64 -> float32)") in result.stderr.splitlines()
    data = json.loads(result.stdout)
    assert data["dtype"] == "float32" and (budget is None or data["timings"]["chunks"] == 2)
    y = np.load(out)
    assert y.dtype == np.float32
    want = deconv_cli.deconvolve(x.astype(np.float32), w, b.astype(np.float32), stride=2)
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


def test_shape_cast_sets_the_dtype_of_the_sizes():
    data = json.loads(invoke("shape", "--input-shape", "1,4,5,5", "--weight-shape", "4,2,3,3", "--cast", "float16",
                             "--json").stdout)
    assert data["dtype"] == "float16" and data["nbytes"]["input"] == 200
    assert data["notes"] == ["--cast float16: all tensors are cast to float16 before planning"]


# ---------------------------------------------------------------- 8. the onnx style on float64


def test_onnx_float64_is_one_warning_line(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.standard_normal((1, 2, 4, 4)))
    np.save(tmp_path / "w.npy", rng.standard_normal((2, 3, 3, 3)))
    result = invoke("run", str(tmp_path / "x.npy"), str(tmp_path / "w.npy"), "--style", "onnx", "-o",
                    str(tmp_path / "y.npy"), "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr == ("Warning: onnxruntime has no float64 ConvTranspose kernel (the ONNX spec allows float64): "
                             "deconv computes it, a model with a float64 ConvTranspose will not load in onnxruntime\n")
    assert np.load(tmp_path / "y.npy").dtype == np.float64
    float32 = invoke("shape", "--style", "onnx", "--input-shape", "1,2,4,4", "--weight-shape", "2,3,3,3",
                     "--cast", "float32")
    assert float32.exit_code == 0 and float32.stderr == ""


# ---------------------------------------------------------------- 9. the API and the docs agree


def test_as_dict_is_what_shape_json_prints():
    argv = ["shape", "--style", "onnx", "--input-shape", "1,4,5,5", "--weight-shape", "4,2,3,3", "--set", "strides=[2,2]",
            "--set", "auto_pad=SAME_UPPER", "--json"]
    data = json.loads(invoke(*argv).stdout)
    api = derive((1, 4, 5, 5), (4, 2, 3, 3), style="onnx", strides=[2, 2], auto_pad="SAME_UPPER").as_dict()
    assert data == api  # dtype and nbytes included (issue 22)
    record = derive((1, 4, 5, 5), (4, 2, 3, 3), style="onnx", strides=[2, 2], auto_pad="SAME_UPPER")
    assert api["reachable"] == [{kw: {str(k): v for k, v in per.items()} for kw, per in dim.items()}
                                for dim in reachable(record)]
    assert api["reachable"][0]["output_shape"]["10"] == 10


def test_reachable_respects_the_records_bias_and_quirks():
    """A module check (bias=True) needs the bias shape the record was planned with."""
    record = derive((1, 4, 5, 5), (4, 2, 3, 3), bias_shape=(2,), stride=2, bias=True)
    assert record.as_dict()["reachable"][0]["output_padding"] == {"11": 0, "12": 1}


def test_license_is_an_spdx_string():
    text = (ROOT / "pyproject.toml").read_text()  # (tomllib is Python 3.11+; the project supports 3.10)
    assert re.search(r'^license = "MIT"$', text, re.M)
    # PEP 639 license strings need setuptools 77 to build without the deprecation banner
    assert int(re.search(r'^requires = \["setuptools>=(\d+)', text, re.M).group(1)) >= 77


# ---------------------------------------------------------------- 10. explain --code

ONNX_CASES = [
    # (explain/run arguments: tensors and the source style's options)
    [str(SAMPLES / "torch_x.npy"), str(SAMPLES / "torch_w.npy"), "--bias", str(SAMPLES / "torch_b.npy"),
     "--set", "stride=2", "--set", "padding=1", "--set", "output_padding=1"],
    [f"{SAMPLES}/dragon.h5:/nhwc/x", f"{SAMPLES}/dragon.h5:/nhwc/w", "--bias", f"{SAMPLES}/dragon.h5:/nhwc/b",
     "--style", "dragon", "--set", "data_format=NHWC", "--set", "kernel_shape=3", "--set", "strides=2",
     "--set", "padding=SAME", "--set", "output_shape=(10,10)"],
    # negative padding: positions that hold only the bias, which onnx's pads cannot add
    [f"{SAMPLES}/oneflow.npz:input", f"{SAMPLES}/oneflow.npz:weight", "--bias", f"{SAMPLES}/oneflow.npz:bias",
     "--style", "oneflow", "--set", "stride=(2,1,1)", "--set", "padding=(-1,2,1)"],
    [f"{SAMPLES}/mindspore.npz:dout2d", f"{SAMPLES}/mindspore.npz:weight2d", "--style", "mindspore",
     "--set", "out_channel=8", "--set", "kernel_size=3", "--set", "pad_mode=pad", "--set", "pad=1",
     "--set", "stride=2", "--set", "input_size=(1,8,12,12)"],
]


# grouped, 4 input channels to 6 output channels, with a bias
GROUPED = [f"{SAMPLES}/megengine.npz:inp", f"{SAMPLES}/megengine.npz:weight", "--bias", f"{SAMPLES}/megengine.npz:bias",
           "--style", "megengine", "--set", "stride=(2,2,2)", "--set", "padding=(1,1,1)", "--set", "groups=2"]


def _snippet(args, target) -> str:
    result = invoke("explain", *args, "--to", target, "--code")
    assert result.exit_code == 0, result.output
    return result.stdout


# the framework each target style's snippet imports (run where installed, compiled elsewhere)
FRAMEWORK_MODULES = {"torch": ["torch"], "onnx": ["onnx", "onnxruntime"], "oneflow": ["oneflow"],
                     "megengine": ["megengine"], "mindspore": ["mindspore"], "dragon": ["dragon"], "keras": ["keras"],
                     "tensorflow": ["tensorflow"], "paddle": ["paddle"], "jax": ["jax"], "flax": ["flax", "jax"]}


def _tensor_case(folder: Path, name: str, x_shape, w_shape, b_shape, *sets) -> list[str]:
    """A torch-style layer saved to .npy files in folder: explain/run arguments."""
    rng = np.random.default_rng(len(name))
    args = []
    for role, shape in (("x", x_shape), ("w", w_shape), ("b", b_shape)):
        path = folder / f"{name}_{role}.npy"
        np.save(path, rng.standard_normal(shape).astype(np.float32))
        args += ["--bias", str(path)] if role == "b" else [str(path)]
    return args + [item for s in sets for item in ("--set", s)]


RUNNABLE_CASES = {
    **dict(zip(["torch", "dragon-nhwc", "oneflow-neg-pad", "mindspore-2d"], ONNX_CASES)),
    "megengine-grouped-4to6-bias": None,  # GROUPED, below
    "torch-grouped-4to6-bias": ("grouped", (1, 4, 5, 5), (4, 3, 3, 3), (6,), "groups=2", "stride=2", "padding=1"),
    "torch-depthwise-bias": ("depthwise", (2, 4, 6, 6), (4, 1, 3, 3), (4,), "groups=4", "stride=2", "dilation=2"),
    "torch-depthwise-1d-bias": ("depthwise1d", (1, 3, 9), (3, 2, 3), (6,), "groups=3", "stride=3", "padding=2"),
}


@pytest.mark.parametrize("target", sorted(STYLES))
@pytest.mark.parametrize("case", RUNNABLE_CASES)
def test_every_snippet_computes_what_deconv_run_writes(case, target, tmp_path, monkeypatch):
    """Run where the target framework is installed; elsewhere the snippet must at least compile."""
    import importlib.util

    spec = RUNNABLE_CASES[case]
    args = GROUPED if spec is None else _tensor_case(tmp_path, *spec) if isinstance(spec, tuple) else spec
    result = invoke("explain", *args, "--to", target, "--code")
    if result.exit_code == 2:  # the target has no spelling at all (MegEngine has no 1-D)
        assert result.stderr.startswith(f"Error: no runnable {target} code for this configuration")
        return
    assert result.exit_code == 0, result.output
    compile(result.stdout, f"{target}.py", "exec")
    if any(importlib.util.find_spec(module) is None for module in FRAMEWORK_MODULES[target]):
        return
    assert invoke("run", *args, "-o", str(tmp_path / "y.npy"), "-q").exit_code == 0
    monkeypatch.chdir(tmp_path)
    run = subprocess.run([sys.executable, "-c", result.stdout], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    namespace: dict = {}
    exec(compile(result.stdout, "snippet.py", "exec"), namespace)
    np.testing.assert_allclose(namespace["y"], np.load(tmp_path / "y.npy"), rtol=1e-5, atol=1e-5)
    if target == "onnx":
        assert "onnxruntime.InferenceSession(" in result.stdout and "ReferenceEvaluator" not in result.stdout
        assert re.fullmatch(r"y \(.*\) matches the direct NumPy sum: max abs error \S+\n", run.stdout)


def test_the_onnx_snippet_check_fails_loudly_on_wrong_numbers(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    code = _snippet(GROUPED, "onnx").replace("session.run(None,", "0.5 + session.run(None,")
    monkeypatch.chdir(ROOT)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "AssertionError: y differs from the direct sum by up to 5.00e-01" in run.stderr


def test_a_snippet_from_shapes_uses_random_tensors_of_those_shapes():
    pytest.importorskip("onnx")
    code = _snippet(["--style", "torch", "--input-shape", "4,5,5", "--weight-shape", "4,2,3,3", "--bias-shape", "2",
                     "--set", "stride=2", "--set", "padding=1"], "onnx")
    namespace: dict = {}
    exec(compile(code, "snippet.py", "exec"), namespace)
    x, w, b = namespace["x"], namespace["w"], namespace["b"]
    assert x.shape == (4, 5, 5) and w.shape == (4, 2, 3, 3) and b.shape == (2,)
    np.testing.assert_allclose(namespace["y"], deconv_cli.deconvolve(x, w, b, stride=2, padding=1), rtol=1e-5, atol=1e-5)



@pytest.mark.parametrize("target", sorted(STYLES))
@pytest.mark.parametrize("args", ONNX_CASES + [GROUPED,
    ["--style", "onnx", "--input-shape", "1,4,5,5", "--weight-shape", "4,2,3,3", "--set", "strides=[2,2]",
     "--set", "pads=[1,1,0,0]"],
    ["--style", "torch", "--input-shape", "1,4,9", "--weight-shape", "4,2,3", "--bias-shape", "2", "--set", "stride=2"],
], ids=lambda a: "-".join(a[a.index("--style") + 1:][:1]) if "--style" in a else "torch")
def test_every_snippet_compiles(args, target):
    result = invoke("explain", *args, "--to", target, "--code")
    if result.exit_code == 2:  # the target has no spelling at all (MegEngine has no 1-D)
        assert result.stderr.startswith(f"Error: no runnable {target} code for this configuration")
        return
    assert result.exit_code == 0, result.output
    compile(result.stdout, f"{target}.py", "exec")
    assert result.stdout.count("\ny = ") >= 1


KERAS_CASES = [
    ONNX_CASES[0],  # torch: channels-first data, Keras's 'same' cannot place PyTorch's crop: crop after
    ONNX_CASES[1],  # dragon NHWC
    ["--style", "torch", "--input-shape", "2,3,7", "--weight-shape", "3,2,3", "--bias-shape", "2",
     "--set", "stride=2", "--set", "padding=1"],
    ["--style", "keras", "--input-shape", "1,4,5,3", "--weight-shape", "2,3,4,3", "--bias-shape", "4",
     "--set", "strides=(2,3)", "--set", "padding=same", "--set", "output_padding=(1,2)"],
    ["--style", "keras", "--input-shape", "1,3,4,2,3", "--weight-shape", "2,2,2,3,3", "--set", "strides=2",
     "--set", "data_format=channels_first"],
    ["--style", "tensorflow", "--input-shape", "2,5,4,3", "--weight-shape", "3,2,2,3", "--set", "strides=(2,3)",
     "--set", "output_shape=[2,9,12,2]"],
    ["--style", "tensorflow", "--input-shape", "1,5,5,2", "--weight-shape", "3,3,4,2", "--set", "strides=2",
     "--set", "output_shape=[1,10,9,4]", "--set", "padding=[[0,0],[1,0],[1,1],[0,0]]"],
]
KERAS_IDS = ["torch", "dragon-nhwc", "torch-1d-random", "keras-2d", "keras-3d-cf", "tensorflow-2d", "tensorflow-pairs"]


@pytest.mark.parametrize("target, call", [("keras", "keras.layers.Conv"), ("tensorflow", "tf.nn.conv")])
@pytest.mark.parametrize("args", KERAS_CASES, ids=KERAS_IDS)
def test_the_keras_and_tensorflow_snippets_where_installed(target, call, args, tmp_path, monkeypatch):
    """The snippet runs Keras 3's Conv*DTranspose / tf.nn.conv*d_transpose and gets what `deconv run` writes
    (skipped where the framework is not installed)."""
    pytest.importorskip(target)
    code = _snippet(args, target)
    assert call in code
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "snippet.py", "exec"), namespace)
    if "--input-shape" in args:  # random tensors: compare with the library on the snippet's own arrays
        style = args[args.index("--style") + 1]
        options = parse_set(args[i + 1] for i, a in enumerate(args) if a == "--set")
        want = deconv_cli.deconvolve(namespace["x"], namespace["w"], namespace.get("b"), style=style, **options)
    else:
        assert invoke("run", *args, "-o", str(tmp_path / "y.npy"), "-q").exit_code == 0
        want = np.load(tmp_path / "y.npy")
    assert namespace["y"].shape == want.shape
    np.testing.assert_allclose(namespace["y"], want, rtol=1e-5, atol=1e-5)
