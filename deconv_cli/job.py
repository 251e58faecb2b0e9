"""A Job is one deconvolution request; ``plan`` is the pure part, ``run_job`` the whole pipeline.

    style options + shapes --parse--> DeconvConfig --derive--> Derivation
    [load input/weight/bias --engine--> output --save--> OUT]
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from . import conventions, tensor_io, tiles, tiling
from .config import Shape
from .errors import ConfigError, DeconvError
from .shapes import Derivation, derive

FLOAT_DTYPES = ("float16", "float32", "float64")
_ITEMSIZE = {"float16": 2, "float32": 4, "float64": 8}
# Above this many bytes of input + output, a job streams tiles (batch slices, spatial blocks) from and to disk.
DEFAULT_MEMORY_BUDGET = 2 << 30


def memory_budget() -> int:
    """Bytes of input + output a job may hold in memory (DECONV_MEMORY_BUDGET overrides, e.g. 512M)."""
    text = os.environ.get("DECONV_MEMORY_BUDGET", "").strip().upper()
    if not text:
        return DEFAULT_MEMORY_BUDGET
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
    try:
        return int(float(text.rstrip("KMG")) * scale)
    except ValueError:
        raise DeconvError(f"DECONV_MEMORY_BUDGET={text!r} is not a size", "write e.g. 512M or 4G") from None


def plan(
    style: str,
    options: Mapping[str, object],
    input_shape: Shape,
    weight_shape: Shape,
    bias_shape: Shape | None = None,
    *,
    quirks: bool = False,
    dtypes: Mapping[str, str] | None = None,
) -> Derivation:
    """Parse a style's options against the shapes and derive the output. Reads no data.

    Cached: a batch repeats the same options and shapes over many jobs. The key is the options' repr,
    so ``[2, 2]`` and ``(2, 2)`` stay distinct spellings (the record shows the user's own).
    """
    key = (
        style, repr(tuple(options.items())), tuple(input_shape), tuple(weight_shape),
        None if bias_shape is None else tuple(bias_shape), quirks, None if not dtypes else tuple(dtypes.items()),
    )
    derivation = _PLANS.get(key)
    if derivation is None:
        derivation = _plan_uncached(style, options, input_shape, weight_shape, bias_shape, quirks=quirks, dtypes=dtypes)
        if len(_PLANS) >= 512:
            _PLANS.clear()
        _PLANS[key] = derivation
    return derivation


_PLANS: dict[tuple, Derivation] = {}  # plan() results by canonical key; Derivations are frozen


def _plan_uncached(
    style: str,
    options: Mapping[str, object],
    input_shape: Shape,
    weight_shape: Shape,
    bias_shape: Shape | None = None,
    *,
    quirks: bool = False,
    dtypes: Mapping[str, str] | None = None,
) -> Derivation:
    """Parse a style's options against the shapes and derive the output. Reads no data."""
    convention = conventions.get(style)
    input_shape, weight_shape = tuple(input_shape), tuple(weight_shape)
    bias_shape = None if bias_shape is None else tuple(bias_shape)
    if dtypes:
        check_dtypes(dtypes, convention)
    parsed = convention.parse(
        options, input_shape=input_shape, weight_shape=weight_shape, bias_shape=bias_shape, quirks=quirks
    )
    return derive(
        parsed.config, input_shape, dim_notes=parsed.dim_notes, notes=parsed.notes, warnings=parsed.warnings,
        style=style, options=tuple(options.items()), weight_shape=weight_shape,
    )


def check_dtypes(dtypes: Mapping[str, str], convention) -> None:
    """All tensors share one floating dtype that the style's framework computes in."""
    for role, dtype in dtypes.items():
        if dtype not in FLOAT_DTYPES:
            raise ConfigError(f"{role} has dtype {dtype}; deconv computes in float16, float32 or float64", f"cast the {role} to float32")
    if len(set(dtypes.values())) > 1:
        found = ", ".join(f"{role} {dtype}" for role, dtype in dtypes.items())
        raise ConfigError(f"mixed dtypes ({found}); {convention.FRAMEWORK} requires one dtype", "cast all tensors to the same dtype")
    dtype = next(iter(dtypes.values()))
    if dtype not in convention.DTYPES:
        # DTYPE_NOTES: what the framework really does with that dtype (an abort, a silent downcast)
        what = getattr(convention, "DTYPE_NOTES", {}).get(dtype, "")
        raise ConfigError(
            f"{convention.FRAMEWORK} does not compute in {dtype} (it takes {', '.join(convention.DTYPES)})"
            + (f": {what}" if what else ""),
            f"cast the tensors to {convention.DTYPES[-1] if dtype == 'float64' else 'float32'}",
        )


@dataclass(frozen=True)
class Job:
    input: str
    weight: str
    output: str
    bias: str | None = None
    style: str = "torch"
    options: Mapping[str, object] = field(default_factory=dict)
    device: str = "cpu"
    force: bool = False
    quirks: bool = False
    scheduler: str | None = None  # a Dask scheduler address: the tiles run there as tasks


@dataclass(frozen=True)
class Result:
    derivation: Derivation
    dtype: str
    device: str
    engine: str
    timings: dict

    def as_dict(self) -> dict:
        record = self.derivation.as_dict()
        record.update(dtype=self.dtype, device=self.device, engine=self.engine, timings=self.timings)
        return record


def run_job(job: Job, *, load_shared: Callable | None = None) -> Result:
    """Validate everything from headers, then load, compute and save atomically.

    ``load_shared`` reads the tensors that many jobs share (weight, bias); batch workers pass a cache.
    """
    from .engines import get_engine

    refs = {"input": tensor_io.parse_ref(job.input), "weight": tensor_io.parse_ref(job.weight)}
    if job.bias is not None:
        refs["bias"] = tensor_io.parse_ref(job.bias)
    out_ref = tensor_io.parse_ref(job.output)
    stdin_users = [role for role, ref in refs.items() if ref.path == "-"]
    if len(stdin_users) > 1:
        raise DeconvError(f"only one tensor can come from stdin ('-'), got {' and '.join(stdin_users)}")

    t0 = time.perf_counter()
    infos = {role: tensor_io.peek(ref) for role, ref in refs.items() if ref.path != "-"}
    arrays = {role: tensor_io.load(ref) for role, ref in refs.items() if ref.path == "-"}
    for role, array in arrays.items():
        infos[role] = tensor_io.ArrayInfo(role, tuple(array.shape), str(array.dtype))
    derivation = plan(
        job.style, job.options, infos["input"].shape, infos["weight"].shape,
        infos["bias"].shape if "bias" in infos else None,
        quirks=job.quirks, dtypes={role: info.dtype for role, info in infos.items()},
    )
    tensor_io.check_writable(out_ref, force=job.force)
    engine = get_engine(job.device)
    dtype = infos["input"].dtype
    tile_plan = tiling.plan_for(derivation, dtype)
    out_bytes = math.prod(derivation.output_shape) * _ITEMSIZE[dtype]
    total = math.prod(infos["input"].shape) * _ITEMSIZE[dtype] + out_bytes
    check_free_space(out_ref, out_bytes)
    budget = memory_budget()
    if job.scheduler is not None:
        if "input" in arrays:
            raise DeconvError("--scheduler: workers read the input themselves, not from stdin", "save the input to a file")
        if total > budget:
            check_streamable(out_ref, total, budget, tile_plan)
        times = tiling.run_on_cluster(job.scheduler, refs, out_ref, tile_plan, dtype, engine.DEVICE, force=job.force)
        return Result(derivation, dtype, engine.DEVICE, engine.NAME, times)
    if "input" not in arrays and total > budget:
        check_streamable(out_ref, total, budget, tile_plan)
        in_bytes = total - out_bytes
        if refs["input"].kind not in tensor_io.WINDOWED and in_bytes > budget:
            raise DeconvError(
                f"the input takes {_size(in_bytes)}, over DECONV_MEMORY_BUDGET ({_size(budget)}), and "
                f"{refs['input'].kind} cannot be read in parts",
                f"save the input as {', '.join(tensor_io.WINDOWED)}, or raise DECONV_MEMORY_BUDGET",
            )
        try:
            times = _stream(refs, out_ref, tile_plan, engine, job.force)
        except MemoryError:
            raise _out_of_memory(derivation) from None
        return Result(derivation, dtype, engine.DEVICE, engine.NAME, times)
    for role, ref in refs.items():
        if role not in arrays:
            arrays[role] = tensor_io.load(ref) if role == "input" or load_shared is None else load_shared(ref)
    t1 = time.perf_counter()
    try:
        output = tiling.compute_in_memory(engine, arrays["input"], arrays["weight"], arrays.get("bias"), tile_plan)
    except MemoryError:
        raise _out_of_memory(derivation) from None
    t2 = time.perf_counter()
    tensor_io.save(out_ref, output, force=job.force, chunks=tiles.chunk_shape(tile_plan, output.dtype.itemsize))
    t3 = time.perf_counter()
    timings = {"load_s": round(t1 - t0, 6), "compute_s": round(t2 - t1, 6), "save_s": round(t3 - t2, 6)}
    return Result(derivation, str(output.dtype), engine.DEVICE, engine.NAME, timings)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _size_setting(n: int) -> str:
    """A DECONV_MEMORY_BUDGET value of at least n bytes (512K, 12M)."""
    return f"{-(-n // (1 << 20))}M" if n > 1 << 20 else f"{-(-n // 1024)}K"


def check_streamable(out_ref, total: int, budget: int, tile_plan) -> None:
    """Over the budget, the output must be written in parts and the budget must hold one tile."""
    if not tensor_io.can_stream(out_ref):
        where = "stdout" if out_ref.path == "-" else out_ref.kind
        raise DeconvError(
            f"input + output take {_size(total)}, over DECONV_MEMORY_BUDGET ({_size(budget)}), and {where} "
            "cannot be written in parts",
            f"write the output to {', '.join(tensor_io.STREAMING)} (they stream tile by tile), or raise DECONV_MEMORY_BUDGET",
        )
    if tile_plan.tile_bytes > budget:
        raise DeconvError(
            f"DECONV_MEMORY_BUDGET ({_size(budget)}) cannot hold one tile of this job ({_size(tile_plan.tile_bytes)} "
            "of input window and output)",
            f"raise DECONV_MEMORY_BUDGET to at least {_size_setting(tile_plan.tile_bytes)}",
        )


def check_free_space(out_ref, out_bytes: int) -> None:
    """Refuse up front an output that the free disk cannot take (an OUT replaced with --force still
    needs the room: the new file is complete before the old one goes)."""
    import shutil

    if out_ref.path == "-":
        return
    folder = os.path.dirname(os.path.abspath(out_ref.path))
    free = shutil.disk_usage(folder).free
    if out_bytes > free:
        raise DeconvError(
            f"the output takes {_size(out_bytes)} but {folder} has {_size(free)} free",
            "free some space or write the output elsewhere",
        )


def _stream(refs, out_ref, tile_plan, engine, force: bool) -> dict:
    """Tiles from disk through the engine to disk: input and output are never whole in memory."""
    t0 = time.perf_counter()
    weight = tensor_io.load(refs["weight"])
    bias = tensor_io.load(refs["bias"]) if "bias" in refs else None
    source = tensor_io.open_slices(refs["input"])
    try:
        chunks = tiles.chunk_shape(tile_plan, source.dtype.itemsize)
        with tensor_io.StreamWriter(out_ref, tile_plan.output_shape, source.dtype, force=force, chunks=chunks) as sink:
            opened = time.perf_counter() - t0
            times = tiling.stream(engine, source, sink, weight, bias, tile_plan)
            t4 = time.perf_counter()
            sink.commit()
            times["save_s"] += time.perf_counter() - t4
            times["load_s"] += opened
    finally:
        source.close()
    timings = {key: round(value, 6) for key, value in times.items()}
    timings["chunks"] = len(tile_plan)
    return timings


def _out_of_memory(derivation: Derivation) -> DeconvError:
    return DeconvError(
        f"out of memory computing an output of shape {derivation.output_shape}",
        "lower DECONV_MEMORY_BUDGET to stream the output tile by tile (to .npy, .h5 or .zarr)",
    )
