"""The benchmark suite (``SUITE``: 16 layers from U-Net, DCGAN, FCN, HiFi-GAN and the frameworks' docs),
timed against PyTorch and onnxruntime in the same run.

    deconv bench [--device cpu|gpu] [--threads 2] [--repeat 7] [--only NAME] [--paths] [--json] [--list]

The figure of record is the steady state through the public API: every runner is what its user calls,
made once and called back to back on the same arrays (ours ``deconv_cli.deconvolve(x, w, b, style="torch",
...)``, and the reusable ``deconv_cli.Deconvolution`` on its own column; PyTorch's
``torch.nn.functional.conv_transpose{1,2,3}d``; onnxruntime one ``InferenceSession``, ``run`` per call).
Runners are interleaved (a burst of back-to-back calls of each per round, the order turning from round to
round) so that load from other processes hits all of them alike, until each has run for ``min_time``
seconds; the table shows the median call and ratios. Thread counts are pinned for every
library: BLAS through threadpoolctl (or OPENBLAS/OMP_NUM_THREADS when numpy is not imported yet),
``torch.set_num_threads`` and onnxruntime's ``intra_op_num_threads``. Peak memory is measured per
configuration in a fresh subprocess (VmHWM minus the resident size after imports and a warm-up call),
and start-up is the wall time of ``deconv shape`` against ``python -c pass``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from ..core.errors import ConfigError


@dataclass(frozen=True)
class Case:
    name: str
    batch: int
    in_channels: int
    out_channels: int
    spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    output_padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.out_channels // self.groups, *self.kernel)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, self.in_channels, *self.spatial)

    @property
    def output_spatial(self) -> tuple[int, ...]:
        return tuple(
            (n - 1) * s + d * (k - 1) + 1 - 2 * p + a
            for n, k, s, p, a, d in zip(
                self.spatial, self.kernel, self.stride, self.padding, self.output_padding, self.dilation
            )
        )

    @property
    def flops(self) -> int:
        """2 * MACs of the scatter definition (every input element times every tap and output channel)."""
        return 2 * self.batch * self.in_channels * math.prod(self.spatial) * self.weight_shape[1] * math.prod(self.kernel)

    def nbytes(self, itemsize: int = 4) -> int:
        out = self.batch * self.out_channels * math.prod(self.output_spatial)
        return itemsize * (math.prod(self.input_shape) + math.prod(self.weight_shape) + out + self.out_channels)

    def options(self) -> dict:
        return {"stride": self.stride, "padding": self.padding, "output_padding": self.output_padding,
                "dilation": self.dilation, "groups": self.groups}


def _case(name, batch, cin, cout, spatial, kernel, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    rank = len(spatial)

    def per_dim(v):
        return tuple(v) if isinstance(v, tuple) else (v,) * rank

    return Case(name, batch, cin, cout, tuple(spatial), per_dim(kernel), per_dim(stride), per_dim(padding),
                per_dim(output_padding), per_dim(dilation), groups)


SUITE = (
    _case("unet3d_64to32_32c_k2s2", 1, 64, 32, (32, 32, 32), 2, 2),
    _case("unet3d_32to16_48c_k2s2", 1, 32, 16, (48, 48, 48), 2, 2),
    _case("unet3d_128to64_16c_k2s2", 1, 128, 64, (16, 16, 16), 2, 2),
    _case("unet3d_64to32_32c_k3s2p1op1", 1, 64, 32, (32, 32, 32), 3, 2, 1, 1),
    _case("mge_doc_N2_3to64_k3s2p1", 2, 3, 64, (32, 32, 32), 3, 2, 1),
    _case("ms_doc_16to3_k462", 32, 16, 3, (10, 32, 32), (4, 6, 2)),
    _case("of_doc_N2_16to33_k352", 2, 16, 33, (10, 50, 100), (3, 5, 2), (2, 1, 1), (0, 4, 2)),
    _case("dcgan_512to256_4x4_k4s2p1", 64, 512, 256, (4, 4), 4, 2, 1),
    _case("dcgan_128to3_32x32_k4s2p1", 64, 128, 3, (32, 32), 4, 2, 1),
    _case("fcn_21to21_64x64_k16s8p4", 1, 21, 21, (64, 64), 16, 8, 4),
    _case("fcn_21to21_64x64_k16s8p4_g21", 1, 21, 21, (64, 64), 16, 8, 4, groups=21),
    _case("hifigan1d_512to256_L2000_k16s8p4", 4, 512, 256, (2000,), 16, 8, 4),
    _case("g4_64to64_32x32_k4s2p1", 8, 64, 64, (32, 32), 4, 2, 1, groups=4),
    _case("dw_64to64_32x32_k4s2p1", 8, 64, 64, (32, 32), 4, 2, 1, groups=64),
    _case("dil2_64to32_32x32_k3s2p2op1", 8, 64, 32, (32, 32), 3, 2, 2, 1, 2),
    _case("tiny_4to4_8x8_k3", 1, 4, 4, (8, 8), 3),
)

_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "DECONV_THREADS")


def pin_threads(threads: int) -> None:
    """Pin every library's thread count; environment first (works only before the import), then live."""
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)


def blas_info() -> list[dict]:
    """What NumPy's BLAS is and runs (threadpoolctl): library, version, kernel architecture, threads."""
    import numpy  # noqa: F401  (loads the BLAS library)
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "version", "architecture", "num_threads", "threading_layer", "filepath")
    return [{k: lib.get(k) for k in keys} for lib in threadpool_info() if lib.get("user_api") == "blas"]


def blas_line(result: dict) -> str:
    """One line that says what the timings measured: the BLAS, its kernels, its threads, its SGEMM peak."""
    libs = ", ".join(f"{lib['internal_api']} {lib['version']} ({os.path.basename(lib['filepath'] or '?')}), "
                     f"kernels {lib['architecture']}, {lib['num_threads']} threads" for lib in result["blas"]) or "none found"
    env = ", ".join(f"{v}={os.environ[v]}" for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ)
    return (f"BLAS: {libs}; SGEMM peak {result['sgemm_peak_gflops']:.1f} GFLOP/s (numpy float32 2048^3, best of 9, "
            f"{result['threads']} threads: one GEMM or one each)" + (f"; set: {env}" if env else ""))


def make_inputs(case: Case, dtype: str = "float32", seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case.input_shape, dtype=np.float32).astype(dtype, copy=False)
    w = (rng.standard_normal(case.weight_shape, dtype=np.float32) * 0.1).astype(dtype, copy=False)
    b = rng.standard_normal(case.out_channels, dtype=np.float32).astype(dtype, copy=False)
    return x, w, b


def _api(case: Case, device: str, x, w, b, reusable: bool = False):
    """Ours as a user calls it: ``deconv_cli.deconvolve`` with the torch keywords, or (``reusable``) one
    ``deconv_cli.Deconvolution`` made here and called; on the GPU, on CuPy arrays made once."""
    import deconv_cli

    if device == "gpu":
        import cupy

        x, w, b = cupy.asarray(x), cupy.asarray(w), cupy.asarray(b)
    sync = _gpu_sync if device == "gpu" else None
    options = case.options()
    if reusable:
        op = deconv_cli.Deconvolution(w, b, style="torch", **options)
        run = lambda: op(x)  # noqa: E731
    else:
        run = lambda: deconv_cli.deconvolve(x, w, b, style="torch", **options)  # noqa: E731
    if sync is None:
        return run

    def synced():
        run()
        sync()

    return synced


def _gpu_sync():
    import cupy

    cupy.cuda.Device().synchronize()


def _ours(case: Case, device: str, x, w, b, path: str | None = None):
    """The engine itself on one path (``--paths``, the memory probe): planned once, no API around it."""
    from ..conventions.plan import plan
    from ..engines import get_engine

    record = plan("torch", case.options(), x.shape, w.shape, b.shape)
    engine = get_engine(device)
    if device == "gpu":
        import cupy

        xd, wd, bd = cupy.asarray(x), cupy.asarray(w), cupy.asarray(b)

        def run():
            engine.deconvolve(xd, wd, bd, record.config, record.output_spatial)
            cupy.cuda.Device().synchronize()

        return run
    kwargs = {} if path is None else {"path": path}
    config, out_spatial = record.config, record.output_spatial  # planned once, as the peers' sessions are
    return lambda: engine.deconvolve(x, w, b, config, out_spatial, **kwargs)


def _torch(case: Case, device: str, threads: int, x, w, b):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    dev = "cuda" if device == "gpu" else "cpu"
    if dev == "cuda" and not torch.cuda.is_available():
        return None
    fn = getattr(torch.nn.functional, f"conv_transpose{len(case.spatial)}d")
    xt, wt, bt = (torch.from_numpy(a).to(dev) for a in (x, w, b))
    args = (case.stride, case.padding, case.output_padding, case.groups, case.dilation)

    def run():
        with torch.no_grad():
            fn(xt, wt, bt, *args)
        if dev == "cuda":
            torch.cuda.synchronize()

    return run


def _onnxruntime(case: Case, device: str, threads: int, x, w, b):
    if device != "cpu":
        return None
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    node = helper.make_node(
        "ConvTranspose", ["x", "w", "b"], ["y"], kernel_shape=list(case.kernel), strides=list(case.stride),
        pads=list(case.padding) * 2, output_padding=list(case.output_padding), dilations=list(case.dilation),
        group=case.groups,
    )
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(a.shape)) for n, a in (("x", x), ("w", w), ("b", b))]
    graph = helper.make_graph([node], "deconv", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {"x": x, "w": w, "b": b}
    return lambda: session.run(None, feeds)


def time_interleaved(runners: dict, repeat: int, min_time: float = 1.0, burst_s: float = 0.05) -> dict:
    """Median seconds per call of each runner, in the steady state: one warm-up call each, then rounds in
    which each runner makes a burst of back-to-back calls (about ``burst_s`` seconds, one call at least),
    the order of each round taken in turn from ``round_orders`` so that every runner follows every other as
    often; at least ``repeat`` rounds, and more until every runner has run ``min_time`` seconds in all.

    No pause between calls: batch jobs and scripts call back to back, and on a virtual machine a pause mostly
    measures the hypervisor waking a sleeping thread (PyTorch's dw layer: 0.64 ms back to back, 11.8 ms after a
    100 ms pause), which no user's loop pays.
    """
    per_call = {}
    for name, run in runners.items():
        start = time.perf_counter()
        run()
        per_call[name] = max(time.perf_counter() - start, 1e-6)
    times: dict[str, list[float]] = {name: [] for name in runners}
    spent = dict.fromkeys(runners, 0.0)
    names, rounds = list(runners), 0
    while rounds < repeat or min(spent.values()) < min_time:
        order = round_orders(names, rounds + 1)[rounds]
        for name in order:
            run = runners[name]
            calls = max(1, min(1000, int(burst_s / per_call[name])))
            for _ in range(calls):
                start = time.perf_counter()
                run()
                elapsed = time.perf_counter() - start
                times[name].append(elapsed)
                spent[name] += elapsed
            per_call[name] = statistics.median(times[name][-calls:])
        rounds += 1
    return {name: statistics.median(ts) for name, ts in times.items()}


def round_orders(names: list, rounds: int) -> list:
    """The order of each round: every permutation in turn for up to four names (three runners: six orders,
    each name right after each other in two of them), else seeded shuffles."""
    import itertools
    import random

    if len(names) <= 4:
        cycle = list(itertools.permutations(names))
        return [cycle[r % len(cycle)] for r in range(rounds)]
    rng = random.Random(0)
    return [tuple(rng.sample(names, len(names))) for _ in range(rounds)]


def sgemm_peak(repeat: int = 9, size: int = 2048, threads: int | None = None) -> float:
    """Measured float32 matmul GFLOP/s with numpy: the best of ``repeat`` calls (a peak, not a median), the
    better of one GEMM on ``threads`` BLAS threads and ``threads`` concurrent GEMMs on one BLAS thread each
    (how the engine runs its items; on shared cores the second is often the faster)."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)

    def best(run, flops):
        run()
        fastest = math.inf
        for _ in range(repeat):
            start = time.perf_counter()
            run()
            fastest = min(fastest, time.perf_counter() - start)
        return flops / fastest / 1e9

    peak = best(lambda: a @ a, 2 * size**3)
    if threads and threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        with ThreadPoolExecutor(threads) as pool, threadpool_limits(1, user_api="blas"):
            peak = max(peak, best(lambda: list(pool.map(lambda _: a @ a, range(threads))), threads * 2 * size**3))
    return peak


def call_overhead(rounds: int = 7, calls: int = 2000) -> dict:
    """Per-call overhead on ``tiny``: one engine call in a tight loop against the NumPy calls its path (direct)
    makes, run bare on the same arrays; the better of ``rounds`` medians of ``calls`` calls each, alternating.

    The difference is what the engine spends around NumPy (layouts, the path choice, the NaN/Inf check on the
    weight, the thread budget), which a batch of small jobs pays once per job.
    """
    import numpy as np

    from ..conventions.plan import plan
    from ..engines import direct, dispatch, get_engine

    case = _by_name("tiny_4to4_8x8_k3")
    x, w, b = make_inputs(case)
    record = plan("torch", case.options(), x.shape, w.shape, b.shape)
    config, out_spatial = record.config, tuple(record.output_spatial)
    engine = get_engine("cpu")
    if dispatch.choose_path(config, out_spatial, case.batch, case.spatial) != "direct":
        raise RuntimeError("the tiny configuration no longer takes the direct path; update call_overhead")
    index = direct.direct_index(config, case.spatial, out_spatial, True)
    n, c_in, c_out, length = case.batch, case.in_channels, case.out_channels, math.prod(case.spatial)
    xe, x_in = direct.flat_input(n, c_in, length, np.float32, np)  # the scratch, made once as the runner keeps it
    wk, w_in, b_in = direct.weight_matrix(config, index.shape[1], np.float32, np)
    cols = np.empty((n,) + index.shape, np.float32)
    cols_gemm, wk_gemm = cols.reshape(index.shape[1], -1), wk.reshape(c_out, -1)  # one group, one image

    def bare():  # the inline direct runner's NumPy calls (direct.inline_direct), nothing around them
        np.add.reduce(w, axis=None)
        x_in[...] = x.reshape(n, c_in, length)
        xe.take(index, axis=1, out=cols, mode="clip")
        w_in[...] = w.reshape(1, c_in, c_out, -1).transpose(0, 2, 1, 3)
        b_in[...] = b.reshape(b_in.shape)
        return np.matmul(wk_gemm, cols_gemm).reshape(n, c_out, *out_spatial)

    def call():
        return engine.deconvolve(x, w, b, config, out_spatial)

    if not np.array_equal(bare(), call()):
        raise RuntimeError("the bare NumPy calls of call_overhead no longer give the engine's result")
    best = {"call": math.inf, "bare": math.inf}
    for _ in range(rounds):
        for name, fn in (("call", call), ("bare", bare)):
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            best[name] = min(best[name], statistics.median(times))
    return {"call_us": best["call"] * 1e6, "numpy_us": best["bare"] * 1e6, "overhead_us": (best["call"] - best["bare"]) * 1e6}


def startup(repeat: int = 11) -> dict:
    """Wall seconds of whole processes, the cold line: ``deconv shape --input-shape ... --weight-shape ...``
    against ``python -c pass``, and ``deconv run`` on the tiny configuration (its files written first)
    against ``python -c "import numpy"`` (a shell one-liner feels these). Medians of 11: with 5, the run's
    ratio moved 1.45-1.54 between back-to-back benches on this 2-vCPU machine, with 21 by 0.03."""
    import compileall
    import tempfile

    import numpy as np

    script = os.path.join(os.path.dirname(sys.executable), "deconv")
    deconv = [script] if os.path.exists(script) else [sys.executable, "-m", "deconv_cli"]
    shape = [*deconv, "shape", "--input-shape", "1,64,32,32,32", "--weight-shape", "64,32,2,2,2", "--set", "stride=2"]

    def wall(cmd, cwd=None):
        runs = []
        for _ in range(repeat):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=cwd)
            runs.append(time.perf_counter() - start)
        return statistics.median(runs)

    # the package's bytecode as any pip install leaves it: with PYTHONDONTWRITEBYTECODE set (as in some
    # development environments) every process would compile what was edited since, measuring the compiler
    compileall.compile_dir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), quiet=2)
    tiny = SUITE[-1]
    with tempfile.TemporaryDirectory() as folder:
        rng = np.random.default_rng(0)
        np.save(os.path.join(folder, "x.npy"), rng.standard_normal(tiny.input_shape).astype(np.float32))
        np.save(os.path.join(folder, "w.npy"), rng.standard_normal(tiny.weight_shape).astype(np.float32))
        run = wall([*deconv, "run", "x.npy", "w.npy", "-o", "y.npy", "--force", "-q"], cwd=folder)
    return {"deconv_shape_s": wall(shape), "python_pass_s": wall([sys.executable, "-c", "pass"]),
            "deconv_run_tiny_s": run, "python_import_numpy_s": wall([sys.executable, "-c", "import numpy"])}


def _status_bytes(field: str) -> int:
    """VmRSS / VmHWM of this process. (ru_maxrss would carry the parent's peak across fork + exec.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_probe(name: str, device: str) -> dict:
    """In this (fresh) process: resident bytes after imports, then the peak of one call above that."""
    import numpy  # noqa: F401  (the baseline includes numpy and the engine)

    warm = SUITE[-1]  # the tiny case: imports belong to the baseline ...
    _ours(warm, device, *make_inputs(warm))()
    if device == "cpu":  # ... and so do the thread pool, threadpoolctl and BLAS buffers (a parallel call)
        pool = _case("warm_pool", 8, 16, 16, (16, 16), 4, stride=2, padding=1)
        _ours(pool, device, *make_inputs(pool), path="phase")()
    case = _by_name(name)
    if device == "cpu" and case.groups == case.in_channels:  # so do numba and its compiled kernel (~140 MB)
        small = _case("warm_depthwise", 1, 4, 4, (8, 8), 3, groups=4)
        _ours(small, device, *make_inputs(small), path="depthwise")()
    if device == "cpu" and _chosen(case) == "ort":  # and onnxruntime's library and thread pool
        small = _case("warm_ort", 1, 64, 32, (32, 32), 3, stride=2)
        _ours(small, device, *make_inputs(small), path="ort")()
    baseline = _status_bytes("VmRSS")
    x, w, b = make_inputs(case)
    _reset_peak()  # making the weight takes a temporary its size (dcgan 512->256: 1.27x the tensors alone)
    _ours(case, device, x, w, b)()
    peak = _status_bytes("VmHWM")
    return {"peak_above_baseline": peak - baseline, "tensors": case.nbytes()}


def _reset_peak() -> None:
    """VmHWM := VmRSS (Linux 4.0 and later); where that is refused, the peak keeps what came before."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _chosen(case: Case) -> str:
    from ..conventions.plan import plan
    from ..engines import dispatch

    record = plan("torch", case.options(), case.input_shape, case.weight_shape, (case.out_channels,))
    return dispatch.choose_path(record.config, record.output_spatial, case.batch, case.spatial)


def memory(name: str, device: str, threads: int) -> dict:
    env = dict(os.environ, **{var: str(threads) for var in _THREAD_VARS})
    out = subprocess.run(
        [sys.executable, "-m", "deconv_cli.bench.suite", "--memory-probe", name, "--device", device],
        check=True, capture_output=True, text=True, env=env,
    )
    return json.loads(out.stdout)


def describe_case(case: Case) -> list[str]:
    """Two lines: batch, channels, input size and kernel; the torch options (as --set) that differ from the defaults."""
    import shlex

    from ..render.report import set_words

    lines = [f"N={case.batch}, C {case.in_channels}->{case.out_channels}, input " + "x".join(map(str, case.spatial))
             + ", kernel " + "x".join(map(str, case.kernel))]
    defaults = {"stride": 1, "padding": 0, "output_padding": 0, "dilation": 1}
    options = {}
    for key, default in defaults.items():
        values = getattr(case, key)
        if set(values) != {default}:
            options[key] = values[0] if len(set(values)) == 1 else values
    if case.groups != 1:
        options["groups"] = case.groups
    if options:
        lines.append(shlex.join(set_words(options)))
    return lines


def list_suite(as_json: bool = False, echo=print) -> None:
    """``deconv bench --list``: every configuration, float32, torch-style options."""
    if as_json:
        echo(json.dumps([dict(asdict(case), weight_shape=list(case.weight_shape), output_spatial=list(case.output_spatial))
                         for case in SUITE], indent=1))
        return
    echo(f"{len(SUITE)} configurations (float32, channels first, torch-style options):")
    for case in SUITE:
        echo(case.name)
        for line in describe_case(case):
            echo(f"  {line}")


def _by_name(name: str) -> Case:
    for case in SUITE:
        if case.name == name:
            return case
    raise ConfigError(f"no benchmark configuration named {name!r}", f"known: {', '.join(c.name for c in SUITE)}")


@dataclass
class Row:
    name: str
    path: str
    ours_ms: float
    gflops: float
    peak_fraction: float
    torch_ms: float | None = None
    ort_ms: float | None = None
    op_ms: float | None = None  # the reusable Deconvolution, same run
    paths_ms: dict | None = None
    peak_mem_mb: float | None = None
    tensors_mb: float | None = None

    @property
    def vs_torch(self) -> float | None:
        """> 1: we are faster than PyTorch by this factor."""
        return None if self.torch_ms is None else self.torch_ms / self.ours_ms

    @property
    def vs_best(self) -> float | None:
        peers = [t for t in (self.torch_ms, self.ort_ms) if t is not None]
        return None if not peers else min(peers) / self.ours_ms


def run_suite(device: str = "cpu", threads: int = 2, repeat: int = 7, only=(), paths: bool = False,
              peers: bool = True, measure_memory: bool = True, progress=None, min_time: float = 1.0) -> dict:
    pin_threads(threads)
    import numpy as np  # noqa: F401  (after pinning)

    from ..conventions.plan import plan
    from ..engines import direct, dispatch

    cases = [_by_name(n) for n in only] if only else list(SUITE)
    blas = blas_info()  # before sgemm_peak, which holds BLAS to one thread for a while
    peak = sgemm_peak(threads=threads)
    rows = []
    for case in cases:
        x, w, b = make_inputs(case)
        record = plan("torch", case.options(), x.shape, w.shape, b.shape)
        chosen = dispatch.choose_path(record.config, record.output_spatial, case.batch, case.spatial)
        runners = {"ours": _api(case, device, x, w, b), "op": _api(case, device, x, w, b, reusable=True)}
        if peers:
            for label, factory in (("torch", _torch), ("onnxruntime", _onnxruntime)):
                runner = factory(case, device, threads, x, w, b)
                if runner is not None:
                    runners[label] = runner
        if paths and device == "cpu":
            dense = case.batch * case.in_channels * math.prod(case.kernel) * math.prod(case.output_spatial)
            for p in dispatch.PATHS:  # the direct path's dense columns would take GBs on the big configurations
                if (p != "direct" or dense <= 16 * direct.DIRECT_MAX_ELEMENTS) and (p != "depthwise" or case.groups == case.in_channels) \
                        and (p != "ort" or dispatch.ort_installed()):
                    runners[f"path:{p}"] = _ours(case, device, x, w, b, path=p)
        med = time_interleaved(runners, repeat, min_time)
        ours = med["ours"]
        row = Row(case.name, chosen, ours * 1e3, case.flops / ours / 1e9, case.flops / ours / 1e9 / peak,
                  med.get("torch", 0) * 1e3 or None, med.get("onnxruntime", 0) * 1e3 or None, med["op"] * 1e3,
                  {k[5:]: v * 1e3 for k, v in med.items() if k.startswith("path:")} or None)
        del x, w, b, runners
        if measure_memory:
            mem = memory(case.name, device, threads)
            row.peak_mem_mb, row.tensors_mb = mem["peak_above_baseline"] / 2**20, mem["tensors"] / 2**20
        rows.append(row)
        if progress:
            progress(row)
    return {"device": device, "threads": threads, "repeat": repeat, "sgemm_peak_gflops": peak, "blas": blas,
            "rows": rows}


def summarize(result: dict) -> dict:
    rows = result["rows"]
    with_torch = [r for r in rows if r.vs_torch is not None]
    with_best = [r for r in rows if r.vs_best is not None]
    return {
        "as_fast_as_torch": sum(r.vs_torch >= 1.0 for r in with_torch),
        "within_2x_of_best": sum(r.vs_best >= 0.5 for r in with_best),
        "within_1_5x_of_best": sum(r.vs_best >= 1 / 1.5 for r in with_best),
        "geomean_vs_best": math.exp(statistics.fmean(math.log(r.vs_best) for r in with_best)) if with_best else None,
        "ahead_of_every_peer": sum(r.vs_best >= 1.0 for r in with_best),
        "compared": len(with_best),
    }


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def format_row(row: Row) -> str:
    mem = "-" if row.peak_mem_mb is None else f"{row.peak_mem_mb:7.1f}/{row.tensors_mb:<7.1f}"
    extra = "" if not row.paths_ms else "  " + " ".join(f"{k}={v:.2f}" for k, v in row.paths_ms.items())
    return (f"{row.name:34s} {row.path:9s} {row.ours_ms:9.3f} {_fmt(row.op_ms, '9.3f'):>9s} {row.gflops:7.1f} {100 * row.peak_fraction:5.1f}% "
            f"{_fmt(row.torch_ms, '9.3f'):>9s} {_fmt(row.ort_ms, '9.3f'):>9s} {_fmt(row.vs_torch, '6.2f'):>6s} "
            f"{_fmt(row.vs_best, '6.2f'):>6s} {mem:>15s}{extra}")


HEADER = (f"{'configuration':34s} {'path':9s} {'ours ms':>9s} {'op ms':>9s} {'GFLOP/s':>7s} {'%peak':>6s} {'torch ms':>9s} "
          f"{'ort ms':>9s} {'torch/':>6s} {'best/':>6s} {'peak MB/tensors':>15s}")
COLUMNS = (34, 9, 9, 9, 7, 6, 9, 9, 6, 6, 15)  # the cell widths of HEADER and format_row, to fold a row between cells


def report(device: str = "cpu", threads: int = 2, repeat: int = 7, only=(), paths: bool = False, peers: bool = True,
           memory: bool = True, as_json: bool = False, echo=print, min_time: float = 1.0,
           width: int | None = None) -> None:
    """Run the suite and print the table (row by row, as results come; folded to ``width``) or one JSON object."""
    from ..render.report import fold_columns

    only = [n for item in only for n in item.split(",") if n]
    for name in only:  # before any output: an unknown name is a usage error
        _by_name(name)

    def progress(row):
        if not as_json:
            echo("\n".join(fold_columns(format_row(row), COLUMNS, width)))

    if not as_json:
        echo("\n".join(fold_columns(HEADER, COLUMNS, width)))
    result = run_suite(device, threads, repeat, only, paths, peers, memory, progress, min_time)
    summary = summarize(result)
    start = startup()
    overhead = call_overhead() if device == "cpu" else None
    if as_json:
        record = dict(result, rows=[dict(asdict(r), vs_torch=r.vs_torch, vs_best=r.vs_best) for r in result["rows"]],
                      summary=summary, startup=start, call_overhead=overhead)
        echo(json.dumps(record, indent=1))
        return
    echo("\n" + blas_line(result))
    echo("steady state: each runner made once, called back to back, interleaved; median call. ours: "
         "deconv_cli.deconvolve(x, w, b, style='torch', ...); op: deconv_cli.Deconvolution(w, b, ...)(x)")
    echo("torch/ and best/ are peer ms / our ms (>= 1: we are at least as fast)")
    n = summary["compared"]
    echo(f"as fast as PyTorch: {summary['as_fast_as_torch']}/{n}; as fast as the best peer: "
         f"{summary['ahead_of_every_peer']}/{n}; within 1.5x of it: {summary['within_1_5x_of_best']}/{n}; within 2x: "
         f"{summary['within_2x_of_best']}/{n}; geometric mean best/: {_fmt(summary['geomean_vs_best'], '.2f')}")
    if overhead:
        echo(f"per-call overhead (tiny, tight loop): {overhead['call_us']:.1f} us a call, of which NumPy's own calls "
             f"{overhead['numpy_us']:.1f} us: {overhead['overhead_us']:.1f} us around them")
    echo(f"start-up: deconv shape {start['deconv_shape_s'] * 1e3:.0f} ms wall, python -c pass "
         f"{start['python_pass_s'] * 1e3:.0f} ms")
    echo(f"cold: deconv run on tiny (a whole process) {start['deconv_run_tiny_s'] * 1e3:.0f} ms wall, python -c "
         f"'import numpy' {start['python_import_numpy_s'] * 1e3:.0f} ms: "
         f"{start['deconv_run_tiny_s'] / start['python_import_numpy_s']:.2f}x (bytecode compiled first, as pip leaves it)")


if __name__ == "__main__":  # the per-configuration memory probe, run in a fresh process by memory()
    probe = argparse.ArgumentParser(prog="python -m deconv_cli.bench.suite")
    probe.add_argument("--memory-probe", metavar="NAME", required=True)
    probe.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    args = probe.parse_args()
    print(json.dumps(memory_probe(args.memory_probe, args.device)))
