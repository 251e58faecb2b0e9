"""Tile planning (tiles.py) and running a plan (tiling.py): a tile is the same deconvolution of its input
window with shifted crops; runs of one problem agree bit for bit whatever the memory budget."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from deconv_cli import tensor_io
from deconv_cli.core.config import DeconvConfig
from deconv_cli.core.shapes import derive, full_length
from deconv_cli.engines import numpy_engine
from deconv_cli.execution import tiles, tiling
from deconv_cli.execution.job import Job, run_job

_SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def problems(draw):
    """A random deconvolution: any rank, strides, dilations, crops of either sign, groups, layouts, dtypes."""
    rank = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    spatial = tuple(draw(st.integers(1, 9 if rank < 3 else 5)) for _ in range(rank))
    crops = []
    for a in range(rank):
        full = full_length(spatial[a], kernel[a], stride[a], dilation[a])
        lo = draw(st.integers(-3, full))
        crops.append((lo, draw(st.integers(-3, full - lo))))
    batched, channels_last = draw(st.booleans()), draw(st.booleans())
    config = DeconvConfig(kernel, stride, dilation, tuple(crops), groups, cin, cout,
                          batched=batched, channels_last=channels_last)
    batch = (draw(st.integers(1, 3)),) if batched else ()
    shape = batch + ((*spatial, cin) if channels_last else (cin, *spatial))
    dtype = draw(st.sampled_from(["float16", "float32", "float64"]))
    return config, shape, dtype, draw(st.booleans()), draw(st.integers(0, 2**31))


def _tensors(config, shape, dtype, with_bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(config.weight_shape).astype(dtype)
    b = rng.standard_normal(config.out_channels).astype(dtype) if with_bias else None
    return x, w, b


@given(problem=problems(), tile_bytes=st.integers(1, 4096))
@_SETTINGS
def test_tiles_cover_the_output_once_and_read_only_their_window(problem, tile_bytes):
    """Pure ints: the blocks partition the output; each tile's config derives exactly its block from
    its window, and the window holds every input position that reaches the block within a bounded span."""
    config, shape, dtype, _, _ = problem
    derivation = derive(config, shape)
    plan = tiles.plan_tiles(config, shape, derivation.output_shape, np.dtype(dtype).itemsize, tile_bytes)
    covered = np.zeros(derivation.output_shape, dtype=np.int32)
    _, _, spatial_axes = config.input_axes()
    for tile in plan:
        covered[tile.output_slices()] += 1
        assert derive(tile.config, tile.input_shape).output_shape == tile.output_shape
        for a, axis in enumerate(spatial_axes):
            (i0, i1), (o0, o1) = tile.input[axis], tile.output[axis]
            k, s, d, lo = config.kernel[a], config.stride[a], config.dilation[a], config.crops[a][0]
            reaching = [i for i in range(shape[axis]) if any(o0 <= i * s + t * d - lo < o1 for t in range(k))]
            assert 0 <= i0 < i1 <= shape[axis]  # never empty: a block no input reaches gets the bias alone
            if reaching:
                assert i0 <= min(reaching) and max(reaching) < i1
            # the span of the full indices the block reads (dilation may leave holes in it)
            assert i1 - i0 <= max(1, (o1 - o0 - 1 + d * (k - 1)) // s + 2)
    assert covered.size == 0 or (covered.min() == 1 and covered.max() == 1)
    assert plan.tile_bytes <= max(tile_bytes, _smallest_tile(config, shape, derivation, dtype))


def _smallest_tile(config, shape, derivation, dtype):
    smallest = tiles.plan_tiles(config, shape, derivation.output_shape, np.dtype(dtype).itemsize, 1)
    return smallest.tile_bytes


@given(problem=problems(), tile_bytes=st.integers(1, 4096))
@_SETTINGS
def test_tiled_result_is_the_deconvolution(problem, tile_bytes):
    """Assembled tiles equal the untiled engine call up to the last bits of the GEMMs' summation order
    (BLAS sums one element differently in GEMMs of other extents), and equal a tiling-free oracle."""
    from reference import reference_deconv

    config, shape, dtype, with_bias, seed = problem
    derivation = derive(config, shape)
    x, w, b = _tensors(config, shape, dtype, with_bias, seed)
    plan = tiles.plan_tiles(config, shape, derivation.output_shape, np.dtype(dtype).itemsize, tile_bytes)
    got = tiling.compute_in_memory(numpy_engine, x, w, b, plan)
    whole = numpy_engine.deconvolve(x, w, b, config, derivation.output_spatial)
    assert got.dtype == whole.dtype and got.shape == whole.shape
    xc = x if config.batched else x[None]
    xc = np.moveaxis(xc, -1, 1) if config.channels_last else xc
    want = reference_deconv(xc, w, b, stride=config.stride, dilation=config.dilation, crops=config.crops,
                            groups=config.groups)
    want = want if config.batched else want[0]
    want = np.moveaxis(want, 0 if not config.batched else 1, -1) if config.channels_last else want
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    tol = {"float16": 4e-3, "float32": 2e-6, "float64": 1e-12}[dtype] * scale * 4
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=0, atol=tol)
    np.testing.assert_allclose(got.astype(np.float64), whole.astype(np.float64), rtol=0, atol=tol)


@given(problem=problems(), tile_bytes=st.integers(1, 2048))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_streamed_tiles_give_the_in_memory_bits(problem, tile_bytes, tmp_path_factory):
    """The same plan run in memory and streamed from .npy to .npy/.h5/.zarr: the same bits, the sign of
    zero included (each tile is the same engine call on the same window)."""
    from deconv_cli.execution.job import _stream

    config, shape, dtype, with_bias, seed = problem
    x, w, b = _tensors(config, shape, dtype, with_bias, seed)
    folder = tmp_path_factory.mktemp("stream")
    refs = {"input": folder / "x.npy", "weight": folder / "w.npy"} | ({"bias": folder / "b.npy"} if with_bias else {})
    for role, array in (("input", x), ("weight", w), ("bias", b)):
        if role in refs:
            np.save(refs[role], array)
    refs = {role: tensor_io.parse_ref(str(path)) for role, path in refs.items()}
    derivation = derive(config, shape)
    plan = tiles.plan_tiles(config, shape, derivation.output_shape, np.dtype(dtype).itemsize, tile_bytes)
    whole = tiling.compute_in_memory(numpy_engine, x, w, b, plan)
    for target in ("y.npy", "y.h5:/g/y", "y.zarr:/g/y"):
        out = tensor_io.parse_ref(str(folder / target))
        timings, _ = _stream(refs, out, plan, numpy_engine, dtype, False)
        assert timings["chunks"] == len(plan)
        got = tensor_io.load(out)[...]
        assert got.dtype == whole.dtype and got.shape == whole.shape
        assert got.tobytes() == whole.tobytes()


@pytest.mark.parametrize("budget", ["64K", "9K", "5K"])
@pytest.mark.parametrize("target", ["y.npy", "y.h5:/out/y", "y.zarr"])
def test_run_under_any_budget_writes_identical_bits(tmp_path, monkeypatch, budget, target):
    """The CLI job: an in-memory run and runs streamed under smaller budgets give the same bytes."""
    rng = np.random.default_rng(7)
    np.save(tmp_path / "x.npy", rng.standard_normal((2, 3, 11, 9, 7)).astype(np.float32))
    np.save(tmp_path / "w.npy", rng.standard_normal((3, 4, 3, 2, 3)).astype(np.float32))
    np.save(tmp_path / "b.npy", rng.standard_normal(4).astype(np.float32))
    monkeypatch.setattr(tiles, "TILE_BYTES", 4096)
    monkeypatch.chdir(tmp_path)
    options = {"stride": (2, 1, 3), "padding": (1, 0, 2), "output_padding": (1, 0, 1), "dilation": (1, 2, 1)}
    job = Job("x.npy", "w.npy", "whole.npy", bias="b.npy", options=options)
    assert "chunks" not in run_job(job).timings  # 64 KiB of input and output fit the default budget
    monkeypatch.setenv("DECONV_MEMORY_BUDGET", budget)
    result = run_job(Job("x.npy", "w.npy", target, bias="b.npy", options=options))
    assert result.timings["chunks"] > 2
    got = tensor_io.load(tensor_io.parse_ref(target))[...]
    assert got.tobytes() == np.load(tmp_path / "whole.npy").tobytes()
    assert not [n for n in (tmp_path).iterdir() if n.name.startswith(".deconv-")]


@pytest.mark.parametrize("target", ["y.npy", "y.zarr"])
def test_tiles_take_the_whole_problems_ort_path_and_give_the_same_bits(tmp_path, monkeypatch, target):
    """A problem the rules give onnxruntime: every tile runs it too, streamed tiles give the in-memory bytes."""
    pytest.importorskip("onnxruntime")
    from deconv_cli.engines import dispatch, ort

    rng = np.random.default_rng(11)
    np.save(tmp_path / "x.npy", rng.standard_normal((8, 8, 20, 16)).astype(np.float32))
    np.save(tmp_path / "w.npy", rng.standard_normal((8, 4, 3, 3)).astype(np.float32))
    np.save(tmp_path / "b.npy", rng.standard_normal(4).astype(np.float32))
    monkeypatch.setattr(tiles, "TILE_BYTES", 4096)
    monkeypatch.setattr(dispatch, "ORT_MIN_MACS", 0)  # this small problem counts as large enough
    monkeypatch.chdir(tmp_path)
    options = {"stride": (2, 2), "padding": (1, 2), "output_padding": (1, 0), "dilation": (2, 1)}
    derivation = derive(DeconvConfig(kernel=(3, 3), stride=(2, 2), dilation=(2, 1), crops=((1, 0), (2, 2)), groups=1,
                                     in_channels=8, out_channels=4), (8, 8, 20, 16))
    assert tiling.path_for(tiling.plan_for(derivation, "float32")) == "ort"
    ort._session.cache_clear()
    run_job(Job("x.npy", "w.npy", "whole.npy", bias="b.npy", options=options))
    monkeypatch.setenv("DECONV_MEMORY_BUDGET", "6K")
    result = run_job(Job("x.npy", "w.npy", target, bias="b.npy", options=options))
    assert result.timings["chunks"] > 2
    assert ort._session.cache_info().misses > 2  # the tiles' own sessions: they ran onnxruntime
    got = tensor_io.load(tensor_io.parse_ref(target))[...]
    assert got.tobytes() == np.load(tmp_path / "whole.npy").tobytes()


def test_the_grid_does_not_depend_on_the_budget(monkeypatch):
    monkeypatch.setattr(tiles, "TILE_BYTES", 4 << 20)  # tiles smaller than one sample of this problem
    config = DeconvConfig((3, 3), (2, 2), (1, 1), ((1, 0), (1, 0)), 1, 16, 8)
    derivation = derive(config, (4, 16, 300, 300))
    plan = tiling.plan_for(derivation, "float32")
    for budget in ("8M", "64M", "16G"):
        monkeypatch.setenv("DECONV_MEMORY_BUDGET", budget)
        assert tiling.plan_for(derivation, "float32") == plan
    assert plan.tile_bytes <= tiles.TILE_BYTES and len(plan) > 1
    assert plan.spatial  # one sample (9.2 MB of input and output) is cut into row blocks
    assert plan.block == (1, 8, plan.block[2], 600) and plan.grid == (4, math.ceil(600 / plan.block[2]), 1)


@given(problem=problems(), tile_bytes=st.integers(1, 4096), chunk_bytes=st.integers(1, 1024))
@_SETTINGS
def test_chunks_nest_in_the_tiles(problem, tile_bytes, chunk_bytes):
    """Every chunk of a chunked output lies in exactly one tile, so concurrent tiles never share one."""
    config, shape, dtype, _, _ = problem
    derivation = derive(config, shape)
    itemsize = np.dtype(dtype).itemsize
    plan = tiles.plan_tiles(config, shape, derivation.output_shape, itemsize, tile_bytes)
    chunk = tiles.chunk_shape(plan, itemsize, chunk_bytes)
    assert all(b % c == 0 for b, c in zip(plan.block, chunk))
    # within the size, unless every axis but the innermost is already down to 1
    assert math.prod(chunk) * itemsize <= chunk_bytes or all(c == 1 for c in chunk[:-1])


@st.composite
def torch_jobs(draw):
    rank = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 2]))
    cin, cout_g = groups * draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = [draw(st.integers(1, 3)) for _ in range(rank)]
    stride = [draw(st.integers(1, 3)) for _ in range(rank)]
    dilation = [draw(st.integers(1, 2)) for _ in range(rank)]
    padding = [draw(st.integers(0, 2)) for _ in range(rank)]
    output_padding = [draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation)]
    spatial = [draw(st.integers(2, 12 if rank < 3 else 6)) for _ in range(rank)]
    batch = [draw(st.integers(1, 3))] if draw(st.booleans()) else []
    options = {"stride": tuple(stride), "dilation": tuple(dilation), "padding": tuple(padding),
               "output_padding": tuple(output_padding), "groups": groups}
    return (*batch, cin, *spatial), (cin, cout_g, *kernel), options, draw(st.sampled_from(["float16", "float32", "float64"]))


@given(job=torch_jobs(), fractions=st.lists(st.floats(0, 1), min_size=1, max_size=3),
       target=st.sampled_from(["y.npy", "y.h5:/y", "y.zarr"]), seed=st.integers(0, 2**31))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_random_budgets_give_the_untiled_bits(job, fractions, target, seed, tmp_path_factory, monkeypatch):
    """`run` under random DECONV_MEMORY_BUDGET values, from one tile up to more than the whole job,
    writes the bytes of the in-memory run."""
    x_shape, w_shape, options, dtype = job
    folder = tmp_path_factory.mktemp("budget")
    rng = np.random.default_rng(seed)
    np.save(folder / "x.npy", rng.standard_normal(x_shape).astype(dtype))
    np.save(folder / "w.npy", rng.standard_normal(w_shape).astype(dtype))
    monkeypatch.chdir(folder)
    monkeypatch.setattr(tiles, "TILE_BYTES", 700)
    monkeypatch.delenv("DECONV_MEMORY_BUDGET", raising=False)
    from deconv_cli.core.errors import ConfigError

    try:
        whole = run_job(Job("x.npy", "w.npy", "whole.npy", options=options))
    except ConfigError:  # torch rejects it (an output dimension below 1)
        assume(False)
    plan = tiling.plan_for(whole.derivation, dtype)
    total = (math.prod(x_shape) + math.prod(whole.derivation.output_shape)) * np.dtype(dtype).itemsize
    want = np.load(folder / "whole.npy").tobytes()
    for i, fraction in enumerate(fractions):
        budget = plan.tile_bytes + int(fraction * (total - plan.tile_bytes))
        monkeypatch.setenv("DECONV_MEMORY_BUDGET", str(budget))
        out = target.replace("y.", f"y{i}.")
        timings = run_job(Job("x.npy", "w.npy", out, options=options)).timings
        assert timings.get("chunks") == (len(plan) if total > budget else None)  # streamed tile by tile
        assert tensor_io.load(tensor_io.parse_ref(out))[...].tobytes() == want
