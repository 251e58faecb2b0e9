"""``explain --code`` loads the tensors from the files as given, in every format deconv reads: the snippet runs
and gives what ``deconv run`` writes (the onnx target: onnxruntime is a dev dependency, so this runs in CI)."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from deconv_cli.cli import cli

pytest.importorskip("onnxruntime")
KERAS_FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "models")
TORCH = ["--set", "stride=2", "--set", "padding=1"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _tensors():
    rng = np.random.default_rng(3)
    return {"x": rng.standard_normal((2, 3, 5, 4)).astype(np.float32),
            "w": rng.standard_normal((3, 2, 3, 3)).astype(np.float32),
            "b": rng.standard_normal(2).astype(np.float32)}


def _write(tmp_path, kind):
    """Each tensor saved in one file of ``kind``; the references deconv takes for them."""
    t = _tensors()
    if kind == "npz":
        np.savez(tmp_path / "t.npz", **t)
        return [f"{tmp_path / 't.npz'}:{n}" for n in t]
    if kind == "h5":
        with h5py.File(tmp_path / "t.h5", "w") as f:
            for n, a in t.items():
                f[f"g/{n}"] = a
        return [f"{tmp_path / 't.h5'}:/g/{n}" for n in t]
    if kind == "safetensors":
        from safetensors.numpy import save_file

        save_file(t, str(tmp_path / "t.safetensors"))
        return [f"{tmp_path / 't.safetensors'}:{n}" for n in t]
    if kind == "zarr-group":
        import zarr

        group = zarr.open_group(str(tmp_path / "t.zarr"), mode="w")
        for n, a in t.items():
            group.create_array(f"sub/{n}", data=a)
        return [f"{tmp_path / 't.zarr'}:/sub/{n}" for n in t]
    assert kind == "zarr-root"
    import zarr

    refs = []
    for n, a in t.items():  # a store holding one root array each
        zarr.create_array(str(tmp_path / f"{n}.zarr"), data=a)
        refs.append(str(tmp_path / f"{n}.zarr"))
    return refs


@pytest.mark.parametrize("kind", ["npz", "h5", "safetensors", "zarr-group", "zarr-root"])
def test_the_snippet_loads_each_format_and_reproduces_deconv_run(kind, tmp_path):
    x, w, b = _write(tmp_path, kind)
    result = invoke("explain", x, w, "--bias", b, "--style", "torch", *TORCH, "--to", "onnx", "--code")
    assert result.exit_code == 0, result.output
    assert "h5py" not in result.stdout or kind == "h5"
    run = invoke("run", x, w, "--bias", b, "--style", "torch", *TORCH, "-o", tmp_path / "y.npy", "-q")
    assert run.exit_code == 0, run.output
    scope: dict = {}
    exec(compile(result.stdout, "snippet.py", "exec"), scope)
    np.testing.assert_allclose(scope["y"], np.load(tmp_path / "y.npy"), rtol=1e-5, atol=1e-5)


def test_the_snippet_reads_a_keras_models_weights_inside_its_zip():
    model, recorded = (os.path.join(KERAS_FIXTURES, n) for n in ("deconvs.keras", "deconvs_keras_recorded.npz"))
    result = invoke("explain", f"{recorded}:valid2d_x", f"{model}#valid2d", "--to", "onnx", "--code")
    assert result.exit_code == 0, result.output
    assert "zipfile.ZipFile(" in result.stdout
    scope: dict = {}
    exec(compile(result.stdout, "snippet.py", "exec"), scope)
    np.testing.assert_allclose(scope["y"], np.load(recorded)["valid2d_y"], rtol=1e-4, atol=1e-4)
