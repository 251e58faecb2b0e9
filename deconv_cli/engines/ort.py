"""onnxruntime's MLAS ConvTranspose kernel as the ``ort`` path (float32, CPU), where onnxruntime is installed.

The canonical problem, input (N, C_in, *L) and weight (C_in, C_out/g, *k), is already ONNX's layout, so the
path is one ConvTranspose node per slice of the batch (``batch_parts``), each on one onnxruntime thread and
run on the engine's threads; a batch of one is one node on the engine's thread budget
(``intra_op_num_threads``, the calling thread included; one inter-op thread; sequential). ONNX pads cannot
be negative: the node crops ``max(crop, 0)`` and its result is written into its window of the output, whose
other positions (reached by no input) get the bias alone, as on every path. The model is encoded here (a few protobuf fields), so the path needs onnxruntime
alone, not the ``onnx`` package (0.1 s more to import). Sessions are cached per problem (``_session``).

This module imports onnxruntime (about 40 ms after NumPy); ``choose_path`` picks the path only where
onnxruntime is installed and the work pays that import, so ``deconv shape`` and small runs never load it.
"""

from __future__ import annotations

import functools
import math
import weakref

import numpy as np
import onnxruntime

from ..core.config import DeconvConfig
from . import threads as engine_threads

_FLOAT = 1  # onnx TensorProto.FLOAT
_OPSET = 17


# --- a minimal protobuf writer for the one-node model ------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _int(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(value)


def _bytes(field: int, payload: bytes | str) -> bytes:
    payload = payload.encode() if isinstance(payload, str) else payload
    return _key(field, 2) + _varint(len(payload)) + payload


def _ints_attribute(name: str, values) -> bytes:  # AttributeProto: name=1, ints=8, type=20 (INTS = 7)
    return _bytes(1, name) + b"".join(_int(8, v) for v in values) + _int(20, 7)


def _tensor_info(name: str, shape) -> bytes:  # ValueInfoProto{name, TypeProto{tensor_type{elem_type, shape}}}
    dims = b"".join(_bytes(1, _int(1, d)) for d in shape)
    return _bytes(1, name) + _bytes(2, _bytes(1, _int(1, _FLOAT) + _bytes(2, dims)))


def model_bytes(config: DeconvConfig, input_shape, pads, with_bias: bool) -> bytes:
    """The serialized ModelProto of one ConvTranspose node, y = ConvTranspose(x, w[, b])."""
    names = ("x", "w", "b") if with_bias else ("x", "w")
    attributes = (
        _bytes(5, _ints_attribute("kernel_shape", config.kernel)) + _bytes(5, _ints_attribute("strides", config.stride))
        + _bytes(5, _ints_attribute("dilations", config.dilation)) + _bytes(5, _ints_attribute("pads", pads))
        + _bytes(5, _bytes(1, "group") + _int(3, config.groups) + _int(20, 2))  # INT = 2
    )
    node = b"".join(_bytes(1, n) for n in names) + _bytes(2, "y") + _bytes(4, "ConvTranspose") + attributes
    shapes = {"x": input_shape, "w": config.weight_shape, "b": (config.out_channels,)}
    graph = (_bytes(1, node) + _bytes(2, "deconv") + b"".join(_bytes(11, _tensor_info(n, shapes[n])) for n in names)
             + _bytes(12, _bytes(1, "y")))
    return _int(1, 8) + _bytes(7, graph) + _bytes(8, _bytes(1, "") + _int(2, _OPSET))  # ir_version 8, opset 17


_LIVE: weakref.WeakSet = weakref.WeakSet()  # every session not yet destroyed (``forget_sessions``)


@functools.lru_cache(maxsize=8)
def _session(config: DeconvConfig, input_shape, pads, with_bias: bool, threads: int):
    """One InferenceSession per (problem, shapes, bias, threads); eight kept (a batch job reuses its one)."""
    session = _new_session(config, input_shape, pads, with_bias, threads)
    _LIVE.add(session)
    return session


def _new_session(config: DeconvConfig, input_shape, pads, with_bias: bool, threads: int):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    # onnxruntime's default, spinning workers: its kernel runs many short parallel sections, and waking
    # sleeping workers for each cost 1.2-1.5x the time (interleaved with the onnxruntime peer, 2 threads:
    # dcgan 128->3 15.0 spinning / 21.8 not / peer 14.0; g4 10.5 / 11.7 / 11.7; ms_doc 43.1 / 50.3 / 42.2).
    # The cost is a core spun for a few ms after a call; "session.force_spinning_stop" measured 1.5-2.4x
    # slower than either.
    return onnxruntime.InferenceSession(model_bytes(config, input_shape, pads, with_bias), options,
                                        providers=["CPUExecutionProvider"])


def forget_sessions() -> None:
    """In a forked child: stop using the parent's sessions (their thread pools' threads are gone), without
    destroying them. A session's destructor joins its pool's threads, which wait forever in a child (seen: a
    multiprocessing child hung in pthread_cond_destroy); so each inherited session gets one reference that
    is never released (CPython's public Py_IncRef), and later calls make their own."""
    import ctypes

    for session in list(_LIVE):
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(session))
    _session.cache_clear()


def _pads(config: DeconvConfig) -> tuple:
    """ONNX pads cannot be negative: the node crops max(crop, 0) on each side."""
    return tuple(max(lo, 0) for lo, _ in config.crops) + tuple(max(hi, 0) for _, hi in config.crops)


def _run_into(session, feeds: dict, y) -> None:
    """Run the node with its output bound to ``y`` (C-contiguous float32): onnxruntime writes into it."""
    binding = session.io_binding()
    for name, array in feeds.items():
        binding.bind_cpu_input(name, array)
    binding.bind_output("y", "cpu", 0, np.float32, y.shape, y.ctypes.data)
    session.run_with_iobinding(binding)


def batch_parts(config: DeconvConfig, input_shape, tensor_bytes: int, threads: int) -> list[tuple[int, int]]:
    """The batch cut into one slice per thread, each run by a one-thread node: onnxruntime parallelizes its
    GEMMs but not the col2im after them, so a batch split runs both on every thread (interleaved with the
    onnxruntime peer, 2 threads, bench arrays: g4 5.1-5.3 ms as one two-thread node, 3.1-3.2 as two
    one-thread nodes on four samples each). Each node holds its own column buffer, prod(k) x C_out/g x
    prod(L) floats: the split is made only where those buffers stay within a fifth of the tensors, the memory
    target's margin (peak above the tensors, split / one node: g4 1.10x / 1.07x; dil2 1.36x / 1.15x and
    ms_doc 1.45x / 1.22x, which stay one node). A batch of one is one node on ``threads`` threads."""
    n = input_shape[0]
    parts = max(1, min(threads, n))
    column = math.prod(config.kernel) * (config.out_channels // config.groups) * math.prod(input_shape[2:]) * 4
    if parts * column > tensor_bytes // 5:
        parts = 1
    return [(n * i // parts, n * (i + 1) // parts) for i in range(parts)]


def items(x, w, b, y, config: DeconvConfig, out_spatial, acc, xp, cap: int) -> list:
    """The node as one work item per ``batch_parts`` slice (float32 NumPy arrays)."""
    from functools import partial

    threads, out_spatial = engine_threads(), tuple(out_spatial)
    parts = batch_parts(config, x.shape, x.nbytes + w.nbytes + y.nbytes, threads)
    if len(parts) == 1:
        return [partial(run, x, w, b, y, config, out_spatial, threads)]
    return [partial(run, x[b0:b1], w, b, y[b0:b1], config, out_spatial, 1) for b0, b1 in parts]


def run(x, w, b, y, config: DeconvConfig, out_spatial, threads: int) -> None:
    """y (N, C_out, *out), float32, canonical view = the transposed convolution of float32 x, w (+ b)."""
    rank = config.rank
    pads = _pads(config)
    # the node's output is y's positions [max(-lo, 0), that + its length) per dim; the rest no input reaches
    start = tuple(max(-lo, 0) for lo, _ in config.crops)
    length = tuple(o + min(lo, 0) + min(hi, 0) for o, (lo, hi) in zip(out_spatial, config.crops))
    window = (Ellipsis, *(slice(s, s + n) for s, n in zip(start, length)))
    if any(n <= 0 for n in length):
        _fill(y, b)
        return
    x = np.ascontiguousarray(x, dtype=np.float32)
    feeds = {"x": x, "w": np.ascontiguousarray(w, dtype=np.float32)}
    if b is not None:
        feeds["b"] = np.ascontiguousarray(b, dtype=np.float32)
    session = _session(config, tuple(x.shape), pads, b is not None, threads)
    if tuple(start) == (0,) * rank and tuple(length) == tuple(out_spatial) and y.flags.c_contiguous:
        _run_into(session, feeds, y)  # the whole output, C-contiguous: no copy
        return
    result = session.run(None, feeds)[0]
    if math.prod(length) != math.prod(out_spatial):
        _fill(y, b)
    y[window] = result


def runner(config: DeconvConfig, input_shape, y_shape, with_bias: bool):
    """For a problem whose node output is the whole output (no negative crop), channels first and the weight
    in order: ``run(x, w, bias, threads)`` -> y (``y_shape``, the file layout), the arrays as read (any
    shape with the canonical one's size: a missing batch axis, a flat bias). All but the call itself is
    worked out once per problem: after an idle pause, as the bench times it, the engine's general path spent
    0.62 ms of Python around dil2's 6.3-6.7 ms node, this runner 0.15 ms."""
    pads, w_shape = _pads(config), config.weight_shape
    contiguous, empty, f32 = np.ascontiguousarray, np.empty, np.float32
    out_shape = input_shape[:1] + tuple(y_shape[-config.rank - 1:])
    tensor_bytes = 4 * (math.prod(input_shape) + math.prod(w_shape) + math.prod(y_shape))

    def run(x, w, b, threads: int, parallel_map=None):
        """``parallel_map(fn, items)`` runs the batch slices on ``threads`` threads (None: one node)."""
        y = empty(y_shape, dtype=f32)
        feeds = {"x": contiguous(x, dtype=f32).reshape(input_shape), "w": contiguous(w, dtype=f32).reshape(w_shape)}
        if with_bias:
            feeds["b"] = contiguous(b, dtype=f32).reshape(-1)
        parts = batch_parts(config, input_shape, tensor_bytes, threads) if parallel_map is not None \
            else [(0, input_shape[0])]
        y_view = y.reshape(out_shape)
        if len(parts) == 1:
            _run_into(_session(config, input_shape, pads, with_bias, threads), feeds, y_view)
            return y

        def part(bounds):
            b0, b1 = bounds
            session = _session(config, (b1 - b0, *input_shape[1:]), pads, with_bias, 1)
            _run_into(session, dict(feeds, x=feeds["x"][b0:b1]), y_view[b0:b1])

        parallel_map(part, parts)
        return y

    return run


def _fill(y, b) -> None:
    if b is None:
        y[...] = 0
    else:
        y[...] = b.reshape((1, -1) + (1,) * (y.ndim - 2))
