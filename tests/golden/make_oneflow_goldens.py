"""Record OneFlow 0.9.0 golden cases (tests/golden/oneflow.{json,npz}). Not run in CI.

Environment: the OneFlow venv (python3.10, oneflow 0.9.0 running on CPU) with its CUDA libraries found::

    export LD_LIBRARY_PATH=$(ls -d "$VIRTUAL_ENV"/lib/python3.10/site-packages/nvidia/*/lib | tr '\\n' ':')
    python tests/golden/make_oneflow_goldens.py

Every case runs in its own subprocess (mixed dtypes and some shapes abort the process), and records either
the output (``ok``) or the error / exit status (``reject``). Cases marked ``garbage`` are ones OneFlow runs
without complaint but computes nonsense for (groups not dividing C_in, stride 0, ...): deconv rejects them,
so they are recorded as ``reject`` with what OneFlow returned.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).parent
MODULE_KEYS = ("in_channels", "out_channels", "kernel_size", "bias", "padding_mode")


def case(name, x, w, b=None, dtype="float32", garbage=False, quirks=False, **options):
    return {"name": name, "x": list(x), "w": list(w), "b": None if b is None else list(b), "dtype": dtype,
            "garbage": garbage, "quirks": quirks, "options": options}


CASES = [
    # ---- 1-D
    case("of1d_basic", (2, 3, 5), (3, 2, 3)),
    case("of1d_s2_p1_op1", (1, 2, 5), (2, 3, 3), stride=2, padding=1, output_padding=1),
    case("of1d_s3_d2_p2_op1", (1, 2, 4), (2, 2, 3), stride=3, dilation=2, padding=2, output_padding=1),
    case("of1d_groups2_bias", (1, 4, 5), (4, 3, 3), (6,), groups=2, stride=2),
    case("of1d_op2_s2_outside_torch", (1, 2, 3), (2, 2, 2), stride=2, output_padding=2),
    case("of1d_op5_s2", (1, 2, 3), (2, 2, 3), (2,), stride=2, output_padding=5),
    case("of1d_neg_padding", (1, 2, 3), (2, 2, 3), (2,), stride=2, padding=-1),
    case("of1d_neg_padding_op3", (1, 2, 4), (2, 3, 3), padding=-2, output_padding=3),
    case("of1d_neg_output_padding", (1, 2, 4), (2, 3, 3), stride=2, output_padding=-1),
    case("of1d_d3_op2", (1, 2, 5), (2, 2, 3), dilation=3, output_padding=2),
    case("of1d_fp64_bias", (2, 3, 6), (3, 2, 4), (2,), dtype="float64", stride=2, padding=1),
    case("of1d_k1_s4", (1, 2, 3), (2, 3, 1), stride=4),
    case("of1d_tuple_args", (1, 2, 6), (2, 2, 3), stride=(2,), padding=(1,), output_padding=(1,), dilation=(2,)),
    case("of1d_depthwise", (1, 3, 5), (3, 1, 3), (3,), groups=3, stride=2, padding=1),
    # ---- 2-D
    case("of2d_basic", (1, 2, 4, 5), (2, 3, 3, 3)),
    case("of2d_s21_p10_op10", (2, 3, 4, 4), (3, 2, 3, 2), stride=(2, 1), padding=(1, 0), output_padding=(1, 0)),
    case("of2d_groups2_bias", (1, 4, 3, 4), (4, 2, 3, 3), (4,), groups=2, stride=2, padding=1),
    case("of2d_groups4", (1, 4, 3, 3), (4, 1, 2, 2), groups=4, stride=2),
    case("of2d_dilation23", (1, 2, 4, 3), (2, 2, 3, 2), dilation=(2, 3), padding=(1, 2)),
    case("of2d_neg_pad_mixed", (1, 2, 3, 3), (2, 2, 3, 3), (2,), padding=(-1, 1)),
    case("of2d_op30_s21", (1, 2, 3, 3), (2, 2, 2, 2), stride=(2, 1), output_padding=(3, 0)),
    case("of2d_fp64_bias", (1, 3, 4, 4), (3, 2, 4, 4), (2,), dtype="float64", stride=2, padding=1),
    case("of2d_module_keywords", (1, 3, 4, 4), (3, 4, 3, 3), (4,), in_channels=3, out_channels=4, kernel_size=3,
         stride=2, padding=1, output_padding=1, bias=True, padding_mode="zeros"),
    case("of2d_module_groups", (1, 4, 3, 3), (4, 3, 2, 3), in_channels=4, out_channels=6, kernel_size=(2, 3),
         groups=2, bias=False),
    case("of2d_k1", (1, 2, 3, 4), (2, 5, 1, 1), stride=3),
    case("of2d_s3_k2_op2", (1, 2, 3, 3), (2, 2, 2, 2), stride=3, output_padding=2, padding=1),
    case("of2d_big_op", (1, 1, 2, 2), (1, 2, 2, 2), (2,), output_padding=(4, 1)),
    case("of2d_dil2_s2_p2_op1", (2, 4, 4, 4), (4, 2, 3, 3), stride=2, dilation=2, padding=2, output_padding=1),
    # ---- 3-D
    case("of3d_seed_small", (1, 16, 3, 6, 5), (16, 33, 3, 5, 2), (33,), in_channels=16, out_channels=33,
         kernel_size=(3, 5, 2), stride=(2, 1, 1), padding=(0, 4, 2)),
    case("of3d_basic", (1, 2, 3, 3, 3), (2, 2, 2, 2, 2)),
    case("of3d_s2_p1_op1", (1, 2, 3, 3, 2), (2, 2, 3, 3, 3), (2,), stride=2, padding=1, output_padding=1),
    case("of3d_groups2", (1, 4, 2, 3, 2), (4, 3, 3, 3, 3), groups=2),
    case("of3d_op2_s2", (1, 1, 2, 2, 2), (1, 2, 2, 2, 2), stride=2, output_padding=2),
    case("of3d_neg_padding", (1, 1, 2, 3, 2), (1, 2, 3, 3, 3), (2,), stride=(2, 1, 1), padding=(-1, 0, 1)),
    case("of3d_dilation", (1, 2, 3, 2, 3), (2, 2, 2, 2, 2), dilation=(1, 2, 3), padding=1),
    case("of3d_fp64", (1, 2, 2, 3, 3), (2, 3, 2, 2, 2), (3,), dtype="float64", stride=(1, 2, 2), padding=(0, 1, 1),
         output_padding=(0, 1, 0)),
    case("of3d_mixed", (2, 2, 2, 2, 3), (2, 2, 1, 2, 3), stride=(3, 2, 1), output_padding=(2, 1, 0)),
    case("of3d_depthwise_s2", (1, 3, 2, 2, 2), (3, 1, 2, 2, 2), (3,), groups=3, stride=2),
    case("of2d_neg_op_both", (1, 2, 4, 4), (2, 2, 3, 3), stride=2, padding=1, output_padding=(-1, -2)),
    case("of1d_long_input", (1, 2, 40), (2, 2, 5), stride=3, padding=2, output_padding=2),
    case("of2d_negpad_s3", (1, 2, 2, 3), (2, 2, 2, 2), stride=3, padding=-2),
    case("of1d_op_equals_stride", (1, 2, 4), (2, 2, 3), stride=2, padding=1, output_padding=2),
    # ---- rejected by OneFlow (or garbage that deconv rejects)
    case("bad_groups_not_dividing", (1, 4, 5), (4, 3, 3), groups=3, garbage=True),
    case("bad_groups_zero", (1, 2, 4), (2, 3, 3), groups=0),
    case("bad_groups_negative", (1, 2, 4), (2, 3, 3), groups=-1),
    case("bad_stride_zero", (1, 2, 4), (2, 3, 3), stride=0, garbage=True),
    case("bad_dilation_zero", (1, 2, 4), (2, 3, 3), dilation=0, garbage=True),
    case("bad_stride_negative", (1, 2, 4), (2, 3, 3), stride=-1),
    case("bad_float16", (1, 2, 4), (2, 3, 3), dtype="float16"),
    case("bad_unbatched", (2, 4), (2, 3, 3)),
    case("bad_weight_channels", (1, 2, 4), (3, 3, 3)),
    case("bad_weight_rank", (1, 2, 4), (2, 3, 3, 3)),
    case("bad_bias_2d", (1, 2, 4), (2, 3, 3), (1, 3)),
    case("bad_bias_length", (1, 2, 4), (2, 3, 3), (4,)),
    case("bad_output_size_zero", (1, 2, 4), (2, 3, 3), padding=3),
    case("bad_output_size_negative", (1, 2, 4), (2, 3, 3), padding=4),
    case("bad_padding_short", (1, 2, 4, 4), (2, 3, 3, 3), padding=(1,)),
    case("bad_padding_long_3d", (1, 2, 3, 4, 5), (2, 3, 2, 3, 2), padding=(1, 0, 1, 7, 7, 7), garbage=True),
    case("bad_padding_long_1d", (1, 2, 4), (2, 3, 3), padding=(1, 5), garbage=True),
    case("bad_padding_same", (1, 2, 4), (2, 3, 3), padding="same"),
    case("bad_stride_length", (1, 2, 4), (2, 3, 3), stride=(2, 5)),
    case("bad_output_padding_length", (1, 2, 4), (2, 3, 3), output_padding=(1, 5)),
    case("bad_padding_mode", (1, 2, 4), (2, 3, 3), in_channels=2, out_channels=3, kernel_size=3, padding_mode="reflect"),
    case("bad_kernel_size", (1, 2, 4, 4), (2, 3, 3, 3), in_channels=2, out_channels=3, kernel_size=2),
    case("bad_in_channels", (1, 2, 4), (2, 3, 3), in_channels=4, out_channels=3, kernel_size=3),
    case("bad_out_channels", (1, 2, 4), (2, 3, 3), in_channels=2, out_channels=6, kernel_size=3),
    case("bad_module_groups", (1, 4, 4), (4, 2, 3), in_channels=4, out_channels=6, kernel_size=3, groups=3),
    case("bad_bias_flag", (1, 2, 4), (2, 3, 3), in_channels=2, out_channels=3, kernel_size=3, bias=True),
    case("bad_output_size_kw", (1, 2, 4), (2, 3, 3), in_channels=2, out_channels=3, kernel_size=3, output_size=(7,)),
]


def worker(spec: dict, out: str) -> None:
    """Run one case under OneFlow and save x, w, (b), y to ``out``."""
    import numpy as np
    import oneflow as flow

    rng = np.random.default_rng(zlib.crc32(spec["name"].encode()))
    arrays = {"x": rng.standard_normal(spec["x"]).astype(spec["dtype"]),
              "w": rng.standard_normal(spec["w"]).astype(spec["dtype"])}
    if spec["b"] is not None:
        arrays["b"] = rng.standard_normal(spec["b"]).astype(spec["dtype"])
    opts = dict(spec["options"])
    rank = len(spec["w"]) - 2
    x, w = flow.tensor(arrays["x"]), flow.tensor(arrays["w"])
    b = flow.tensor(arrays["b"]) if "b" in arrays else None
    if any(k in opts for k in MODULE_KEYS) or "output_size" in opts:
        module_cls = getattr(flow.nn, f"ConvTranspose{rank}d")
        size = opts.pop("output_size", None)
        m = module_cls(opts.pop("in_channels"), opts.pop("out_channels"), opts.pop("kernel_size"),
                       bias=opts.pop("bias", b is not None), **opts)
        state = {"weight": w} if b is None else {"weight": w, "bias": b}
        m.load_state_dict(state)
        y = m(x) if size is None else m(x, output_size=size)
    else:
        fn = getattr(flow.nn.functional, f"conv_transpose{rank}d")
        y = fn(x, w, b, **opts)
    arrays["y"] = y.numpy()
    np.savez(out, **arrays)
    print("SHAPE", list(arrays["y"].shape))


def run_case(spec: dict, tmp: Path) -> dict:
    out = tmp / f"{spec['name']}.npz"
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec), str(out)],
                          capture_output=True, text=True, timeout=300)
    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines()
             if ln.strip() and not ln.startswith(("W2", "I2", "libibverbs", "  File", "    "))]
    return {"rc": proc.returncode, "out": out if proc.returncode == 0 else None, "lines": lines}


def record(spec: dict, result: dict) -> tuple[dict, dict]:
    import numpy as np

    entry = {"name": spec["name"], "style": "oneflow",
             "options": {k: repr(v) for k, v in spec["options"].items()}, "dtype": spec["dtype"],
             "input_shape": spec["x"], "weight_shape": spec["w"], "bias_shape": spec["b"]}
    arrays = {}
    if result["rc"] == 0:
        with np.load(result["out"]) as data:
            y_shape = list(data["y"].shape)
            if spec["garbage"]:
                entry.update(expect="reject",
                             framework_error=f"accepted silently: returned shape {y_shape} (garbage; deconv rejects it)")
                return entry, arrays
            arrays = {f"{spec['name']}__{k}": data[k] for k in data.files}
        entry.update(expect="ok", output_shape=y_shape, quirks=spec["quirks"])
    else:
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln) for ln in result["lines"] if not ln.startswith("Error Type")]
        message = next((ln for ln in reversed(lines) if "Error" in ln), lines[-1] if lines else "")
        entry.update(expect="reject", framework_error=f"rc={result['rc']}: {message.strip()[:300]}")
    return entry, arrays


def main() -> None:
    import numpy as np
    import oneflow as flow

    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda s: run_case(s, Path(tmp)), CASES))
        entries, arrays = [], {}
        for spec, result in zip(CASES, results):
            entry, found = record(spec, result)
            entries.append(entry)
            arrays.update(found)
            print(f"{entry['name']:32s} {entry['expect']:6s} {entry.get('output_shape', entry.get('framework_error'))}")
    doc = {"framework": "OneFlow", "version": flow.__version__, "script": Path(__file__).name, "cases": entries}
    (HERE / "oneflow.json").write_text(json.dumps(doc, indent=1) + "\n")
    np.savez_compressed(HERE / "oneflow.npz", **arrays)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(json.loads(sys.argv[2]), sys.argv[3])
    else:
        main()
