"""Pure integer tile planning: cut one deconvolution into smaller ones that fit a memory budget.

Batch splitting and spatial tiling are one mechanism. A tile is a block of the output (a batch range
and, per spatial axis, an output range) together with the input window that reaches it and a
``DeconvConfig`` for that window: the same kernel, stride, dilation, groups and layouts, with the crop
pair shifted so that the window's transposed result, cropped, is exactly that block.

Per spatial axis (kernel k, stride s, dilation d, crop lo, input length n), the output range [o0, o1)
reads full indices f = o + lo in [o0 + lo, o1 + lo); input i reaches f = i*s + t*d for a tap t, so the
window is i in [ceil((o0 + lo - d*(k-1))/s), floor((o1 - 1 + lo)/s)] clipped to [0, n) (at least one
position: a block no input reaches gets the bias alone, and one input position whose taps miss it
computes exactly that). With the window starting at i0, the tile's crops are

    lo' = o0 + lo - i0*s        hi' = full(i1 - i0) - lo' - (o1 - o0)

either of which may be negative, which the canonical config allows. Tiles are regular (every tile but
the last on an axis has the same extent), so chunked outputs (Zarr) get one chunk per tile.

One grid per problem. The tile grid depends only on the problem (config, shapes, dtype), never on the
memory budget: every way of running a deconvolution (in memory, streamed under any budget, on a Dask
cluster, through the Python API) computes the same tiles with the same engine calls, so the results are
identical bit for bit. A budget-dependent grid could not promise that: BLAS (OpenBLAS on this machine,
and MKL alike) does not sum one output element in an order that is independent of the GEMM's extent, so
the same element computed in a wider or narrower GEMM differs in the last bits (``A @ B[:, :j]`` against
``(A @ B)[:, :j]`` differs for almost every j in float32). The budget only decides whether the input and
output are held whole in memory or streamed tile by tile; only a budget smaller than one tile (128 MiB)
cuts finer tiles, whose results may then differ from the in-memory run's in the last bit.

A tile's input window plus output block take about ``TILE_BYTES``. Tiles cut the batch first; a sample
that does not fit is cut along its outermost spatial axis, then the next, keeping the inner axes whole
(long contiguous runs in C-ordered files).

No numpy, no I/O: ints in, ints out.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

from ..core.config import DeconvConfig, Shape
from ..core.shapes import full_length

# Input window + output block of one tile. Large enough that the engine runs every problem of the benchmark
# suite (at most 123 MiB of tensors) as one call, as fast as the benchmark measures it: with 16 MiB tiles an
# in-memory `deconv run` took 1.33x the engine's time on hifigan (8 tiles) and 1.38x on the 3-D U-Net k3s2
# (3 tiles), measured after the engine's item caps were fitted (3-D U-Net k3s2 1x32x64^3 before them: 4 MiB
# tiles 1.9x the untiled time, 8 MiB 1.4x, 16 MiB 1.05x). A budget below it cuts finer tiles.
TILE_BYTES = 128 << 20


@dataclass(frozen=True)
class Tile:
    """One block of the output and what computes it."""

    index: tuple[int, ...]  # position in the plan's grid (batch, *spatial)
    input: tuple[tuple[int, int], ...]  # (start, stop) per input axis, file layout
    output: tuple[tuple[int, int], ...]  # (start, stop) per output axis, file layout
    config: DeconvConfig  # the deconvolution of the input window that gives the output block
    out_spatial: Shape  # the block's spatial extent

    def input_slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in self.input)

    def output_slices(self) -> tuple[slice, ...]:
        return tuple(slice(a, b) for a, b in self.output)

    @property
    def input_shape(self) -> Shape:
        return tuple(b - a for a, b in self.input)

    @property
    def output_shape(self) -> Shape:
        return tuple(b - a for a, b in self.output)


@dataclass(frozen=True)
class TilePlan:
    config: DeconvConfig
    input_shape: Shape
    output_shape: Shape
    block: Shape  # the regular tile extent per output axis (the last tile on an axis may be smaller)
    grid: Shape  # tiles per axis (batch, *spatial); 1 on an unbatched plan's batch
    tile_bytes: int  # at most this many bytes of input window + output block in any one tile

    def __len__(self) -> int:
        return math.prod(self.grid)

    def __iter__(self):
        for index in itertools.product(*(range(g) for g in self.grid)):
            yield self.tile(index)

    @property
    def tiled(self) -> bool:
        """Whether the work is cut at all."""
        return len(self) > 1

    @property
    def spatial(self) -> bool:
        """Whether a sample is cut spatially (not only the batch)."""
        return math.prod(self.grid[1:]) > 1

    def tile(self, index: tuple[int, ...]) -> Tile:
        config = self.config
        batch_axis, channel_axis, spatial_axes = config.input_axes()
        out_spatial_axes = spatial_axes  # the output follows the input's layout rule
        block_spatial = [self.block[a] for a in out_spatial_axes]
        windows, ranges, crops = [], [], []
        for a, axis in enumerate(spatial_axes):
            size_out = self.output_shape[axis]
            o0 = index[1 + a] * block_spatial[a]
            o1 = min(size_out, o0 + block_spatial[a])
            i0, i1 = input_window(config, a, self.input_shape[axis], o0, o1)
            lo = o0 + config.crops[a][0] - i0 * config.stride[a]
            full = full_length(i1 - i0, config.kernel[a], config.stride[a], config.dilation[a])
            windows.append((i0, i1))
            ranges.append((o0, o1))
            crops.append((lo, full - lo - (o1 - o0)))
        in_bounds = [(0, n) for n in self.input_shape]
        out_bounds = [(0, n) for n in self.output_shape]
        for a, axis in enumerate(spatial_axes):
            in_bounds[axis], out_bounds[axis] = windows[a], ranges[a]
        if batch_axis is not None:
            b0 = index[0] * self.block[batch_axis]
            b1 = min(self.output_shape[batch_axis], b0 + self.block[batch_axis])
            in_bounds[batch_axis] = out_bounds[batch_axis] = (b0, b1)
        return Tile(
            index=tuple(index), input=tuple(in_bounds), output=tuple(out_bounds),
            config=replace(config, crops=tuple(crops)), out_spatial=tuple(b - a for a, b in ranges),
        )


CHUNK_BYTES = 4 << 20  # chunked outputs (Zarr): at most this much per chunk, so encoding one stays cheap


def chunk_shape(plan: TilePlan, itemsize: int, max_bytes: int = CHUNK_BYTES) -> Shape:
    """Chunks for a chunked output that nest in the tile grid: each extent divides the tile's, so every
    chunk belongs to exactly one tile (tiles written concurrently never share a chunk). The tile block is
    cut along its outer axes first, each by the largest divisor that fits (or to 1, then the next axis)."""
    chunk = list(plan.block)
    for axis in range(len(chunk)):
        if math.prod(chunk) * itemsize <= max_bytes:
            break
        rest = math.prod(chunk) // chunk[axis] * itemsize
        fitting = [d for d in range(1, chunk[axis] + 1) if chunk[axis] % d == 0 and d * rest <= max_bytes]
        chunk[axis] = max(fitting) if fitting else 1
    return tuple(chunk)


def input_window(config: DeconvConfig, axis: int, size_in: int, o0: int, o1: int) -> tuple[int, int]:
    """The input range [i0, i1) that reaches output positions [o0, o1) along one spatial axis
    (clipped to the input, and never empty)."""
    k, s, d, lo = config.kernel[axis], config.stride[axis], config.dilation[axis], config.crops[axis][0]
    first = -(-(o0 + lo - d * (k - 1)) // s)  # ceil
    last = (o1 - 1 + lo) // s
    i0 = min(max(0, first), size_in - 1)
    i1 = max(i0 + 1, min(size_in, last + 1))
    return i0, i1


def _window_bound(config: DeconvConfig, axis: int, size_in: int, extent: int) -> int:
    """The largest input window any block of ``extent`` output positions can need along an axis."""
    k, s, d = config.kernel[axis], config.stride[axis], config.dilation[axis]
    return max(1, min(size_in, (extent - 1 + d * (k - 1)) // s + 2))


def plan_tiles(config: DeconvConfig, input_shape: Shape, output_shape: Shape, itemsize: int,
               budget: int | None = None) -> TilePlan:
    """Tiles whose input window plus output block take at most ``budget`` bytes (default ``TILE_BYTES``;
    the smallest tile, one sample and one output position per spatial axis, when even that does not fit).
    Runs that must agree bit for bit use the default."""
    budget = TILE_BYTES if budget is None else budget
    input_shape, output_shape = tuple(input_shape), tuple(output_shape)
    batch_axis, channel_axis, spatial_axes = config.input_axes()
    rank = config.rank
    cin, cout = config.in_channels, config.out_channels
    n = output_shape[batch_axis] if batch_axis is not None else 1
    size_in = [input_shape[a] for a in spatial_axes]
    size_out = [output_shape[a] for a in spatial_axes]

    def cost(batch: int, extents: list[int]) -> int:
        window = math.prod(_window_bound(config, a, size_in[a], e) for a, e in enumerate(extents))
        return batch * (cin * window + cout * math.prod(extents)) * itemsize

    extents = [max(1, v) for v in size_out]
    per_sample = cost(1, extents)
    if per_sample <= budget:
        batch = max(1, min(n, budget // max(1, per_sample)))
    else:
        batch = 1
        for a in range(rank):  # outermost first: the largest extent on this axis with the inner axes whole
            lo_e, hi_e = 1, extents[a]
            while lo_e < hi_e:
                mid = (lo_e + hi_e + 1) // 2
                if cost(1, extents[:a] + [mid] + extents[a + 1 :]) <= budget:
                    lo_e = mid
                else:
                    hi_e = mid - 1
            extents[a] = lo_e
            if cost(1, extents) <= budget:
                break
            extents[a] = 1  # one position on this axis is still too much: cut the next axis too
        else:
            extents = [1] * rank
    block = list(output_shape)
    grid = [1] * (rank + 1)
    if batch_axis is not None:
        block[batch_axis] = batch
        grid[0] = -(-n // batch)
    for a, axis in enumerate(spatial_axes):
        block[axis] = extents[a]
        grid[1 + a] = max(1, -(-size_out[a] // extents[a]))
    return TilePlan(config, input_shape, output_shape, tuple(block), tuple(grid), cost(batch, extents))
