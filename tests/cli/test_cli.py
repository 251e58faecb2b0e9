"""The command line end to end: exit codes, the exact stderr line, stdout JSON, and the files left on disk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from reference import reference_deconv

from deconv_cli.cli import cli, parse_set
from deconv_cli.core.errors import ConfigError


@pytest.fixture
def tensors(tmp_path, rng):
    x = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    for name, array in dict(x=x, w=w, b=b).items():
        np.save(tmp_path / f"{name}.npy", array)
    np.savez(tmp_path / "xw.npz", x=x, w=w)
    np.save(tmp_path / "x64.npy", x.astype(np.float64))
    np.save(tmp_path / "xint.npy", x.astype(np.int32))
    os.chdir(tmp_path)
    return x, w, b


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def test_run_writes_the_output_and_derivation(tensors, tmp_path):
    x, w, b = tensors
    result = invoke("run", "x.npy", "w.npy", "--bias", "b.npy", "--set", "stride=2", "--set", "padding=1",
                    "--set", "output_padding=(1, 0)", "-o", "y.npy")
    assert result.exit_code == 0, result.output
    y = np.load(tmp_path / "y.npy")
    want = reference_deconv(x, w, b, stride=(2, 2), dilation=(1, 1), crops=((1, 0), (1, 1)), groups=1)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "torch: input (2, 4, 5, 6) weight (4, 3, 3, 3) -> output (2, 3, 10, 11)",
        "  H: full = (5-1)*2 + 1*(3-1) + 1 = 11; padding=1, output_padding=1 -> crop (1, 0); out = 11 - 1 - 0 = 10",
        "  W: full = (6-1)*2 + 1*(3-1) + 1 = 13; padding=1, output_padding=0 -> crop (1, 1); out = 13 - 1 - 1 = 11",
        "  bytes (float32): input 960 B, weight 432 B, bias 12 B, output 2.6 KiB (2,640)",
    ]


def test_run_json_summary(tensors, tmp_path):
    result = invoke("run", "xw.npz:x", "xw.npz:w", "--style", "onnx", "--set", "strides=[2,2]",
                    "--set", "auto_pad=SAME_UPPER", "-o", "out.h5:/y", "--json", "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    record = json.loads(result.stdout)
    assert record["output_shape"] == [2, 3, 10, 12]
    assert record["dtype"] == "float32" and record["device"] == "cpu" and record["engine"] == "numpy"
    assert set(record["timings"]) == {"load_s", "compute_s", "save_s"}
    assert record["config"]["crops"] == [[0, 1], [0, 1]]
    import h5py

    with h5py.File(tmp_path / "out.h5") as f:
        assert f["y"].shape == (2, 3, 10, 12)


def test_shape_json_from_shapes_reads_nothing(tmp_path):
    result = invoke("shape", "--input-shape", "1,16,10,50,100", "--weight-shape", "16,33,3,5,2",
                    "--set", "stride=(2,1,1)", "--set", "padding=(0,4,2)", "--json")
    assert result.exit_code == 0
    record = json.loads(result.stdout)
    assert record["output_shape"] == [1, 33, 21, 46, 97]
    assert record["style"] == "torch"
    assert record["options"] == {"stride": [2, 1, 1], "padding": [0, 4, 2]}
    assert [d["formulas"][0] for d in record["dims"]] == [
        "full = (10-1)*2 + 1*(3-1) + 1 = 21", "full = (50-1)*1 + 1*(5-1) + 1 = 54", "full = (100-1)*1 + 1*(2-1) + 1 = 101"]


def test_shape_from_file_headers(tensors):
    result = invoke("shape", "x.npy", "w.npy", "--bias", "b.npy", "--set", "stride=2")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "torch: input (2, 4, 5, 6) weight (4, 3, 3, 3) -> output (2, 3, 11, 13)"


def test_info(tensors):
    result = invoke("info", "xw.npz", "b.npy")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["xw.npz\tx\t(2, 4, 5, 6)\tfloat32", "xw.npz\tw\t(4, 3, 3, 3)\tfloat32",
                                          "b.npy\tb\t(3,)\tfloat32"]
    assert json.loads(invoke("info", "b.npy", "--json").stdout) == {"b.npy": [{"name": "b", "shape": [3], "dtype": "float32"}]}


def test_onnx_spec_warning_goes_to_stderr():
    result = invoke("shape", "--style", "onnx", "--input-shape", "1,1,2", "--weight-shape", "1,1,1",
                    "--set", "strides=[4]", "--set", "auto_pad=SAME_UPPER", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["output_shape"] == [1, 1, 8]
    assert result.stderr.startswith("Warning: axis L: auto_pad=SAME_UPPER: target n*s = 8 is longer than full + ")
    quirks = invoke("shape", "--style", "onnx", "--input-shape", "1,1,2", "--weight-shape", "1,1,1",
                    "--set", "strides=[4]", "--set", "auto_pad=SAME_UPPER", "--json", "--quirks")
    assert json.loads(quirks.stdout)["output_shape"] == [1, 1, 5] and quirks.stderr == ""


BAD_RUNS = [
    # (files to create, argv tail, exit code, the whole stderr line)
    ({}, ["x.npy", "w.npy", "--set", "groups=3"], 2,
     "Error: groups=3 must divide input channels 4 (PyTorch 2.13 rejects it). Pick a group count that divides the channels."),
    ({}, ["w.npy", "x.npy"], 2,
     "Error: weight of shape (2, 4, 5, 6) expects 2 input channels, but the input has 3 (PyTorch rejects it). "
     "PyTorch's weight is (C_in, C_out/groups, *kernel)."),
    ({}, ["x.npy", "b.npy"], 2,
     "Error: weight has 1 dimensions (3,); PyTorch needs (C_in, C_out/groups, *kernel) with 1 to 3 kernel dims."),
    ({}, ["x.npy", "w.npy", "--set", "strde=2"], 2, "Error: unknown option 'strde' for style torch. Did you mean 'stride'?"),
    ({}, ["x.npy", "w.npy", "--set", "stride=__import__('os').system('true')"], 2,
     "Error: --set stride=__import__('os').system('true'): the value is not a Python literal. Use a number, a tuple like "
     "(2,1,1), a list, or a word like same."),
    ({}, ["x64.npy", "w.npy"], 2,
     "Error: mixed dtypes (input float64, weight float32); PyTorch 2.13 requires one dtype. Cast all tensors to the same dtype (deconv run --cast float32)."),
    ({}, ["xint.npy", "w.npy"], 2, "Error: input has dtype int32; deconv computes in float16, float32 or float64. Cast the input to float32."),
    ({}, ["xw.npz", "w.npy"], 1, "Error: xw.npz holds 2 arrays (x, w). Name one, e.g. xw.npz:x."),
    ({}, ["xw.npz:q", "w.npy"], 1, "Error: xw.npz has no array 'q'. It holds: x, w."),
    ({"bad.npy": b"not a numpy file"}, ["bad.npy", "w.npy"], 1,
     "Error: bad.npy is not a valid .npy file (bad header). Re-save it with numpy.save."),
    ({"bad.h5": b"not hdf5"}, ["bad.h5", "w.npy"], 1, None),
    ({}, ["missing.npy", "w.npy"], 1, "Error: missing.npy: no such file. Check the path."),
    ({}, ["x.npy", "w.txt"], 2,  # a usage error (issue 7, item 19)
     "Error: 'w.txt' has no known tensor extension. Use .npy, .npz[:name], .h5[:/dataset], .zarr[:/array] or .safetensors[:name] (or - for .npy on stdin/stdout); a model's weights read from .onnx[:initializer] and .keras[:layers/path]."),
    ({}, ["x.npy", "w.npy", "--bias", "x.npy"], 2,
     "Error: bias has shape (2, 4, 5, 6); PyTorch (a 1-D bias) needs (3,) for 3 output channels."),
]


@pytest.mark.parametrize("files, argv, code, line", BAD_RUNS)
def test_bad_input_is_one_line_and_leaves_no_file(tensors, tmp_path, files, argv, code, line):
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    before = sorted(os.listdir(tmp_path))
    result = invoke("run", *argv, "-o", "y.npy")
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    if line is not None:
        assert lines[0] == line
    assert sorted(os.listdir(tmp_path)) == before


def test_existing_output_is_never_clobbered(tensors, tmp_path):
    (tmp_path / "y.npy").write_bytes(b"precious")
    result = invoke("run", "x.npy", "w.npy", "-o", "y.npy")
    assert result.exit_code == 1
    assert result.stderr == "Error: output y.npy already exists. Pass --force to replace it.\n"
    assert (tmp_path / "y.npy").read_bytes() == b"precious"
    failed = invoke("run", "x.npy", "w.npy", "--set", "groups=3", "-o", "y.npy", "--force")
    assert failed.exit_code == 2 and (tmp_path / "y.npy").read_bytes() == b"precious"
    assert invoke("run", "x.npy", "w.npy", "-o", "y.npy", "--force").exit_code == 0
    assert np.load(tmp_path / "y.npy").shape == (2, 3, 7, 8)


def test_unwritable_output_folder(tensors, tmp_path):
    result = invoke("run", "x.npy", "w.npy", "-o", "nowhere/y.npy")
    assert result.exit_code == 1
    assert result.stderr == f"Error: output folder {tmp_path / 'nowhere'} does not exist. Create it first.\n"


def test_usage_errors_exit_2(tensors):
    assert invoke("run", "x.npy", "w.npy").exit_code == 2  # no --output
    assert invoke("run", "x.npy", "w.npy", "-o", "y.npy", "--style", "tf").exit_code == 2
    shape = invoke("shape", "x.npy")
    assert shape.exit_code == 2 and shape.stderr == "Error: give either a WEIGHT file or --weight-shape. See deconv shape --help.\n"


@pytest.mark.parametrize(
    "items, options",
    [
        (("stride=2", "pad_mode=same", "pads=[1,1,0,0]", "output_shape=(3, 3)", "bias=True", "auto_pad='SAME_UPPER'"),
         {"stride": 2, "pad_mode": "same", "pads": [1, 1, 0, 0], "output_shape": (3, 3), "bias": True, "auto_pad": "SAME_UPPER"}),
        (("x = 1",), {"x": 1}),
    ],
)
def test_parse_set(items, options):
    assert parse_set(items) == options


@pytest.mark.parametrize(
    "item, message",
    [
        ("stride", "--set 'stride' is not KEY=VALUE. Write e.g. --set stride=2."),
        ("2=stride", "--set '2=stride' is not KEY=VALUE. Write e.g. --set stride=2."),
        ("a=1+1", "--set a=1+1: the value is not a Python literal. Use a number, a tuple like (2,1,1), a list, or a word like same."),
    ],
)
def test_parse_set_rejects(item, message):
    with pytest.raises(ConfigError) as err:
        parse_set((item,))
    assert str(err.value) == message
    with pytest.raises(ConfigError, match="given twice"):
        parse_set(("a=1", "a=2"))


def test_every_command_has_help_with_an_example():
    for name in cli.commands:
        result = invoke(name, "-h")
        assert result.exit_code == 0, name
        assert "Example" in result.stdout, name


# ------------------------------------------------------------ the installed executable


def _exe() -> str:
    found = shutil.which("deconv", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("the deconv executable is not installed next to this Python")
    return found


def test_installed_executable_stdin_stdout(tensors, tmp_path):
    x, w, _ = tensors
    with open(tmp_path / "x.npy", "rb") as f:
        done = subprocess.run([_exe(), "run", "-", "w.npy", "-o", "-", "-q"], stdin=f, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    import io

    y = np.load(io.BytesIO(done.stdout))
    want = reference_deconv(x, w, None, stride=(1, 1), dilation=(1, 1), crops=((0, 0), (0, 0)), groups=1)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_installed_executable_error_has_no_traceback(tensors, tmp_path):
    done = subprocess.run([_exe(), "run", "x.npy", "w.npy", "--set", "stride=0", "-o", "y.npy"], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr == "Error: stride=0: non-positive stride is not supported (PyTorch rejects it).\n"
    assert not (tmp_path / "y.npy").exists()
    module = subprocess.run([sys.executable, "-m", "deconv_cli", "shape", "--input-shape", "1,4,5,5", "--weight-shape", "4,2,3,3",
                             "--json"], capture_output=True, text=True, check=False)
    assert module.returncode == 0 and json.loads(module.stdout)["output_shape"] == [1, 2, 7, 7]


def test_api_takes_torch_bias_keyword_and_bias_tensor(rng):
    import deconv_cli

    x = rng.standard_normal((1, 2, 3)).astype(np.float32)
    w = rng.standard_normal((2, 2, 2)).astype(np.float32)
    b = np.ones(2, dtype=np.float32)
    with_keyword = deconv_cli.deconvolve(x, w, b, bias=True, stride=2)
    np.testing.assert_array_equal(deconv_cli.deconvolve(x, w, bias=b, stride=2), with_keyword)
    with pytest.raises(ConfigError, match="bias=True but no bias tensor was given"):
        deconv_cli.deconvolve(x, w, bias=True)


@pytest.mark.parametrize("source, target", [("x.npy", "y.npy"), ("x.h5:/data/x", "y.h5:/y")])
def test_batches_over_the_memory_budget_stream_through_disk(tensors, tmp_path, monkeypatch, source, target):
    """With a tiny budget the job reads and writes one batch slice at a time; the result is the same."""
    import h5py

    from deconv_cli.execution import tiles

    monkeypatch.setattr(tiles, "TILE_BYTES", 2200)  # tiles of one sample (2196 bytes), the grid of every run
    x, w, b = tensors
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("data/x", data=x)
    assert invoke("run", "x.npy", "w.npy", "--bias", "b.npy", "--set", "stride=2", "-o", "whole.npy").exit_code == 0
    monkeypatch.setenv("DECONV_MEMORY_BUDGET", "3K")  # one sample's input + output is 2.14 KiB
    result = invoke("run", source, "w.npy", "--bias", "b.npy", "--set", "stride=2", "-o", target, "--json", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["timings"]["chunks"] == 2  # one sample per slice
    from deconv_cli import tensor_io

    streamed = tensor_io.load(tensor_io.parse_ref(target))
    np.testing.assert_array_equal(streamed, np.load(tmp_path / "whole.npy"))
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".deconv-")]


def test_a_failing_stream_leaves_no_file(tensors, tmp_path, monkeypatch):
    from deconv_cli.engines import numpy_engine
    from deconv_cli.execution import tiles

    def broken(*args, **kwargs):
        raise MemoryError

    monkeypatch.setenv("DECONV_MEMORY_BUDGET", "2K")
    monkeypatch.setattr(tiles, "TILE_BYTES", 2048)
    monkeypatch.setattr(numpy_engine, "deconvolve", broken)
    before = sorted(os.listdir(tmp_path))
    result = invoke("run", "x.npy", "w.npy", "-o", "y.npy")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: out of memory")
    assert sorted(os.listdir(tmp_path)) == before


def test_dtype_refusal_says_what_the_framework_would_do(tensors, tmp_path):
    np.save(tmp_path / "x16.npy", np.zeros((1, 4, 5, 6), dtype=np.float16))
    np.save(tmp_path / "w16.npy", np.zeros((4, 3, 3, 3), dtype=np.float16))
    result = invoke("run", "x16.npy", "w16.npy", "--style", "dragon", "-o", "y.npy")
    assert result.exit_code == 2
    assert result.stderr == ("Error: Dragon 0.3.0 does not compute in float16 (it takes float32, float64): Dragon aborts "
                             "the process (FP16 is unsupported for CPUContext). Cast the tensors to float32.\n")
    assert not (tmp_path / "y.npy").exists()


@pytest.mark.parametrize(
    "variable, value, line",
    [
        ("DECONV_THREADS", "abc", "Error: DECONV_THREADS='abc' is not a positive whole number. Write e.g. DECONV_THREADS=2."),
        ("DECONV_THREADS", "0", "Error: DECONV_THREADS='0' is not a positive whole number. Write e.g. DECONV_THREADS=2."),
        ("DECONV_MEMORY_BUDGET", "lots", "Error: DECONV_MEMORY_BUDGET='lots' is not a size. Write e.g. 512M or 4G."),
    ],
)
def test_bad_environment_settings_are_one_line(tensors, tmp_path, monkeypatch, variable, value, line):
    monkeypatch.setenv(variable, value)
    result = invoke("run", "x.npy", "w.npy", "--set", "stride=2", "-o", "y.npy")
    assert result.exit_code == 2
    assert result.stderr == line + "\n"
    assert not (tmp_path / "y.npy").exists()
