"""Where the run loop's tensors come from and go to: readers of input windows, writers of output blocks.

``tiling.run_tiles`` runs every tile of a plan as ``writer.write(tile, compute(tile, reader.window(tile)))``;
in memory, streamed, a batch worker and a Dask cluster differ only in the reader, the writer and the executor
handed to it:

    reader                              writer
    ArrayWindows  (an array in memory)  ArrayWriter   (an array in memory; ``WholeFile`` saves it at the end)
    FileWindows   (a file on disk)      FileWriter    (a file written tile by tile, committed at the end)
    Counted       (NaN/Inf counts)      Counting      (NaN/Inf counts), Comparing (a reference, nothing written)
                                        WrittenByWorkers (Zarr chunks the cluster's workers write: ZarrTile)

A reader's ``window(tile)`` is the tile's input window; a writer's ``write(tile, block)`` takes the tile's
output block, ``finish()`` completes the output (a commit, a save, the comparison) and ``close()`` leaves
nothing behind that ``finish`` did not complete. ``FileWindows`` and ``Compute`` pickle, so that a cluster's
workers read their windows and compute themselves.
"""

from __future__ import annotations

from .tiles import Tile, TilePlan


def count_non_finite(array) -> tuple[int, int]:
    """(NaN count, Inf count) of an array. One reduction where all is finite (the usual case): a sum is
    finite exactly when no element is NaN or Inf, unless finite values overflow it, and then the count runs."""
    import numpy as np

    with np.errstate(all="ignore"):
        if array.size == 0 or np.isfinite(np.sum(array, dtype=np.float64 if array.dtype.itemsize > 4 else np.float32)):
            return 0, 0
        return int(np.count_nonzero(np.isnan(array))), int(np.count_nonzero(np.isinf(array)))


def _add(counts: dict, role: str, array) -> None:
    counts[role] = tuple(a + b for a, b in zip(counts.get(role, (0, 0)), count_non_finite(array)))


# ---------------------------------------------------------------- computing a tile


class Compute:
    """One tile's output block from its input window: the engine of ``device`` on the weight and bias, every
    tile on the same engine path (``path``, from ``tiling.path_for``).

    Built here (arrays in hand) or for a cluster's worker (``weight``/``bias`` as references, read once per
    worker process and cast to ``dtype``). ``host``: blocks come back as NumPy arrays (else on the device).
    """

    def __init__(self, device: str, weight, bias, path: str, *, dtype: str | None = None, host: bool = True):
        self.device, self.weight, self.bias, self.path, self.dtype, self.host = device, weight, bias, path, dtype, host
        self._checked = self._engine = None  # the path once the weight was looked at (with_weight), the engine

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_checked": None, "_engine": None}

    def __call__(self, tile: Tile, x):
        if self._engine is None:
            from ..engines import get_engine

            self._engine = get_engine(self.device)
        engine = self._engine
        w, b = _loaded(self.weight), None if self.bias is None else _loaded(self.bias)
        if self.dtype is not None:  # --cast on a worker
            w, b = w.astype(self.dtype, copy=False), None if b is None else b.astype(self.dtype, copy=False)
        if self._checked is None:
            self._checked = with_weight(self.path, w)
        block = engine.deconvolve(x, w, b, tile.config, tile.out_spatial, path=self._checked)
        return engine.to_host(block) if self.host else block


def with_weight(path: str, w) -> str:
    """The engine's own rule first: a NaN or Inf tap takes the scatter path, which multiplies real input
    only (the phase path would multiply the zero padding by it, turning unreached positions into NaN)."""
    import numpy as np

    from ..engines._common import all_finite

    w = w.get() if type(w).__module__.split(".")[0] == "cupy" else np.asarray(w)
    with np.errstate(all="ignore"):  # a float16 weight's sum may overflow: all_finite then looks closer
        return "scatter" if not all_finite(w, np) else path


_SHARED: dict = {}  # in a worker process: (reference, mtime, size) -> weight or bias, read once


def _loaded(tensor):
    """An array as it is, or a reference's array read once per process (a cluster worker's weight)."""
    if not isinstance(tensor, str):
        return tensor
    import os

    from .. import tensor_io

    ref = tensor_io.parse_ref(tensor)
    stat = os.stat(ref.path)
    key = (tensor, stat.st_mtime_ns, stat.st_size)
    if key not in _SHARED:
        import numpy as np

        if len(_SHARED) >= 8:
            _SHARED.clear()
        _SHARED[key] = np.ascontiguousarray(tensor_io.load(ref))
    return _SHARED[key]


# ---------------------------------------------------------------- readers


class ArrayWindows:
    """Windows of an input held in memory (NumPy, or CuPy with ``xp``), each C-contiguous; a window that is
    the whole of a C-contiguous input is the input itself, not a copy."""

    def __init__(self, x, xp):
        self.x, self.xp = x, xp

    def window(self, tile: Tile):
        if tile.input_shape == tuple(self.x.shape):
            return self.xp.ascontiguousarray(self.x)
        return self.xp.ascontiguousarray(self.x[tile.input_slices()])

    def close(self) -> None:
        pass


class FileWindows:
    """Windows of an input that stays on disk (a ``tensor_io.Ref`` or its text), read as each tile needs them,
    cast to ``dtype`` (--cast). Pickles as its reference, so that a cluster's worker reads its own windows (and
    closes after each)."""

    def __init__(self, ref, dtype: str | None = None):
        self.ref, self.dtype, self._slices = ref, dtype, None

    def __getstate__(self) -> dict:
        return {"ref": self.ref, "dtype": self.dtype, "_slices": None}

    def window(self, tile: Tile):
        import numpy as np

        from .. import tensor_io

        if self._slices is None:
            ref = tensor_io.parse_ref(self.ref) if isinstance(self.ref, str) else self.ref
            self._slices = tensor_io.open_slices(ref)
        x = np.ascontiguousarray(self._slices[tile.input_slices()])
        return x if self.dtype is None else x.astype(self.dtype, copy=False)

    def close(self) -> None:
        slices, self._slices = self._slices, None
        if slices is not None:
            slices.close()


class Counted:
    """A reader that counts NaN/Inf over each input position once (``counts["input"]``): windows overlap by
    their halo, so only the part of each window that no earlier tile read is counted."""

    def __init__(self, reader, plan: TilePlan, counts: dict):
        self.reader, self.plan, self.counts = reader, plan, counts
        counts.setdefault("input", (0, 0))

    def window(self, tile: Tile):
        x = self.reader.window(tile)
        _add(self.counts, "input", x[owned_part(self.plan, tile)])
        return x

    def close(self) -> None:
        self.reader.close()


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


# ---------------------------------------------------------------- writers


class ArrayWriter:
    """The output in memory (NumPy, or CuPy with ``xp``): a plan of one tile covering it keeps that tile's
    block itself, no copy. ``array`` after the loop."""

    def __init__(self, shape, dtype, xp):
        self.shape, self.dtype, self.xp, self.array = tuple(shape), dtype, xp, None

    def write(self, tile: Tile, block) -> None:
        if self.array is None and tile.output_shape == self.shape:
            self.array = block
            return
        if self.array is None:
            self.array = self.xp.empty(self.shape, dtype=self.dtype)
        self.array[tile.output_slices()] = block

    def finish(self):
        if self.array is None:  # a plan of no tiles (an empty batch)
            self.array = self.xp.empty(self.shape, dtype=self.dtype)
        return self.array

    def close(self) -> None:
        pass


class WholeFile(ArrayWriter):
    """The output gathered in memory and saved whole at the end (formats that cannot be written in parts)."""

    def __init__(self, ref, shape, dtype, *, force: bool, chunks=None):
        import numpy as np

        super().__init__(shape, dtype, np)
        self.ref, self.force, self.chunks = ref, force, chunks

    def finish(self):
        from .. import tensor_io

        tensor_io.save(self.ref, super().finish(), force=self.force, chunks=self.chunks)


class FileWriter:
    """The output written tile by tile into a temporary file (tensor_io.StreamWriter), committed by ``finish``;
    ``close`` without ``finish`` removes it."""

    def __init__(self, ref, shape, dtype, *, force: bool, chunks=None):
        from .. import tensor_io

        self.sink = tensor_io.StreamWriter(ref, shape, dtype, force=force, chunks=chunks)

    def write(self, tile: Tile, block) -> None:
        self.sink[tile.output_slices()] = block

    def finish(self) -> None:
        self.sink.commit()

    def close(self) -> None:
        self.sink.__exit__(None, None, None)


class WrittenByWorkers(FileWriter):
    """A chunked output (Zarr) that the cluster's workers write themselves, each tile its own chunks, into
    ``store`` (the temporary store); here only the commit."""

    def write(self, tile: Tile, block) -> None:
        pass

    @property
    def store(self) -> str:
        import os

        return os.path.abspath(self.sink.tmp)


class ZarrTile:
    """A worker's side of ``WrittenByWorkers``: ``compute``, then the tile's block into the temporary store's
    own chunks, here on the worker; None goes back instead of the block."""

    def __init__(self, compute, store: str, key: str | None):
        self.compute, self.store, self.key = compute, store, key

    def __call__(self, tile: Tile, x) -> None:
        import zarr

        block = self.compute(tile, x)
        zarr.open_array(self.store, path=(self.key or "").strip("/"), mode="r+")[tile.output_slices()] = block


class Counting:
    """A writer that counts NaN/Inf in the blocks written through it (``counts["output"]``)."""

    def __init__(self, writer, counts: dict):
        self.writer, self.counts = writer, counts
        counts.setdefault("output", (0, 0))

    def write(self, tile: Tile, block) -> None:
        _add(self.counts, "output", block)
        self.writer.write(tile, block)

    def finish(self):
        return self.writer.finish()

    def close(self) -> None:
        self.writer.close()


class Comparing:
    """No output: each block is compared with its window of the reference (``--expect`` alone), so an output
    larger than memory is checked in bounded memory and nothing is written. ``finish`` gives the Comparison."""

    def __init__(self, expect_ref, shape, dtype: str, *, atol=None, rtol=None):
        from ..checks.compare import BlockComparison

        self.comparison = BlockComparison(expect_ref, shape, dtype, atol=atol, rtol=rtol)

    def write(self, tile: Tile, block) -> None:
        self.comparison.update(tile.output_slices(), block)

    def finish(self):
        return self.comparison.result()

    def close(self) -> None:
        self.comparison.close()

