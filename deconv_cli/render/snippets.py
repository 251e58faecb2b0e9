"""``deconv explain --to STYLE --code``: a runnable Python snippet that computes the same deconvolution
in STYLE's framework, to paste into the model being ported.

The snippet loads the tensors (or draws random ones of the given shapes), re-lays them from the source
style's layouts into the target framework's (through the canonical layouts of config.py), calls the
framework's op with the keywords ``explain`` found, applies the crop the keywords cannot express, and
brings the result back to the source style's layout: its ``y`` equals what ``deconv run`` writes.
"""

from __future__ import annotations

import math

from .. import tensor_io
from ..core.errors import ConfigError
from ..core.shapes import Derivation
from .explain import Explanation, canonical_input_shape

# target style -> (import lines, how its tensors are made from NumPy, how its result becomes NumPy); torch copies
# (torch.from_numpy warns on the read-only arrays onnx's numpy_helper gives)
FRAMEWORKS = {
    "torch": (["import torch", "import torch.nn.functional as F"], "torch.tensor({})", "{}.numpy()"),
    "oneflow": (["import oneflow as flow"], "flow.tensor({})", "{}.numpy()"),
    "megengine": (["import megengine as mge", "import megengine.functional as MF"], "mge.tensor({})", "{}.numpy()"),
    "mindspore": (["import mindspore as ms", "from mindspore import ops"], "ms.Tensor({})", "{}.asnumpy()"),
    "dragon": (["import dragon"], "dragon.constant({})", "{}.numpy()"),
    "keras": (["import keras"], "{}", "keras.ops.convert_to_numpy({})"),
    "tensorflow": (["import tensorflow as tf"], "{}", "{}.numpy()"),
    "jax": (["import jax", "jax.config.update('jax_enable_x64', True)  # float64 stays float64", "from jax import lax"],
            "{}", "np.asarray({})"),
    "flax": (["import jax", "jax.config.update('jax_enable_x64', True)  # float64 stays float64",
              "import flax.linen as nn"], "{}", "np.asarray({})"),
    "paddle": (["import paddle"], "paddle.to_tensor({})", "{}.numpy()"),
    "onnx": (["import onnxruntime", "from onnx import helper"], "{}", "{}"),
}


def _kwargs(options: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in options.items())


def _load(var: str, role: str, path: str | None, shape, seed: int) -> list[str]:
    if path is None:
        return [f"{var} = np.random.default_rng({seed}).standard_normal({tuple(shape)}).astype(np.float32)  # your {role}"]
    ref = tensor_io.parse_ref(path)
    if ref.path == "-":
        raise ConfigError("--code needs tensor files, not stdin", "save the tensor to a file or give --input-shape")
    if ref.kind == ".npy":
        return [f"{var} = np.load({ref.path!r})  # {role}"]
    name = ref.key or tensor_io.peek(ref).name
    if ref.kind == ".npz":
        return [f"{var} = np.load({ref.path!r})[{name!r}]  # {role}"]
    if ref.kind == ".onnx":  # a model's initializer (external data beside the model is loaded too)
        return [f"{var} = numpy_helper.to_array(next(t for t in onnx.load({ref.path!r}).graph.initializer "
                f"if t.name == {name!r}))  # {role}"]
    if ref.kind == ".zarr":  # an array of a group is named by its path ("/a/b"), a store's root array by the store
        item = f"[{name.strip('/')!r}]" if name.startswith("/") else ""
        return [f"{var} = zarr.open({ref.path!r}, mode='r'){item}[...]  # {role}"]
    if ref.kind == ".safetensors":
        return [f"{var} = load_file({ref.path!r})[{name!r}]  # {role}"]
    if ref.kind == ".keras":  # the HDF5 weights file inside the Keras zip
        return [f"with zipfile.ZipFile({ref.path!r}) as z, z.open('model.weights.h5') as f, h5py.File(f, 'r') as h5:",
                f"    {var} = h5[{name!r}][()]  # {role}"]
    return [f"{var} = h5py.File({ref.path!r}, 'r')[{name!r}][()]  # {role}"]


# the imports each format's loading lines need
_FORMAT_IMPORTS = {".h5": ("import h5py",), ".keras": ("import zipfile", "import h5py"), ".zarr": ("import zarr",),
                   ".safetensors": ("from safetensors.numpy import load_file",),
                   ".onnx": ("import onnx", "from onnx import numpy_helper")}


def snippet(record: Derivation, explanation: Explanation, files: dict[str, str | None]) -> str:
    """Python source computing ``record``'s deconvolution with ``explanation``'s target framework.

    ``files``: the input/weight/bias references given to explain (None: random data of the record's shapes).
    """
    e = explanation.expression
    style = e.style
    if explanation.output_shape is None or (not e.expressible and e.crop is None):
        raise ConfigError(f"no runnable {style} code for this configuration: {e.reason}", "pick another --to style")
    config = record.config
    has_bias = record.bias_shape is not None
    imports, to_tensor, to_numpy = FRAMEWORKS[style]
    lines = [f"# {record.style} -> {style}: y equals what `deconv run` computes, shape {tuple(record.output_shape)}",
             "import numpy as np"]
    kinds = {tensor_io.parse_ref(f).kind for f in files.values() if f is not None}
    lines += dict.fromkeys(line for kind in sorted(kinds) for line in _FORMAT_IMPORTS.get(kind, ()))
    lines += imports + [""]
    lines += _load("x", "input", files.get("input"), record.input_shape, 0)
    lines += _load("w", "weight", files.get("weight"), record.weight_shape, 1)
    if has_bias:
        lines += _load("b", "bias", files.get("bias"), record.bias_shape, 2)

    lines += ["", f"# {record.style}'s layouts -> (N, C_in, *spatial) and (C_in, C_out/groups, *kernel)", "X, W = x, w"]
    if not config.batched:
        lines.append("X = X[None]  # add the batch axis")
    if config.channels_last:
        lines.append("X = np.moveaxis(X, -1, 1)  # channels to axis 1")
    if config.weight_perm is not None:
        lines.append(f"W = W.transpose({tuple(config.weight_perm)})")
    if tuple(record.weight_shape) != config.weight_shape or config.weight_perm is not None:
        lines.append(f"W = W.reshape({config.weight_shape})")
    if config.flip:
        lines.append(f"W = np.ascontiguousarray(W[:, :{', ::-1' * config.rank}])  # the kernel reversed")
    if has_bias:
        lines.append("B = b.reshape(-1)  # (C_out,)")
    if style == "onnx":
        lines.append("X0, W0 = X, W  # kept for the check at the end")

    # Keras and TensorFlow default to channels-last; they say so only for channels-first. Flax is channels-last.
    nhwc = e.options.get("data_format") == "NHWC" or (style in ("keras", "tensorflow", "flax") and "data_format" not in e.options) \
        or (style == "jax" and e.options["dimension_numbers"][0].endswith("C"))
    relayout = []
    if style == "paddle":  # the weight is (C_in, C_out/groups, *kernel) in every data_format
        nhwc = e.options.get("data_format") in ("NLC", "NHWC", "NDHWC")
        relayout = [f"X = np.moveaxis(X, 1, -1)  # {e.options['data_format']}"] if nhwc else []
    elif style == "jax":  # the rhs spec 'OI...' with transpose_kernel=True takes W as it lies
        relayout = ["X = np.moveaxis(X, 1, -1)  # (N, *spatial, C_in)"] if nhwc else []
    elif style == "flax":  # the batch axis stays: ConvTranspose takes a batch of one as well as none
        relayout = ["X = np.moveaxis(X, 1, -1)  # (N, *spatial, C_in)",
                    f"W = W.transpose({(*range(2, config.rank + 2), 1, 0)})  # (*kernel_size, features, C_in), "
                    "transpose_kernel=True"]
    elif style in ("keras", "tensorflow"):
        relayout = ["X = np.moveaxis(X, 1, -1)  # channels_last"] if nhwc else []
        relayout.append(f"W = W.transpose({(*range(2, config.rank + 2), 1, 0)})  # (*kernel, filters, C_in)")
    elif nhwc:
        relayout = ["X = np.moveaxis(X, 1, -1)  # NHWC", "W = np.moveaxis(W, 1, -1)  # (C_in, *kernel, C_out/group)"]
    else:
        if tuple(e.input_shape) != canonical_input_shape(record):
            relayout.append(f"X = X.reshape({tuple(e.input_shape)})")
        if tuple(e.weight_shape) != config.weight_shape:
            relayout.append(f"W = W.reshape({tuple(e.weight_shape)})")
    if relayout:
        lines += ["", f"# -> {style}'s layouts: input {tuple(e.input_shape)}, weight {tuple(e.weight_shape)}", *relayout]

    crop = e.crop or ((0, 0),) * (len(e.weight_shape) - 2)
    rank = len(crop)
    # the framework adds the bias unless positions must be added after it (they hold only the bias)
    bias_inside = has_bias and style not in ("mindspore", "tensorflow", "jax") and all(lo >= 0 and hi >= 0 for lo, hi in crop)
    if bias_inside and style == "megengine":
        lines.append(f"B = B.reshape(1, -1{', 1' * rank})  # MegEngine's bias is (1, C_out, 1, ...)")
    lines += ["", f"# {style}"] + _call(style, e, config, rank, bias_inside, to_tensor, explanation.output_shape)
    if to_numpy != "{}":
        lines.append(f"y = {to_numpy.format('y')}")

    out_spatial = explanation.output_shape[-rank - 1:-1] if nhwc else explanation.output_shape[-rank:]
    if nhwc:
        lines.append("y = np.moveaxis(y, -1, 1)  # back to (N, C_out, *spatial)")
    if any(c != (0, 0) for c in crop):
        lines += ["", f"# the crop {style}'s keywords cannot express (negative: positions that hold only the bias)"]
        pads = [(max(0, -lo), max(0, -hi)) for lo, hi in crop]
        if any(p != (0, 0) for p in pads):
            lines.append(f"y = np.pad(y, {[(0, 0), (0, 0), *pads]})")
        cuts = [":" if lo <= 0 and hi <= 0 else f"{max(lo, 0)}:{n + a + b - max(hi, 0)}"
                for (lo, hi), n, (a, b) in zip(crop, out_spatial, pads)]
        lines.append(f"y = y[:, :, {', '.join(cuts)}]")
    canonical_out = (canonical_input_shape(record)[0], config.out_channels, *record.output_spatial)
    if rank != config.rank:
        lines.append(f"y = y.reshape({canonical_out})  # drop the unit axis")
    if has_bias and not bias_inside:
        lines.append(f"y = y + B.reshape(1, -1{', 1' * config.rank})  # the bias")
    if style == "onnx":
        lines += ["", *_direct_check(config, has_bias)]
    if config.channels_last:
        lines.append("y = np.moveaxis(y, 1, -1)  # channels last again")
    if not config.batched:
        lines.append("y = y[0]  # drop the batch axis")
    assert math.prod(record.output_shape) == math.prod(canonical_out)
    return "\n".join(lines) + "\n"


def _call(style: str, e, config, rank: int, bias_inside: bool, to_tensor: str, out_shape) -> list[str]:
    x, w = to_tensor.format("X"), to_tensor.format("W")
    b = to_tensor.format("B") if bias_inside else "None"
    options = dict(e.options)
    if style == "torch":
        return [f"# as a module: torch.nn.ConvTranspose{rank}d({config.in_channels}, {config.out_channels}, "
                f"{tuple(config.kernel)}, {_kwargs(options)}{', ' if options else ''}bias={bias_inside}), weight = W",
                f"y = F.conv_transpose{rank}d({x}, {w}, {b}{', ' if options else ''}{_kwargs(options)})"]
    if style == "oneflow":
        return [f"y = flow.nn.functional.conv_transpose{rank}d({x}, {w}, {b}, {_kwargs(options)})"]
    if style == "megengine":
        return [f"y = MF.conv_transpose{rank}d({x}, {w}, {b}{', ' if options else ''}{_kwargs(options)})"]
    if style == "dragon":
        tensors = f"[{x}, {w}, {to_tensor.format('B')}]" if bias_inside else f"[{x}, {w}]"
        return [f"y = dragon.nn.conv{rank}d_transpose({tensors}, {_kwargs(options)})"]
    if style == "tensorflow":
        return [f"y = tf.nn.conv{rank}d_transpose({x}, {w}, {_kwargs(options)})"]
    if style == "paddle":
        size = options.pop("output_size", None)
        ctor = dict(in_channels=config.in_channels, out_channels=config.out_channels, kernel_size=tuple(config.kernel),
                    **options, bias_attr=None if bias_inside else False)
        return ["paddle.set_default_dtype(X.dtype.name)  # the layer's parameters in the data's dtype",
                f"layer = paddle.nn.Conv{rank}DTranspose({_kwargs(ctor)})", "layer.weight.set_value(W)",
                *(["layer.bias.set_value(B)"] if bias_inside else []),
                f"y = layer({x}{'' if size is None else f', output_size={size!r}'})"]
    if style == "keras":
        ctor = dict(filters=config.out_channels, kernel_size=tuple(config.kernel), **options, use_bias=bias_inside)
        weights = "[W, B]" if bias_inside else "[W]"
        return [f"layer = keras.layers.Conv{rank}DTranspose({_kwargs(ctor)}, dtype=X.dtype.name)",
                "layer.build(X.shape)", f"layer.set_weights({weights})", "y = layer(X)"]
    if style == "jax":
        return [f"y = lax.conv_transpose({x}, {w}, {_kwargs(options)})"]
    if style == "flax":
        params = "{'kernel': W, 'bias': B}" if bias_inside else "{'kernel': W}"
        return [f"layer = nn.ConvTranspose({_kwargs(dict(options, use_bias=bias_inside))})",
                f"y = layer.apply({{'params': {params}}}, X)"]
    if style == "mindspore":
        if rank == 3:
            ctor = dict(in_channel=config.in_channels, out_channel=config.out_channels, kernel_size=tuple(e.weight_shape[2:]),
                        **options)
            return [f"op = ops.Conv3DTranspose({_kwargs(ctor)})", f"y = op({x}, {w})"]
        size = options.pop("input_size")
        ctor = dict(out_channel=config.out_channels, kernel_size=tuple(e.weight_shape[2:]), **options)
        return [f"op = ops.Conv2DTranspose({_kwargs(ctor)})", f"y = op({x}, {w}, {tuple(size)!r})"]
    # onnx: one ConvTranspose node, run by onnxruntime (onnx's reference evaluator crashes on some grouped
    # layers and returns wrong numbers for grouped ones with a bias)
    names = ["X", "W", "B"] if bias_inside else ["X", "W"]
    attributes = {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}
    feeds = ", ".join(f"{n!r}: {n}.astype(np.float32)" for n in names)
    return [
        f"node = helper.make_node('ConvTranspose', {names}, ['Y']{', ' if attributes else ''}{_kwargs(attributes)})",
        "kind = helper.np_dtype_to_tensor_dtype(np.dtype(np.float32))  # onnxruntime's CPU ConvTranspose is float32",
        "inputs = [helper.make_tensor_value_info(n, kind, v.shape) for n, v in "
        f"zip({names}, [{', '.join(names)}])]",
        f"graph = helper.make_graph([node], 'deconv', inputs, [helper.make_tensor_value_info('Y', kind, {list(out_shape)})])",
        "model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])",
        "session = onnxruntime.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])",
        f"y = session.run(None, {{{feeds}}})[0]",
    ]


def _direct_check(config, has_bias: bool) -> list[str]:
    """Lines that recompute y as the transposed convolution's plain sum in NumPy (float64) and print the check.

    y[n, o, i*stride + t*dilation - crop_lo] += x[n, c, i] * w[c, o, t] within each group, then the crop
    (negative: positions that hold only the bias) and the bias.
    """
    g, rank = config.groups, config.rank
    pads = [(max(0, -lo), max(0, -hi)) for lo, hi in config.crops]
    cuts = ", ".join(f"{max(lo, 0)}:r.shape[{2 + i}] - {max(hi, 0)}" for i, (lo, hi) in enumerate(config.crops))
    return [
        "# the check: the same sum written out in NumPy (float64): y[n, o, i*stride + t*dilation] += x[n, c, i] * w[c, o, t]",
        f"stride, dilation, groups = {tuple(config.stride)}, {tuple(config.dilation)}, {g}",
        "n, c_in, spatial = X0.shape[0], X0.shape[1], X0.shape[2:]",
        "kernel, c_out = W0.shape[2:], W0.shape[1] * groups",
        "xg = X0.astype(np.float64).reshape(n, groups, c_in // groups, *spatial)",
        "wg = W0.astype(np.float64).reshape(groups, c_in // groups, c_out // groups, *kernel)",
        "r = np.zeros((n, c_out, *((l - 1) * s + d * (k - 1) + 1 for l, s, d, k in zip(spatial, stride, dilation, kernel))))",
        "for t in np.ndindex(*kernel):",
        "    window = tuple(slice(ti * d, ti * d + (l - 1) * s + 1, s) for ti, d, l, s in zip(t, dilation, spatial, stride))",
        "    r[(slice(None), slice(None), *window)] += np.einsum('ngc...,gco->ngo...', xg, wg[(..., *t)]).reshape(n, c_out, *spatial)",
        *([f"r = np.pad(r, {[(0, 0), (0, 0), *pads]})"] if any(p != (0, 0) for p in pads) else []),
        f"r = r[:, :, {cuts}]",
        *([f"r = r + B.astype(np.float64).reshape(1, -1{', 1' * rank})"] if has_bias else []),
        "assert y.shape == r.shape, f'y has shape {y.shape}, the direct sum {r.shape}'",
        "error = float(np.abs(y - r).max()) if y.size else 0.0",
        "assert np.allclose(y, r, rtol=1e-4, atol=1e-4), f'y differs from the direct sum by up to {error:.2e}'",
        "print(f'y {y.shape} matches the direct NumPy sum: max abs error {error:.1e}')",
    ]
