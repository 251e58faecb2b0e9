"""A Job is one deconvolution request; ``plan_job`` works it out from headers, ``run_job`` runs it.

    Job --plan_job--> JobPlan (references, derivation, dtype, engine, tile plan, memory plan)
        --run_job--> tiling.run_tiles(plan, reader, writer, compute[, executor]) --> Result

The memory plan picks the reader and writer (``windows``): arrays in memory, then saved whole; windows of
files on disk, blocks written tile by tile (or compared with ``--expect``, nothing written); on a Dask
cluster, the workers' own reads (``tiling.run_on_cluster``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ..conventions.plan import plan
from ..core.budget import ITEMSIZE, MAX_ARRAY_BYTES, human_bytes, memory_budget, suggest_budget
from ..core.errors import ConfigError, DeconvError
from ..core.shapes import Derivation


@dataclass(frozen=True)
class MemoryPlan:
    """How a job holds its data: whole in memory, or streamed tile by tile (``tiles`` of them)."""

    stream: bool
    tiles: int
    needed: int  # bytes of input + output, whole
    budget: int


def memory_plan(derivation: Derivation, dtype: str, *, tile_plan, out_ref=None, input_ref=None,
                input_held: bool = False, budget: int | None = None, expect_ref=None) -> MemoryPlan:
    """Whether input + output fit ``budget``; if not, whether the job streams tile by tile (tiles.py).
    With no output, ``expect_ref`` streams: each tile is compared with its window of it, nothing written.

    Raises DeconvError (exit 1) up front, before anything is read, when it cannot: an output that cannot be
    written in parts (.npz, stdout), a reference or an input that cannot be read in parts (.npz, stdin) and
    does not fit, a budget smaller than one tile, or sizes no machine holds.
    """
    from .. import tensor_io  # lazily: `deconv shape` needs none of them

    budget = memory_budget() if budget is None else budget
    itemsize = ITEMSIZE.get(dtype, 8)
    in_bytes = math.prod(derivation.input_shape) * itemsize
    needed = in_bytes + math.prod(derivation.output_shape) * itemsize
    if needed <= budget:
        return MemoryPlan(False, len(tile_plan), needed, budget)
    over = f"more than the memory budget {human_bytes(budget)} (DECONV_MEMORY_BUDGET)"
    output = f"output {_shape(derivation.output_shape)} {dtype}"
    if needed > MAX_ARRAY_BYTES:
        raise DeconvError(f"input + output need {human_bytes(needed)} ({output}), {over}",
                          "make the output smaller (stride, dilation, padding, output size): no machine holds that")
    suggest = f"raise DECONV_MEMORY_BUDGET to {suggest_budget(needed)} if the machine has that memory"
    if out_ref is None:
        _check_compared_in_parts(expect_ref, needed, output, over, suggest)
    elif not tensor_io.can_stream(out_ref):
        where = "stdout" if out_ref.path == "-" else out_ref.kind
        raise DeconvError(
            f"input + output need {human_bytes(needed)} ({output}), {over}; {where} cannot be written in parts",
            f"write the output to {', '.join(tensor_io.STREAMING)} (they stream tile by tile), or {suggest}",
        )
    if (input_held or input_ref is None or input_ref.kind not in tensor_io.WINDOWED) and in_bytes > budget:
        where = "stdin" if input_held or input_ref is None else input_ref.kind
        raise DeconvError(
            f"the input needs {human_bytes(in_bytes)}, {over}, and {where} cannot be read in parts",
            f"save the input as {', '.join(tensor_io.WINDOWED)}, or {suggest}",
        )
    if tile_plan.tile_bytes > budget:
        raise DeconvError(
            f"the memory budget {human_bytes(budget)} (DECONV_MEMORY_BUDGET) cannot hold one tile of this job "
            f"({human_bytes(tile_plan.tile_bytes)} of input window and output)",
            f"raise DECONV_MEMORY_BUDGET to at least {suggest_budget(tile_plan.tile_bytes)}",
        )
    return MemoryPlan(True, len(tile_plan), needed, budget)


def _check_compared_in_parts(expect_ref, needed: int, output: str, over: str, suggest: str) -> None:
    """``--expect`` alone over the budget compares tile by tile: the reference must read a window at a time."""
    from .. import tensor_io

    if expect_ref is None or (expect_ref.path != "-" and expect_ref.kind in tensor_io.WINDOWED):
        return
    where = "stdin" if expect_ref.path == "-" else expect_ref.kind
    raise DeconvError(
        f"input + output need {human_bytes(needed)} ({output}), {over}; the output is compared with --expect "
        f"tile by tile, and {where} cannot be read in parts",
        f"save the reference as {', '.join(tensor_io.WINDOWED)}, or {suggest}",
    )


def _shape(shape) -> str:
    return "(" + ", ".join(str(v) for v in shape) + ")"


def nbytes(derivation: Derivation, dtype: str) -> dict:
    """Bytes of each tensor of a job in ``dtype``: input, weight, bias (None without one), output."""
    size = ITEMSIZE[dtype]
    bias = derivation.bias_shape
    return {
        "input": math.prod(derivation.input_shape) * size,
        "weight": math.prod(derivation.weight_shape) * size,
        "bias": None if bias is None else math.prod(bias) * size,
        "output": math.prod(derivation.output_shape) * size,
    }


OVER_BUDGET = "input + output are "  # how the over-budget note starts (run -q leaves it out)


def size_warnings(derivation: Derivation, dtype: str, folder: str | None, command: str = "shape") -> tuple[str, ...]:
    """Warnings when the output is larger than the memory budget or than the free disk space in ``folder``
    (None: no disk check; ``run`` refuses an output the disk has no room for, tensor_io.check_space).
    ``command``: who prints it (``run`` is already streaming; ``shape`` says what run would do)."""
    from .. import tensor_io  # lazily: `deconv shape` needs none of them

    sizes = nbytes(derivation, dtype)
    out, needed = sizes["output"], sizes["input"] + sizes["output"]
    warnings = []
    budget = memory_budget()
    if needed > budget:  # the same arithmetic as memory_plan, which refuses what cannot stream
        how = ("computing it tile by tile" if command == "run"
               else "deconv run streams it tile by tile into .npy, .h5 or .zarr")
        warnings.append(f"{OVER_BUDGET}{human_bytes(needed)}, more than the memory budget {human_bytes(budget)} "
                        f"(DECONV_MEMORY_BUDGET): {how}")
    free = None if folder is None else tensor_io.free_space(folder or ".")
    if free is not None and out > free:
        warnings.append(f"the output is {human_bytes(out)}, more than the {human_bytes(free)} free on the disk of "
                        f"{os.path.abspath(folder or '.')}")
    return tuple(warnings)


def shape_record(style: str, options: Mapping[str, object], input_shape, weight_shape, bias_shape=None, *,
                 quirks: bool = False, dtypes: Mapping[str, str] | None = None, cast: str | None = None,
                 target=None) -> Derivation:
    """The record `deconv shape` prints and deconv_cli.derive returns: the derivation (solved for ``target``
    spatial sizes if given) in the dtype the run would compute in (``cast``, else the tensors' dtype, else
    float32), with each tensor's bytes and the warnings when they exceed the memory budget or the free disk."""
    from ..conventions.plan import solve

    record = plan(style, options, input_shape, weight_shape, bias_shape, quirks=quirks, dtypes=dtypes, cast=cast)
    if target is not None:
        record = solve(record, target)
    dtype = cast or next(iter((dtypes or {}).values()), "float32")
    return replace(record, warnings=record.warnings + size_warnings(record, dtype, "."), dtype=dtype,
                   nbytes=tuple(nbytes(record, dtype).items()))


@dataclass(frozen=True)
class Job:
    input: str
    weight: str
    output: str | None  # None: only compare with ``expect``
    bias: str | None = None
    style: str = "torch"
    options: Mapping[str, object] = field(default_factory=dict)
    device: str = "cpu"
    force: bool = False
    quirks: bool = False
    scheduler: str | None = None  # a Dask scheduler address: the tiles run there as tasks
    cast: str | None = None  # cast every tensor to this dtype after loading (--cast)
    expect: str | None = None  # a reference to compare the output with (compare.py)
    atol: float | None = None
    rtol: float | None = None


@dataclass(frozen=True)
class Result:
    derivation: Derivation
    dtype: str
    device: str
    engine: str
    timings: dict
    warnings: tuple[str, ...] = ()  # about the data (NaN/Inf), beside the derivation's own
    compare: object = None  # a compare.Comparison when the job had ``expect``

    def as_dict(self) -> dict:
        record = self.derivation.as_dict(with_reachable=False)
        record.update(dtype=self.dtype, device=self.device, engine=self.engine, timings=self.timings,
                      nbytes=nbytes(self.derivation, self.dtype))
        record["warnings"] = [*record["warnings"], *self.warnings]
        if self.compare is not None:
            record["compare"] = self.compare.as_dict()
        return record


def run_job(job: Job, *, shared=None, progress=None) -> Result:
    """Validate everything from headers, then read, compute and write (or compare) through the one run loop.

    ``shared`` (with ``peek`` and ``load`` like tensor_io's) reads the tensors that many jobs share
    (weight, bias), and with ``load_input`` the input into a buffer reused from job to job: batch workers
    pass ``batch.SharedTensors``. ``progress(done, total)`` follows a streamed or cluster run's tiles.
    """
    from . import tiling  # lazily: `deconv shape` needs none of it

    p = plan_job(job, shared)
    if job.scheduler is not None:
        times = tiling.run_on_cluster(job.scheduler, p.refs, p.out_ref, p.tiles, p.dtype, p.engine.DEVICE,
                                      force=job.force, progress=progress)
        return p.result(p.dtype, times, (), _compare(job, p.out_ref, p.expect_ref))
    try:
        if p.memory.stream:
            return _streamed(p, progress)
        return _in_memory(p, shared)
    except MemoryError:
        raise _out_of_memory(p.derivation, p.memory) from None


class JobPlan:
    """A job worked out from headers alone: where its tensors come from and go to (``refs``, ``out_ref``,
    ``expect_ref``), its derivation, dtype, engine, tile plan and memory plan. ``held``: tensors already
    read (from stdin). A plain class: a dataclass costs `deconv shape`, which imports this module, 0.8 ms."""

    def __init__(self, job: Job, refs: dict, out_ref, expect_ref, infos: dict, held: dict, derivation: Derivation,
                 dtype: str, engine, tiles, memory: MemoryPlan, started: float):
        self.job, self.refs, self.out_ref, self.expect_ref, self.infos, self.held = job, refs, out_ref, expect_ref, infos, held
        self.derivation, self.dtype, self.engine, self.tiles, self.memory = derivation, dtype, engine, tiles, memory
        self.started = started

    def result(self, dtype: str, timings: dict, warnings: tuple, comparison) -> Result:
        return Result(self.derivation, dtype, self.engine.DEVICE, self.engine.NAME, timings, warnings, comparison)


def plan_job(job: Job, shared=None) -> JobPlan:
    """Every check that headers allow, before any tensor data is read (only stdin's tensor is)."""
    from .. import tensor_io  # lazily: `deconv shape` needs none of them
    from ..engines import get_engine
    from . import tiling

    started = time.perf_counter()
    refs, out_ref, expect_ref = _references(job)
    infos = {role: _reader(shared, role).peek(ref) for role, ref in refs.items() if ref.path != "-"}
    held = {role: tensor_io.load(ref) for role, ref in refs.items() if ref.path == "-"}
    for role, array in held.items():
        infos[role] = tensor_io.ArrayInfo(role, tuple(array.shape), str(array.dtype))
    derivation = plan(
        job.style, job.options, infos["input"].shape, infos["weight"].shape,
        infos["bias"].shape if "bias" in infos else None,
        quirks=job.quirks, dtypes={role: info.dtype for role, info in infos.items()}, cast=job.cast,
    )
    if out_ref is not None:
        tensor_io.check_writable(out_ref, force=job.force)
    if expect_ref is not None and expect_ref.path != "-":
        _check_expected_shape(derivation, tensor_io.peek(expect_ref))
    engine = get_engine(job.device)
    dtype = job.cast or infos["input"].dtype
    derivation = replace(derivation, warnings=derivation.warnings + size_warnings(derivation, dtype, None, "run"))
    budget = memory_budget()
    needed = (math.prod(derivation.input_shape) + math.prod(derivation.output_shape)) * ITEMSIZE[dtype]
    if out_ref is not None and out_ref.path != "-" and needed <= MAX_ARRAY_BYTES:  # up front, before any work
        tensor_io.check_space(out_ref, math.prod(derivation.output_shape) * ITEMSIZE[dtype])
    tile_plan = tiling.plan_for(derivation, dtype, budget if needed > budget else None)
    if job.scheduler is not None and ("input" in held or out_ref is None):
        raise ConfigError("--scheduler: the workers read the input and write the output themselves",
                          "give an input file (not stdin) and an output (-o)")
    memory = memory_plan(derivation, dtype, tile_plan=tile_plan, out_ref=out_ref, input_ref=refs["input"],
                         input_held="input" in held, expect_ref=expect_ref)
    return JobPlan(job, refs, out_ref, expect_ref, infos, held, derivation, dtype, engine, tile_plan, memory, started)


def _references(job: Job) -> tuple[dict, object, object]:
    """The job's tensor references by role, its output's and its reference's (None where not given)."""
    from .. import tensor_io

    refs = {"input": tensor_io.parse_ref(job.input), "weight": tensor_io.parse_ref(job.weight)}
    if job.bias is not None:
        refs["bias"] = tensor_io.parse_ref(job.bias)
    if job.output is None and job.expect is None:
        raise ConfigError("no output given", "pass --output OUT (or --expect REF to only compare)")
    out_ref = None if job.output is None else tensor_io.parse_ref(job.output)
    expect_ref = None if job.expect is None else tensor_io.parse_ref(job.expect)
    if expect_ref is not None:
        from ..checks.compare import check_tolerances

        check_tolerances(job.atol, job.rtol)
        refs_stdin = [r for r in (*refs.values(), expect_ref) if r.path == "-"]
        if len(refs_stdin) > 1:
            raise DeconvError("only one tensor can come from stdin ('-')")
    stdin_users = [role for role, ref in refs.items() if ref.path == "-"]
    if len(stdin_users) > 1:
        raise ConfigError(f"only one tensor can come from stdin ('-'), got {' and '.join(stdin_users)}", "save the others to files")
    return refs, out_ref, expect_ref


def _in_memory(p: JobPlan, shared) -> Result:
    """Input, weight and bias read whole, one run of the loop over an array reader and writer, the output saved."""
    from .. import tensor_io
    from . import tiles, tiling

    arrays = _load(p, shared)
    counts = {role: count_non_finite(array) for role, array in arrays.items()}
    t1 = time.perf_counter()
    output = tiling.compute_in_memory(p.engine, arrays["input"], arrays["weight"], arrays.get("bias"), p.tiles)
    if output.dtype == "float16":  # float16 overflows past 65504 to Inf: say so (the other dtypes do not in practice)
        counts["output"] = count_non_finite(output)
    t2 = time.perf_counter()
    if p.out_ref is not None:
        chunks = tiles.chunk_shape(p.tiles, output.dtype.itemsize)
        tensor_io.save(p.out_ref, output, force=p.job.force, chunks=chunks)
    t3 = time.perf_counter()
    timings = {"load_s": round(t1 - p.started, 6), "compute_s": round(t2 - t1, 6), "save_s": round(t3 - t2, 6)}
    comparison = _compare(p.job, output, p.expect_ref)
    if comparison is not None:
        timings["compare_s"] = round(time.perf_counter() - t3, 6)
    return p.result(str(output.dtype), timings, non_finite_warnings(counts, str(output.dtype)), comparison)


def _load(p: JobPlan, shared) -> dict:
    """The job's tensors in memory, in its dtype (a batch worker reads the input into its reusable buffer)."""
    arrays = dict(p.held)
    for role, ref in p.refs.items():
        if role not in arrays:
            if role == "input" and shared is not None:
                arrays[role] = shared.load_input(ref, p.infos[role])
            else:
                arrays[role] = _reader(shared, role).load(ref, p.infos[role])
        if arrays[role].dtype != p.dtype:  # only with --cast: plan() refused any other mismatch
            arrays[role] = arrays[role].astype(p.dtype)
    return arrays


def _streamed(p: JobPlan, progress) -> Result:
    """Tiles from disk through the engine to disk, or compared with ``--expect`` when there is no output."""
    if p.out_ref is not None:
        timings, counts = _stream(p.refs, p.out_ref, p.tiles, p.engine, p.dtype, p.job.force, progress=progress)
        comparison = _compare(p.job, p.out_ref, p.expect_ref)
    else:
        timings, counts, comparison = _stream_compared(p, progress)
    return p.result(p.dtype, timings, non_finite_warnings(counts, p.dtype), comparison)


def _reader(shared, role: str):
    """tensor_io itself, or for a tensor that jobs share (weight, bias) the caller's cache of it."""
    from .. import tensor_io  # lazily: `deconv shape` needs none of them

    return tensor_io if shared is None or role == "input" else shared


EXPECT_HINT = "check the options with deconv detect INPUT WEIGHT EXPECTED"  # for an expect of another shape


def _check_expected_shape(derivation: Derivation, expected) -> None:
    """Before computing: a reference of another shape cannot match."""
    from ..checks.compare import ShapeMismatch

    if tuple(expected.shape) != tuple(derivation.output_shape):
        raise ShapeMismatch(
            f"shapes differ: actual {tuple(derivation.output_shape)} vs expected {tuple(expected.shape)}",
            EXPECT_HINT, actual=derivation.output_shape, expected=expected.shape,
        )


def _compare(job: Job, actual, expect_ref):
    """The output (an array, or the written file's reference) compared with ``expect`` (streamed)."""
    if expect_ref is None:
        return None
    from ..checks.compare import compare_refs

    return compare_refs(actual, expect_ref, atol=job.atol, rtol=job.rtol)


def count_non_finite(array) -> tuple[int, int]:
    """(NaN count, Inf count) of an array (``windows.count_non_finite``)."""
    from .windows import count_non_finite as count

    return count(array)


def non_finite_warnings(counts: Mapping[str, tuple[int, int]], dtype: str = "float32") -> tuple[str, ...]:
    """One warning line for the tensors holding NaN or Inf, with the counts; and one for a float16 output
    (``counts["output"]``) that overflowed to Inf from finite tensors."""
    given = {role: c for role, c in counts.items() if role != "output"}
    held = [f"the {role} holds {nan} NaN and {inf} Inf values" for role, (nan, inf) in given.items() if nan or inf]
    if held:
        return (", ".join(held) + "; they spread to every output element they reach, as in the frameworks",)
    nan, inf = counts.get("output", (0, 0))
    if nan or inf:
        return (f"the {dtype} output holds {inf} Inf and {nan} NaN values from finite tensors: sums beyond "
                f"{dtype}'s range (65504) overflow, as in the frameworks; --cast float32 computes and writes float32",)
    return ()


def _stream(refs, out_ref, tile_plan, engine, dtype: str, force: bool, *, progress=None) -> tuple[dict, dict]:
    """Tiles from disk through the engine to disk: input and output are never whole in memory."""
    from . import tiles
    from .windows import FileWriter

    t0 = time.perf_counter()
    chunks = tiles.chunk_shape(tile_plan, ITEMSIZE[dtype])
    writer = FileWriter(out_ref, tile_plan.output_shape, dtype, force=force, chunks=chunks)
    try:
        times, counts = _stream_into(writer, refs, tile_plan, engine, dtype, progress, opened=t0)
    finally:
        writer.close()
    return times, counts


def _stream_compared(p: JobPlan, progress) -> tuple[dict, dict, object]:
    """No output: each tile's block compared with its window of ``--expect``; nothing is written."""
    from .windows import Comparing

    t0 = time.perf_counter()
    writer = Comparing(p.expect_ref, p.derivation.output_shape, p.dtype, atol=p.job.atol, rtol=p.job.rtol)
    try:
        times, counts = _stream_into(writer, p.refs, p.tiles, p.engine, p.dtype, progress, opened=t0, finish="compare_s")
    finally:
        writer.close()
    return times, counts, writer.comparison.result()


def _stream_into(writer, refs, tile_plan, engine, dtype: str, progress, *, opened: float, finish: str = "save_s"):
    """The one loop over the input's windows on disk into ``writer``, then its ``finish``; the writer's
    time counts as ``finish`` (``compare_s`` for a comparing writer: it saves nothing)."""
    from .. import tensor_io
    from . import tiling
    from .windows import Compute, Counted, Counting, FileWindows

    weight = tensor_io.load(refs["weight"]).astype(dtype, copy=False)
    bias = tensor_io.load(refs["bias"]).astype(dtype, copy=False) if "bias" in refs else None
    counts = {"weight": count_non_finite(weight)}
    if bias is not None:
        counts["bias"] = count_non_finite(bias)
    reader = Counted(FileWindows(refs["input"], dtype), tile_plan, counts)
    sink = Counting(writer, counts) if dtype == "float16" else writer
    compute = Compute(engine.DEVICE, weight, bias, tiling.path_for(tile_plan))
    try:
        load = time.perf_counter() - opened
        times = tiling.run_tiles(tile_plan, reader, sink, compute, progress=progress)
        t4 = time.perf_counter()
        writer.finish()
        written = times["save_s"] if finish == "save_s" else times.pop("save_s")
        times[finish] = written + time.perf_counter() - t4
        times.setdefault("save_s", 0.0)
        times["load_s"] += load
    finally:
        reader.close()
    timings = {key: round(value, 6) for key, value in times.items()}
    timings["chunks"] = len(tile_plan)
    return timings, {"input": counts.pop("input"), **counts}


def _out_of_memory(derivation: Derivation, memory: MemoryPlan) -> DeconvError:
    """An allocation failed although input + output fit the budget (or one tile does): the budget is
    above the free memory."""
    problem = (f"out of memory computing an output of shape {_shape(derivation.output_shape)} "
               f"(input + output {human_bytes(memory.needed)}, memory budget {human_bytes(memory.budget)})")
    if memory.stream:
        return DeconvError(problem, "free memory (the job streams tiles of at most 128 MiB, or of the budget if smaller)")
    return DeconvError(problem, f"free memory, or set DECONV_MEMORY_BUDGET below {human_bytes(memory.needed)} "
                                "so that the output streams tile by tile (to .npy, .h5 or .zarr)")
