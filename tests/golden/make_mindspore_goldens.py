"""Record MindSpore 2.10 goldens (CPU): ``python tests/golden/make_mindspore_goldens.py`` (MindSpore 2.10 installed).

Writes mindspore.json and mindspore.npz next to this file. 3-D cases run ``ops.Conv3DTranspose`` (in_channel,
out_channel and kernel_size, which MindSpore requires, are filled from the tensors when a case does not give them),
4-D cases ``ops.Conv2DTranspose(dout, weight, input_size)``. The ops take no bias: bias cases add it with
MindSpore's own ``ops.BiasAdd`` (what ``nn.Conv*dTranspose(has_bias=True)`` does). MindSpore raises Python
exceptions (no aborts were seen), so reject cases run in this process. ``quirk_rejects`` are cases that fail only
on the CPU kernel although the documented rules allow them (deconv: ConfigError with --quirks, documented result
and a warning without); tests/conventions/test_mindspore.py checks them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def case(name, x, w, *, b=None, dtype="float32", quirks=False, ints=False, **options):
    return dict(name=name, x=x, w=w, b=b, dtype=dtype, quirks=quirks, ints=ints, options=options)


OK = [
    # seed examples (integer-valued data: exact in float16 and small on disk)
    case("seed_Conv3DTranspose_16to3_k462", (1, 16, 10, 32, 32), (16, 3, 4, 6, 2), dtype="float16", ints=True,
         in_channel=16, out_channel=3, kernel_size=(4, 6, 2)),
    case("seed_Conv2DTranspose_32_30to32", (1, 32, 30, 30), (32, 32, 3, 3), ints=True,
         out_channel=32, kernel_size=3, input_size=(1, 32, 32, 32)),
    # ops.Conv3DTranspose
    case("c3_valid_default", (2, 2, 3, 4, 3), (2, 3, 2, 3, 2)),
    case("c3_valid_s2_k3", (1, 2, 3, 3, 4), (2, 2, 3, 3, 3), stride=2),
    case("c3_valid_zero_tail_s_gt_k", (1, 2, 3, 2, 3), (2, 2, 1, 2, 1), stride=(4, 3, 2)),
    case("c3_same_s2_k3", (1, 2, 3, 4, 3), (2, 3, 3, 3, 3), pad_mode="same", stride=2),
    case("c3_same_s3_k5", (1, 2, 4, 3, 2), (2, 2, 5, 5, 4), pad_mode="same", stride=(3, 3, 1)),
    case("c3_same_dilated", (1, 2, 3, 5, 4), (2, 2, 2, 4, 3), pad_mode="same", dilation=(1, 3, 2)),
    case("c3_same_zero_tail", (1, 2, 3, 3, 3), (2, 2, 1, 1, 2), pad_mode="same", stride=(4, 2, 3)),
    case("c3_SAME_uppercase", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), pad_mode="SAME", stride=2),
    case("c3_pad_int", (1, 2, 3, 3, 3), (2, 3, 3, 3, 3), pad_mode="pad", pad=1, stride=2),
    case("c3_pad_6tuple_asym", (1, 2, 4, 3, 4), (2, 2, 3, 3, 3), pad_mode="pad", pad=(1, 0, 2, 1, 0, 2), stride=2),
    case("c3_PAD_uppercase", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), pad_mode="PAD", pad=(1, 1, 0, 1, 1, 0)),
    case("c3_pad_op", (1, 2, 3, 3, 3), (2, 3, 3, 3, 3), pad_mode="pad", pad=1, stride=2, output_padding=1),
    case("c3_pad_op_asym", (1, 2, 3, 3, 3), (2, 2, 3, 2, 3), pad_mode="pad", pad=(0, 2, 1, 1, 2, 0), stride=(2, 3, 2),
         output_padding=(1, 2, 0)),
    case("c3_pad_dil_op", (1, 2, 3, 3, 3), (2, 2, 2, 3, 3), pad_mode="pad", pad=(0, 0, 1, 1, 2, 1), stride=2,
         dilation=(1, 2, 2), output_padding=(1, 1, 1)),
    case("c3_group2_valid", (1, 4, 3, 3, 3), (4, 1, 3, 3, 3), group=2),
    case("c3_group2_same", (1, 4, 3, 3, 3), (4, 2, 3, 3, 3), group=2, pad_mode="same", stride=2),
    case("c3_group2_pad_op", (1, 4, 3, 3, 3), (4, 3, 2, 2, 2), group=2, pad_mode="pad", pad=1, stride=2,
         output_padding=(1, 0, 1)),
    case("c3_depthwise", (1, 4, 3, 3, 3), (4, 1, 2, 2, 2), group=4, stride=2),
    case("c3_fp16_same", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), dtype="float16", pad_mode="same", stride=2),
    case("c3_fp16_pad_op", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), dtype="float16", pad_mode="pad", pad=1, stride=2,
         output_padding=1),
    case("c3_bias", (1, 2, 3, 3, 3), (2, 4, 2, 2, 2), b=(4,), stride=2),
    case("c3_bias_fp16_same", (1, 2, 3, 3, 3), (2, 3, 3, 3, 3), b=(3,), dtype="float16", pad_mode="same", stride=2),
    case("c3_out_size_0_empty", (1, 2, 1, 3, 3), (2, 2, 1, 3, 3), pad_mode="pad", pad=(0, 1, 0, 0, 0, 0)),
    case("c3_stride_depth_256", (1, 2, 2, 2, 2), (2, 2, 1, 1, 1), stride=(256, 1, 1)),
    case("c3_kernel_343", (1, 1, 1, 1, 1), (1, 2, 7, 7, 7)),
    case("c3_in_channel_unchecked", (1, 4, 2, 2, 2), (4, 2, 2, 2, 2), in_channel=5, out_channel=2, kernel_size=2),
    # ops.Conv2DTranspose (input_size picks the size within the accepted range)
    case("c2_valid_min", (1, 2, 5, 4), (2, 3, 3, 3), stride=2, input_size=(1, 3, 11, 9)),
    case("c2_valid_max", (1, 2, 5, 4), (2, 3, 3, 3), stride=2, input_size=(1, 3, 12, 10)),
    case("c2_valid_n1_shorter_than_full", (1, 2, 1, 3), (2, 3, 3, 3), stride=2, input_size=(1, 3, 2, 7)),
    case("c2_valid_zero_tail", (1, 2, 3, 3), (2, 3, 1, 1), stride=4, input_size=(1, 3, 12, 10)),
    case("c2_pad_min", (2, 2, 4, 5), (2, 3, 3, 3), pad_mode="pad", pad=1, stride=2, input_size=(2, 3, 7, 9)),
    case("c2_pad_max_asym", (1, 2, 4, 5), (2, 3, 3, 4), pad_mode="pad", pad=(1, 0, 0, 2), stride=(2, 3),
         input_size=(1, 3, 9, 15)),
    case("c2_pad_size_0_empty", (1, 2, 1, 3), (2, 3, 3, 3), pad_mode="pad", pad=1, stride=2, input_size=(1, 3, 0, 5)),
    case("c2_same_min", (1, 2, 3, 4), (2, 3, 3, 3), pad_mode="same", stride=2, input_size=(1, 3, 5, 7)),
    case("c2_same_max", (1, 2, 3, 4), (2, 3, 3, 3), pad_mode="same", stride=2, input_size=(1, 3, 6, 8)),
    case("c2_same_dilated_k4", (1, 2, 4, 3), (2, 2, 4, 3), pad_mode="same", stride=(1, 2), dilation=(2, 1),
         input_size=(1, 2, 4, 6)),
    case("c2_same_zero_tail", (1, 2, 3, 3), (2, 3, 1, 1), pad_mode="same", stride=4, input_size=(1, 3, 12, 11)),
    case("c2_SAME_uppercase", (1, 2, 3, 3), (2, 3, 3, 3), pad_mode="SAME", stride=2, input_size=(1, 3, 6, 6)),
    case("c2_stride_4tuple", (1, 2, 3, 3), (2, 3, 3, 3), stride=(1, 1, 2, 2), dilation=(1, 1, 1, 2),
         input_size=(1, 3, 7, 9)),
    case("c2_group2", (1, 4, 3, 3), (4, 3, 3, 3), group=2, stride=2, input_size=(1, 6, 7, 8)),
    case("c2_depthwise_pad", (1, 4, 4, 4), (4, 1, 4, 4), group=4, pad_mode="pad", pad=1, stride=2,
         input_size=(1, 4, 8, 8)),
    case("c2_pad_list_overrides_pad", (1, 2, 3, 3), (2, 3, 3, 3), pad_mode="pad", pad=1, pad_list=(0, 0, 2, 1),
         stride=2, input_size=(1, 3, 7, 4)),
    case("c2_pad_list_all_minus1", (1, 2, 3, 3), (2, 3, 3, 3), pad_mode="pad", pad=1, pad_list=(-1, -1, -1, -1),
         stride=2, input_size=(1, 3, 5, 5)),
    case("c2_pad_list_valid_zeros", (1, 2, 3, 3), (2, 3, 3, 3), pad_list=(0, 0, 0, 0), stride=2,
         input_size=(1, 3, 7, 7)),
    case("c2_fp16", (1, 2, 4, 4), (2, 3, 3, 3), dtype="float16", pad_mode="pad", pad=1, stride=2,
         input_size=(1, 3, 8, 7)),
    case("c2_bias", (2, 2, 4, 4), (2, 3, 3, 3), b=(3,), stride=2, input_size=(2, 3, 10, 9)),
    case("c2_out_channel_unchecked", (1, 2, 3, 3), (2, 3, 3, 3), out_channel=99, stride=2, input_size=(1, 3, 7, 7)),
]

REJECT = [
    case("c3_depth_dilation_2", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), dilation=2),
    case("c3_stride_5tuple", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), stride=(1, 1, 2, 2, 2)),
    case("c3_pad_3tuple", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), pad_mode="pad", pad=(1, 1, 1)),
    case("c3_pad_negative", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), pad_mode="pad", pad=-1),
    case("c3_pad_without_pad_mode", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), pad=1),
    case("c3_op_with_same", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), pad_mode="same", stride=2, output_padding=1),
    case("c3_op_ge_max_stride_dilation", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), pad_mode="pad", stride=2,
         output_padding=(0, 2, 0)),
    case("c3_group_gt_out_channel", (1, 4, 3, 3, 3), (4, 1, 3, 3, 3), group=4, out_channel=2),
    case("c3_group_not_dividing_out_channel", (1, 4, 3, 3, 3), (4, 1, 3, 3, 3), group=2, out_channel=3),
    case("c3_group_not_dividing_input", (1, 3, 3, 3, 3), (3, 1, 3, 3, 3), group=2),
    case("c3_data_format_NDHWC", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), data_format="NDHWC"),
    case("c3_mode_2", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), mode=2),
    case("c3_kernel_volume_392", (1, 1, 1, 1, 1), (1, 1, 8, 7, 7)),
    case("c3_stride_depth_257", (1, 2, 2, 2, 2), (2, 2, 1, 1, 1), stride=(257, 1, 1)),
    case("c3_channel_mismatch", (1, 4, 3, 3, 3), (5, 2, 3, 3, 3)),
    case("c3_kernel_size_mismatch", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), kernel_size=2),
    case("c3_float64", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), dtype="float64"),
    case("c3_negative_output", (1, 2, 1, 3, 3), (2, 2, 1, 3, 3), pad_mode="pad", pad=(1, 1, 0, 0, 0, 0)),
    case("c3_pad_mode_full", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), pad_mode="full"),
    case("c3_bias_wrong_length", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), b=(3,)),
    case("c2_input_size_too_big", (1, 2, 5, 4), (2, 3, 3, 3), stride=2, input_size=(1, 3, 13, 9)),
    case("c2_input_size_too_small", (1, 2, 5, 4), (2, 3, 3, 3), stride=2, input_size=(1, 3, 10, 9)),
    case("c2_same_input_size_out_of_range", (1, 2, 3, 4), (2, 3, 3, 3), pad_mode="same", stride=2,
         input_size=(1, 3, 7, 8)),
    case("c2_input_size_wrong_channels", (1, 2, 3, 3), (2, 3, 3, 3), stride=2, input_size=(1, 4, 7, 7)),
    case("c2_input_size_wrong_batch", (2, 2, 3, 3), (2, 3, 3, 3), stride=2, input_size=(1, 3, 7, 7)),
    case("c2_PAD_uppercase_with_pad", (1, 2, 3, 3), (2, 3, 3, 3), pad_mode="PAD", pad=1, stride=2,
         input_size=(1, 3, 5, 5)),
    case("c2_pad_3tuple", (1, 2, 3, 3), (2, 3, 3, 3), pad_mode="pad", pad=(1, 1, 1), input_size=(1, 3, 3, 3)),
    case("c2_NHWC_cpu", (1, 2, 3, 3), (2, 3, 3, 3), data_format="NHWC", input_size=(1, 3, 5, 5)),
    case("c2_stride_3tuple", (1, 2, 3, 3), (2, 3, 3, 3), stride=(2, 2, 2), input_size=(1, 3, 7, 7)),
    case("c2_group_not_dividing", (1, 3, 3, 3), (3, 1, 3, 3), group=2, input_size=(1, 2, 5, 5)),
    case("c2_kernel_size_ignored", (1, 2, 3, 3), (2, 3, 3, 3), kernel_size=2, stride=2, input_size=(1, 3, 7, 7)),
    case("c2_stride_4tuple_nc_ignored", (1, 2, 3, 3), (2, 3, 3, 3), stride=(2, 2, 2, 2), input_size=(1, 3, 7, 7)),
    case("c2_pad_list_ignored_under_valid", (1, 2, 3, 3), (2, 3, 3, 3), pad_list=(1, 1, 1, 1), stride=2,
         input_size=(1, 3, 7, 7)),
    case("c2_pad_list_mixed_minus1", (1, 2, 3, 3), (2, 3, 3, 3), pad_mode="pad", pad=1, pad_list=(0, 0, 2, -1),
         stride=2, input_size=(1, 3, 7, 4)),
    case("c2_float64", (1, 2, 3, 3), (2, 3, 3, 3), dtype="float64", input_size=(1, 3, 5, 5)),
    case("c2_output_padding_not_an_argument", (1, 2, 3, 3), (2, 3, 3, 3), pad_mode="pad", stride=2,
         output_padding=1, input_size=(1, 3, 8, 8)),
    case("conv1d_out_of_scope", (1, 2, 5), (2, 3, 3), input_size=(1, 3, 7)),
]

QUIRK_REJECT = [
    case("c3_op_ge_stride_lt_dilation_cpu", (1, 2, 3, 3, 3), (2, 2, 2, 2, 2), quirks=True, pad_mode="pad",
         dilation=(1, 2, 1), output_padding=(0, 1, 0)),
    case("c3_op_ge_stride_lt_dilation_cpu_w", (1, 2, 3, 3, 3), (2, 2, 2, 3, 2), quirks=True, pad_mode="pad",
         pad=1, stride=(2, 1, 2), dilation=(1, 1, 3), output_padding=(1, 0, 2)),
]


def run_case(c, rng):
    """Run one case through MindSpore; returns (x, w, b, y) as numpy arrays."""
    import mindspore as ms
    from mindspore import Tensor, ops

    def data(shape, scale=1):
        if c["ints"]:
            return rng.integers(-2, 3, size=shape).astype(c["dtype"])
        return rng.standard_normal(shape).astype(c["dtype"])

    x, w = data(c["x"]), data(c["w"])
    b = None if c["b"] is None else data(c["b"])
    opts = dict(c["options"])
    group = opts.get("group", 1)
    if len(c["x"]) == 5:
        op = ops.Conv3DTranspose(in_channel=opts.pop("in_channel", c["x"][1]),
                                 out_channel=opts.pop("out_channel", c["w"][1] * group),
                                 kernel_size=opts.pop("kernel_size", c["w"][2:]), **opts)
        y = op(Tensor(x), Tensor(w))
    else:
        size = opts.pop("input_size")
        op = ops.Conv2DTranspose(out_channel=opts.pop("out_channel", c["x"][1]),
                                 kernel_size=opts.pop("kernel_size", c["w"][2:]), **opts)
        y = op(Tensor(x), Tensor(w), size)
    if b is not None:
        y = ops.BiasAdd(data_format="NCDHW" if len(c["x"]) == 5 else "NCHW")(y, Tensor(b))
    del ms
    return x, w, b, y.asnumpy()


def record(c, **extra):
    return {
        "name": c["name"], "style": "mindspore",
        "options": {k: repr(v) for k, v in c["options"].items()},
        "dtype": c["dtype"], "input_shape": list(c["x"]), "weight_shape": list(c["w"]),
        "bias_shape": None if c["b"] is None else list(c["b"]), **extra,
    }


def main():
    import mindspore

    mindspore.set_context(device_target="CPU")
    rng = np.random.default_rng(20240607)
    cases, arrays = [], {}
    for c in OK:
        x, w, b, y = run_case(c, rng)
        assert y.dtype == np.dtype(c["dtype"]), (c["name"], y.dtype)
        arrays.update({f"{c['name']}__x": x, f"{c['name']}__w": w, f"{c['name']}__y": y})
        if b is not None:
            arrays[f"{c['name']}__b"] = b
        cases.append(record(c, expect="ok", output_shape=list(y.shape), quirks=c["quirks"]))
        print("ok    ", c["name"], y.shape)
    quirk_rejects = []
    for group, out in ((REJECT, cases), (QUIRK_REJECT, quirk_rejects)):
        for c in group:
            try:
                _, _, _, y = run_case(c, rng)
                err = f"no error: MindSpore returned {y.shape} {y.dtype}"
            except Exception as e:  # noqa: BLE001 - recording whatever MindSpore raises
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                err = f"{type(e).__name__}: {first[:240]}"
            out.append(record(c, expect="reject", framework_error=err, quirks=c["quirks"]))
            print("reject", c["name"], "->", err)
    doc = {"framework": "MindSpore", "version": mindspore.__version__, "script": Path(__file__).name,
           "device_target": "CPU", "cases": cases, "quirk_rejects": quirk_rejects}
    (HERE / "mindspore.json").write_text(json.dumps(doc, indent=1) + "\n")
    np.savez_compressed(HERE / "mindspore.npz", **arrays)


if __name__ == "__main__":
    main()
