"""Peak memory of `deconv run` stays within DECONV_MEMORY_BUDGET + weight + 100 MB whatever the tensor size:
a 32 MiB budget against a 256 MiB output, for .npy, .h5 and .zarr in and out, measured as the subprocess's
own peak RSS (VmHWM); the values equal an in-memory run on the same tile grid (a budget below
tiles.TILE_BYTES cuts finer tiles, whose last bits may differ from the default grid's), and the default
grid's within float32 rounding."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from deconv_cli import tensor_io

BUDGET = 32 << 20  # far below the 256 MiB output, and below tiles.TILE_BYTES: tiles of at most 32 MiB
# prints the process's peak RSS on exit (VmHWM: the child's own, not its parent's)
RUNNER = """
import atexit, sys
atexit.register(lambda: sys.stderr.write([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]))
sys.argv = ['deconv'] + sys.argv[1:]
from deconv_cli.cli import main
main()
"""


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    import h5py
    import zarr

    folder = tmp_path_factory.mktemp("memory")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 8, 64, 64, 128)).astype(np.float32)  # 16 MiB in, 256 MiB out at stride 2
    w = rng.standard_normal((8, 16, 2, 2, 2)).astype(np.float32)
    np.save(folder / "x.npy", x)
    np.save(folder / "w.npy", w)
    with h5py.File(folder / "x.h5", "w") as f:
        f.create_dataset("vol/x", data=x)
    zarr.create_array(store=str(folder / "x.zarr"), shape=x.shape, dtype=x.dtype, chunks=(1, 8, 16, 64, 64),
                      zarr_format=3)[...] = x
    import deconv_cli
    from deconv_cli.execution import tiles

    default = deconv_cli.deconvolve(x, w, stride=2)  # in memory, on the default grid
    saved, tiles.TILE_BYTES = tiles.TILE_BYTES, BUDGET
    try:
        want = deconv_cli.deconvolve(x, w, stride=2)  # in memory, on the grid a 32 MiB budget streams
    finally:
        tiles.TILE_BYTES = saved
    np.testing.assert_allclose(want, default, rtol=1e-5, atol=1e-5)
    return folder, want, w.nbytes


@pytest.mark.parametrize("source, target", [("x.npy", "y.npy"), ("x.h5:/vol/x", "y.h5:/out/y"), ("x.zarr", "y.zarr")])
def test_peak_rss_stays_within_the_budget(volume, source, target):
    folder, want, weight_bytes = volume
    env = dict(os.environ, DECONV_MEMORY_BUDGET=str(BUDGET))
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, "run", source, "w.npy", "--set", "stride=2", "-o", target, "-q", "--json"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    peak = int(proc.stderr.split("VmHWM:")[1].split()[0]) * 1024
    assert want.nbytes >= 8 * BUDGET
    assert peak <= BUDGET + weight_bytes + (100 << 20), f"peak RSS {peak / 2**20:.0f} MiB"
    got = tensor_io.load(tensor_io.parse_ref(str(folder / target)))
    assert got.shape == want.shape
    assert np.asarray(got[...]).tobytes() == want.tobytes()


def test_expect_alone_compares_a_256_mib_output_within_the_budget(volume):
    """`run --expect REF` without -o over the budget: every tile compared with its window of REF, nothing
    written, in the same bounded memory as a streamed write."""
    folder, want, weight_bytes = volume
    np.save(folder / "ref.npy", want)
    try:
        env = dict(os.environ, DECONV_MEMORY_BUDGET=str(BUDGET))
        proc = subprocess.run(
            [sys.executable, "-c", RUNNER, "run", "x.npy", "w.npy", "--set", "stride=2", "--expect", "ref.npy", "--json"],
            cwd=folder, env=env, capture_output=True, text=True, timeout=300, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        peak = int(proc.stderr.split("VmHWM:")[1].split()[0]) * 1024
        assert peak <= BUDGET + weight_bytes + (100 << 20), f"peak RSS {peak / 2**20:.0f} MiB"
        record = json.loads(proc.stdout)
        assert record["timings"]["chunks"] >= 8
        assert record["compare"]["match"] and record["compare"]["max_abs"] == 0.0
        assert record["compare"]["total"] == want.size
    finally:
        os.remove(folder / "ref.npy")
