"""One tensor across a Dask cluster: a real scheduler and two worker processes on 127.0.0.1. `run --scheduler`
runs the tiles as tasks (workers read their own input windows; .zarr chunks written by the workers), and
`deconvolve(dask_array, ...)` is a lazy dask array of the same tiles; both give the local run's bits."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from deconv_cli import tensor_io
from deconv_cli.cli import cli
from deconv_cli.execution import tiles, tiling

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(processes=True, host="127.0.0.1", n_workers=2, threads_per_worker=1,
                                  dashboard_address="127.0.0.1:0") as local:
        with distributed.Client(local) as client:
            assert len(client.scheduler_info()["workers"]) == 2
            yield local.scheduler_address


@pytest.fixture
def tensors(tmp_path, monkeypatch):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 6, 21, 17, 9)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3, 2)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    for name, array in dict(x=x, w=w, b=b).items():
        np.save(tmp_path / f"{name}.npy", array)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tiles, "TILE_BYTES", 64 << 10)  # a dozen tiles on these small tensors
    return x, w, b


OPTIONS = {"stride": (2, 1, 2), "padding": (1, 0, 1), "output_padding": (1, 0, 0)}
SET = ["--set", "stride=(2,1,2)", "--set", "padding=(1,0,1)", "--set", "output_padding=(1,0,0)"]


def test_api_returns_a_lazy_array_of_the_tiles(cluster, tensors):
    import deconv_cli

    x, w, b = tensors
    want = deconv_cli.deconvolve(x, w, b, **OPTIONS)
    lazy = deconv_cli.deconvolve(da.from_array(x, chunks=(1, 6, 7, 17, 9)), w, b, **OPTIONS)
    assert isinstance(lazy, da.Array) and lazy.shape == want.shape and lazy.dtype == want.dtype
    plan = tiling.plan_for(deconv_cli.derive(x.shape, w.shape, **OPTIONS), "float32")
    assert lazy.npartitions == len(plan) > 4
    with distributed.Client(cluster) as client:
        got = client.compute(lazy).result()
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("target", ["y.zarr", "y.zarr:/g/y", "y.h5:/y", "y.npz:y"])
def test_run_on_the_cluster_gives_the_local_bits(cluster, tensors, tmp_path, target):
    runner = CliRunner()
    local = runner.invoke(cli, ["run", "x.npy", "w.npy", "--bias", "b.npy", *SET, "-o", "local.npy", "-q"])
    assert local.exit_code == 0, local.output
    result = runner.invoke(cli, ["run", "x.npy", "w.npy", "--bias", "b.npy", *SET, "-o", target, "-q", "--json",
                                 "--scheduler", cluster])
    assert result.exit_code == 0, result.output
    timings = json.loads(result.stdout)["timings"]
    plan_size = timings["tasks"]
    assert plan_size > 4
    got = tensor_io.load(tensor_io.parse_ref(target))[...]
    assert got.tobytes() == np.load(tmp_path / "local.npy").tobytes()
    if target.startswith("y.zarr"):
        import zarr

        ref = tensor_io.parse_ref(target)
        array = zarr.open_array(str(tmp_path / "y.zarr"), path=(ref.key or "").strip("/"), mode="r")
        assert array.nchunks == plan_size  # one chunk per tile, each written by one worker task
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".deconv-")]


def test_a_worker_that_cannot_read_the_input_fails_the_run_and_leaves_nothing(cluster, tensors, tmp_path):
    """The input is read by the workers: one removed after planning fails the run with one line."""
    from deconv_cli.execution import tiling as tiling_module

    real = tiling_module.run_on_cluster

    def remove_then_run(*args, **kwargs):
        os.rename(tmp_path / "x.npy", tmp_path / "moved.npy")
        return real(*args, **kwargs)

    import unittest.mock

    with unittest.mock.patch.object(tiling_module, "run_on_cluster", remove_then_run):
        result = CliRunner().invoke(cli, ["run", "x.npy", "w.npy", *SET, "-o", "y.zarr", "--scheduler", cluster])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {tmp_path}/x.npy: no such file. Check the path.\n"  # as the worker saw it
    assert len(result.stderr.splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["b.npy", "moved.npy", "w.npy"]


def test_a_cluster_run_reports_each_tile_as_it_comes_back(cluster, tensors):
    """The one loop's progress callback on a cluster: one call per finished task, the last one total/total."""
    from deconv_cli.execution.job import Job, run_job

    calls = []
    job = Job("x.npy", "w.npy", "y.zarr", bias="b.npy", options=OPTIONS, scheduler=cluster)
    result = run_job(job, progress=lambda *a: calls.append(a))
    n = result.timings["tasks"]
    assert n > 4 and calls == [(i, n) for i in range(1, n + 1)]
    assert tensor_io.load(tensor_io.parse_ref("y.zarr")).shape == result.derivation.output_shape
