"""Tiling benchmarks (not tests): ``python -m deconv_cli.bench.tiles [--overhead] [--big N] [--folder DIR]``.

``--overhead``: one problem that fits in memory (3-D U-Net up-convolution, 1x32x64^3 -> k3 s2 16 channels),
computed as one engine call on the whole tensors and as the tile plan that ``run`` uses, interleaved; prints
both wall times (best of 5) and their ratio (target <= 1.25).

``--big N``: a 1x16xN^3 float32 volume -> stride 2, kernel 3, padding 1, output_padding 1, 32 output
channels (1x32x(2N)^3) written by ``deconv run`` into ``.zarr`` under ``DECONV_MEMORY_BUDGET=1G``, in a
subprocess whose own peak RSS (VmHWM) and wall time are printed. The input .npy is made slab by slab.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

_PEAK = """
import atexit, sys
atexit.register(lambda: sys.stderr.write([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]))
sys.argv = ['deconv'] + sys.argv[1:]
from deconv_cli.cli import main
main()
"""


def overhead(repeat: int = 5) -> dict:
    import numpy as np

    import deconv_cli
    from deconv_cli.engines import numpy_engine
    from deconv_cli.execution import tiling

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 32, 64, 64, 64)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3, 3)).astype(np.float32)
    options = {"stride": 2, "padding": 1, "output_padding": 1}
    record = deconv_cli.derive(x.shape, w.shape, **options)
    plan = tiling.plan_for(record, "float32")

    untiled_runs, tiled_runs = [], []
    for _ in range(repeat):  # interleaved, so that load from other processes hits both alike
        t0 = time.perf_counter()
        numpy_engine.deconvolve(x, w, None, record.config, record.output_spatial)
        t1 = time.perf_counter()
        tiling.compute_in_memory(numpy_engine, x, w, None, plan)
        untiled_runs.append(t1 - t0)
        tiled_runs.append(time.perf_counter() - t1)
    untiled, tiled = min(untiled_runs), min(tiled_runs)
    return {"problem": "1x32x64^3 -> 16 ch, k3 s2 p1 op1 (float32)", "tiles": len(plan), "untiled_s": round(untiled, 3),
            "tiled_s": round(tiled, 3), "ratio": round(tiled / untiled, 3)}


def big(n: int, folder: str) -> dict:
    import numpy as np

    os.makedirs(folder, exist_ok=True)
    x_path, w_path, y_path = (os.path.join(folder, name) for name in ("x.npy", "w.npy", "y.zarr"))
    rng = np.random.default_rng(1)
    if not os.path.exists(x_path):
        x = np.lib.format.open_memmap(x_path + ".part", mode="w+", dtype=np.float32, shape=(1, 16, n, n, n))
        for c in range(16):
            x[0, c] = rng.standard_normal((n, n, n), dtype=np.float32)
        x.flush()
        del x
        os.replace(x_path + ".part", x_path)
    np.save(w_path, rng.standard_normal((16, 32, 3, 3, 3)).astype(np.float32))
    command = ["run", x_path, w_path, "--set", "stride=2", "--set", "padding=1", "--set", "output_padding=1",
               "-o", y_path, "--force", "-q", "--json"]
    env = dict(os.environ, DECONV_MEMORY_BUDGET="1G")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _PEAK, *command], env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    import json

    record = json.loads(proc.stdout)
    peak = int(proc.stderr.split("VmHWM:")[1].split()[0]) * 1024
    out_bytes = 4 * int(np.prod(record["output_shape"]))
    return {"command": "DECONV_MEMORY_BUDGET=1G deconv " + " ".join(command), "output_shape": record["output_shape"],
            "output_gib": round(out_bytes / 2**30, 2), "wall_s": round(wall, 1), "peak_rss_mib": round(peak / 2**20),
            "timings": record["timings"]}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m deconv_cli.bench.tiles", description=__doc__.split("\n\n")[0])
    parser.add_argument("--overhead", action="store_true", help="tiled vs untiled on a problem that fits")
    parser.add_argument("--big", type=int, metavar="N", help="a 1x16xN^3 volume into .zarr under a 1 GB budget")
    parser.add_argument("--folder", default="bench-tiles", help="where --big writes (default: ./bench-tiles)")
    args = parser.parse_args()
    if args.overhead or not args.big:
        print(overhead())
    if args.big:
        print(big(args.big, args.folder))


if __name__ == "__main__":
    main()
