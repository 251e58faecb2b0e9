"""Start-up stays fast: `deconv --help` and `deconv shape` (from shapes) import no numpy, h5py, rich or cupy.

Checked in a fresh subprocess, as array-api-compat's test_no_dependencies does; timing is `make bench`'s job.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("numpy", "h5py", "rich", "cupy", "torch", "onnx", "onnxruntime", "numba", "threadpoolctl")

PROBE = """
import json, sys
from deconv_cli.cli import cli
try:
    cli.main(args={args!r}, prog_name="deconv", standalone_mode=False)
except SystemExit:
    pass
sys.stdout.flush()
sys.stderr.write(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["shape", "--input-shape", "1,16,10,32,32", "--weight-shape", "16,3,4,6,2", "--set", "stride=2", "--json"],
        ["shape", "--style", "onnx", "--input-shape", "1,1,3,3", "--weight-shape", "1,2,3,3", "--set", "auto_pad=SAME_UPPER"],
        ["shape", "--input-shape", "1,4,5,5", "--weight-shape", "4,2,3,3", "--set", "groups=3"],  # an error path too
    ],
)
def test_no_heavy_imports(args):
    done = subprocess.run([sys.executable, "-c", PROBE.format(args=args, heavy=HEAVY)], capture_output=True, text=True, check=False)
    imported = json.loads(done.stderr.strip().splitlines()[-1])
    assert imported == [], f"{args} imported {imported}"


def test_npy_headers_are_read_without_numpy(tmp_path):
    import numpy as np

    np.save(tmp_path / "x.npy", np.zeros((1, 4, 5, 5), dtype=np.float32))
    np.save(tmp_path / "w.npy", np.zeros((4, 2, 3, 3), dtype=np.float32))
    args = ["shape", str(tmp_path / "x.npy"), str(tmp_path / "w.npy"), "--json"]
    done = subprocess.run([sys.executable, "-c", PROBE.format(args=args, heavy=HEAVY)], capture_output=True, text=True, check=False)
    assert json.loads(done.stdout)["output_shape"] == [1, 2, 7, 7]
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


ENGINE_PROBE = """
import sys
import numpy as np
from deconv_cli.core.config import DeconvConfig
from deconv_cli.engines import numpy_engine
config = DeconvConfig(kernel=(4, 4), stride=(2, 2), dilation=(1, 1), crops=((1, 1), (1, 1)), groups=64,
                      in_channels=64, out_channels=64)
x = np.ones(({batch}, 64, 32, 32), dtype=np.float32)
numpy_engine.deconvolve(x, np.ones(config.weight_shape, dtype=np.float32), None, config, (64, 64))
print("numba" in sys.modules)
"""


@pytest.mark.parametrize(("batch", "imported"), [(1, False), (8, True)])
def test_numba_is_imported_only_for_depthwise_work_large_enough(batch, imported):
    """dw 64->64 32x32 k4s2: 1 M multiply-adds run on NumPy without loading numba; 8 M (the suite's) do."""
    pytest.importorskip("numba")
    done = subprocess.run([sys.executable, "-c", ENGINE_PROBE.format(batch=batch)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(imported)


@pytest.mark.parametrize(("batch", "spatial", "imported"), [(1, (8, 8), []), (16, (16, 16), ["onnxruntime"])])
def test_onnxruntime_is_imported_only_for_float32_work_large_enough(tmp_path, batch, spatial, imported):
    """A small `deconv run` (g4-like 32->32 in 2 groups, k4s2, at 8x8: 0.5 M multiply-adds) never loads
    onnxruntime; 16 samples at 16x16 (34 M, the rules' `ort`) do, and never the onnx package (the model is
    encoded in _ort)."""
    pytest.importorskip("onnxruntime")
    import numpy as np

    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.standard_normal((batch, 32, *spatial)).astype(np.float32))
    np.save(tmp_path / "w.npy", rng.standard_normal((32, 16, 4, 4)).astype(np.float32))
    args = ["run", str(tmp_path / "x.npy"), str(tmp_path / "w.npy"), "-o", str(tmp_path / "y.npy"),
            "--set", "stride=2", "--set", "padding=1", "--set", "groups=2"]
    compiled = ("onnxruntime", "onnx", "numba")
    done = subprocess.run([sys.executable, "-c", PROBE.format(args=args, heavy=compiled)], capture_output=True, text=True, check=False)
    assert json.loads(done.stderr.strip().splitlines()[-1]) == imported, done.stderr
    assert np.load(tmp_path / "y.npy").shape == (batch, 32, spatial[0] * 2, spatial[1] * 2)


# What a tiny `deconv run` -q into a .npy file needs none of: the temporary file's name comes from os.urandom and
# platform (not secrets, socket, hashlib: about 5 ms), JSON and shell quoting only where printed, no other format.
# A tensor file is not a model's layer (deconv_cli.models: 0.8 ms) and a one-item run needs no thread pool
# (concurrent.futures with logging: 2.7 ms).
TINY_RUN_NEEDS_NONE = ("secrets", "hmac", "hashlib", "socket", "json", "shlex", "rich", "h5py", "zarr", "zipfile",
                       "threadpoolctl", "numba", "onnxruntime", "cupy", "dask", "deconv_cli.models",
                       "concurrent.futures")


def test_a_tiny_run_imports_only_what_it_uses(tmp_path):
    import numpy as np

    np.save(tmp_path / "x.npy", np.ones((1, 4, 5, 5), dtype=np.float32))
    np.save(tmp_path / "w.npy", np.ones((4, 2, 3, 3), dtype=np.float32))
    args = ["run", str(tmp_path / "x.npy"), str(tmp_path / "w.npy"), "--set", "stride=2", "-o", str(tmp_path / "y.npy"), "-q"]
    probe = PROBE.replace("import json, sys", "import sys").replace("json.dumps(", "repr(")  # json is on the list
    done = subprocess.run([sys.executable, "-c", probe.format(args=args, heavy=TINY_RUN_NEEDS_NONE)], capture_output=True,
                          text=True, check=False)
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr
    assert np.load(tmp_path / "y.npy").shape == (1, 2, 11, 11)
