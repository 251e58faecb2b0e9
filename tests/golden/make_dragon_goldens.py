"""Record Dragon (seeta-dragon 0.3.0) golden cases (tests/golden/dragon.{json,npz}). Not run in CI.

Environment: the Dragon venv (python3.10, seeta-dragon 0.3.0 on CPU). Dragon 0.3.0 imports ``packaging``,
which that venv lacks; any copy on PYTHONPATH will do::

    PYTHONPATH=<dir with packaging> python tests/golden/make_dragon_goldens.py

Every case runs in its own subprocess because many Dragon errors are fatal CHECKs that abort the process
(SIGABRT, rc -6) or crash it (SIGFPE); each records the output (``ok``) or the error / signal
(``reject``). Cases marked ``garbage`` are ones Dragon runs without complaint but computes nonsense for
(group not dividing C_in, stride 0, a weight read with the wrong kernel): deconv rejects them, so they
are recorded as ``reject`` with what Dragon returned. ``quirks`` marks the int output_padding that Dragon
ignores (deconv reproduces it only with --quirks).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).parent


def case(name, x, w, b=None, dtype="float32", garbage=False, quirks=False, **options):
    return {"name": name, "x": list(x), "w": list(w), "b": None if b is None else list(b), "dtype": dtype,
            "garbage": garbage, "quirks": quirks, "options": options}


CASES = [
    # ---- 1-D
    case("dg1d_default_kernel3", (2, 3, 5), (3, 2, 3)),
    case("dg1d_k2", (1, 2, 5), (2, 3, 2), kernel_shape=2),
    case("dg1d_s2_p1", (1, 2, 5), (2, 3, 3), (3,), strides=2, pads=1),
    case("dg1d_pads_begin_end", (1, 2, 5), (2, 2, 3), strides=2, pads=(1, 2)),
    case("dg1d_output_padding", (1, 2, 5), (2, 2, 3), strides=2, pads=1, output_padding=[1]),
    case("dg1d_op5_s1", (1, 2, 4), (2, 2, 3), (2,), output_padding=[5]),
    case("dg1d_op_negative", (1, 2, 4), (2, 3, 3), output_padding=[-1]),
    case("dg1d_negative_pads", (1, 2, 3), (2, 2, 3), (2,), strides=2, pads=-1),
    case("dg1d_pads_neg_begin", (1, 2, 4), (2, 2, 3), pads=(-1, 2)),
    case("dg1d_dilations2", (1, 2, 5), (2, 2, 3), dilations=2, pads=1),
    case("dg1d_group2", (1, 4, 5), (4, 3, 3), (6,), group=2, strides=2),
    case("dg1d_same_even", (1, 2, 5), (2, 2, 3), strides=2, padding="SAME", output_shape=[10]),
    case("dg1d_same_upper_odd", (1, 2, 5), (2, 2, 3), strides=2, padding="SAME_UPPER", output_shape=[10]),
    case("dg1d_same_lower_odd", (1, 2, 5), (2, 2, 3), strides=2, padding="SAME_LOWER", output_shape=[10]),
    case("dg1d_valid_output_shape", (1, 2, 5), (2, 2, 3), (2,), strides=2, pads=3, output_shape=[8]),
    case("dg1d_output_shape_past_full", (1, 2, 4), (2, 2, 3), strides=2, output_padding=[2], output_shape=[11]),
    case("dg1d_nhwc", (1, 5, 3), (3, 3, 2), (2,), strides=2, pads=1, data_format="NHWC"),
    case("dg1d_nhwc_default_kernel", (1, 4, 2), (2, 3, 3), data_format="NHWC"),
    case("dg1d_fp64", (2, 2, 6), (2, 3, 4), (3,), dtype="float64", kernel_shape=4, strides=3, pads=(1, 0)),
    case("dg1d_bias_rank3", (1, 2, 4), (2, 3, 3), (1, 3, 1)),
    case("dg1d_output_shape_zero", (1, 2, 4), (2, 3, 3), output_shape=[0]),
    case("dg1d_op_int_ignored", (1, 2, 5), (2, 2, 3), strides=2, pads=1, output_padding=1, quirks=True),
    # ---- 2-D
    case("dg2d_basic", (1, 2, 4, 5), (2, 3, 3, 3)),
    case("dg2d_s21", (2, 3, 4, 4), (3, 2, 3, 2), kernel_shape=(3, 2), strides=(2, 1), pads=1),
    case("dg2d_pads_len4", (1, 2, 4, 4), (2, 2, 3, 3), strides=2, pads=(0, 1, 2, 1)),
    case("dg2d_pads_len1_symmetric", (1, 2, 4, 4), (2, 2, 3, 3), strides=2, pads=(1,)),
    case("dg2d_pads_len3_truncated", (1, 2, 4, 4), (2, 2, 3, 3), strides=2, pads=(1, 0, 2)),
    case("dg2d_short_lists", (1, 2, 3, 3), (2, 2, 3, 3), kernel_shape=[3], strides=[2], dilations=[2]),
    case("dg2d_group2_bias", (1, 4, 3, 4), (4, 2, 3, 3), (4,), group=2, strides=2, pads=1),
    case("dg2d_group4", (1, 4, 3, 3), (4, 1, 2, 2), kernel_shape=2, group=4, strides=2),
    case("dg2d_nhwc_s2", (1, 4, 3, 3), (3, 3, 3, 2), (2,), strides=2, pads=(1, 0, 0, 1), data_format="NHWC"),
    case("dg2d_nhwc_same_upper", (1, 3, 4, 2), (2, 3, 3, 3), strides=(2, 1), padding="SAME_UPPER",
         output_shape=(6, 4), data_format="NHWC"),
    case("dg2d_dilations21", (1, 2, 4, 3), (2, 2, 3, 2), kernel_shape=(3, 2), dilations=(2, 1), pads=(1, 0)),
    case("dg2d_same_odd", (1, 2, 3, 4), (2, 2, 3, 3), strides=2, padding="SAME", output_shape=(6, 8)),
    case("dg2d_same_upper_odd", (1, 2, 3, 4), (2, 2, 3, 3), strides=2, padding="SAME_UPPER", output_shape=(6, 8)),
    case("dg2d_same_op_past_full", (1, 2, 3, 3), (2, 2, 3, 3), (2,), strides=2, padding="SAME",
         output_padding=(1, 0), output_shape=(8, 6)),
    case("dg2d_fp64_bias", (1, 3, 4, 4), (3, 2, 4, 4), (2,), dtype="float64", kernel_shape=4, strides=2, pads=1),
    case("dg2d_op_int_ignored_same", (1, 2, 3, 3), (2, 2, 3, 3), strides=2, padding="SAME_LOWER",
         output_shape=(6, 7), output_padding=1, quirks=True),
    case("bad_generic_example_1x1", (1, 2, 2, 2), (3, 2, 1, 1), kernel_shape=(1, 1), output_shape=(3, 3),
         output_padding=(1, 1), garbage=True),
    case("dg2d_k1_s2_op", (1, 2, 2, 3), (2, 3, 1, 1), (3,), kernel_shape=1, strides=2, output_padding=(1, 0)),
    case("dg2d_k1_pads_neg", (1, 2, 3, 3), (2, 3, 1, 1), kernel_shape=1, pads=(0, -1, 0, 0)),
    case("dg2d_k1_same_size", (1, 2, 3, 3), (3, 2, 1, 1), kernel_shape=1, padding="SAME", output_shape=(3, 3)),
    # ---- 3-D
    case("dg3d_k1_count_reshape", (1, 2, 2, 2, 2), (3, 2, 1, 1, 1), (3,), kernel_shape=1, strides=2),
    case("dg3d_basic", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3)),
    case("dg3d_pads_len6", (1, 2, 3, 3, 2), (2, 2, 3, 3, 3), (2,), strides=2, pads=(1, 0, 1, 0, 1, 2)),
    case("dg3d_pads_len2_symmetric", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), strides=2, pads=(1, 0)),
    case("dg3d_pads_len4_symmetric", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), strides=2, pads=(1, 0, 2, 2)),
    case("dg3d_strides_short", (1, 2, 2, 3, 3), (2, 2, 2, 2, 2), kernel_shape=2, strides=(2, 1)),
    case("dg3d_nhwc", (1, 3, 4, 5, 4), (4, 3, 3, 3, 2), data_format="NHWC"),
    case("dg3d_nhwc_s2", (1, 2, 3, 2, 3), (3, 2, 2, 2, 2), (2,), kernel_shape=2, strides=2, data_format="NHWC"),
    case("dg3d_group2", (1, 4, 2, 3, 2), (4, 3, 3, 3, 3), group=2, pads=(0, 1, 0)),
    case("dg3d_same_lower", (1, 2, 2, 3, 2), (2, 2, 3, 3, 3), (2,), strides=(2, 2, 1), padding="SAME_LOWER",
         output_shape=(4, 5, 2)),
    case("dg3d_fp64_op", (1, 2, 2, 2, 3), (2, 3, 2, 2, 2), dtype="float64", kernel_shape=2, strides=2,
         output_padding=(1, 0, 3)),
    case("dg3d_dilations", (1, 2, 3, 2, 3), (2, 2, 2, 2, 2), kernel_shape=2, dilations=(1, 2, 3), pads=1),
    # ---- rejected by Dragon (or garbage that deconv rejects)
    case("bad_seed_example_1x1", (1, 2, 2, 2, 2), (3, 2, 1, 1, 1), kernel_shape=1, output_shape=(3, 3, 3),
         output_padding=(1, 1, 1), garbage=True),
    case("bad_1x1_output_padding_1d", (1, 2, 3), (2, 3, 1), kernel_shape=1, output_padding=[2], garbage=True),
    case("bad_seed_as_printed", (1, 2, 2, 2, 2), (3, 2, 1, 1, 1), kernel_shape=1, output_shape=(3, 3, 3)),
    case("bad_default_kernel_count", (1, 2, 4), (2, 3, 1), garbage=True),
    case("bad_default_kernel_2d", (1, 2, 4, 4), (2, 3, 1, 1)),
    case("bad_kernel_shape_mismatch", (1, 2, 4), (2, 1, 3), kernel_shape=1, garbage=True),
    case("bad_output_shape_too_large", (1, 2, 4), (2, 3, 3), output_shape=[7]),
    case("bad_output_shape_length", (1, 2, 4), (2, 3, 3), output_shape=[6, 6]),
    case("bad_output_shape_int", (1, 2, 4), (2, 3, 3), output_shape=6),
    case("bad_output_shape_negative", (1, 2, 4), (2, 3, 3), output_shape=[-1]),
    case("bad_output_padding_length", (1, 2, 4, 4), (2, 3, 3, 3), output_padding=[1]),
    case("bad_nhwc_group", (1, 4, 4, 2), (2, 3, 3, 3), group=2, data_format="NHWC"),
    case("bad_float16", (1, 2, 4), (2, 3, 3), dtype="float16"),
    case("bad_group_not_dividing", (1, 4, 4), (4, 2, 3), group=3, garbage=True),
    case("bad_group_zero", (1, 2, 4, 4), (2, 3, 3, 3), group=0),
    case("bad_strides_zero", (1, 2, 4), (2, 3, 3), strides=0, garbage=True),
    case("bad_dilations_zero", (1, 2, 4), (2, 3, 3), dilations=0, garbage=True),
    case("bad_strides_negative", (1, 2, 4), (2, 3, 3), strides=-1, garbage=True),
    case("bad_padding_lowercase", (1, 2, 4), (2, 3, 3), padding="same", output_shape=[6]),
    case("bad_same_without_output_shape", (1, 2, 4), (2, 3, 3), padding="SAME"),
    case("bad_data_format_ncdhw", (1, 2, 2, 2, 2), (2, 3, 3, 3, 3), data_format="NCDHW"),
    case("bad_bias_count", (1, 2, 4), (2, 3, 3), (4,)),
    case("bad_unbatched_3d", (2, 4, 4, 4), (2, 3, 3, 3, 3)),
    case("bad_negative_extent", (1, 2, 4), (2, 3, 3), pads=4),
    case("bad_weight_count", (1, 4, 4), (2, 3, 3)),
    case("bad_nhwc_weight_kernel", (1, 4, 2), (2, 2, 3), data_format="NHWC", garbage=True),
]


def worker(spec: dict, out: str) -> None:
    """Run one case under Dragon and save x, w, (b), y to ``out``."""
    import dragon
    import numpy as np

    rng = np.random.default_rng(zlib.crc32(spec["name"].encode()))
    arrays = {"x": rng.standard_normal(spec["x"]).astype(spec["dtype"]),
              "w": rng.standard_normal(spec["w"]).astype(spec["dtype"])}
    if spec["b"] is not None:
        arrays["b"] = rng.standard_normal(spec["b"]).astype(spec["dtype"])
    rank = len(spec["w"]) - 2
    inputs = [dragon.constant(arrays[k]) for k in ("x", "w", "b") if k in arrays]
    fn = getattr(dragon.nn, f"conv{rank}d_transpose")
    y = fn(inputs, **spec["options"])
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

    entry = {"name": spec["name"], "style": "dragon",
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
        fatal = [ln.split("] ", 1)[1] for ln in lines if re.match(r"^(F\d+|FATAL) ", ln) and "] " in ln]
        errors = [ln for ln in lines if re.match(r"^\w*(Error|Exception)\b", ln)]
        message = (fatal or errors or lines or [""])[-1].strip()
        if result["rc"] < 0:
            message = f"process killed by {signal.Signals(-result['rc']).name}: {message}"
        entry.update(expect="reject", framework_error=f"rc={result['rc']}: {message[:300]}")
    return entry, arrays


def main() -> None:
    import dragon
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda s: run_case(s, Path(tmp)), CASES))
        entries, arrays = [], {}
        for spec, result in zip(CASES, results):
            entry, found = record(spec, result)
            entries.append(entry)
            arrays.update(found)
            print(f"{entry['name']:32s} {entry['expect']:6s} {entry.get('output_shape', entry.get('framework_error'))}")
    doc = {"framework": "Dragon (seeta-dragon)", "version": dragon.__version__, "script": Path(__file__).name, "cases": entries}
    (HERE / "dragon.json").write_text(json.dumps(doc, indent=1) + "\n")
    np.savez_compressed(HERE / "dragon.npz", **arrays)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(json.loads(sys.argv[2]), sys.argv[3])
    else:
        main()
