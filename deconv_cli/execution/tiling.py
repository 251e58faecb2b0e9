"""Running a tile plan (``tiles.py``): every tile is one engine call on its input window.

One home for the loop that ``run`` (in memory or streamed), the Python API and Dask share, so that all
of them make the same engine calls on the same windows and agree bit for bit. BLAS sums an element in an
order that depends on how many threads share a GEMM (float32 3-D deconvolutions differ in the last bit
between 1 and 2 OpenBLAS threads); the CPU engine holds BLAS to one thread per caller on every call
(``numpy_engine.thread_budget``), which is what makes a Dask worker, a local run and the API agree.

    plan = plan_for(derivation, dtype)
    y = compute_in_memory(engine, x, w, b, plan)                   # arrays in memory
    stream(engine, reader, writer, w, b, plan)                     # windows read and written as they go
"""

from __future__ import annotations

from ..core.budget import ITEMSIZE
from ..core.errors import DeconvError
from ..core.shapes import Derivation
from .tiles import Tile, TilePlan, chunk_shape, plan_tiles


def plan_for(derivation: Derivation, dtype: str, budget: int | None = None) -> TilePlan:
    """The one tile grid of this problem (see ``tiles``). Only a ``budget`` below one of its tiles gets
    a finer grid (whose results may then differ from the in-memory run's in the last bit)."""
    from . import tiles

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


def _with_weight(path: str, w) -> str:
    """The engine's own rule first: a NaN or Inf tap takes the scatter path, which multiplies real input
    only (the phase path would multiply the zero padding by it, turning unreached positions into NaN)."""
    import numpy as np

    from ..engines._common import all_finite

    with np.errstate(all="ignore"):  # a float16 weight's sum may overflow: all_finite then looks closer
        return "scatter" if not all_finite(np.asarray(w), np) else path


def compute_tile(engine, x_window, w, b, tile: Tile, path: str):
    """One tile's output block (on the host) from its input window (file layout, C-contiguous)."""
    import numpy as np

    x_window = np.ascontiguousarray(x_window) if engine.DEVICE == "cpu" else x_window
    path = _with_weight(path, w)
    return engine.to_host(engine.deconvolve(x_window, w, b, tile.config, tile.out_spatial, path=path))


def compute_in_memory(engine, x, w, b, plan: TilePlan, *, xp=None):
    """The whole output, tile by tile, from an input held in memory: on the host (NumPy), or on the
    device when ``xp`` is CuPy and ``x`` a CuPy array."""
    if xp is None:
        import numpy as xp
    return _compute_in_memory(engine, x, w, b, plan, xp)


def _compute_in_memory(engine, x, w, b, plan: TilePlan, xp):
    path = _with_weight(path_for(plan), w if xp.__name__ == "numpy" else xp.asnumpy(w))
    if len(plan) == 1 and next(iter(plan)).input_shape == tuple(x.shape):
        tile = next(iter(plan))  # one tile reading the whole input: no copy of a C-contiguous one
        block = engine.deconvolve(xp.ascontiguousarray(x), w, b, tile.config, tile.out_spatial, path=path)
        return block if xp.__name__ == "cupy" else engine.to_host(block)
    y = xp.empty(plan.output_shape, dtype=x.dtype)
    for tile in plan:
        block = engine.deconvolve(xp.ascontiguousarray(x[tile.input_slices()]), w, b, tile.config, tile.out_spatial,
                                  path=path)
        y[tile.output_slices()] = block if xp.__name__ == "cupy" else engine.to_host(block)
    return y


def owned_part(plan: TilePlan, tile: Tile) -> tuple[slice, ...]:
    """The part of a tile's input window that no earlier tile read (windows overlap by their halo): so
    that a pass over every tile visits each input position read at most once (for NaN/Inf counts)."""
    parts = []
    for axis, (i0, i1) in enumerate(tile.input):
        start = i0
        grid_axis = _grid_axis(plan, axis)
        if grid_axis is not None and tile.index[grid_axis] > 0:
            before = list(tile.index)
            before[grid_axis] -= 1
            start = max(i0, min(i1, plan.tile(tuple(before)).input[axis][1]))
        parts.append(slice(start - i0, i1 - i0))
    return tuple(parts)


def _grid_axis(plan: TilePlan, axis: int) -> int | None:
    """The grid position (0 batch, 1 + spatial) that moves along a tensor axis, or None (channels)."""
    batch_axis, _, spatial_axes = plan.config.input_axes()
    if axis == batch_axis:
        return 0
    return 1 + spatial_axes.index(axis) if axis in spatial_axes else None


def stream(engine, reader, writer, w, b, plan: TilePlan, *, on_window=None) -> dict:
    """Read each tile's window, compute it, write its block; returns the seconds spent on each.
    ``on_window(tile, x) -> x`` sees each window first (a cast, counts)."""
    import time

    load = compute = save = 0.0
    path = path_for(plan)
    for tile in plan:
        t0 = time.perf_counter()
        x = reader[tile.input_slices()]
        if on_window is not None:
            x = on_window(tile, x)
        t1 = time.perf_counter()
        y = compute_tile(engine, x, w, b, tile, path)
        del x
        t2 = time.perf_counter()
        writer[tile.output_slices()] = y
        del y
        load, compute, save = load + t1 - t0, compute + t2 - t1, save + time.perf_counter() - t2
    return {"load_s": load, "compute_s": compute, "save_s": save}


# ---------------------------------------------------------------- tiles as tasks (Dask)

_SHARED: dict = {}  # in a worker process: (reference, mtime, size) -> weight or bias, read once


def _shared(ref_text: str):
    import os

    from .. import tensor_io

    ref = tensor_io.parse_ref(ref_text)
    stat = os.stat(ref.path)
    key = (ref_text, stat.st_mtime_ns, stat.st_size)
    if key not in _SHARED:
        import numpy as np

        if len(_SHARED) >= 8:
            _SHARED.clear()
        _SHARED[key] = np.ascontiguousarray(tensor_io.load(ref))
    return _SHARED[key]


def tile_task(input_ref: str, weight_ref: str, bias_ref: str | None, tile: Tile, path: str, device: str,
              store: str | None = None, key: str | None = None, dtype: str | None = None):
    """One tile on a worker: read its own input window, compute it; write it into the Zarr store at
    ``store`` (its chunks, no other tile's) and return the tile's index, or return the block itself."""
    from .. import tensor_io
    from ..engines import get_engine

    engine = get_engine(device)
    reader = tensor_io.open_slices(tensor_io.parse_ref(input_ref))
    try:
        x = reader[tile.input_slices()]
    finally:
        reader.close()
    w, b = _shared(weight_ref), None if bias_ref is None else _shared(bias_ref)
    if dtype is not None:  # --cast
        x, w = x.astype(dtype, copy=False), w.astype(dtype, copy=False)
        b = None if b is None else b.astype(dtype, copy=False)
    y = compute_tile(engine, x, w, b, tile, path)
    if store is None:
        return y
    import zarr

    zarr.open_array(store, path=(key or "").strip("/"), mode="r+")[tile.output_slices()] = y
    return tile.index


def run_on_cluster(scheduler: str, refs: dict, out_ref, plan: TilePlan, dtype: str, device: str, *, force: bool) -> dict:
    """Every tile a task on the Dask cluster at ``scheduler``. Workers read their input windows
    themselves; a .zarr output is written by the workers concurrently (one chunk per tile) into the
    temporary store, other formats are gathered and written here as the tiles arrive."""
    import os
    import time

    from .. import tensor_io
    from .executors import open_executor

    t0 = time.perf_counter()
    paths = {role: _absolute(ref) for role, ref in refs.items()}  # workers may run elsewhere
    chunked = out_ref.path != "-" and out_ref.kind == ".zarr"
    streams = tensor_io.can_stream(out_ref)
    chunks = chunk_shape(plan, ITEMSIZE[str(dtype)])
    sink = tensor_io.StreamWriter(out_ref, plan.output_shape, dtype, force=force, chunks=chunks) if streams else None
    gathered = None
    try:
        with open_executor(scheduler=scheduler) as executor:
            tiles = list(plan)
            store = os.path.abspath(sink.tmp) if chunked else None
            for tile in tiles:
                executor.submit(tile_task, paths["input"], paths["weight"], paths.get("bias"), tile, path_for(plan),
                                device, store, out_ref.key, dtype)
            t1 = time.perf_counter()
            for done in executor.completed():
                if done.error is not None:
                    executor.cancel()
                    if isinstance(done.error, DeconvError):
                        raise done.error
                    raise DeconvError(f"tile {tiles[done.task].index} failed on the cluster: {done.error!r}",
                                      "check that every worker sees the input files and has deconv-cli installed")
                if chunked:
                    continue
                tile = tiles[done.task]
                if sink is not None:
                    sink[tile.output_slices()] = done.value
                else:
                    import numpy as np

                    if gathered is None:
                        gathered = np.empty(plan.output_shape, dtype=done.value.dtype)
                    gathered[tile.output_slices()] = done.value
            t2 = time.perf_counter()
        if sink is not None:
            sink.commit()
        else:
            tensor_io.save(out_ref, gathered, force=force, chunks=chunks)
    finally:
        if sink is not None:
            sink.__exit__(None, None, None)
    t3 = time.perf_counter()
    return {"load_s": round(t1 - t0, 6), "compute_s": round(t2 - t1, 6), "save_s": round(t3 - t2, 6),
            "chunks": len(plan), "tasks": len(plan)}


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
    from ..engines import get_engine

    return compute_tile(get_engine(device), x_window, w, b, tile, path)
