"""Batch benchmark (``make bench-batch``): deconv batch against a shell loop, per-job overhead, I/O hiding, Dask.

    python -m deconv_cli.bench.batch [--small 1000] [--loop-sample 50] [--medium 64] [--no-dask] [--folder DIR]

1. ``--small`` jobs of a 1x8x16x16 input (stride 2, one shared weight): the wall time of one
   ``deconv batch`` process against a bash loop of ``deconv run`` over a sample of the same jobs (the loop's
   time per job, extrapolated to all of them), and the per-job overhead ``(batch wall - sum of the engine's
   compute) / jobs`` for ``--jobs 1`` (in-process: the overhead alone).
2. ``--medium`` jobs of the suite's dcgan_128to3 configuration (64x128x32x32, k4 s2 p1, one input file each):
   the batch wall time against the sum of the engine's in-process compute times (inputs already in memory).
3. The same medium jobs through a 2-worker Dask cluster on 127.0.0.1 (LocalCluster, processes) against the
   local batch.

Every batch runs as a subprocess, start-up included. Tensors go to a temporary folder (about 2.1 GB for the
medium jobs). Benchmark what users get: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE make bench-batch``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_SCRIPT = Path(sys.executable).parent / "deconv"
DECONV = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "deconv_cli"]


def _manifest(folder: Path, inputs: list[str], weight: str, options: dict) -> Path:
    (folder / "out").mkdir(exist_ok=True)
    path = folder / "jobs.jsonl"
    path.write_text("".join(
        json.dumps({"input": name, "weight": weight, "output": f"out/y{i}.npy", "set": options}) + "\n" for i, name in enumerate(inputs)))
    return path


def _batch(manifest: Path, *args: str) -> tuple[float, list[dict]]:
    """Wall seconds of one `deconv batch` process and its records; outputs removed afterwards."""
    start = time.perf_counter()
    done = subprocess.run([*DECONV, "batch", str(manifest), "--json", "-q", "--force", *args], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"deconv batch failed ({done.returncode}): {done.stderr[-2000:]}")
    for name in os.listdir(manifest.parent / "out"):
        os.unlink(manifest.parent / "out" / name)
    return wall, [json.loads(line) for line in done.stdout.splitlines()]


def _compute(records: list[dict]) -> float:
    return sum(r["timings"]["compute_s"] for r in records)


def small(folder: Path, jobs: int, sample: int) -> dict:
    rng = np.random.default_rng(0)
    np.save(folder / "w.npy", rng.standard_normal((8, 8, 4, 4)).astype(np.float32))
    inputs = []
    for i in range(jobs):
        np.save(folder / f"x{i}.npy", rng.standard_normal((1, 8, 16, 16)).astype(np.float32))
        inputs.append(f"x{i}.npy")
    manifest = _manifest(folder, inputs, "w.npy", {"stride": 2, "padding": 1})
    one = folder / "one.jsonl"
    one.write_text(manifest.read_text().splitlines()[0] + "\n")
    startup = min(_batch(one, "--jobs", "1")[0] for _ in range(3))  # start-up + one tiny job
    wall_serial, records = _batch(manifest, "--jobs", "1")
    overhead_ms = (wall_serial - _compute(records)) / jobs * 1e3
    steady_ms = (wall_serial - startup - _compute(records)) / (jobs - 1) * 1e3
    wall_pool, records_pool = _batch(manifest)
    script = "".join(
        f"{' '.join(DECONV)} run x{i}.npy w.npy --set stride=2 --set padding=1 -o out/y{i}.npy -q --force\n" for i in range(sample))
    start = time.perf_counter()
    subprocess.run(["bash", "-e", "-c", script], cwd=folder, check=True)
    loop_per_job = (time.perf_counter() - start) / sample
    for name in os.listdir(folder / "out"):
        os.unlink(folder / "out" / name)
    best = min(wall_serial, wall_pool)
    return {
        "jobs": jobs, "batch_jobs1_s": round(wall_serial, 3), "batch_default_jobs_s": round(wall_pool, 3),
        "engine_compute_sum_s": round(_compute(records), 3), "overhead_per_job_ms": round(overhead_ms, 3),
        "startup_s": round(startup, 3), "overhead_per_job_after_startup_ms": round(steady_ms, 3),
        "shell_loop_per_job_s": round(loop_per_job, 4), "shell_loop_sample": sample,
        "shell_loop_extrapolated_s": round(loop_per_job * jobs, 2), "speedup_vs_loop": round(loop_per_job * jobs / best, 1),
        "pool_compute_sum_s": round(_compute(records_pool), 3),
    }


def medium(folder: Path, jobs: int, dask: bool) -> dict:
    from ..conventions.plan import plan
    from ..engines import numpy_engine

    rng = np.random.default_rng(1)
    weight = rng.standard_normal((128, 3, 4, 4)).astype(np.float32)
    np.save(folder / "w.npy", weight)
    inputs = []
    for i in range(jobs):
        np.save(folder / f"x{i}.npy", rng.standard_normal((64, 128, 32, 32)).astype(np.float32))
        inputs.append(f"x{i}.npy")
    options = {"stride": 2, "padding": 1}
    manifest = _manifest(folder, inputs, "w.npy", options)
    derivation = plan("torch", options, (64, 128, 32, 32), weight.shape)
    numpy_engine.deconvolve(np.load(folder / inputs[0]), weight, None, derivation.config, derivation.output_spatial)  # warm-up

    def in_process() -> float:
        total = 0.0
        for name in inputs:
            x = np.load(folder / name)  # in memory: the engine's compute alone
            start = time.perf_counter()
            numpy_engine.deconvolve(x, weight, None, derivation.config, derivation.output_spatial)
            total += time.perf_counter() - start
        return total

    # interleaved, best of two each: the machine is shared, and load comes and goes
    rounds = [(in_process(), *_batch(manifest)) for _ in range(2)]
    compute = min(r[0] for r in rounds)
    wall, records = min(((r[1], r[2]) for r in rounds), key=lambda r: r[0])
    result = {
        "jobs": jobs, "in_process_compute_sum_s": round(compute, 3), "batch_s": round(wall, 3),
        "batch_over_compute": round(wall / compute, 3), "batch_worker_compute_sum_s": round(_compute(records), 3),
        "rounds": [[round(r[0], 3), round(r[1], 3)] for r in rounds],
    }
    if dask:
        result.update(_dask(manifest, wall))
    return result


def _dask(manifest: Path, local_wall: float) -> dict:
    try:
        from distributed import LocalCluster
    except ImportError:
        return {"dask": "skipped: the dask extra is not installed"}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cluster:
        _batch(manifest, "--scheduler", cluster.scheduler_address)  # warm the workers' imports
        wall = min(_batch(manifest, "--scheduler", cluster.scheduler_address)[0] for _ in range(2))
    return {"dask_2_workers_s": round(wall, 3), "dask_over_local": round(wall / local_wall, 3)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--loop-sample", type=int, default=50)
    parser.add_argument("--medium", type=int, default=64)
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--folder", help="Where to write the tensors (default: a temporary folder, removed after).")
    args = parser.parse_args(argv)
    root = Path(args.folder or tempfile.mkdtemp(prefix="deconv-bench-batch-"))
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "DECONV_THREADS") if k in os.environ}
    report = {"cpus": len(os.sched_getaffinity(0)), "env": env}
    try:
        for name, run in (("small", lambda f: small(f, args.small, args.loop_sample)),
                          ("medium", lambda f: medium(f, args.medium, not args.no_dask))):
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            report[name] = run(folder)
            print(json.dumps({name: report[name]}), flush=True)
            shutil.rmtree(folder)
    finally:
        if not args.folder:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
