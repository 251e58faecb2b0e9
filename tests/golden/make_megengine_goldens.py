"""Record MegEngine 1.13 goldens (CPU): ``python tests/golden/make_megengine_goldens.py`` (MegEngine 1.13 installed).

Writes megengine.json and megengine.npz next to this file. ``ok`` cases run in this process; every
``reject`` case runs in a subprocess (``--case NAME``) because MegEngine may kill the process (stride 0: SIGFPE).
Cases marked ``quirks`` reproduce a MegEngine 1.13 defect (see deconv_cli/conventions/megengine.py).
Reject cases that only fail because of a defect go to ``quirk_rejects`` (deconv rejects them with --quirks
and computes the documented result without); tests/conventions/test_megengine.py checks them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def case(name, x, w, *, b=None, dtype="float32", quirks=False, module=None, **options):
    return dict(name=name, x=x, w=w, b=b, dtype=dtype, quirks=quirks, module=module, options=options)


# tuple spelling of padding/dilation (and 2-D stride): needed by 1.13 whenever output_padding != 0
P2 = dict(padding=(0, 0), dilation=(1, 1))
P3 = dict(padding=(0, 0, 0), dilation=(1, 1, 1))
OK = [
    case("seed_ConvTranspose3d_3to64_k3s2p1", (1, 3, 4, 4, 4), (3, 64, 3, 3, 3), b=(1, 64, 1, 1, 1),
         module="ConvTranspose3d", in_channels=3, out_channels=64, kernel_size=3, stride=2, padding=1, bias=True),
    case("m2d_k3s2p1op1_module", (2, 4, 5, 5), (4, 6, 3, 3), b=(1, 6, 1, 1), module="ConvTranspose2d",
         in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, output_padding=1, bias=True),
    case("f2d_default", (2, 4, 5, 6), (4, 3, 3, 3)),
    case("f2d_s2p1", (2, 4, 5, 6), (4, 3, 3, 3), stride=2, padding=1),
    case("f2d_s23_p12", (1, 4, 5, 6), (4, 3, 4, 3), stride=(2, 3), padding=(1, 2)),
    case("f2d_dil2", (1, 3, 6, 5), (3, 2, 3, 3), dilation=2),
    case("f2d_s2_d23_p21", (1, 3, 5, 5), (3, 2, 3, 2), stride=(2, 2), dilation=(2, 3), padding=(2, 1)),
    case("f2d_k1_s3", (1, 2, 4, 4), (2, 2, 1, 1), stride=3),
    case("f2d_op11", (1, 4, 5, 5), (4, 3, 3, 3), stride=(2, 2), output_padding=(1, 1), **P2),
    case("f2d_op10", (1, 4, 5, 5), (4, 3, 3, 3), stride=(2, 2), output_padding=(1, 0), **P2),
    case("f2d_op21_s3_p1", (1, 2, 4, 5), (2, 3, 4, 3), stride=(3, 3), padding=(1, 1), dilation=(1, 1),
         output_padding=(2, 1)),
    case("f2d_op_dil", (1, 2, 4, 5), (2, 3, 3, 3), stride=(2, 2), padding=(2, 1), dilation=(2, 2),
         output_padding=(1, 1)),
    case("f2d_g2", (1, 4, 5, 5), (2, 2, 3, 3, 3), groups=2),
    case("f2d_g2_s2p1", (2, 4, 5, 4), (2, 2, 1, 4, 4), groups=2, stride=2, padding=1),
    case("f2d_dw4_s2p1", (1, 4, 6, 6), (4, 1, 1, 4, 4), groups=4, stride=2, padding=1),
    case("f2d_bias_4d", (2, 3, 4, 4), (3, 5, 3, 3), b=(1, 5, 1, 1), stride=2),
    case("f2d_bias_1d", (2, 3, 4, 4), (3, 5, 3, 3), b=(5,), stride=2, padding=1),
    case("f2d_fp16", (1, 4, 5, 5), (4, 3, 3, 3), dtype="float16", stride=2, padding=1),
    # (float16 with output_padding != 0 comes back as float32 from MegEngine 1.13: not recorded, see the style's docstring)
    case("f2d_fp16_bias", (1, 4, 5, 5), (4, 3, 3, 3), b=(1, 3, 1, 1), dtype="float16", stride=(2, 2), padding=1),
    case("f2d_k5_s1_p2", (1, 2, 7, 7), (2, 2, 5, 5), padding=2),
    case("f2d_pad_big", (1, 2, 6, 6), (2, 2, 3, 3), stride=2, padding=(3, 2)),
    case("f3d_default", (1, 2, 3, 4, 5), (2, 3, 2, 3, 2)),
    case("f3d_s2p1", (2, 3, 3, 3, 3), (3, 2, 3, 3, 3), stride=2, padding=1),
    case("f3d_s212_p101", (1, 2, 4, 3, 4), (2, 3, 3, 2, 3), stride=(2, 1, 2), padding=(1, 0, 1)),
    case("f3d_dil", (1, 2, 4, 4, 4), (2, 2, 2, 3, 2), dilation=(1, 2, 3)),
    case("f3d_op101", (1, 2, 3, 3, 3), (2, 3, 3, 3, 3), stride=(2, 2, 2), output_padding=(1, 0, 1), **P3),
    case("f3d_op_int_stride", (1, 2, 3, 3, 3), (2, 3, 3, 3, 3), stride=2, padding=(1, 1, 1), dilation=(1, 1, 1),
         output_padding=1),
    case("f3d_op_s3_dil", (1, 2, 3, 3, 2), (2, 2, 2, 3, 3), stride=(3, 2, 3), padding=(1, 2, 0),
         dilation=(2, 1, 2), output_padding=(2, 1, 1)),
    case("f3d_g2", (1, 4, 3, 3, 3), (2, 2, 3, 3, 3, 3), groups=2),
    case("f3d_g2_s2p1", (1, 4, 3, 4, 3), (2, 2, 1, 2, 2, 2), groups=2, stride=2, padding=1),
    case("f3d_bias", (1, 2, 3, 3, 3), (2, 4, 2, 2, 2), b=(1, 4, 1, 1, 1), stride=2),
    case("f3d_bias_1d_g2", (1, 4, 3, 3, 3), (2, 2, 3, 2, 2, 2), b=(6,), groups=2, stride=(1, 2, 1)),
    case("f3d_fp16", (1, 3, 3, 4, 3), (3, 2, 3, 3, 3), dtype="float16", stride=2, padding=1),
    case("f3d_k1_s2", (1, 2, 3, 3, 3), (2, 2, 1, 1, 1), stride=2),
    case("f3d_p2_k5", (1, 2, 4, 4, 4), (2, 2, 5, 3, 5), padding=(2, 1, 2)),
    case("f2d_module_g2", (1, 4, 5, 5), (2, 2, 3, 3, 3), b=(1, 6, 1, 1), module="ConvTranspose2d",
         in_channels=4, out_channels=6, kernel_size=3, groups=2, stride=2, padding=1, bias=True),
    case("f2d_dil3_s2", (1, 2, 4, 4), (2, 2, 2, 3), stride=2, dilation=3, padding=2),
    case("f2d_s4_k2", (1, 2, 3, 3), (2, 2, 2, 2), stride=4),
    case("f3d_op_depth_only", (1, 2, 3, 3, 3), (2, 2, 2, 2, 2), stride=(2, 1, 1), output_padding=(1, 0, 0), **P3),
    # 1.13 defect: conv_transpose2d ignores output_padding (0, w)
    case("quirk_f2d_op01", (1, 4, 5, 5), (4, 3, 3, 3), quirks=True, stride=(2, 2), output_padding=(0, 1), **P2),
    case("quirk_f2d_op02_s3", (1, 2, 4, 4), (2, 2, 3, 3), quirks=True, stride=(3, 3), padding=(1, 1),
         dilation=(1, 1), output_padding=(0, 2)),
    case("quirk_f2d_op01_g2", (1, 4, 5, 5), (2, 2, 2, 3, 3), quirks=True, groups=2, stride=(2, 2),
         output_padding=(0, 1), **P2),
    case("quirk_f2d_op01_int_args", (1, 4, 5, 5), (4, 3, 3, 3), quirks=True, stride=2, output_padding=(0, 1)),
]

REJECT = [
    case("stride0_sigfpe", (1, 2, 4, 4), (2, 2, 3, 3), stride=0),
    case("stride0_3d_sigfpe", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), stride=(1, 0, 1)),
    case("stride_negative", (1, 2, 4, 4), (2, 2, 3, 3), stride=-1),
    case("dilation0", (1, 2, 4, 4), (2, 2, 3, 3), dilation=0),
    case("dilation_negative", (1, 2, 4, 4), (2, 2, 3, 3), dilation=(1, -1)),
    case("padding_negative", (1, 2, 4, 4), (2, 2, 3, 3), padding=-1),
    case("op_ge_stride_2d", (1, 2, 4, 4), (2, 2, 3, 3), stride=(2, 2), output_padding=(2, 0), **P2),
    case("op_ge_stride_3d", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), stride=(2, 2, 2), output_padding=(0, 0, 2), **P3),
    case("op_lt_dilation_ge_stride", (1, 2, 4, 4), (2, 2, 3, 3), stride=(1, 1), padding=(0, 0), dilation=(2, 2),
         output_padding=(1, 1)),
    case("op_negative", (1, 2, 4, 4), (2, 2, 3, 3), stride=(2, 2), output_padding=(-1, 0), **P2),
    case("padding_1tuple_2d", (1, 2, 4, 4), (2, 2, 3, 3), padding=(1,)),
    case("padding_3tuple_2d_silently_truncated", (1, 2, 4, 4), (2, 2, 3, 3), padding=(1, 1, 1)),
    case("padding_2tuple_3d", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), padding=(1, 1)),
    case("groups_vs_weight_groups", (1, 4, 5, 5), (4, 1, 2, 3, 3), groups=2),
    case("flat_weight_groups2", (1, 4, 5, 5), (4, 1, 3, 3), groups=2),
    case("grouped_weight_groups1", (1, 4, 3, 3, 3), (2, 2, 1, 3, 3, 3)),
    case("channel_mismatch", (1, 3, 5, 5), (4, 2, 3, 3)),
    case("groups_not_dividing", (1, 4, 5, 5), (3, 1, 1, 3, 3), groups=3),
    case("unbatched_3d", (4, 3, 3, 3), (4, 2, 3, 3, 3)),
    case("one_d_input", (1, 4, 5), (4, 2, 3)),
    case("output_too_small", (1, 2, 2, 2), (2, 2, 3, 3), padding=2),
    case("bias_wrong_channels", (1, 2, 4, 4), (2, 3, 3, 3), b=(1, 4, 1, 1)),
    case("float64_returned_as_float32", (1, 2, 4, 4), (2, 3, 3, 3), dtype="float64"),
    case("module_in_channels_not_divisible", (1, 3, 4, 4), (3, 2, 3, 3), module="ConvTranspose2d",
         in_channels=3, out_channels=2, kernel_size=3, groups=2),
    case("padding_mode_reflect", (1, 2, 4, 4), (2, 2, 3, 3), padding_mode="reflect"),
]

QUIRK_REJECT = [
    case("quirk_groups2_with_op", (1, 4, 5, 5), (2, 2, 2, 3, 3), quirks=True, groups=2, stride=(2, 2),
         output_padding=(1, 1), **P2),
    case("quirk_groups2_with_op_3d", (1, 4, 3, 3, 3), (2, 2, 2, 2, 2, 2), quirks=True, groups=2, stride=(2, 2, 2),
         output_padding=(1, 1, 1), **P3),
    case("quirk_int_stride_with_op_2d", (1, 2, 4, 4), (2, 2, 3, 3), quirks=True, stride=2, output_padding=(1, 1),
         **P2),
    case("quirk_default_padding_with_op_3d", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), quirks=True, stride=(2, 2, 2),
         dilation=(1, 1, 1), output_padding=(1, 1, 1)),
]


def run_case(c, rng):
    """Run one case through MegEngine; returns (x, w, b, y) as numpy arrays."""
    import megengine as mge
    import megengine.functional as F
    import megengine.module as M

    def data(shape):
        return rng.standard_normal(shape).astype(c["dtype"])

    x, w = data(c["x"]), data(c["w"])
    b = None if c["b"] is None else data(c["b"])
    rank = len(c["x"]) - 2
    opts = dict(c["options"])
    if c["module"]:
        mod_kw = {k: v for k, v in opts.items() if k not in ("padding_mode",)}
        mod = getattr(M, c["module"])(**mod_kw)
        mod.weight = mge.Parameter(w)
        if b is not None:
            mod.bias = mge.Parameter(b)
        y = mod(mge.tensor(x)).numpy()
        return x, w, b, y
    fn = F.conv_transpose3d if rank == 3 else F.conv_transpose2d
    bias = None if b is None else mge.tensor(b.reshape((1, -1) + (1,) * rank))  # functional needs (1, C, 1, ...)
    y = fn(mge.tensor(x), mge.tensor(w), bias, **opts).numpy()
    return x, w, b, y


def record(c, **extra):
    return {
        "name": c["name"], "style": "megengine",
        "options": {k: repr(v) for k, v in c["options"].items()},
        "dtype": c["dtype"], "input_shape": list(c["x"]), "weight_shape": list(c["w"]),
        "bias_shape": None if c["b"] is None else list(c["b"]), **extra,
    }


def reject_in_subprocess(c) -> str:
    proc = subprocess.run([sys.executable, __file__, "--case", c["name"]], capture_output=True, text=True, timeout=120)
    if proc.returncode < 0 or proc.returncode > 128:
        sig = -proc.returncode if proc.returncode < 0 else proc.returncode - 128
        return f"process killed by signal {sig} (exit code {128 + sig})"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    return lines[-1][len("RESULT "):] if lines else f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"


def one(name):
    c = next(c for c in REJECT + QUIRK_REJECT if c["name"] == name)
    try:
        x, w, b, y = run_case(c, np.random.default_rng(0))
        extra = " (output dtype float32)" if y.dtype != np.dtype(c["dtype"]) else ""
        print(f"RESULT no error: MegEngine returned {y.shape} {y.dtype}{extra}", flush=True)
    except Exception as e:  # noqa: BLE001 - recording whatever MegEngine raises
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"RESULT {type(e).__name__}: {first[:240]}", flush=True)


def main():
    import megengine

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
            err = reject_in_subprocess(c)
            out.append(record(c, expect="reject", framework_error=err, quirks=c["quirks"]))
            print("reject", c["name"], "->", err)
    doc = {"framework": "MegEngine", "version": megengine.__version__, "script": Path(__file__).name,
           "cases": cases, "quirk_rejects": quirk_rejects}
    (HERE / "megengine.json").write_text(json.dumps(doc, indent=1) + "\n")
    np.savez_compressed(HERE / "megengine.npz", **arrays)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--case"]:
        one(sys.argv[2])
    else:
        main()
