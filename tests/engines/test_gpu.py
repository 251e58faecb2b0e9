"""The CuPy engine: parity with the NumPy engine on every path (needs CuPy and a CUDA device; skipped
otherwise, see conftest.py), and the CPU-side behaviour of --device gpu/auto without them."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from deconv_cli.cli import cli
from deconv_cli.core.config import DeconvConfig
from deconv_cli.core.errors import DeconvError
from deconv_cli.core.shapes import derive
from deconv_cli.engines import cupy_engine, dispatch, get_engine, numpy_engine, shift

CASES = [
    dict(kernel=(4, 4), stride=(2, 2), dilation=(1, 1), crops=((1, 1), (1, 1)), groups=1, in_channels=8, out_channels=4),
    dict(kernel=(2, 2, 2), stride=(2, 2, 2), dilation=(1, 1, 1), crops=((0, 0),) * 3, groups=1, in_channels=6, out_channels=3),
    dict(kernel=(3, 3), stride=(2, 2), dilation=(2, 2), crops=((2, 1), (-1, 0)), groups=2, in_channels=4, out_channels=6),
    dict(kernel=(16,), stride=(8,), dilation=(1,), crops=((4, 4),), groups=1, in_channels=8, out_channels=4),
    dict(kernel=(4, 4), stride=(2, 2), dilation=(1, 1), crops=((1, 1), (1, 1)), groups=8, in_channels=8, out_channels=8),
    dict(kernel=(3, 2), stride=(2, 1), dilation=(1, 2), crops=((1, 0), (0, 1)), groups=1, in_channels=4, out_channels=6,
         flip=True),  # JAX/Flax's reversed kernel
]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-4), (np.float16, 2e-2), (np.float64, 1e-10)])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("path", dispatch.PATHS)
def test_cupy_matches_numpy(case, path, dtype, tol):
    import cupy

    config = DeconvConfig(**case)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, config.in_channels, *([5] * config.rank))).astype(dtype)
    w = rng.standard_normal(config.weight_shape).astype(dtype)
    b = rng.standard_normal(config.out_channels).astype(dtype)
    out = derive(config, x.shape).output_spatial
    want = numpy_engine.deconvolve(x, w, b, config, out, path=path)
    got = cupy_engine.deconvolve(cupy.asarray(x), cupy.asarray(w), cupy.asarray(b), config, out, path=path)
    assert isinstance(got, cupy.ndarray) and got.dtype == dtype
    scale = max(1.0, float(np.abs(want.astype(np.float64)).max()))
    np.testing.assert_allclose(cupy.asnumpy(got).astype(np.float64), want.astype(np.float64), atol=tol * scale, rtol=tol)


@pytest.mark.gpu
@pytest.mark.parametrize("groups", [1, 2])
def test_cupy_shift_path_gemm_per_phase_matches_numpy(groups, monkeypatch):
    """The shift path's GEMM per phase (``shift_windowed``), forced on a small 1-D problem, on both engines."""
    import cupy

    monkeypatch.setattr(shift, "SHIFT_WINDOW_MIN_DEPTH", 0)
    config = DeconvConfig(kernel=(16,), stride=(8,), dilation=(1,), crops=((4, 4),), groups=groups, in_channels=8,
                          out_channels=4)
    rng = np.random.default_rng(7)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((3, 8, 9), config.weight_shape, (4,)))
    out = derive(config, x.shape).output_spatial
    assert shift.shift_windowed(config, out)
    want = numpy_engine.deconvolve(x, w, b, config, out, path="shift")
    got = cupy_engine.deconvolve(cupy.asarray(x), cupy.asarray(w), cupy.asarray(b), config, out, path="shift")
    np.testing.assert_allclose(cupy.asnumpy(got), want, atol=1e-4 * max(1.0, float(np.abs(want).max())), rtol=1e-4)


def test_gpu_request_without_cupy_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(cupy_engine, "unavailable", lambda: "CuPy is not installed")
    with pytest.raises(DeconvError) as err:
        get_engine("gpu")
    assert str(err.value) == (
        "--device gpu: CuPy is not installed. Install the gpu extra (pip install 'deconv-cli[gpu]') on a machine with an "
        "NVIDIA GPU, or use --device cpu."
    )
    assert get_engine("auto") is numpy_engine


def test_cli_device_gpu_without_cupy_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(cupy_engine, "unavailable", lambda: "CuPy is not installed")
    monkeypatch.chdir(tmp_path)
    np.save("x.npy", np.ones((1, 2, 3), dtype=np.float32))
    np.save("w.npy", np.ones((2, 1, 2), dtype=np.float32))
    result = CliRunner().invoke(cli, ["run", "x.npy", "w.npy", "-o", "y.npy", "--device", "gpu"])
    assert result.exit_code == 1 and result.stderr.startswith("Error: --device gpu: CuPy is not installed.")
    assert not (tmp_path / "y.npy").exists()
    auto = CliRunner().invoke(cli, ["run", "x.npy", "w.npy", "-o", "y.npy", "--device", "auto", "--json", "-q"])
    assert auto.exit_code == 0 and '"device": "cpu"' in auto.stdout
