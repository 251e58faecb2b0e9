"""Write tests/golden/torch.json and torch.npz from real PyTorch (see README.md for the format).

Environment: PyTorch 2.13.0+cpu (CPU only), NumPy; run once, outside CI:

    python tests/golden/make_torch_goldens.py

Functional cases call ``torch.nn.functional.conv_transpose{1,2,3}d``; cases with ``output_size`` or
module arguments (in_channels, out_channels, kernel_size, bias, padding_mode) build
``nn.ConvTranspose{1,2,3}d``, copy the weight (and bias) in and call ``forward(x, output_size=...)``.
Every ``reject`` case was run in torch and the exception text recorded; the script fails if torch
accepts a case listed as a reject, or rejects one listed as ok.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).parent
RNG = np.random.default_rng(20240613)
MODULE_KEYS = ("in_channels", "out_channels", "kernel_size", "bias", "padding_mode", "output_size")
FUNCTIONAL = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
MODULES = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}
DTYPES = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64}

cases: list[dict] = []
arrays: dict[str, np.ndarray] = {}


def _tensors(x_shape, w_shape, b_shape, dtype):
    x = RNG.standard_normal(x_shape).astype(dtype)
    w = RNG.standard_normal(w_shape).astype(dtype)
    b = None if b_shape is None else RNG.standard_normal(b_shape).astype(dtype)
    return x, w, b


def _run(x, w, b, options, rank):
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)
    tb = None if b is None else torch.from_numpy(b)
    module_style = any(key in options for key in MODULE_KEYS)
    if not module_style:
        return FUNCTIONAL[rank](tx, tw, tb, **options)
    groups = options.get("groups", 1)
    module = MODULES[rank](
        in_channels=options.get("in_channels", w.shape[0]),
        out_channels=options.get("out_channels", w.shape[1] * groups),
        kernel_size=options.get("kernel_size", tuple(w.shape[2:])),
        stride=options.get("stride", 1),
        padding=options.get("padding", 0),
        output_padding=options.get("output_padding", 0),
        groups=groups,
        bias=options.get("bias", b is not None),
        dilation=options.get("dilation", 1),
        padding_mode=options.get("padding_mode", "zeros"),
        dtype=tw.dtype,
    )
    if module.bias is not None and tb is None:
        raise AssertionError("module bias without a bias tensor: not a meaningful golden")
    state = {"weight": tw} if tb is None else {"weight": tw, "bias": tb}
    module.load_state_dict(state)  # strict: raises when the module's weight shape disagrees with w
    return module(tx, output_size=options.get("output_size"))


def _record(name, rank, x_shape, w_shape, b_shape, dtype, options, expect):
    x, w, b = _tensors(x_shape, w_shape, b_shape, dtype)
    case = {
        "name": name, "style": "torch", "options": {k: repr(v) for k, v in options.items()}, "dtype": dtype,
        "input_shape": list(x_shape), "weight_shape": list(w_shape),
        "bias_shape": None if b_shape is None else list(b_shape), "expect": expect,
    }
    try:
        with torch.no_grad():
            y = _run(x, w, b, options, rank)
    except Exception as exc:  # noqa: BLE001 - we record whatever torch raises
        if expect == "ok":
            raise AssertionError(f"{name}: torch rejected an ok case: {exc}") from exc
        text = " ".join(str(exc).split())[:300]
        case["framework_error"] = f"{type(exc).__name__}: {text}"
        cases.append(case)
        return
    if expect == "reject":
        raise AssertionError(f"{name}: torch accepted a reject case, output {tuple(y.shape)}")
    y = y.numpy()
    assert y.dtype == x.dtype, (name, y.dtype)
    case["output_shape"] = list(y.shape)
    case["quirks"] = False
    cases.append(case)
    arrays[f"{name}__x"], arrays[f"{name}__w"], arrays[f"{name}__y"] = x, w, y
    if b is not None:
        arrays[f"{name}__b"] = b


def ok(name, x_shape, w_shape, *, with_bias=None, dtype="float32", **options):
    """An accepted case; a bias tensor unless ``with_bias=False`` (or the module option ``bias=False``)."""
    rank = len(w_shape) - 2
    groups = options.get("groups", 1)
    if with_bias is None:
        with_bias = options.get("bias", True)
    b_shape = (w_shape[1] * groups,) if with_bias else None
    _record(name, rank, x_shape, w_shape, b_shape, dtype, options, "ok")


def reject(name, x_shape, w_shape, *, b_shape=None, dtype="float32", **options):
    _record(name, len(w_shape) - 2, x_shape, w_shape, b_shape, dtype, options, "reject")


# ---- 1-D
ok("t1d_plain", (2, 3, 7), (3, 4, 3))
ok("t1d_s2", (2, 3, 6), (3, 2, 4), stride=2, with_bias=False)
ok("t1d_s3_p2_op2", (1, 2, 5), (2, 3, 5), stride=3, padding=2, output_padding=2)
ok("t1d_d2_s2_p1", (2, 2, 6), (2, 2, 3), stride=2, padding=1, dilation=2)
ok("t1d_s1_d3_op2", (1, 3, 5), (3, 2, 3), dilation=3, output_padding=2)  # op >= s but < d: torch allows
ok("t1d_g2", (2, 4, 5), (4, 3, 3), groups=2, stride=2, padding=1)
ok("t1d_dw", (1, 4, 6), (4, 1, 4), groups=4, stride=2, padding=1)
ok("t1d_k1_s4", (1, 2, 3), (2, 2, 1), stride=4)
ok("t1d_unbatched", (3, 6), (3, 2, 3), stride=2, padding=1, output_padding=1)
ok("t1d_f16", (2, 3, 6), (3, 4, 3), dtype="float16", stride=2, padding=1)
ok("t1d_f64", (2, 3, 6), (3, 4, 3), dtype="float64", stride=2, dilation=2)
ok("t1d_p_crops_to_1", (1, 2, 3), (2, 2, 3), stride=1, padding=2)  # out = 5 - 4 = 1
ok("t1d_tuple_args", (1, 2, 5), (2, 2, 3), stride=(2,), padding=(1,), output_padding=(1,), dilation=(1,))
# ---- 2-D
ok("t2d_plain", (2, 3, 4, 5), (3, 2, 3, 3))
ok("t2d_s2_p1_op1", (2, 4, 5, 6), (4, 3, 3, 3), stride=2, padding=1, output_padding=(1, 0))
ok("t2d_aniso", (1, 3, 4, 5), (3, 2, 3, 2), stride=(2, 3), padding=(1, 0), output_padding=(0, 2), dilation=(1, 2))
ok("t2d_k4s2p1", (2, 4, 4, 4), (4, 3, 4, 4), stride=2, padding=1, with_bias=False)
ok("t2d_d2_s2_p2_op1", (1, 3, 5, 4), (3, 2, 3, 3), stride=2, padding=2, output_padding=1, dilation=2)
ok("t2d_s1_d2_op1", (1, 2, 4, 4), (2, 2, 3, 3), dilation=2, output_padding=1)  # op >= s, < d
ok("t2d_s1_d3_op2_mixed", (1, 2, 4, 4), (2, 2, 2, 3), stride=(2, 1), dilation=(1, 3), output_padding=(1, 2))
ok("t2d_g2", (2, 4, 4, 5), (4, 3, 3, 3), groups=2, stride=2, padding=1, output_padding=1)
ok("t2d_g3", (1, 6, 3, 4), (6, 1, 2, 3), groups=3, stride=(1, 2))
ok("t2d_dw_g4", (2, 4, 5, 5), (4, 1, 4, 4), groups=4, stride=2, padding=1)
ok("t2d_dw_mult2", (1, 3, 4, 4), (3, 2, 3, 3), groups=3, stride=2, dilation=2, padding=1)
ok("t2d_k1", (1, 4, 3, 3), (4, 5, 1, 1), stride=3)
ok("t2d_k_gt_input", (1, 2, 2, 2), (2, 3, 5, 4), stride=2, padding=(2, 1))
ok("t2d_unbatched", (3, 4, 5), (3, 2, 3, 3), stride=2, padding=1)
ok("t2d_unbatched_g", (4, 3, 3), (4, 2, 3, 3), groups=2, stride=2, output_padding=1, with_bias=False)
ok("t2d_f16", (2, 4, 4, 4), (4, 3, 3, 3), dtype="float16", stride=2, padding=1, output_padding=1)
ok("t2d_f16_g2_nobias", (1, 4, 5, 3), (4, 2, 3, 2), dtype="float16", groups=2, stride=(1, 2), with_bias=False)
ok("t2d_f64", (2, 3, 4, 4), (3, 2, 3, 3), dtype="float64", stride=2, padding=1, dilation=(2, 1))
ok("t2d_f64_unbatched", (3, 4, 4), (3, 3, 2, 2), dtype="float64", stride=2)
# ---- 3-D
ok("t3d_plain", (1, 2, 3, 3, 3), (2, 2, 2, 2, 2))
ok("t3d_k2s2", (2, 3, 3, 2, 3), (3, 2, 2, 2, 2), stride=2, with_bias=False)
ok("t3d_k3s2p1op1", (1, 3, 3, 3, 3), (3, 2, 3, 3, 3), stride=2, padding=1, output_padding=1)
ok("t3d_aniso", (1, 2, 3, 4, 3), (2, 3, 3, 2, 2), stride=(2, 1, 1), padding=(0, 1, 1), dilation=(1, 1, 2))
ok("t3d_g2", (1, 4, 3, 3, 2), (4, 1, 3, 2, 2), groups=2, stride=(1, 2, 2), padding=(1, 0, 0), output_padding=(0, 1, 0))
ok("t3d_dw", (1, 3, 2, 3, 3), (3, 1, 2, 2, 2), groups=3, stride=2)
ok("t3d_unbatched", (2, 3, 3, 3), (2, 2, 2, 2, 2), stride=2, padding=1, output_padding=1)
ok("t3d_f16", (1, 2, 3, 3, 3), (2, 3, 3, 3, 3), dtype="float16", stride=2, padding=1)
ok("t3d_f64", (1, 2, 3, 3, 2), (2, 2, 2, 3, 2), dtype="float64", dilation=(2, 1, 2), stride=(1, 2, 1))
ok("t3d_d3_op2", (1, 2, 3, 3, 3), (2, 2, 2, 2, 2), dilation=3, output_padding=2, with_bias=False)
# ---- module arguments and output_size (nn.ConvTranspose*d.forward(x, output_size=...))
ok("m1d_output_size", (2, 3, 5), (3, 2, 3), stride=3, padding=1, output_size=(15,))
ok("m1d_output_size_min", (2, 3, 5), (3, 2, 3), stride=3, padding=1, output_size=[13])
ok("m2d_output_size", (1, 4, 5, 5), (4, 3, 3, 3), stride=2, padding=1, output_size=(10, 9))
ok("m2d_output_size_full", (1, 4, 5, 5), (4, 3, 3, 3), stride=2, padding=1, output_size=(1, 3, 10, 10))
ok("m2d_output_size_g2", (1, 4, 4, 4), (4, 2, 4, 4), stride=(2, 3), padding=1, groups=2, output_size=(8, 11))
ok("m2d_output_size_unbatched", (4, 4, 4), (4, 2, 3, 3), stride=2, output_size=(10, 9))
ok("m3d_output_size", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), stride=2, padding=1, output_size=(6, 5, 6))
ok("m3d_output_size_f16", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), dtype="float16", stride=2, output_size=(8, 7, 8))
ok("m2d_checks", (2, 4, 4, 4), (4, 3, 3, 3), in_channels=4, out_channels=6, kernel_size=3, groups=2,
   stride=2, padding=1, bias=True)
ok("m2d_checks_tuple_k", (1, 3, 4, 4), (3, 5, 2, 3), in_channels=3, out_channels=5, kernel_size=(2, 3), bias=False)
ok("m1d_checks_zeros_mode", (1, 2, 4), (2, 3, 3), in_channels=2, out_channels=3, kernel_size=(3,),
   padding_mode="zeros", stride=2, with_bias=False)
ok("m3d_checks", (1, 2, 2, 3, 2), (2, 2, 2, 2, 2), in_channels=2, out_channels=2, kernel_size=2, stride=2)

# ---- rejects
reject("bad_stride0", (1, 2, 4, 4), (2, 2, 3, 3), stride=0)
reject("bad_stride0_one_axis", (1, 2, 4, 4), (2, 2, 3, 3), stride=(2, 0))
reject("bad_dilation0", (1, 2, 4, 4), (2, 2, 3, 3), dilation=0)
reject("bad_negative_padding", (1, 2, 4, 4), (2, 2, 3, 3), padding=(-1, 0))
reject("bad_output_padding_ge_stride", (1, 2, 4, 4), (2, 2, 3, 3), stride=2, output_padding=2)
reject("bad_output_padding_ge_both", (1, 2, 5), (2, 2, 3), stride=1, dilation=2, output_padding=2)
reject("bad_output_padding_default_stride", (1, 2, 3, 3, 3), (2, 2, 2, 2, 2), output_padding=1)
reject("bad_groups_not_dividing", (1, 4, 5, 5), (4, 2, 3, 3), groups=3)
reject("bad_channel_mismatch", (1, 5, 4, 4), (4, 2, 3, 3))
reject("bad_channel_mismatch_groups", (1, 4, 4, 4), (2, 2, 3, 3), groups=2)
reject("bad_bias_rank4", (1, 3, 4, 4), (3, 2, 3, 3), b_shape=(1, 2, 1, 1))
reject("bad_bias_length", (1, 3, 4, 4), (3, 2, 3, 3), b_shape=(3,))
reject("bad_output_too_small", (1, 2, 3, 3), (2, 2, 3, 3), padding=3)
reject("bad_output_zero", (1, 2, 2), (2, 2, 3), padding=(2,))
reject("bad_padding_length", (1, 2, 4, 4), (2, 2, 3, 3), padding=(1, 1, 1))
reject("bad_input_rank_5d_for_2d", (1, 1, 2, 4, 4), (2, 2, 3, 3))
reject("bad_input_rank_2d_for_2d", (4, 4), (4, 2, 3, 3))
reject("bad_output_size_high", (1, 2, 5, 5), (2, 2, 3, 3), stride=2, padding=1, output_size=(11, 9))
reject("bad_output_size_low", (1, 2, 4, 4, 4), (2, 2, 3, 3, 3), stride=2, padding=1, output_size=(6, 6, 6))
reject("bad_padding_mode_reflect", (1, 2, 4, 4), (2, 2, 3, 3), padding_mode="reflect")
reject("bad_module_in_channels", (1, 4, 4, 4), (4, 2, 3, 3), in_channels=3, out_channels=2)
reject("bad_module_out_channels", (1, 4, 4, 4), (4, 2, 3, 3), out_channels=3)
reject("bad_module_kernel_size", (1, 4, 4, 4), (4, 2, 3, 3), kernel_size=2)
reject("bad_module_in_channels_groups", (1, 4, 4, 4), (4, 2, 3, 3), in_channels=4, out_channels=6, groups=3)


def main() -> None:
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    record = {"framework": "PyTorch", "version": torch.__version__, "script": "make_torch_goldens.py", "cases": cases}
    (HERE / "torch.json").write_text(json.dumps(record, indent=1) + "\n")
    np.savez_compressed(HERE / "torch.npz", **arrays)
    n_ok = sum(c["expect"] == "ok" for c in cases)
    size = (HERE / "torch.npz").stat().st_size
    print(f"torch: {n_ok} ok, {len(cases) - n_ok} reject; torch.npz {size} bytes")


if __name__ == "__main__":
    main()
