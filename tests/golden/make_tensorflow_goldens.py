"""Record TensorFlow golden cases (tests/golden/tensorflow.{json,npz}). Not run in CI.

Environment: a separate virtual environment with ``pip install tensorflow-cpu`` (TensorFlow 2.21.0, CPU,
Python 3.11, x86-64: its default oneDNN kernels); run once, outside CI, with that environment's python::

    python tests/golden/make_tensorflow_goldens.py

Each case calls ``tf.nn.conv{1,2,3}d_transpose(x, filters, **options)`` with filters (k..., out, in). Every
case runs in its own subprocess: a malformed output_shape can abort the process (a failed CHECK). Cases
``quirk`` marks a case the release refuses although the arithmetic is valid (none so far). With
TF_ENABLE_ONEDNN_OPTS=0 (TensorFlow's plain CPU kernels, as on non-x86 builds) channels-first formats and
dilations > 1 are refused instead ("only supports NHWC", "do not yet support dilation rates larger than 1").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).parent


def case(name, x, w, dtype="float32", quirk=False, **options):
    return {"name": name, "x": list(x), "w": list(w), "dtype": dtype, "quirk": quirk, "options": options}


CASES = [
    # ---- 1-D: input (N, W, C), filters (k, out, in)
    case("tf1d_same_s2", (1, 5, 2), (3, 3, 2), output_shape=[1, 10, 3], strides=2),
    case("tf1d_same_s2_odd", (1, 5, 2), (3, 3, 2), output_shape=[1, 9, 3], strides=2),
    case("tf1d_valid_s2", (2, 5, 2), (3, 3, 2), output_shape=[2, 11, 3], strides=2, padding="VALID"),
    case("tf1d_valid_s2_extra", (1, 5, 2), (3, 3, 2), output_shape=[1, 12, 3], strides=2, padding="VALID"),
    case("tf1d_valid_s4_k2", (1, 3, 2), (2, 3, 2), output_shape=[1, 12, 3], strides=4, padding="VALID"),
    case("tf1d_same_s4_k2", (1, 3, 2), (2, 3, 2), output_shape=[1, 11, 3], strides=4),
    case("tf1d_same_s1_k4", (1, 4, 2), (4, 3, 2), output_shape=[1, 4, 3], strides=1),
    case("tf1d_same_k2_s2_7", (1, 4, 2), (2, 3, 2), output_shape=[1, 7, 3], strides=2),
    case("tf1d_same_k2_s2_8", (1, 4, 2), (2, 3, 2), output_shape=[1, 8, 3], strides=2),
    case("tf1d_strides_list", (1, 4, 2), (3, 2, 2), output_shape=[1, 12, 2], strides=[3]),
    case("tf1d_strides_full", (1, 4, 2), (3, 2, 2), output_shape=[1, 12, 2], strides=[1, 3, 1]),
    case("tf1d_ncw", (1, 2, 5), (3, 3, 2), output_shape=[1, 3, 10], strides=2, data_format="NCW"),
    case("tf1d_fp64", (1, 6, 2), (4, 3, 2), "float64", output_shape=[1, 18, 3], strides=3),
    case("tf1d_fp16", (1, 5, 2), (3, 2, 2), "float16", output_shape=[1, 10, 2], strides=2),
    case("tf1d_tuple_shape", (1, 5, 2), (3, 3, 2), output_shape=(1, 11, 3), strides=(2,), padding="VALID"),
    case("tf1d_k1_s3", (1, 4, 2), (1, 2, 2), output_shape=[1, 12, 2], strides=3),
    case("tf1d_dilations1", (1, 5, 2), (3, 3, 2), output_shape=[1, 10, 3], strides=2, dilations=1),
    # ---- 2-D
    case("tf2d_same", (1, 4, 5, 3), (3, 3, 2, 3), output_shape=[1, 8, 10, 2], strides=2),
    case("tf2d_same_odd", (2, 4, 5, 3), (3, 3, 4, 3), output_shape=[2, 7, 9, 4], strides=2),
    case("tf2d_same_s23", (1, 3, 4, 2), (2, 3, 3, 2), output_shape=[1, 6, 12, 3], strides=[2, 3]),
    case("tf2d_same_s23_min", (1, 3, 4, 2), (2, 3, 3, 2), output_shape=[1, 5, 10, 3], strides=[2, 3]),
    case("tf2d_valid", (1, 4, 5, 2), (3, 2, 3, 2), output_shape=[1, 9, 10, 3], strides=2, padding="VALID"),
    case("tf2d_valid_extra", (1, 4, 5, 2), (3, 2, 3, 2), output_shape=[1, 10, 11, 3], strides=2, padding="VALID"),
    case("tf2d_valid_s3_k2", (1, 3, 3, 2), (2, 2, 2, 2), output_shape=[1, 9, 8, 2], strides=3, padding="VALID"),
    case("tf2d_explicit", (1, 5, 5, 2), (3, 3, 4, 2), output_shape=[1, 9, 9, 4], strides=2,
         padding=[[0, 0], [1, 1], [1, 1], [0, 0]]),
    case("tf2d_explicit_asym", (1, 5, 5, 2), (3, 3, 4, 2), output_shape=[1, 10, 9, 4], strides=2,
         padding=[[0, 0], [1, 0], [1, 1], [0, 0]]),
    case("tf2d_explicit_floor", (1, 5, 5, 2), (3, 3, 4, 2), output_shape=[1, 10, 10, 4], strides=2,
         padding=[[0, 0], [1, 1], [1, 1], [0, 0]]),
    case("tf2d_explicit_zero", (1, 4, 3, 2), (3, 2, 2, 2), output_shape=[1, 9, 6, 2], strides=2,
         padding=[[0, 0], [0, 0], [0, 0], [0, 0]]),
    case("tf2d_explicit_big", (1, 4, 4, 2), (4, 4, 2, 2), output_shape=[1, 6, 5, 2], strides=2,
         padding=[[0, 0], [2, 2], [3, 2], [0, 0]]),
    case("tf2d_explicit_nchw", (1, 2, 5, 5), (3, 3, 4, 2), output_shape=[1, 4, 9, 10], strides=2,
         padding=[[0, 0], [0, 0], [1, 1], [1, 0]], data_format="NCHW"),
    case("tf2d_nchw_same", (1, 3, 4, 5), (3, 3, 2, 3), output_shape=[1, 2, 8, 10], strides=2, data_format="NCHW"),
    case("bad_nchw_valid_sizes", (2, 2, 3, 4), (2, 3, 3, 2), output_shape=[2, 3, 7, 11], strides=[3, 3],
         padding="VALID", data_format="NCHW"),
    case("tf2d_strides_nhwc4", (1, 4, 4, 2), (3, 3, 2, 2), output_shape=[1, 8, 8, 2], strides=[1, 2, 2, 1]),
    case("tf2d_strides_nchw4", (1, 2, 4, 4), (3, 3, 2, 2), output_shape=[1, 2, 8, 12], strides=[1, 1, 2, 3],
         data_format="NCHW"),
    case("tf2d_fp64", (1, 4, 4, 2), (3, 3, 3, 2), "float64", output_shape=[1, 8, 7, 3], strides=2),
    case("tf2d_fp16", (1, 3, 4, 2), (3, 3, 2, 2), "float16", output_shape=[1, 7, 9, 2], strides=2, padding="VALID"),
    case("tf2d_odd_sizes", (1, 7, 3, 5), (5, 3, 3, 5), output_shape=[1, 21, 5, 3], strides=[3, 2]),
    case("tf2d_k1", (1, 3, 3, 2), (1, 1, 4, 2), output_shape=[1, 6, 5, 4], strides=2),
    case("tf2d_rect_kernel", (1, 4, 4, 2), (2, 5, 3, 2), output_shape=[1, 8, 8, 3], strides=2),
    case("tf2d_s1_same", (1, 4, 5, 2), (3, 3, 2, 2), output_shape=[1, 4, 5, 2], strides=1),
    case("tf2d_s1_k4_same", (1, 4, 5, 2), (4, 4, 2, 2), output_shape=[1, 4, 5, 2], strides=1),
    case("tf2d_dilated_same", (1, 5, 5, 2), (3, 3, 4, 2), output_shape=[1, 5, 5, 4], strides=1, dilations=2),
    case("tf2d_dilated_same_12", (1, 4, 5, 2), (3, 3, 2, 2), output_shape=[1, 4, 5, 2], strides=1, dilations=[1, 2]),
    # ---- 3-D
    case("tf3d_same", (1, 3, 3, 3, 2), (2, 2, 2, 4, 2), output_shape=[1, 6, 6, 6, 4], strides=2),
    case("tf3d_same_odd", (1, 3, 4, 3, 2), (3, 3, 3, 2, 2), output_shape=[1, 5, 8, 6, 2], strides=2),
    case("tf3d_valid", (1, 2, 3, 2, 2), (3, 2, 3, 2, 2), output_shape=[1, 5, 4, 5, 2], strides=[2, 1, 2],
         padding="VALID"),
    case("tf3d_valid_extra", (1, 2, 2, 2, 1), (2, 2, 2, 2, 1), output_shape=[1, 6, 5, 6, 2], strides=3,
         padding="VALID"),
    case("tf3d_ncdhw", (1, 2, 3, 3, 4), (3, 2, 3, 3, 2), output_shape=[1, 3, 6, 5, 8], strides=2,
         data_format="NCDHW"),
    case("tf3d_ncdhw_valid", (1, 2, 2, 3, 3), (2, 3, 3, 2, 2), output_shape=[1, 2, 4, 9, 7], strides=[2, 3, 2],
         padding="VALID", data_format="NCDHW"),
    case("tf3d_fp64", (1, 2, 3, 2, 2), (3, 3, 3, 2, 2), "float64", output_shape=[1, 6, 9, 6, 2], strides=3),
    case("tf3d_fp16", (1, 2, 2, 3, 2), (2, 3, 2, 2, 2), "float16", output_shape=[1, 4, 4, 6, 2], strides=2),
    case("tf3d_middle_one", (1, 3, 1, 3, 2), (2, 3, 2, 2, 2), output_shape=[1, 6, 2, 6, 2], strides=2),
    case("tf3d_strides5", (1, 2, 2, 2, 2), (2, 2, 2, 3, 2), output_shape=[1, 4, 4, 4, 3], strides=[1, 2, 2, 2, 1]),
    case("tf3d_s1", (1, 3, 3, 3, 2), (3, 3, 3, 2, 2), output_shape=[1, 3, 3, 3, 2], strides=1),
    case("tf3d_batch2", (2, 2, 2, 2, 2), (3, 3, 3, 2, 2), output_shape=[2, 3, 4, 3, 2], strides=2),
    case("tf1d_batch3_valid", (3, 3, 2), (4, 2, 2), output_shape=[3, 9, 2], strides=2, padding="VALID"),
    case("tf1d_same_s3_k5", (1, 3, 2), (5, 2, 2), output_shape=[1, 8, 2], strides=3),
    case("tf2d_same_s4_k3", (1, 2, 3, 2), (3, 3, 2, 2), output_shape=[1, 8, 10, 2], strides=4),
    case("tf2d_valid_s1", (1, 3, 3, 2), (3, 2, 2, 2), output_shape=[1, 5, 4, 2], strides=1, padding="VALID"),
    # ---- rejected by TensorFlow
    case("bad_same_too_small", (1, 5, 2), (3, 3, 2), output_shape=[1, 8, 3], strides=2),
    case("bad_same_too_large", (1, 5, 2), (3, 3, 2), output_shape=[1, 11, 3], strides=2),
    case("bad_valid_too_small", (1, 5, 2), (3, 3, 2), output_shape=[1, 10, 3], strides=2, padding="VALID"),
    case("bad_valid_too_large", (1, 5, 2), (3, 3, 2), output_shape=[1, 13, 3], strides=2, padding="VALID"),
    case("bad_explicit_1d", (1, 5, 2), (3, 3, 2), output_shape=[1, 9, 3], strides=2, padding=[[0, 0], [1, 1], [0, 0]]),
    case("bad_explicit_wrong_size", (1, 5, 5, 2), (3, 3, 4, 2), output_shape=[1, 12, 9, 4], strides=2,
         padding=[[0, 0], [1, 1], [1, 1], [0, 0]]),
    case("bad_explicit_batch_pad", (1, 5, 5, 2), (3, 3, 4, 2), output_shape=[1, 9, 9, 4], strides=2,
         padding=[[1, 0], [1, 1], [1, 1], [0, 0]]),
    case("bad_explicit_negative", (1, 5, 5, 2), (3, 3, 4, 2), output_shape=[1, 11, 11, 4], strides=2,
         padding=[[0, 0], [-1, 1], [1, 1], [0, 0]]),
    case("bad_padding_lower", (1, 5, 2), (3, 3, 2), output_shape=[1, 10, 3], strides=2, padding="same"),
    case("bad_padding_full", (1, 5, 2), (3, 3, 2), output_shape=[1, 10, 3], strides=2, padding="FULL"),
    case("bad_out_channels", (1, 5, 5, 2), (3, 3, 4, 2), output_shape=[1, 10, 10, 3], strides=2),
    case("bad_out_batch", (1, 5, 5, 2), (3, 3, 4, 2), output_shape=[2, 10, 10, 4], strides=2),
    case("bad_in_channels", (1, 5, 5, 3), (3, 3, 4, 2), output_shape=[1, 10, 10, 4], strides=2),
    case("bad_strides_zero", (1, 5, 5, 2), (3, 3, 4, 2), output_shape=[1, 10, 10, 4], strides=0),
    case("bad_strides_batch", (1, 5, 5, 2), (3, 3, 4, 2), output_shape=[1, 10, 10, 4], strides=[2, 2, 2, 2]),
    case("bad_strides_length", (1, 5, 5, 2), (3, 3, 4, 2), output_shape=[1, 10, 10, 4], strides=[2, 2, 2]),
    case("bad_data_format_rank", (1, 5, 5, 2), (3, 3, 4, 2), output_shape=[1, 10, 10, 4], strides=2,
         data_format="NCW"),
    case("bad_data_format", (1, 5, 5, 2), (3, 3, 4, 2), output_shape=[1, 10, 10, 4], strides=2,
         data_format="channels_last"),
    case("bad_output_shape_length", (1, 5, 5, 2), (3, 3, 4, 2), output_shape=[1, 10, 10], strides=2),
    case("tf2d_output_shape_spatial", (1, 5, 5, 2), (3, 3, 4, 2), output_shape=[10, 10], strides=2),
    case("bad_unbatched", (5, 5, 2), (3, 3, 4, 2), output_shape=[10, 10, 4], strides=2),
    case("bad_dilations_zero", (1, 5, 5, 2), (3, 3, 4, 2), output_shape=[1, 5, 5, 4], strides=1, dilations=0),
    case("tf2d_dilated_valid", (1, 5, 5, 2), (3, 3, 4, 2), output_shape=[1, 9, 9, 4], strides=1, dilations=2,
         padding="VALID"),
    case("tf1d_dilated_valid", (1, 5, 2), (3, 3, 2), output_shape=[1, 9, 3], strides=1, dilations=2, padding="VALID"),
    case("tf3d_dilated_valid", (1, 3, 3, 3, 2), (2, 2, 2, 2, 2), output_shape=[1, 5, 5, 5, 2], strides=1,
         dilations=2, padding="VALID"),
    case("tf1d_output_shape_spatial", (1, 5, 2), (3, 3, 2), output_shape=[10], strides=2),
    case("tf3d_output_shape_spatial", (1, 2, 2, 2, 2), (2, 2, 2, 3, 2), output_shape=[4, 4, 3], strides=2),
    case("tf2d_output_shape_spatial_nchw", (1, 2, 5, 5), (3, 3, 4, 2), output_shape=[10, 9], strides=2,
         data_format="NCHW"),
]


def worker(spec: dict, out: str) -> None:
    """Run one case under TensorFlow and save x, w, y to ``out``."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(zlib.crc32(spec["name"].encode()))
    arrays = {"x": rng.standard_normal(spec["x"]).astype(spec["dtype"]),
              "w": rng.standard_normal(spec["w"]).astype(spec["dtype"])}
    rank = len(spec["w"]) - 2
    fn = getattr(tf.nn, f"conv{rank}d_transpose")
    arrays["y"] = fn(arrays["x"], arrays["w"], **spec["options"]).numpy()
    np.savez(out, **arrays)


def run_case(spec: dict, tmp: Path) -> dict:
    out = tmp / f"{spec['name']}.npz"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec), str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    text = re.sub(r"\x1b?\[[0-9;]*m", "", proc.stderr)
    errors = [re.sub(r"^[\w.]*\.(?=\w+Error)", "", ln) for ln in text.splitlines()
              if re.match(r"^([\w.]*(Error|Exception)\b|F\d{4} )", ln)]
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", (errors or [""])[-1])
    return {"rc": proc.returncode, "out": out, "error": " ".join(message.split())[:300]}


def main() -> None:
    import numpy as np
    import tensorflow as tf

    import tempfile

    entries, quirk_rejects, arrays = [], [], {}
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda s: run_case(s, Path(tmp)), CASES))
        for spec, result in zip(CASES, results):
            entry = {"name": spec["name"], "style": "tensorflow",
                     "options": {k: repr(v) for k, v in spec["options"].items()}, "dtype": spec["dtype"],
                     "input_shape": spec["x"], "weight_shape": spec["w"], "bias_shape": None}
            if result["rc"] == 0:
                with np.load(result["out"]) as data:
                    arrays.update({f"{spec['name']}__{k}": data[k] for k in data.files})
                    entry.update(expect="ok", output_shape=list(data["y"].shape), quirks=False)
            else:
                entry.update(expect="reject", framework_error=f"rc={result['rc']}: {result['error']}")
            assert not spec["quirk"] or entry["expect"] == "reject", f"{spec['name']}: the release accepted it"
            (quirk_rejects if spec["quirk"] else entries).append(entry)
            print(f"{spec['name']:28s} {entry['expect']:6s} {entry.get('output_shape', entry.get('framework_error'))}")
    doc = {"framework": "TensorFlow (CPU, oneDNN)", "version": tf.__version__, "script": Path(__file__).name,
           "cases": entries, "quirk_rejects": quirk_rejects}
    (HERE / "tensorflow.json").write_text(json.dumps(doc, indent=1) + "\n")
    np.savez_compressed(HERE / "tensorflow.npz", **arrays)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(json.loads(sys.argv[2]), sys.argv[3])
    else:
        main()
