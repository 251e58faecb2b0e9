"""Write tests/golden/onnx.json and onnx.npz from onnxruntime (see README.md for the format).

Environment: onnx 1.23.2, onnxruntime 1.31.1 (CPUExecutionProvider), NumPy; run once, outside CI:

    python tests/golden/make_onnx_goldens.py

Each case is one opset-17 ``ConvTranspose`` node built with ``onnx.helper`` (X, W and optional B as
graph inputs with static shapes) and run in onnxruntime. Every ok case is also checked here against
the ONNX *spec* computed with the naive scatter reference (tests/reference.py):
- where they agree the case is recorded with ``quirks: false``;
- where onnxruntime deviates from the spec (a SAME_* target n*s, or an explicit
  output_shape, longer than full + output_padding) the script checks that onnxruntime's result is the
  documented defect (crop_b 0, zeros only at the end; SAME_* without output_shape gives full + op) and
  records the case with ``quirks: true``; any other disagreement stops the script.
Every ``reject`` case was run in onnxruntime and its message recorded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
from reference import reference_deconv  # noqa: E402

RNG = np.random.default_rng(20240614)
OPSET = 17
ELEM = {"float16": TensorProto.FLOAT16, "float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}

cases: list[dict] = []
arrays: dict[str, np.ndarray] = {}


def _model(x_shape, w_shape, b_shape, dtype, attrs):
    names = ["X", "W"] + ([] if b_shape is None else ["B"])
    shapes = [x_shape, w_shape] + ([] if b_shape is None else [b_shape])
    inputs = [helper.make_tensor_value_info(n, ELEM[dtype], list(s)) for n, s in zip(names, shapes)]
    output = helper.make_tensor_value_info("Y", ELEM[dtype], None)
    node = helper.make_node("ConvTranspose", names, ["Y"], **attrs)
    graph = helper.make_graph([node], "deconv_golden", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def _run_ort(model, feeds):
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(["Y"], feeds)[0]


def _geometry(x_shape, w_shape, attrs):
    """Per axis (full, op, crop_b spec, out spec, crop_b ORT, out ORT, differs) from the ONNX spec and ORT's rule."""
    rank = len(x_shape) - 2
    spatial, kernel = x_shape[2:], w_shape[2:]
    s = attrs.get("strides", [1] * rank)
    d = attrs.get("dilations", [1] * rank)
    ops = attrs.get("output_padding", [0] * rank)
    pads = attrs.get("pads", [0] * (2 * rank))
    auto_pad = attrs.get("auto_pad", "NOTSET")
    axes = []
    for a in range(rank):
        full = (spatial[a] - 1) * s[a] + d[a] * (kernel[a] - 1) + 1
        op = ops[a]
        if "output_shape" in attrs or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            explicit = "output_shape" in attrs
            target = attrs["output_shape"][a] if explicit else spatial[a] * s[a]
            total = full + op - target
            lo = total // 2 if auto_pad == "SAME_UPPER" else -(-total // 2)
            if total >= 0:
                axes.append((full, op, lo, target, lo, target, False))
            else:  # ORT: crop 0, zeros at the end; SAME_* without output_shape: full + op
                ort_out = target if explicit else full + op
                axes.append((full, op, lo, target, 0, ort_out, (lo, target) != (0, ort_out)))
        elif auto_pad == "VALID":
            axes.append((full, op, 0, full + op, 0, full + op, False))
        else:
            lo, hi = pads[a], pads[a + rank]
            axes.append((full, op, lo, full - lo - hi + op, lo, full - lo - hi + op, False))
    return axes


def _reference(x, w, b, attrs, crops_b, outs):
    crops = [(lo, full - lo - out) for (lo, out), full in zip(zip(crops_b, outs), [g[0] for g in attrs["_geo"]])]
    rank = x.ndim - 2
    y = reference_deconv(
        x, w, b, stride=attrs.get("strides", [1] * rank), dilation=attrs.get("dilations", [1] * rank),
        crops=crops, groups=attrs.get("group", 1),
    )
    return y


def _case(name, x_shape, w_shape, b_shape, dtype, attrs, expect):
    x = RNG.standard_normal(x_shape).astype(dtype)
    w = RNG.standard_normal(w_shape).astype(dtype)
    b = None if b_shape is None else RNG.standard_normal(b_shape).astype(dtype)
    case = {
        "name": name, "style": "onnx", "options": {k: repr(v) for k, v in attrs.items()}, "dtype": dtype,
        "input_shape": list(x_shape), "weight_shape": list(w_shape),
        "bias_shape": None if b_shape is None else list(b_shape), "expect": expect,
    }
    feeds = {"X": x, "W": w} | ({} if b is None else {"B": b})
    try:
        y = _run_ort(_model(x_shape, w_shape, b_shape, dtype, attrs), feeds)
    except Exception as exc:  # noqa: BLE001 - we record whatever onnxruntime raises
        if expect == "ok":
            raise AssertionError(f"{name}: onnxruntime rejected an ok case: {exc}") from exc
        text = " ".join(str(exc).split())
        case["framework_error"] = f"{type(exc).__name__}: {text[:400]}"
        cases.append(case)
        return
    if expect == "reject":
        raise AssertionError(f"{name}: onnxruntime accepted a reject case, output {y.shape}")
    assert y.dtype == x.dtype, (name, y.dtype)

    geo = _geometry(x_shape, w_shape, attrs)
    quirk = any(g[6] for g in geo)
    ctx = dict(attrs, _geo=geo)
    ort_model = _reference(x, w, b, ctx, [g[4] for g in geo], [g[5] for g in geo])
    spec = _reference(x, w, b, ctx, [g[2] for g in geo], [g[3] for g in geo])
    tol = (2e-2 if dtype == "float16" else 1e-4) * max(1.0, float(np.abs(ort_model).max()))
    assert y.shape == ort_model.shape, (name, y.shape, ort_model.shape)
    assert np.abs(y.astype(np.float64) - ort_model).max() <= tol, (name, "ORT differs from the documented ORT rule")
    if quirk:
        assert spec.shape != y.shape or np.abs(spec - y).max() > tol, (name, "marked quirk but ORT matches the spec")
    else:
        assert spec.shape == y.shape and np.abs(spec - y).max() <= tol, name
    case["output_shape"] = list(y.shape)
    case["quirks"] = quirk
    cases.append(case)
    arrays[f"{name}__x"], arrays[f"{name}__w"], arrays[f"{name}__y"] = x, w, y
    if b is not None:
        arrays[f"{name}__b"] = b


def ok(name, x_shape, w_shape, *, bias=True, dtype="float32", **attrs):
    b_shape = (w_shape[1] * attrs.get("group", 1),) if bias else None
    _case(name, x_shape, w_shape, b_shape, dtype, attrs, "ok")


def reject(name, x_shape, w_shape, *, b_shape=None, dtype="float32", **attrs):
    _case(name, x_shape, w_shape, b_shape, dtype, attrs, "reject")


# ---- NOTSET / explicit pads
ok("o2d_default", (1, 3, 4, 5), (3, 2, 3, 3))
ok("o2d_pads_sym", (2, 3, 4, 4), (3, 2, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1])
ok("o2d_pads_asym", (1, 2, 5, 4), (2, 3, 3, 3), strides=[2, 2], pads=[0, 2, 1, 1], bias=False)
ok("o2d_pads_asym_op", (1, 2, 4, 4), (2, 2, 3, 4), strides=[2, 3], pads=[2, 0, 0, 1], output_padding=[1, 2])
ok("o1d_pads_asym", (2, 3, 6), (3, 2, 4), strides=[2], pads=[0, 3])
ok("o3d_pads_asym", (1, 2, 3, 3, 2), (2, 2, 3, 2, 3), strides=[2, 1, 2], pads=[1, 0, 2, 0, 1, 1], output_padding=[1, 0, 1])
ok("o2d_notset_explicit", (1, 2, 3, 3), (2, 2, 3, 3), auto_pad="NOTSET", pads=[1, 1, 1, 1], kernel_shape=[3, 3])
# ---- VALID
ok("o2d_valid", (1, 3, 4, 4), (3, 2, 3, 3), auto_pad="VALID", strides=[2, 2])
ok("o1d_valid_op", (1, 2, 5), (2, 3, 3), auto_pad="VALID", strides=[3], output_padding=[2])
ok("o3d_valid", (1, 2, 2, 3, 2), (2, 2, 2, 2, 2), auto_pad="VALID", strides=[2, 2, 2], bias=False)
# ---- SAME_UPPER / SAME_LOWER (T >= 0: ORT follows the spec)
ok("o2d_same_upper", (1, 2, 5, 5), (2, 3, 3, 3), auto_pad="SAME_UPPER", strides=[2, 2])
ok("o2d_same_lower", (1, 2, 5, 5), (2, 3, 3, 3), auto_pad="SAME_LOWER", strides=[2, 2])
ok("o1d_same_upper_odd", (1, 2, 6), (2, 2, 5), auto_pad="SAME_UPPER", strides=[3])
ok("o1d_same_lower_odd", (1, 2, 6), (2, 2, 5), auto_pad="SAME_LOWER", strides=[3])
ok("o2d_same_upper_op", (1, 2, 4, 4), (2, 2, 3, 3), auto_pad="SAME_UPPER", strides=[2, 2], output_padding=[1, 0])
ok("o2d_same_lower_dil", (1, 2, 4, 4), (2, 2, 3, 3), auto_pad="SAME_LOWER", strides=[1, 2], dilations=[2, 1])
ok("o3d_same_upper", (1, 2, 3, 2, 3), (2, 2, 3, 3, 3), auto_pad="SAME_UPPER", strides=[2, 1, 2])
ok("o3d_same_lower", (1, 2, 3, 2, 3), (2, 2, 3, 3, 3), auto_pad="SAME_LOWER", strides=[2, 1, 2], bias=False)
# ---- SAME_* with T < 0: ORT deviates from the spec (quirks)
ok("q1d_same_upper_k1_s4", (1, 2, 2), (2, 2, 1), auto_pad="SAME_UPPER", strides=[4])
ok("q1d_same_lower_k1_s4", (1, 2, 3), (2, 2, 1), auto_pad="SAME_LOWER", strides=[4])
ok("q2d_same_upper_one_axis", (1, 2, 3, 3), (2, 2, 2, 3), auto_pad="SAME_UPPER", strides=[4, 2])
ok("q2d_same_lower_f16", (1, 2, 3, 3), (2, 2, 1, 2), auto_pad="SAME_LOWER", strides=[3, 3], dtype="float16")
# ---- output_shape with each auto_pad
ok("o2d_oshape_notset", (1, 2, 4, 4), (2, 2, 3, 3), strides=[2, 2], output_shape=[8, 7])
ok("o2d_oshape_same_upper", (1, 2, 4, 4), (2, 2, 3, 3), strides=[2, 2], output_shape=[8, 7], auto_pad="SAME_UPPER")
ok("o2d_oshape_same_lower", (1, 2, 4, 4), (2, 2, 3, 3), strides=[2, 2], output_shape=[8, 7], auto_pad="SAME_LOWER")
ok("o2d_oshape_valid", (1, 2, 4, 4), (2, 2, 3, 3), strides=[2, 2], output_shape=[8, 7], auto_pad="VALID")
ok("o1d_oshape_full", (1, 2, 5), (2, 2, 3), strides=[2], output_shape=[11])
ok("o1d_oshape_op", (1, 2, 5), (2, 2, 3), strides=[3], output_shape=[12], output_padding=[2], auto_pad="SAME_UPPER")
ok("o3d_oshape_lower", (1, 2, 3, 3, 2), (2, 2, 3, 2, 2), strides=[2, 2, 1], output_shape=[5, 6, 2], auto_pad="SAME_LOWER")
ok("o3d_oshape_notset_f16", (1, 2, 3, 3, 2), (2, 2, 3, 2, 2), strides=[2, 2, 1], output_shape=[6, 5, 3], dtype="float16")
ok("o2d_oshape_with_pads", (1, 2, 3, 3), (2, 2, 3, 3), strides=[2, 2], output_shape=[6, 6], pads=[1, 1, 1, 1])
# ---- output_shape longer than full + output_padding: ORT appends zeros at the end (quirks)
# T = -1 with the ceil split: the spec's crop_b is 0 too, so ORT and the spec agree (no quirk)
ok("o1d_oshape_notset_long_by1", (1, 2, 4), (2, 2, 3), strides=[3], output_shape=[13])
ok("q1d_oshape_notset_long", (1, 2, 4), (2, 2, 3), strides=[3], output_shape=[14])
ok("q1d_oshape_upper_long", (1, 2, 4), (2, 2, 3), strides=[3], output_shape=[13], auto_pad="SAME_UPPER")
ok("q2d_oshape_lower_long", (1, 2, 3, 3), (2, 2, 3, 3), strides=[2, 3], output_shape=[8, 11], auto_pad="SAME_LOWER")
ok("q2d_oshape_valid_long", (1, 2, 3, 3), (2, 2, 3, 3), strides=[2, 3], output_shape=[7, 11], auto_pad="VALID")
# ---- output_padding, dilations, group, dtypes
ok("o2d_op_dil", (1, 2, 4, 3), (2, 3, 3, 2), strides=[3, 2], dilations=[2, 3], pads=[1, 0, 2, 1], output_padding=[2, 1])
ok("o1d_dil3", (2, 2, 5), (2, 2, 3), dilations=[3])
ok("o2d_group2", (2, 4, 3, 4), (4, 3, 3, 3), group=2, strides=[2, 2], pads=[1, 0, 0, 1])
ok("o2d_depthwise", (1, 4, 4, 4), (4, 1, 4, 4), group=4, strides=[2, 2], pads=[1, 1, 1, 1])
ok("o3d_group2_f16", (1, 4, 2, 3, 2), (4, 1, 2, 2, 2), group=2, strides=[2, 2, 2], dtype="float16")
ok("o2d_group2_same_lower", (1, 4, 3, 3), (4, 2, 3, 3), group=2, strides=[2, 2], auto_pad="SAME_LOWER", bias=False)
ok("o2d_f16", (2, 3, 4, 4), (3, 2, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1], dtype="float16")
ok("o1d_f16_nobias", (1, 3, 6), (3, 2, 4), strides=[2], pads=[1, 2], dtype="float16", bias=False)
ok("o3d_f32_dil", (1, 2, 3, 2, 2), (2, 2, 2, 2, 2), dilations=[2, 1, 3], strides=[1, 2, 1], pads=[1, 0, 0, 0, 1, 2])

# ---- rejects
reject("bad_strides0", (1, 2, 4, 4), (2, 2, 3, 3), strides=[0, 1])
reject("bad_dilations0", (1, 2, 4, 4), (2, 2, 3, 3), dilations=[1, 0])
reject("bad_negative_pads", (1, 2, 4, 4), (2, 2, 3, 3), pads=[-1, 0, 0, 0])
reject("bad_pads_length", (1, 2, 4, 4), (2, 2, 3, 3), pads=[1, 1])
reject("bad_pads_with_auto_pad", (1, 2, 4, 4), (2, 2, 3, 3), pads=[1, 1, 1, 1], auto_pad="SAME_UPPER")
reject("bad_auto_pad_string", (1, 2, 4, 4), (2, 2, 3, 3), auto_pad="SAME")
reject("bad_kernel_shape", (1, 2, 4, 4), (2, 2, 3, 3), kernel_shape=[2, 2])
reject("bad_group_not_dividing", (1, 4, 4, 4), (4, 2, 3, 3), group=3)
reject("bad_channel_mismatch", (1, 3, 4, 4), (4, 2, 3, 3))
reject("bad_channel_mismatch_group", (1, 4, 4, 4), (2, 2, 3, 3), group=2)
reject("bad_unbatched", (2, 4, 4), (2, 2, 3, 3))
reject("bad_rank_mismatch", (1, 2, 4, 4, 4), (2, 2, 3, 3))
reject("bad_output_le_0", (1, 2, 3, 3), (2, 2, 3, 3), pads=[3, 0, 3, 0])
reject("bad_output_exactly_0", (1, 2, 2), (2, 2, 3), pads=[2, 2])
reject("bad_op_ge_stride", (1, 2, 4, 4), (2, 2, 3, 3), strides=[2, 2], output_padding=[2, 0])
reject("bad_op_lt_dilation", (1, 2, 5), (2, 2, 3), dilations=[3], output_padding=[2])
reject("bad_op_default_stride", (1, 2, 3, 3, 3), (2, 2, 2, 2, 2), output_padding=[0, 1, 0])
reject("bad_oshape_length", (1, 2, 4, 4), (2, 3, 3, 3), strides=[2, 2], output_shape=[1, 3, 9, 9])
reject("bad_oshape_too_large", (1, 2, 4), (2, 2, 3), strides=[3], output_shape=[15])
reject("bad_bias_length", (1, 2, 4, 4), (2, 3, 3, 3), b_shape=(2,))
reject("bad_bias_rank4", (1, 2, 4, 4), (2, 3, 3, 3), b_shape=(1, 3, 1, 1))
reject("bad_strides_length", (1, 2, 4, 4), (2, 2, 3, 3), strides=[2, 2, 2])


def main() -> None:
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    record = {
        "framework": "onnxruntime", "version": f"onnxruntime {ort.__version__}, onnx {onnx.__version__}, opset {OPSET}",
        "script": "make_onnx_goldens.py", "cases": cases,
    }
    (HERE / "onnx.json").write_text(json.dumps(record, indent=1) + "\n")
    np.savez_compressed(HERE / "onnx.npz", **arrays)
    n_ok = sum(c["expect"] == "ok" for c in cases)
    n_quirks = sum(bool(c.get("quirks")) for c in cases)
    size = (HERE / "onnx.npz").stat().st_size
    print(f"onnx: {n_ok} ok ({n_quirks} quirks), {len(cases) - n_ok} reject; onnx.npz {size} bytes")


if __name__ == "__main__":
    main()
