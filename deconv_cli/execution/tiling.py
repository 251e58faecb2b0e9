"""Running a tile plan (``tiles.py``): every tile is one engine call on its input window.

``run_tiles`` is the one loop that ``run`` (in memory, streamed, on a Dask cluster), batch workers and the
Python API share: they differ only in the reader, the writer and the executor handed to it (``windows``), so
all of them make the same engine calls on the same windows and agree bit for bit. BLAS sums an element in an
order that depends on how many threads share a GEMM (float32 3-D deconvolutions differ in the last bit
between 1 and 2 OpenBLAS threads); the CPU engine holds BLAS to one thread per caller on every call
(``numpy_engine.thread_budget``), which is what makes a Dask worker, a local run and the API agree.

    plan = plan_for(derivation, dtype)
    y = compute_in_memory(engine, x, w, b, plan)                   # arrays in memory
    run_tiles(plan, FileWindows(ref), FileWriter(out, ...), Compute(...))   # windows read and written as they go
    run_on_cluster(scheduler, refs, out, plan, ...)                # every tile a task on a Dask cluster
    to_dask(x, w, b, plan)                                         # a lazy dask array, one task per tile
"""

from __future__ import annotations

import math
import time

from ..core.budget import ITEMSIZE, MAX_ARRAY_BYTES
from ..core.errors import ConfigError, DeconvError
from ..core.shapes import Derivation
from .tiles import Tile, TilePlan, chunk_shape, plan_tiles
from .windows import (
    ArrayWindows,
    ArrayWriter,
    Compute,
    FileWindows,
    FileWriter,
    WholeFile,
    WrittenByWorkers,
    ZarrTile,
    with_weight,
)

INDEX_LIMIT = 1 << 62  # positions, crops and full lengths below it leave int64 index sums room to not overflow

def plan_for(derivation: Derivation, dtype: str, budget: int | None = None) -> TilePlan:
    """The one tile grid of this problem (see ``tiles``). Only a ``budget`` below one of its tiles gets
    a finer grid (whose results may then differ from the in-memory run's in the last bit)."""
    from . import tiles

    holdable = math.prod(derivation.output_shape) * ITEMSIZE[str(dtype)] <= MAX_ARRAY_BYTES  # else memory_plan says so
    for dim in derivation.dims if holdable else ():  # the engines index in int64: every position must fit
        if max(dim.full, abs(dim.crop[0]), abs(dim.crop[1])) >= INDEX_LIMIT:
            raise ConfigError(f"output axis {dim.name}: the full length {dim.full} and crop {dim.crop} reach 2**62, "
                              "past the 64-bit positions deconv computes with",
                              "use smaller padding, stride and dilation values")
    plan = plan_tiles(derivation.config, derivation.input_shape, derivation.output_shape, ITEMSIZE[str(dtype)])
    if budget is not None and plan.tile_bytes > budget and budget < tiles.TILE_BYTES:
        plan = plan_tiles(derivation.config, derivation.input_shape, derivation.output_shape, ITEMSIZE[str(dtype)],
                          budget)
    return plan


def path_for(plan: TilePlan) -> str:
    """The engine path for every tile: the one the rules pick for the whole problem. A tile's own extent
    would pick differently (the scatter rule looks at the output's size), and a thin tile is not the
    problem the rules were measured on (3-D U-Net k3s2 1x32x64^3: scatter on 2-row tiles 2.2x slower)."""
    from ..engines.dispatch import choose_path

    batch_axis, _, spatial_axes = plan.config.input_axes()
    batch = 1 if batch_axis is None else plan.input_shape[batch_axis]
    return choose_path(plan.config, tuple(plan.output_shape[a] for a in spatial_axes), batch,
                       tuple(plan.input_shape[a] for a in spatial_axes))


def compute_in_memory(engine, x, w, b, plan: TilePlan, *, xp=None):
    """The whole output, tile by tile, from an input held in memory: on the host (NumPy), or on the
    device when ``xp`` is CuPy and ``x`` a CuPy array."""
    if xp is None:
        import numpy as xp
    host = xp.__name__ == "numpy"
    writer = ArrayWriter(plan.output_shape, x.dtype, xp)
    run_tiles(plan, ArrayWindows(x, xp), writer, Compute(engine.DEVICE, w, b, path_for(plan), host=host))
    return writer.finish()


def compute_tile(engine, x, w, b, tile: Tile, path: str):
    """One tile's block from arrays in hand, as ``Compute`` makes it (the Python API's one-tile problems call
    it directly: no reader, writer or loop around a single block)."""
    import numpy as np

    x = np.ascontiguousarray(x) if engine.DEVICE == "cpu" else x
    block = engine.deconvolve(x, w, b, tile.config, tile.out_spatial, path=with_weight(path, w))
    return engine.to_host(block)


def run_tiles(plan: TilePlan, reader, writer, compute, *, executor=None, progress=None) -> dict:
    """The one run loop: each tile's window from ``reader``, its block from ``compute``, into ``writer``;
    ``finish`` is the caller's. Tiles run here one after another (a window and a block in memory at a time),
    or with ``executor`` as its tasks (the reader and compute travel to the workers). ``progress(done, total)``
    after each tile. Returns the seconds spent reading, computing and writing."""
    times = {"load_s": 0.0, "compute_s": 0.0, "save_s": 0.0}
    blocks = _here(plan, reader, compute, times) if executor is None else _tasks(plan, reader, compute, executor, times)
    done = 0
    for tile, block in blocks:  # not enumerate(): its cached result tuple would keep the last block alive
        t0 = time.perf_counter()
        writer.write(tile, block)
        del block  # before the next window is read
        times["save_s"] += time.perf_counter() - t0
        done += 1
        if progress is not None:
            progress(done, len(plan))
    return times


def _here(plan: TilePlan, reader, compute, times: dict):
    for tile in plan:
        t0 = time.perf_counter()
        x = reader.window(tile)
        t1 = time.perf_counter()
        y = compute(tile, x)
        del x
        times["load_s"] += t1 - t0
        times["compute_s"] += time.perf_counter() - t1
        yield tile, y
        del y  # before the next window is read


def _tasks(plan: TilePlan, reader, compute, executor, times: dict):
    """Every tile a task of ``executor``; blocks come back as the tasks finish (None from a worker that
    wrote its block itself). The first failure cancels the rest and is raised."""
    tiles = list(plan)
    t0 = time.perf_counter()
    for tile in tiles:
        executor.submit(run_tile, reader, compute, tile)
    times["load_s"] += time.perf_counter() - t0
    waiting = time.perf_counter()
    for done in executor.completed():
        times["compute_s"] += time.perf_counter() - waiting
        if done.error is not None:
            executor.cancel()
            if isinstance(done.error, DeconvError):
                raise done.error
            raise DeconvError(f"tile {tiles[done.task].index} failed on the cluster: {done.error!r}",
                              "check that every worker sees the input files and has deconv-cli installed")
        yield tiles[done.task], done.value
        waiting = time.perf_counter()


def run_tile(reader, compute, tile: Tile):
    """One tile as a task on a worker: its window read there and computed there."""
    try:
        x = reader.window(tile)
    finally:
        reader.close()
    return compute(tile, x)


def run_on_cluster(scheduler: str, refs: dict, out_ref, plan: TilePlan, dtype: str, device: str, *, force: bool,
                   progress=None) -> dict:
    """Every tile a task on the Dask cluster at ``scheduler``. Workers read their input windows
    themselves; a .zarr output is written by the workers concurrently (one chunk per tile) into the
    temporary store, other formats are gathered and written here as the tiles arrive."""
    from .. import tensor_io
    from .executors import open_executor

    t0 = time.perf_counter()
    paths = {role: _absolute(ref) for role, ref in refs.items()}  # workers may run elsewhere
    chunks = chunk_shape(plan, ITEMSIZE[str(dtype)])
    reader = FileWindows(paths["input"], dtype)
    compute = Compute(device, paths["weight"], paths.get("bias"), path_for(plan), dtype=dtype)
    if out_ref.path != "-" and out_ref.kind == ".zarr":
        writer = WrittenByWorkers(out_ref, plan.output_shape, dtype, force=force, chunks=chunks)
        compute = ZarrTile(compute, writer.store, out_ref.key)
    elif tensor_io.can_stream(out_ref):
        writer = FileWriter(out_ref, plan.output_shape, dtype, force=force, chunks=chunks)
    else:
        writer = WholeFile(out_ref, plan.output_shape, dtype, force=force, chunks=chunks)
    try:
        with open_executor(scheduler=scheduler) as executor:
            times = run_tiles(plan, reader, writer, compute, executor=executor, progress=progress)
        t1 = time.perf_counter()
        writer.finish()
    finally:
        writer.close()
    opened = t1 - t0 - sum(times.values())
    return {"load_s": round(times["load_s"] + opened, 6), "compute_s": round(times["compute_s"], 6),
            "save_s": round(times["save_s"] + time.perf_counter() - t1, 6), "chunks": len(plan), "tasks": len(plan)}


def _absolute(ref) -> str:
    import os

    return str(type(ref)(os.path.abspath(ref.path), ref.key))


# ---------------------------------------------------------------- a lazy dask array


def to_dask(x, w, b, plan: TilePlan, device: str = "cpu"):
    """The output as a lazy dask array: one task per tile, reading its window of the dask array ``x``."""
    import itertools

    import dask
    import dask.array as da
    import numpy as np

    w = np.ascontiguousarray(w)
    b = None if b is None else np.ascontiguousarray(b)
    run = dask.delayed(_block, pure=True)
    w_d, b_d = dask.delayed(w), None if b is None else dask.delayed(b)
    batch_axis, channel_axis, spatial_axes = plan.config.input_axes()
    # the grid in output axis order: (batch?, channel (one block), *spatial) or (batch?, *spatial, channel)
    axes = list(range(len(plan.output_shape)))
    grid_of = {channel_axis: 1, **{axis: plan.grid[1 + i] for i, axis in enumerate(spatial_axes)}}
    if batch_axis is not None:
        grid_of[batch_axis] = plan.grid[0]
    blocks = np.empty(tuple(grid_of[a] for a in axes), dtype=object)
    for index in itertools.product(*(range(g) for g in plan.grid)):
        tile = plan.tile(index)
        block = run(device, x[tile.input_slices()], w_d, b_d, tile, path_for(plan))
        position = {channel_axis: 0, **{axis: index[1 + i] for i, axis in enumerate(spatial_axes)}}
        if batch_axis is not None:
            position[batch_axis] = index[0]
        blocks[tuple(position[a] for a in axes)] = da.from_delayed(block, shape=tile.output_shape, dtype=x.dtype)
    return da.block(blocks.tolist())


def _block(device: str, x_window, w, b, tile: Tile, path: str):
    import numpy as np

    return Compute(device, w, b, path)(tile, np.ascontiguousarray(x_window))
