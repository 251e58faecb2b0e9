"""Record JAX golden cases (tests/golden/jax.{json,npz}). Not run in CI.

Environment: a separate virtual environment with ``pip install jax`` (jax/jaxlib 0.10.2, CPU, Python 3.11,
numpy 2.4.6); run once, outside CI, with that environment's python::

    python tests/golden/make_jax_goldens.py

Each case calls ``jax.lax.conv_transpose(x, w, **options)`` with jax_enable_x64 on (float64 stays float64);
the recorded options are exactly the keywords JAX got. XLA's CPU compiler aborts the whole process on some 3-D
shapes, so the cases run in a worker process (_isolated.py): a case that kills it is recorded under
``crashes`` and the next worker goes on after it. ``policy`` holds cases JAX computes that deconv refuses by design (lhs and out specs
of different layouts, a batch axis elsewhere than first): tests/conventions/test_jax.py checks the refusal.
"""

from __future__ import annotations

import zlib


def case(name, x, w, dtype="float32", wdtype=None, policy=False, **options):
    return {"name": name, "x": list(x), "w": list(w), "b": None, "dtype": dtype, "wdtype": wdtype or dtype,
            "policy": policy, "options": options}


S, V = "SAME", "VALID"
NCHW = ("NCHW", "OIHW", "NCHW")
TK = {"transpose_kernel": True}
CASES = [
    # ---- 1-D, default ('NHC', 'HIO', 'NHC'): x (N, L, C_in), w (k, C_in, C_out)
    case("j1_same_s1", (2, 5, 3), (3, 3, 4), strides=(1,), padding=S),
    case("j1_same_s2", (1, 5, 2), (3, 2, 3), strides=(2,), padding=S),
    case("j1_same_s2_k4", (1, 5, 2), (4, 2, 3), strides=(2,), padding=S),
    case("j1_same_s3_k2", (1, 4, 2), (2, 2, 3), strides=(3,), padding=S),
    case("j1_valid", (1, 5, 2), (3, 2, 3), strides=(1,), padding=V),
    case("j1_valid_s2", (1, 5, 2), (3, 2, 3), strides=(2,), padding=V),
    case("j1_valid_s4_k2", (1, 3, 2), (2, 2, 3), strides=(4,), padding=V),
    case("j1_pairs_zero", (1, 4, 2), (3, 2, 3), strides=(2,), padding=((0, 0),)),
    case("j1_pairs", (1, 5, 2), (3, 2, 3), strides=(2,), padding=((1, 2),)),
    case("j1_pairs_list", (1, 5, 2), (3, 2, 3), strides=(2,), padding=[(0, 3)]),
    case("j1_pairs_negative", (1, 5, 2), (3, 2, 3), strides=(2,), padding=((-1, 0),)),
    case("j1_pairs_big", (1, 4, 2), (3, 2, 3), strides=(2,), padding=((4, 3),)),
    case("j1_consistent", (1, 5, 2), (3, 2, 3), strides=(2,), padding=((1, 1),), use_consistent_padding=True),
    case("j1_consistent_asym", (1, 5, 2), (4, 2, 3), strides=(2,), padding=((1, 2),), use_consistent_padding=True),
    case("j1_consistent_same", (1, 5, 2), (3, 2, 3), strides=(2,), padding=S, use_consistent_padding=True),
    case("j1_dilation2_same", (1, 5, 2), (3, 2, 3), strides=(1,), padding=S, rhs_dilation=(2,)),
    case("j1_dilation3_valid", (2, 4, 3), (3, 3, 2), strides=(2,), padding=V, rhs_dilation=(3,)),
    case("j1_tk", (1, 5, 2), (3, 3, 2), strides=(2,), padding=S, **TK),
    case("j1_tk_pairs", (1, 5, 2), (3, 3, 2), strides=(2,), padding=((2, 1),), **TK),
    case("j1_lower_same", (1, 6, 2), (4, 2, 3), strides=(1,), padding="same"),
    case("j1_lower_valid", (1, 6, 2), (4, 2, 3), strides=(1,), padding="valid"),
    case("j1_same_lower", (1, 6, 2), (4, 2, 3), strides=(1,), padding="SAME_LOWER"),
    case("j1_mixed_case_same", (1, 6, 2), (3, 2, 3), strides=(1,), padding="Same"),
    case("j1_fp16", (1, 5, 2), (3, 2, 2), dtype="float16", strides=(2,), padding=S),
    case("j1_fp64", (1, 6, 2), (4, 2, 3), dtype="float64", strides=(3,), padding=V),
    case("j1_odd", (3, 7, 5), (5, 5, 3), strides=(3,), padding=((2, 1),)),
    case("j1_empty_axis", (1, 3, 2), (3, 2, 3), strides=(1,), padding=((-3, 0),)),
    case("j1_ncw", (1, 2, 5), (3, 2, 3), strides=(2,), padding=S, dimension_numbers=("NCH", "OIH", "NCH")),
    case("j1_ncw_tk_torch_weight", (1, 2, 5), (2, 3, 3), strides=(2,), padding=((1, 1),),
         dimension_numbers=("NCH", "OIH", "NCH"), use_consistent_padding=True, **TK),
    case("j1_dims_list", (1, 5, 2), (3, 2, 3), strides=[2], padding=S, dimension_numbers=["NHC", "HIO", "NHC"]),
    case("j1_dims_none", (1, 5, 2), (3, 2, 3), strides=(2,), padding=S, dimension_numbers=None, rhs_dilation=None),
    # ---- 2-D
    case("j2_same_s2", (2, 4, 5, 3), (3, 3, 3, 4), strides=(2, 2), padding=S),
    case("j2_same_s21", (1, 4, 5, 2), (3, 2, 2, 3), strides=(2, 1), padding=S),
    case("j2_valid_s23", (1, 3, 4, 2), (2, 3, 2, 3), strides=(2, 3), padding=V),
    case("j2_pairs", (1, 4, 5, 2), (3, 3, 2, 3), strides=(2, 2), padding=((1, 0), (2, 1))),
    case("j2_pairs_lists", (1, 4, 5, 2), (3, 3, 2, 3), strides=(2, 2), padding=[[1, 0], [2, 1]]),
    case("j2_dilation12", (1, 4, 3, 2), (3, 2, 2, 2), strides=(1, 1), padding=S, rhs_dilation=(1, 2)),
    case("j2_tk", (1, 4, 5, 3), (3, 3, 4, 3), strides=(2, 2), padding=S, **TK),
    case("j2_nchw_oihw", (1, 3, 4, 5), (2, 3, 3, 3), strides=(2, 2), padding=S, dimension_numbers=NCHW),
    case("j2_nchw_oihw_tk", (1, 3, 4, 5), (3, 2, 3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
         dimension_numbers=NCHW, **TK),
    case("j2_nchw_iohw", (1, 3, 4, 5), (3, 2, 3, 3), strides=(2, 1), padding=V,
         dimension_numbers=("NCHW", "IOHW", "NCHW")),
    case("j2_nhwc_oihw", (1, 4, 5, 3), (2, 3, 3, 2), strides=(1, 2), padding=S,
         dimension_numbers=("NHWC", "OIHW", "NHWC")),
    case("j2_rhs_order_wh", (1, 3, 4, 2), (3, 2, 2, 4), strides=(2, 3), padding=V,
         dimension_numbers=("NHWC", "WHIO", "NHWC")),  # strides follow the rhs: W stride 2, H stride 3
    case("j2_rhs_order_wh_pairs", (1, 2, 3, 4), (3, 2, 2, 4), strides=(1, 2), padding=((2, 0), (0, 1)),
         dimension_numbers=("NCHW", "WHIO", "NCHW")),
    case("j2_other_letters", (1, 3, 4, 2), (2, 3, 2, 3), strides=(2, 2), padding=S,
         dimension_numbers=("NXYC", "XYIO", "NXYC")),
    case("j2_consistent", (1, 4, 4, 2), (3, 3, 2, 3), strides=(2, 2), padding=((1, 1), (0, 1)),
         use_consistent_padding=True),
    case("j2_fp16", (1, 3, 4, 2), (3, 3, 2, 2), dtype="float16", strides=(2, 2), padding=V),
    case("j2_fp64", (1, 4, 4, 2), (3, 3, 2, 3), dtype="float64", strides=(2, 2), padding=((1, 2), (0, 0))),
    case("j2_odd", (2, 7, 3, 5), (5, 3, 5, 3), strides=(3, 2), padding=S),
    case("j2_lower_same", (1, 5, 4, 2), (4, 3, 2, 3), strides=(1, 1), padding="same"),
    case("j2_k4_s2", (1, 5, 5, 2), (4, 4, 2, 3), strides=(2, 2), padding=S),
    case("j2_negative_pairs", (1, 4, 4, 2), (3, 3, 2, 3), strides=(2, 2), padding=((-1, -1), (0, 0))),
    case("j2_dilation2_s2", (1, 4, 4, 2), (3, 3, 2, 2), strides=(2, 2), padding=V, rhs_dilation=(2, 2)),
    # ---- 3-D
    case("j3_same", (1, 3, 3, 3, 2), (2, 2, 2, 2, 3), strides=(1, 1, 1), padding=S),
    case("j3_same_s2", (1, 3, 4, 3, 2), (3, 3, 3, 2, 2), strides=(2, 2, 2), padding=S),
    case("j3_valid_s212", (1, 2, 3, 2, 2), (3, 2, 3, 2, 2), strides=(2, 1, 2), padding=V),
    case("j3_pairs", (1, 3, 3, 2, 2), (3, 3, 2, 2, 2), strides=(2, 2, 2), padding=((1, 1), (0, 2), (2, 0))),
    case("j3_dilation2", (1, 3, 3, 3, 2), (3, 3, 3, 2, 2), strides=(1, 1, 1), padding=S, rhs_dilation=(2, 2, 2)),
    case("j3_tk", (1, 2, 3, 2, 3), (3, 2, 3, 2, 3), strides=(2, 2, 2), padding=S, **TK),
    case("j3_ncdhw", (1, 2, 3, 2, 3), (3, 2, 2, 3, 2), strides=(2, 1, 2), padding=V,
         dimension_numbers=("NCDHW", "OIDHW", "NCDHW")),
    case("j3_fp64", (1, 2, 3, 2, 2), (3, 3, 3, 2, 2), dtype="float64", strides=(3, 3, 3), padding=S),
    case("j3_fp16", (1, 2, 2, 3, 2), (2, 3, 2, 2, 2), dtype="float16", strides=(2, 2, 2), padding=V),
    case("j3_pad0_middle_one", (1, 3, 2, 3, 2), (2, 3, 2, 2, 2), strides=(2, 2, 2),
         padding=((0, 0), (0, 0), (0, 0))),  # XLA's abort
    case("j3_consistent", (1, 3, 3, 3, 2), (3, 3, 3, 2, 2), strides=(2, 2, 2), padding=((1, 1),) * 3,
         use_consistent_padding=True),
    # ---- rejected by JAX
    case("bad_strides_int", (1, 5, 2), (3, 2, 3), strides=2, padding=S),
    case("bad_strides_length", (1, 5, 2), (3, 2, 3), strides=(2, 2), padding=S),
    case("bad_dilation_length", (1, 4, 4, 2), (3, 3, 2, 3), strides=(1, 1), padding=S, rhs_dilation=(2, 2, 2)),
    case("bad_strides_zero", (1, 5, 2), (3, 2, 3), strides=(0,), padding=S),
    case("bad_dilation_zero", (1, 5, 2), (3, 2, 3), strides=(1,), padding=S, rhs_dilation=(0,)),
    case("bad_channels", (1, 5, 3), (3, 2, 4), strides=(1,), padding=S),
    case("bad_tk_orientation", (1, 5, 2), (3, 2, 3), strides=(1,), padding=S, **TK),
    case("bad_lower_same_s2", (1, 5, 2), (3, 2, 3), strides=(2,), padding="same"),
    case("bad_unknown_string_s1", (1, 5, 2), (3, 2, 3), strides=(1,), padding="FULL"),
    case("bad_unknown_string_s2", (1, 5, 2), (3, 2, 3), strides=(2,), padding="FULL"),
    case("bad_pairs_count", (1, 4, 4, 2), (3, 3, 2, 3), strides=(1, 1), padding=((1, 1),)),
    case("bad_padding_not_pairs", (1, 5, 2), (3, 2, 3), strides=(1,), padding=(1, 1)),
    case("bad_padding_int", (1, 5, 2), (3, 2, 3), strides=(1,), padding=1),
    case("bad_negative_too_large", (1, 3, 2), (3, 2, 3), strides=(2,), padding=((-6, 0),)),
    case("bad_consistent_too_large", (1, 5, 2), (1, 2, 3), strides=(1,), padding=((5, 5),), use_consistent_padding=True),
    case("bad_dims_two", (1, 5, 2), (3, 2, 3), strides=(1,), padding=S, dimension_numbers=("NHC", "HIO")),
    case("bad_dims_letters", (1, 5, 2), (3, 2, 3), strides=(1,), padding=S, dimension_numbers=("NHC", "WIO", "NHC")),
    case("bad_rank", (5, 2), (3, 2, 3), strides=(1,), padding=S),
    case("bad_mixed_dtypes", (1, 5, 2), (3, 2, 3), wdtype="float64", strides=(1,), padding=S),
    # ---- computed by JAX, refused by deconv (another output layout, a batch axis not first)
    case("policy_out_layout", (1, 4, 5, 3), (3, 3, 3, 2), policy=True, strides=(2, 2), padding=S,
         dimension_numbers=("NHWC", "HWIO", "NCHW")),
    case("policy_batch_not_first", (4, 1, 5, 3), (3, 3, 3, 2), policy=True, strides=(2, 2), padding=S,
         dimension_numbers=("HNWC", "HWIO", "HNWC")),
]


def run(spec: dict):
    """(arrays, options) for one case under JAX; raises what JAX raises."""
    import numpy as np
    from jax import lax

    rng = np.random.default_rng(zlib.crc32(spec["name"].encode()))
    arrays = {"x": rng.standard_normal(spec["x"]).astype(spec["dtype"]),
              "w": rng.standard_normal(spec["w"]).astype(spec["wdtype"])}
    kwargs = dict(spec["options"])
    arrays["y"] = np.asarray(lax.conv_transpose(arrays["x"], arrays["w"], **kwargs))
    return arrays, kwargs


if __name__ == "__main__":
    from _isolated import main

    main(__file__, "jax", CASES, run, "JAX (jax.lax.conv_transpose, CPU, jax_enable_x64)",
         lambda: f"jax {__import__('jax').__version__}")
