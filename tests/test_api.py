"""The Python API against the command line (issue 22): deconv_cli.derive(...).as_dict() is the record
`deconv shape --json` prints, dtype and sizes included, and the package ships its types."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import deconv_cli
from deconv_cli.cli import cli


def shape_json(*argv: str) -> dict:
    result = CliRunner().invoke(cli, ["shape", *argv, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_derive_carries_the_shape_record_with_dtype_and_nbytes():
    record = deconv_cli.derive((1, 4, 5, 5), (4, 2, 3, 3), style="torch", stride=2, padding=1).as_dict()
    assert record == shape_json("--input-shape", "1,4,5,5", "--weight-shape", "4,2,3,3", "--set", "stride=2",
                                "--set", "padding=1")
    assert record["dtype"] == "float32"  # no tensors, no cast: shape's default
    assert record["nbytes"] == {"input": 400, "weight": 288, "bias": None, "output": 4 * 2 * 9 * 9}


def test_derive_takes_the_tensors_dtypes_as_shape_reads_them_from_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("x.npy", np.zeros((1, 4, 5, 5), np.float16))
    np.save("w.npy", np.zeros((4, 2, 3, 3), np.float16))
    np.save("b.npy", np.zeros(2, np.float16))
    record = deconv_cli.derive((1, 4, 5, 5), (4, 2, 3, 3), bias_shape=(2,), style="onnx", strides=(2, 2),
                               auto_pad="SAME_UPPER", dtypes={"input": "float16", "weight": "float16", "bias": "float16"})
    assert record.as_dict() == shape_json("x.npy", "w.npy", "--bias", "b.npy", "--style", "onnx",
                                          "--set", "strides=(2,2)", "--set", "auto_pad=SAME_UPPER")
    assert record.dtype == "float16" and dict(record.nbytes)["bias"] == 4


def test_derive_cast_as_shape_cast():
    record = deconv_cli.derive((2, 8, 4, 4), (8, 4, 2, 2), stride=2, dtypes={"input": "float16", "weight": "float16"},
                               cast="float64")
    assert record.dtype == "float64" and dict(record.nbytes)["input"] == 2 * 8 * 16 * 8
    assert any("--cast float64" in note for note in record.notes)


def test_derive_refuses_mixed_dtypes_as_shape_does():
    with pytest.raises(deconv_cli.ConfigError, match="mixed dtypes"):
        deconv_cli.derive((1, 4, 5, 5), (4, 2, 3, 3), dtypes={"input": "float32", "weight": "float64"})


def test_derive_warns_as_shape_when_the_job_exceeds_the_memory_budget(monkeypatch):
    monkeypatch.setenv("DECONV_MEMORY_BUDGET", "1K")
    record = deconv_cli.derive((1, 4, 5, 5), (4, 2, 3, 3), stride=2)
    assert record.as_dict() == shape_json("--input-shape", "1,4,5,5", "--weight-shape", "4,2,3,3", "--set", "stride=2")
    assert any("more than the memory budget" in w for w in record.warnings)


def test_the_package_ships_py_typed_in_its_package_data():
    folder = os.path.dirname(deconv_cli.__file__)
    assert os.path.isfile(os.path.join(folder, "py.typed"))
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    with open(os.path.join(folder, "..", "pyproject.toml"), "rb") as f:
        data = tomllib.load(f)["tool"]["setuptools"]["package-data"]
    assert "py.typed" in data["deconv_cli"]


def test_mypy_sees_derive_typed(tmp_path):
    """A user's checker: a wrong argument type to derive is an error, the record's fields are typed."""
    pytest.importorskip("mypy")
    script = tmp_path / "user.py"
    script.write_text(
        "import deconv_cli\n"
        "record = deconv_cli.derive((1, 4, 5, 5), (4, 2, 3, 3), style='torch', stride=2)\n"
        "reveal_type(record.output_shape)\n"
        "deconv_cli.derive((1, 4, 5, 5), (4, 2, 3, 3), quirks='yes')\n"
    )
    root = os.path.dirname(os.path.dirname(deconv_cli.__file__))  # as an installed package: py.typed or nothing
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent", str(script)],
                          capture_output=True, text=True, cwd=tmp_path, check=False, env={**os.environ, "PYTHONPATH": root})
    assert re.search(r'Revealed type is "(builtins\.)?tuple\[(builtins\.)?int, \.\.\.\]"', done.stdout), done.stdout
    assert 'Argument "quirks" to "derive" has incompatible type "str"; expected "bool"' in done.stdout, done.stdout
    assert "Found 1 error" in done.stdout, done.stdout


def test_mypy_is_clean_on_the_public_api_and_core():
    """What `make lint` runs ([tool.mypy] in pyproject.toml: deconv_cli/__init__.py and core/)."""
    pytest.importorskip("mypy")
    root = os.path.dirname(os.path.dirname(deconv_cli.__file__))
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], capture_output=True, text=True, cwd=root,
                          check=False)
    assert done.returncode == 0 and done.stdout.startswith("Success: no issues found"), done.stdout
