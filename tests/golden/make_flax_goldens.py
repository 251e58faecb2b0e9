"""Record Flax golden cases (tests/golden/flax.{json,npz}). Not run in CI.

Environment: a separate virtual environment with ``pip install flax`` (flax 0.12.8 on jax/jaxlib 0.10.2, CPU,
Python 3.11, numpy 2.4.6); run once, outside CI, with that environment's python::

    python tests/golden/make_flax_goldens.py

Each case builds ``flax.linen.ConvTranspose`` with the case's keywords, ``features`` and ``kernel_size`` taken
from the kernel unless the case sets them (kernel (*k, C_in, features), or (*k, features, C_in) with
transpose_kernel=True) and ``use_bias`` from whether there is a bias unless the case sets it, and applies it
with the kernel (and bias) as its params, with jax_enable_x64 on (float64 stays float64). The recorded options
are every keyword the module got. XLA's CPU compiler aborts the whole process on some 3-D shapes, so the cases
run in a worker process (_isolated.py): a case that kills it is recorded under ``crashes`` and the next
worker goes on after it.

``policy`` holds cases Flax computes that deconv refuses by design (CIRCULAR's periodic fold, several batch
axes, a bias that use_bias=False ignores) or computes only after ``--cast`` (mixed dtypes, which Flax promotes):
their outputs are recorded too, and tests/conventions/test_flax.py checks the refusal and the workaround.
"""

from __future__ import annotations

import zlib


def case(name, x, w, b=None, dtype="float32", wdtype=None, policy=False, **options):
    return {"name": name, "x": list(x), "w": list(w), "b": None if b is None else list(b), "dtype": dtype,
            "wdtype": wdtype or dtype, "policy": policy, "options": options}


TK = {"transpose_kernel": True}
CASES = [
    # ---- 1-D: input (N, L, C) or unbatched (L, C); kernel (k, C_in, features)
    case("f1_default_same", (2, 5, 3), (3, 3, 4)),
    case("f1_same_s2", (1, 5, 2), (3, 2, 3), (3,), strides=2),
    case("f1_same_s2_k4", (1, 5, 2), (4, 2, 3), strides=2),
    case("f1_same_s3_k2", (1, 4, 2), (2, 2, 3), (3,), strides=3),
    case("f1_same_k1_s3", (1, 4, 2), (1, 2, 3), strides=3),
    case("f1_valid", (1, 5, 2), (3, 2, 3), (3,), padding="VALID"),
    case("f1_valid_s2", (1, 5, 2), (3, 2, 3), strides=2, padding="VALID"),
    case("f1_valid_s4_k2", (1, 3, 2), (2, 2, 3), (3,), strides=4, padding="VALID"),
    case("f1_int_pad0_s2", (1, 4, 2), (3, 2, 3), strides=2, padding=0),
    case("f1_int_pad2_s2", (1, 4, 2), (3, 2, 3), (3,), strides=2, padding=2),
    case("f1_pair_s2", (1, 5, 2), (3, 2, 3), strides=2, padding=((1, 2),)),
    case("f1_pair_list", (1, 5, 2), (3, 2, 3), strides=2, padding=[(0, 3)]),
    case("f1_seq_int", (1, 5, 2), (3, 2, 3), strides=2, padding=[1]),
    case("f1_pair_nested_list", (1, 5, 2), (3, 2, 3), strides=2, padding=[[0, 3]]),  # what --set [[0,3]] gives
    case("f2_mixed_list", (1, 4, 5, 2), (3, 3, 2, 3), (3,), strides=2, padding=[1, [0, 2]]),
    case("f1_negative_pair", (1, 5, 2), (3, 2, 3), strides=2, padding=((-1, 0),)),
    case("f1_dilation2_same", (1, 5, 2), (3, 2, 3), (3,), kernel_dilation=2),
    case("f1_dilation3_valid", (2, 4, 3), (3, 3, 2), kernel_dilation=3, padding="VALID"),
    case("f1_stride2_dilation2", (1, 4, 2), (3, 2, 3), strides=2, kernel_dilation=2),
    case("f1_tk_same_s2", (1, 5, 2), (3, 3, 2), (3,), strides=2, **TK),
    case("f1_tk_valid", (1, 5, 2), (4, 3, 2), strides=3, padding="VALID", **TK),
    case("f1_tk_pairs", (1, 5, 2), (3, 3, 2), strides=2, padding=((2, 1),), **TK),
    case("f1_unbatched", (5, 2), (3, 2, 3), (3,), strides=2),
    case("f1_unbatched_tk_valid", (6, 2), (3, 4, 2), strides=2, padding="VALID", **TK),
    case("f1_lower_same_s1", (1, 6, 2), (4, 2, 3), padding="same"),
    case("f1_lower_valid_s1", (1, 6, 2), (4, 2, 3), padding="valid"),
    case("f1_same_lower_s1", (1, 6, 2), (4, 2, 3), padding="SAME_LOWER"),
    case("f1_fp16", (1, 5, 2), (3, 2, 2), (2,), dtype="float16", strides=2),
    case("f1_fp64", (1, 6, 2), (4, 2, 3), (3,), dtype="float64", strides=3, padding="VALID"),
    case("f1_odd_sizes", (3, 7, 5), (5, 5, 3), (3,), strides=3, padding=((2, 1),)),
    case("f1_empty_axis", (1, 3, 2), (3, 2, 3), padding=((-3, 0),)),
    case("f1_kernel_size_int", (1, 5, 2), (3, 2, 3), kernel_size=3, strides=2),
    case("f1_strides_tuple", (1, 5, 2), (3, 2, 3), strides=(2,), kernel_dilation=(1,)),
    case("f1_use_bias_false", (1, 5, 2), (3, 2, 3), strides=2, use_bias=False),
    case("f1_strides_none", (1, 5, 2), (3, 2, 3), strides=None, kernel_dilation=None),
    # ---- 2-D
    case("f2_default_same", (1, 4, 5, 3), (3, 3, 3, 2)),
    case("f2_same_s2", (2, 4, 5, 3), (3, 3, 3, 4), (4,), strides=2),
    case("f2_same_s21", (1, 4, 5, 2), (3, 2, 2, 3), strides=(2, 1)),
    case("f2_valid_s23", (1, 3, 4, 2), (2, 3, 2, 3), (3,), strides=(2, 3), padding="VALID"),
    case("f2_int_pad1_s2", (1, 4, 4, 2), (3, 3, 2, 3), strides=2, padding=1),
    case("f2_pairs", (1, 4, 5, 2), (3, 3, 2, 3), (3,), strides=2, padding=((1, 0), (2, 1))),
    case("f2_mixed_seq", (1, 4, 5, 2), (3, 4, 2, 3), strides=2, padding=(1, (0, 2))),
    case("f2_tuple_two_ints", (1, 4, 5, 2), (3, 3, 2, 3), strides=2, padding=(1, 2)),
    case("f2_dilation12", (1, 4, 3, 2), (3, 2, 2, 2), (2,), kernel_dilation=(1, 2)),
    case("f2_tk_same_s2", (1, 4, 5, 3), (3, 3, 4, 3), (4,), strides=2, **TK),
    case("f2_tk_pairs", (1, 4, 4, 2), (2, 3, 3, 2), strides=(2, 3), padding=((0, 1), (1, 1)), **TK),
    case("f2_unbatched", (4, 5, 3), (3, 3, 3, 2), (2,), strides=2),
    case("f2_fp16", (1, 3, 4, 2), (3, 3, 2, 2), (2,), dtype="float16", strides=2, padding="VALID"),
    case("f2_fp64", (1, 4, 4, 2), (3, 3, 2, 3), (3,), dtype="float64", strides=2, padding=((1, 2), (0, 0))),
    case("f2_odd_sizes", (2, 7, 3, 5), (5, 3, 5, 3), (3,), strides=(3, 2)),
    case("f2_lower_same_s1", (1, 5, 4, 2), (4, 3, 2, 3), padding="same"),
    case("f2_same_k4_s2", (1, 5, 5, 2), (4, 4, 2, 3), strides=2),
    case("f2_valid_k2_s4", (1, 3, 3, 2), (2, 2, 2, 2), strides=4, padding="VALID"),
    case("f2_negative_pairs", (1, 4, 4, 2), (3, 3, 2, 3), strides=2, padding=((-1, -1), (0, 0))),
    case("f2_dilation2_s2", (1, 4, 4, 2), (3, 3, 2, 2), strides=2, kernel_dilation=2, padding="VALID"),
    case("f2_kernel_rect", (1, 4, 4, 2), (2, 5, 2, 3), strides=2),
    # ---- 3-D
    case("f3_default_same", (1, 3, 3, 3, 2), (2, 2, 2, 2, 3)),
    case("f3_same_s2", (1, 3, 4, 3, 2), (3, 3, 3, 2, 2), (2,), strides=2),
    case("f3_valid_s212", (1, 2, 3, 2, 2), (3, 2, 3, 2, 2), (2,), strides=(2, 1, 2), padding="VALID"),
    case("f3_pairs", (1, 3, 3, 2, 2), (3, 3, 2, 2, 2), strides=2, padding=((1, 1), (0, 2), (2, 0))),
    case("f3_dilation2", (1, 3, 3, 3, 2), (3, 3, 3, 2, 2), kernel_dilation=2),
    case("f3_tk_same_s2", (1, 2, 3, 2, 3), (3, 2, 3, 2, 3), (2,), strides=2, **TK),
    case("f3_unbatched", (3, 2, 3, 2), (2, 3, 2, 2, 3), (3,), strides=2),
    case("f3_fp64", (1, 2, 3, 2, 2), (3, 3, 3, 2, 2), (2,), dtype="float64", strides=3),
    case("f3_fp16", (1, 2, 2, 3, 2), (2, 3, 2, 2, 2), dtype="float16", strides=2, padding="VALID"),
    case("f3_int_pad1_s2", (1, 3, 3, 3, 2), (3, 3, 3, 2, 2), strides=2, padding=1),
    case("f3_pad0_nearby", (1, 3, 3, 3, 2), (2, 3, 2, 2, 2), strides=2, padding=0),
    case("f3_pad0_middle_one", (1, 3, 2, 3, 2), (2, 3, 2, 2, 2), strides=2, padding=0),  # XLA's abort
    case("f3_batch2_tk_valid", (2, 2, 2, 2, 2), (2, 2, 2, 3, 2), strides=(1, 2, 3), padding="VALID", **TK),
    # ---- rejected by Flax / JAX
    case("bad_kernel_size_mismatch", (1, 5, 2), (3, 2, 3), kernel_size=4),
    case("bad_kernel_size_int_2d", (1, 4, 4, 2), (3, 3, 2, 3), kernel_size=3),
    case("bad_features_mismatch", (1, 5, 2), (3, 2, 3), features=4),
    case("bad_in_channels", (1, 5, 3), (3, 2, 4)),
    case("bad_tk_orientation", (1, 5, 2), (3, 2, 3), transpose_kernel=True),
    case("bad_padding_causal", (1, 5, 2), (3, 2, 3), padding="CAUSAL"),
    case("bad_padding_reflect", (1, 5, 2), (3, 2, 3), padding="REFLECT"),
    case("bad_lower_same_s2", (1, 5, 2), (3, 2, 3), strides=2, padding="same"),
    case("bad_lower_valid_s2", (1, 5, 4, 2), (3, 3, 2, 3), strides=(1, 2), padding="valid"),
    case("bad_padding_two_ints_1d", (1, 5, 2), (3, 2, 3), padding=(1, 2)),
    case("bad_padding_one_pair_2d", (1, 4, 4, 2), (3, 3, 2, 3), padding=[(1, 1)]),
    case("bad_padding_triple", (1, 5, 2), (3, 2, 3), padding=((1, 2, 3),)),
    case("bad_padding_float", (1, 5, 2), (3, 2, 3), padding=1.5),
    case("bad_strides_length", (1, 5, 2), (3, 2, 3), strides=(2, 2)),
    case("bad_dilation_length", (1, 4, 4, 2), (3, 3, 2, 3), kernel_dilation=(2, 2, 2)),
    case("bad_strides_zero", (1, 5, 2), (3, 2, 3), strides=0),
    case("bad_strides_negative", (1, 5, 2), (3, 2, 3), strides=-1),
    case("bad_dilation_zero", (1, 5, 2), (3, 2, 3), kernel_dilation=0),
    case("bad_negative_pad_too_large", (1, 3, 2), (3, 2, 3), strides=2, padding=((-6, 0),)),
    case("bad_use_bias_without_bias", (1, 5, 2), (3, 2, 3), use_bias=True),
    case("bad_bias_shape", (1, 5, 2), (3, 2, 3), (4,)),
    case("bad_input_rank", (5,), (3, 5, 3)),
    case("bad_padding_string", (1, 5, 2), (3, 2, 3), padding="FULL"),
    # ---- computed by Flax, refused (or computed after --cast) by deconv: see the module docstring
    case("policy_circular_1d", (1, 5, 2), (3, 2, 3), policy=True, strides=2, padding="CIRCULAR"),
    case("policy_circular_2d_tk", (1, 4, 4, 2), (3, 3, 3, 2), policy=True, strides=2, padding="CIRCULAR", **TK),
    case("policy_two_batch_axes", (2, 3, 5, 2), (3, 2, 3), (3,), policy=True, strides=2),
    case("policy_use_bias_false_ignores_bias", (1, 5, 2), (3, 2, 3), (3,), policy=True, use_bias=False),
    case("policy_fp16_input_fp32_params", (1, 5, 2), (3, 2, 3), (3,), dtype="float16", wdtype="float32", policy=True,
         strides=2),
]


def run(spec: dict):
    """(arrays, options) for one case under Flax; raises what Flax raises."""
    import flax.linen as nn
    import numpy as np

    rng = np.random.default_rng(zlib.crc32(spec["name"].encode()))
    arrays = {"x": rng.standard_normal(spec["x"]).astype(spec["dtype"]),
              "w": rng.standard_normal(spec["w"]).astype(spec["wdtype"])}
    if spec["b"] is not None:
        arrays["b"] = rng.standard_normal(spec["b"]).astype(spec["wdtype"])
    kwargs = dict(spec["options"])
    rank = len(spec["w"]) - 2
    kwargs.setdefault("features", spec["w"][rank] if kwargs.get("transpose_kernel") else spec["w"][-1])
    kwargs.setdefault("kernel_size", tuple(spec["w"][:rank]))
    kwargs.setdefault("use_bias", spec["b"] is not None)
    params = {"kernel": arrays["w"]} | ({"bias": arrays["b"]} if "b" in arrays else {})
    arrays["y"] = np.asarray(nn.ConvTranspose(**kwargs).apply({"params": params}, arrays["x"]))
    return arrays, kwargs


if __name__ == "__main__":
    from _isolated import main

    main(__file__, "flax", CASES, run, "Flax (flax.linen.ConvTranspose, JAX CPU, jax_enable_x64)",
         lambda: f"flax {__import__('flax').__version__}, jax {__import__('jax').__version__}")
