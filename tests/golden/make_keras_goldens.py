"""Record Keras 3 golden cases (tests/golden/keras.{json,npz}). Not run in CI.

Environment: a separate virtual environment with ``pip install tensorflow-cpu keras`` (Keras 3.15.1 on
TensorFlow 2.21.0, CPU, Python 3.11); run once, outside CI, with that environment's python::

    python tests/golden/make_keras_goldens.py

Each case builds ``keras.layers.Conv{1,2,3}DTranspose`` with the case's keywords, ``filters`` and
``kernel_size`` taken from the kernel (k..., filters, in_channels) unless the case sets them, and
``use_bias`` from whether there is a bias unless the case sets it; builds it on the input shape, loads the
kernel (and bias) with ``set_weights`` and calls it. The recorded options are every keyword the layer got
except a ``use_bias`` the case did not set (deconv takes it from --bias). Keras raises Python exceptions
only (no process aborts were seen), so the cases run in this process. Recorded with TensorFlow's default
CPU kernels (oneDNN); with TF_ENABLE_ONEDNN_OPTS=0 the channels_first, dilation_rate > 1 and empty-output
cases are refused instead (deconv computes them, with a note), and every other result is the same.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).parent


def case(name, x, w, b=None, dtype="float32", quirk=False, **options):
    return {"name": name, "x": list(x), "w": list(w), "b": None if b is None else list(b), "dtype": dtype,
            "quirk": quirk, "options": options}


CL, CF = "channels_last", "channels_first"
CASES = [
    # ---- 1-D (input (N, L, C) channels-last; kernel (k, filters, C_in))
    case("k1d_default", (2, 5, 3), (3, 4, 3)),
    case("k1d_s2_valid", (1, 5, 2), (3, 3, 2), (3,), strides=2),
    case("k1d_s2_same", (1, 5, 2), (3, 3, 2), (3,), strides=2, padding="same"),
    case("k1d_s2_same_op1", (1, 5, 2), (3, 3, 2), strides=2, padding="same", output_padding=1),
    case("k1d_s2_valid_op1", (1, 5, 2), (3, 3, 2), (3,), strides=2, output_padding=1),
    case("k1d_k2_s2_same_op1", (1, 4, 2), (2, 3, 2), strides=2, padding="same", output_padding=1),
    case("k1d_k4_s2_same_op1", (1, 4, 2), (4, 3, 2), strides=2, padding="same", output_padding=1),
    case("k1d_s4_k2_valid", (1, 3, 2), (2, 3, 2), (3,), strides=4),
    case("k1d_s4_k2_same", (1, 3, 2), (2, 3, 2), strides=4, padding="same"),
    case("k1d_s4_k2_valid_op3", (1, 3, 2), (2, 3, 2), strides=4, output_padding=3),
    case("k1d_d2_same", (1, 3, 2), (3, 3, 2), dilation_rate=2, padding="same"),
    case("k1d_d2_same_op0", (1, 4, 2), (3, 3, 2), dilation_rate=2, padding="same", output_padding=0),
    case("k1d_d3_valid", (2, 4, 3), (3, 2, 3), (2,), dilation_rate=3),
    case("k1d_k5_s2_same_op1", (1, 3, 2), (5, 3, 2), strides=2, padding="same", output_padding=1),
    case("k1d_k2_same_op0_empty", (1, 1, 2), (2, 3, 2), padding="same", output_padding=0),
    case("k1d_k2_same_l1", (1, 1, 2), (2, 3, 2), padding="same"),
    case("k1d_channels_first", (1, 2, 5), (3, 3, 2), (3,), strides=2, padding="same", data_format=CF),
    case("k1d_channels_first_op", (2, 3, 4), (4, 2, 3), strides=3, output_padding=2, data_format=CF),
    case("k1d_fp64", (1, 6, 2), (4, 3, 2), (3,), dtype="float64", strides=3, padding="same"),
    case("k1d_fp16", (1, 5, 2), (3, 2, 2), (2,), dtype="float16", strides=2, padding="same"),
    case("k1d_same_upper", (1, 5, 2), (3, 3, 2), strides=2, padding="SAME"),
    case("k1d_tuple_args", (1, 5, 2), (3, 3, 2), strides=(2,), kernel_size=(3,), output_padding=(1,),
         dilation_rate=(1,)),
    case("k1d_k1_s3", (1, 4, 2), (1, 2, 2), strides=3, padding="same"),
    case("k1d_explicit_cl", (1, 5, 2), (3, 3, 2), strides=2, data_format=CL, use_bias=False),
    case("k1d_use_bias_true", (1, 5, 2), (3, 3, 2), (3,), strides=2, use_bias=True),
    # ---- 2-D
    case("k2d_default", (1, 4, 5, 3), (3, 3, 2, 3)),
    case("k2d_s2_same", (2, 4, 5, 3), (3, 3, 4, 3), (4,), strides=2, padding="same"),
    case("k2d_s2_same_op1", (1, 4, 5, 3), (3, 3, 4, 3), (4,), strides=2, padding="same", output_padding=1),
    case("k2d_s21_valid_op10", (1, 4, 5, 2), (3, 2, 3, 2), strides=(2, 1), output_padding=(1, 0)),
    case("k2d_s23_same", (1, 3, 4, 2), (2, 3, 3, 2), (3,), strides=(2, 3), padding="same"),
    case("k2d_s23_same_op12", (1, 3, 4, 2), (2, 3, 3, 2), strides=(2, 3), padding="same", output_padding=(1, 2)),
    case("k2d_k4_s2_same", (1, 5, 5, 2), (4, 4, 3, 2), (3,), strides=2, padding="same"),
    case("k2d_k4_s2_same_op1", (1, 5, 5, 2), (4, 4, 3, 2), strides=2, padding="same", output_padding=1),
    case("k2d_d2_same", (1, 4, 4, 2), (3, 3, 2, 2), dilation_rate=2, padding="same"),
    case("k2d_d12_valid", (1, 4, 3, 2), (3, 2, 2, 2), (2,), dilation_rate=(1, 2)),
    case("k2d_d2_same_op0", (1, 4, 4, 2), (3, 2, 2, 2), dilation_rate=2, padding="same", output_padding=0),
    case("k2d_channels_first", (1, 3, 4, 5), (3, 3, 2, 3), (2,), strides=2, padding="same", data_format=CF),
    case("k2d_channels_first_op", (1, 2, 3, 4), (3, 2, 3, 2), strides=(2, 3), output_padding=(1, 2),
         data_format=CF),
    case("k2d_channels_first_valid", (2, 2, 4, 3), (2, 3, 3, 2), (3,), strides=3, data_format=CF),
    case("k2d_fp64", (1, 4, 4, 2), (3, 3, 3, 2), (3,), dtype="float64", strides=2, padding="same", output_padding=1),
    case("k2d_fp16", (1, 3, 4, 2), (3, 3, 2, 2), (2,), dtype="float16", strides=2),
    case("k2d_odd_sizes", (1, 7, 3, 5), (5, 3, 3, 5), (3,), strides=(3, 2), padding="same"),
    case("k2d_s4_k2_valid", (1, 3, 3, 2), (2, 2, 2, 2), strides=4),
    case("k2d_s4_k2_same_op3", (1, 3, 3, 2), (2, 2, 2, 2), strides=4, padding="same", output_padding=3),
    case("k2d_k1", (1, 3, 3, 2), (1, 1, 4, 2), (4,), strides=2, padding="same", output_padding=1),
    case("k2d_kernel_rect", (1, 4, 4, 2), (2, 5, 3, 2), strides=2, padding="same"),
    case("k2d_batch3", (3, 2, 3, 2), (3, 3, 2, 2), (2,), strides=2, padding="valid", output_padding=(0, 1)),
    # ---- 3-D
    case("k3d_default", (1, 3, 3, 3, 2), (2, 2, 2, 3, 2)),
    case("k3d_s2_same", (1, 3, 4, 3, 2), (3, 3, 3, 2, 2), (2,), strides=2, padding="same"),
    case("k3d_s2_same_op", (1, 3, 3, 2, 2), (3, 3, 3, 2, 2), strides=2, padding="same", output_padding=(1, 0, 1)),
    case("k3d_s212_valid", (1, 2, 3, 2, 2), (3, 2, 3, 2, 2), (2,), strides=(2, 1, 2)),
    case("k3d_d2_same", (1, 3, 3, 3, 2), (3, 3, 3, 2, 2), dilation_rate=2, padding="same"),
    case("k3d_channels_first", (1, 2, 3, 3, 4), (3, 2, 3, 3, 2), (3,), strides=2, padding="same", data_format=CF),
    case("k3d_channels_first_op", (1, 2, 2, 3, 3), (2, 3, 3, 2, 2), strides=(2, 3, 2), output_padding=(1, 2, 0),
         data_format=CF),
    case("k3d_fp64", (1, 2, 3, 2, 2), (3, 3, 3, 2, 2), (2,), dtype="float64", strides=3, padding="same"),
    case("k3d_fp16", (1, 2, 2, 3, 2), (2, 3, 2, 2, 2), dtype="float16", strides=2, padding="same", output_padding=1),
    case("k3d_k4_s2_valid_op1", (1, 2, 2, 2, 1), (4, 4, 4, 2, 1), strides=2, output_padding=1),
    case("k3d_s3_k2_same", (1, 2, 3, 2, 2), (2, 2, 2, 2, 2), (2,), strides=3, padding="same"),
    case("k3d_middle_dim_one", (1, 3, 1, 3, 2), (2, 3, 2, 2, 2), strides=2, padding="same"),
    case("k3d_channels_first_d2_valid", (1, 2, 3, 2, 3), (2, 3, 2, 3, 2), (3,), dilation_rate=(2, 1, 3),
         data_format=CF),
    case("k2d_same_op1_k2_s3", (1, 3, 4, 2), (2, 2, 3, 2), strides=3, padding="same", output_padding=1),
    case("k1d_valid_s3_op2_fp64", (2, 4, 3), (2, 2, 3), (2,), dtype="float64", strides=3, output_padding=2),
    case("k1d_same_even_empty_quirk_free", (1, 1, 2), (4, 3, 2), padding="same", output_padding=0),
    # ---- rejected by the release only (TensorFlow's backprop kernel); the documented result is computed
    case("quirk_same_even_kernel_op0", (1, 4, 2), (2, 3, 2), strides=2, padding="same", output_padding=0, quirk=True),
    case("quirk_same_even_kernel_op0_s1", (1, 3, 2), (4, 3, 2), padding="same", output_padding=0, quirk=True),
    case("quirk_same_even_dilated_2d", (1, 3, 3, 2), (2, 3, 2, 2), dilation_rate=(3, 1), padding="same",
         output_padding=0, quirk=True),
    case("quirk_same_even_kernel_3d", (1, 2, 2, 2, 2), (2, 2, 2, 2, 2), strides=3, padding="same",
         output_padding=(1, 0, 1), quirk=True),
    # ---- rejected by Keras
    case("bad_op_equal_stride", (1, 5, 2), (3, 3, 2), strides=2, output_padding=2),
    case("bad_op_stride1", (1, 5, 2), (3, 3, 2), output_padding=1),
    case("bad_op_2d_one_dim", (1, 4, 4, 2), (3, 3, 2, 2), strides=(2, 1), output_padding=(1, 1)),
    case("bad_stride_and_dilation", (1, 5, 2), (3, 3, 2), strides=2, dilation_rate=2),
    case("bad_stride_and_dilation_2d", (1, 4, 4, 2), (3, 3, 2, 2), strides=(2, 1), dilation_rate=(1, 2)),
    case("bad_filters_mismatch", (1, 5, 2), (3, 3, 2), filters=4),
    case("bad_kernel_size_mismatch", (1, 5, 2), (3, 3, 2), kernel_size=2),
    case("bad_in_channels", (1, 5, 3), (3, 3, 2)),
    case("bad_padding_causal", (1, 5, 2), (3, 3, 2), padding="causal"),
    case("bad_padding_full", (1, 5, 2), (3, 3, 2), padding="full"),
    case("bad_strides_zero", (1, 5, 2), (3, 3, 2), strides=0),
    case("bad_strides_negative", (1, 5, 2), (3, 3, 2), strides=-1),
    case("bad_dilation_zero", (1, 5, 2), (3, 3, 2), dilation_rate=0),
    case("bad_op_negative", (1, 5, 2), (3, 3, 2), strides=2, output_padding=-1),
    case("bad_op_length", (1, 4, 4, 2), (3, 3, 2, 2), strides=2, output_padding=(1, 1, 1)),
    case("bad_strides_length", (1, 4, 4, 2), (3, 3, 2, 2), strides=(2, 2, 2)),
    case("bad_data_format", (1, 4, 4, 2), (3, 3, 2, 2), data_format="NHWC"),
    case("bad_unbatched", (5, 2), (3, 3, 2)),
    case("bad_rank_mismatch", (1, 4, 4, 2), (3, 3, 2)),
    case("bad_bias_shape", (1, 5, 2), (3, 3, 2), (4,)),
    case("bad_use_bias_false_with_bias", (1, 5, 2), (3, 3, 2), (3,), use_bias=False),
    case("bad_groups", (1, 5, 4), (3, 3, 2), groups=2),
    case("bad_padding_pairs", (1, 5, 2), (3, 3, 2), strides=2, padding=((1, 1),)),
    case("bad_filters_zero", (1, 5, 2), (3, 3, 2), filters=0),
    case("bad_kernel_size_zero", (1, 5, 2), (3, 3, 2), kernel_size=0),
]


def run(spec: dict):
    """(arrays, y) for one case under Keras; raises what Keras raises."""
    import keras
    import numpy as np

    rng = np.random.default_rng(zlib.crc32(spec["name"].encode()))
    arrays = {"x": rng.standard_normal(spec["x"]).astype(spec["dtype"]),
              "w": rng.standard_normal(spec["w"]).astype(spec["dtype"])}
    if spec["b"] is not None:
        arrays["b"] = rng.standard_normal(spec["b"]).astype(spec["dtype"])
    rank = len(spec["w"]) - 2
    kwargs = dict(spec["options"])
    kwargs.setdefault("filters", spec["w"][-2])
    kwargs.setdefault("kernel_size", tuple(spec["w"][:-2]))
    kwargs.setdefault("use_bias", spec["b"] is not None)
    layer = getattr(keras.layers, f"Conv{rank}DTranspose")(dtype=spec["dtype"], **kwargs)
    layer.build(arrays["x"].shape)
    layer.set_weights([arrays["w"]] + ([arrays["b"]] if "b" in arrays else []))
    arrays["y"] = np.asarray(layer(arrays["x"]))
    recorded = {k: v for k, v in kwargs.items() if k != "use_bias" or "use_bias" in spec["options"]}
    return arrays, recorded


def main() -> None:
    import keras
    import numpy as np
    import tensorflow as tf

    entries, arrays, quirk_rejects = [], {}, []
    for spec in CASES:
        entry = {"name": spec["name"], "style": "keras", "dtype": spec["dtype"], "input_shape": spec["x"],
                 "weight_shape": spec["w"], "bias_shape": spec["b"]}
        try:
            found, options = run(spec)
        except Exception as err:  # noqa: BLE001 - every Keras rejection is recorded
            options = dict(spec["options"])
            message = " ".join(re.sub(r"\x1b?\[[0-9;]*m", "", f"{type(err).__name__}: {err}").split())
            entry.update(options={k: repr(v) for k, v in options.items()}, expect="reject",
                         framework_error=message[:300])
        else:
            y = found["y"]
            entry.update(options={k: repr(v) for k, v in options.items()}, expect="ok",
                         output_shape=list(y.shape), quirks=False)
            arrays.update({f"{spec['name']}__{k}": v for k, v in found.items()})
            assert y.dtype == found["x"].dtype, (spec["name"], y.dtype)
        assert not spec["quirk"] or entry["expect"] == "reject", f"{spec['name']}: the release accepted it"
        (quirk_rejects if spec["quirk"] else entries).append({k: entry[k] for k in ("name", "style", "options", "dtype", "input_shape", "weight_shape",
                                               "bias_shape", "expect") if k in entry}
                       | {k: entry[k] for k in ("output_shape", "quirks", "framework_error") if k in entry})
        print(f"{spec['name']:32s} {entry['expect']:6s} {entry.get('output_shape', entry.get('framework_error'))}")
    doc = {"framework": "Keras 3 (TensorFlow backend, CPU)",
           "version": f"keras {keras.__version__}, tensorflow {tf.__version__}",
           "script": Path(__file__).name, "cases": entries, "quirk_rejects": quirk_rejects}
    (HERE / "keras.json").write_text(json.dumps(doc, indent=1) + "\n")
    np.savez_compressed(HERE / "keras.npz", **arrays)


if __name__ == "__main__":
    main()
