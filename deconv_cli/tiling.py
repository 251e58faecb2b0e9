"""Running a tile plan (``tiles.py``): every tile is one engine call on its input window.

One home for the loop that ``run`` (in memory or streamed), the Python API and Dask share, so that all
of them make the same engine calls on the same windows and agree bit for bit.

    plan = plan_for(derivation, dtype)
    y = compute_in_memory(engine, x, w, b, plan)                   # arrays in memory
    stream(engine, reader, writer, w, b, plan)                     # windows read and written as they go
"""

from __future__ import annotations

from .shapes import Derivation
from .tiles import Tile, TilePlan, plan_tiles

_ITEMSIZE = {"float16": 2, "float32": 4, "float64": 8}


def plan_for(derivation: Derivation, dtype: str) -> TilePlan:
    """The one tile grid of this problem (see ``tiles``)."""
    return plan_tiles(derivation.config, derivation.input_shape, derivation.output_shape, _ITEMSIZE[str(dtype)])


def compute_tile(engine, x_window, w, b, tile: Tile):
    """One tile's output block (on the host) from its input window (file layout, C-contiguous)."""
    import numpy as np

    x_window = np.ascontiguousarray(x_window) if engine.DEVICE == "cpu" else x_window
    return engine.to_host(engine.deconvolve(x_window, w, b, tile.config, tile.out_spatial))


def compute_in_memory(engine, x, w, b, plan: TilePlan, *, xp=None):
    """The whole output, tile by tile, from an input held in memory: on the host (NumPy), or on the
    device when ``xp`` is CuPy and ``x`` a CuPy array."""
    if xp is None:
        import numpy as xp
    if len(plan) == 1 and next(iter(plan)).input_shape == tuple(x.shape):
        tile = next(iter(plan))  # one tile reading the whole input: no copy of a C-contiguous one
        block = engine.deconvolve(xp.ascontiguousarray(x), w, b, tile.config, tile.out_spatial)
        return block if xp.__name__ == "cupy" else engine.to_host(block)
    y = xp.empty(plan.output_shape, dtype=x.dtype)
    for tile in plan:
        block = engine.deconvolve(xp.ascontiguousarray(x[tile.input_slices()]), w, b, tile.config, tile.out_spatial)
        y[tile.output_slices()] = block if xp.__name__ == "cupy" else engine.to_host(block)
    return y


def stream(engine, reader, writer, w, b, plan: TilePlan) -> dict:
    """Read each tile's window, compute it, write its block; returns the seconds spent on each."""
    import time

    load = compute = save = 0.0
    for tile in plan:
        t0 = time.perf_counter()
        x = reader[tile.input_slices()]
        t1 = time.perf_counter()
        y = compute_tile(engine, x, w, b, tile)
        del x
        t2 = time.perf_counter()
        writer[tile.output_slices()] = y
        del y
        load, compute, save = load + t1 - t0, compute + t2 - t1, save + time.perf_counter() - t2
    return {"load_s": load, "compute_s": compute, "save_s": save}
