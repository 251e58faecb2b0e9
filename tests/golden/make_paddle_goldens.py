"""Record PaddlePaddle golden cases (tests/golden/paddle.{json,npz}). Not run in CI.

Environment: a separate virtual environment with ``pip install paddlepaddle`` (PaddlePaddle 3.3.1, CPU,
Python 3.11); run once, outside CI, with that environment's python::

    python tests/golden/make_paddle_goldens.py

Each case builds ``paddle.nn.Conv{1,2,3}DTranspose`` in the case's dtype with ``in_channels``,
``out_channels`` and ``kernel_size`` taken from the weight (in, out/groups, k...) unless the case sets them,
and ``bias_attr=False`` when there is no bias unless the case sets it; loads the weight (and bias) with
``set_value`` and calls ``layer(x, output_size=...)`` when the case has an ``output_size``. The recorded
options are every keyword the layer and its call got, except a ``bias_attr`` the case did not set (deconv
takes it from --bias).

Paddle crashes on some shapes (a negative output length in every dim of a 2-D call gives a tensor of shape
(N, C, -1, -1), which segfaults when read): cases marked ``crash`` run in a
child process, and a death by signal is recorded as the rejection it is. Lists in the JSON:

- ``cases``: accepted (our output must equal Paddle's) and rejected by Paddle (we exit 2); an accepted case
  with ``quirks: true`` is one where the release departs from its documentation (deconv reproduces it with
  --quirks and warns without);
- ``quirk_rejects``: rejected only by the release (its CPU kernel), computed by deconv's documented semantics;
- ``refused``: accepted by Paddle but nonsense deconv refuses by policy (docs/DESIGN.md): Paddle's output is kept so
  that the --quirks reproduction (where there is one) is checked against it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).parent


def case(name, x, w, b=None, dtype="float32", kind="", **options):
    return {"name": name, "x": list(x), "w": list(w), "b": None if b is None else list(b), "dtype": dtype,
            "kind": kind, "options": options}


NLC, NHWC, NDHWC = "NLC", "NHWC", "NDHWC"
CASES = [
    # ---- 1-D: x (N, C, L) unless NLC; weight (C_in, C_out/groups, k)
    case("p1d_default", (2, 3, 5), (3, 4, 3), (4,)),
    case("p1d_s2_p1", (1, 2, 5), (2, 3, 3), (3,), stride=2, padding=1),
    case("p1d_s2_p1_op1", (1, 2, 5), (2, 3, 3), stride=2, padding=1, output_padding=1),
    case("p1d_pad_list1", (1, 2, 6), (2, 3, 5), (3,), stride=2, padding=[2]),
    case("p1d_pad_pair", (1, 2, 5), (2, 3, 3), stride=2, padding=[1, 2]),
    case("p1d_pad_pair_tuple", (1, 2, 4), (2, 2, 4), (2,), stride=3, padding=(0, 3)),
    case("p1d_pad_nested_ncl", (1, 2, 5), (2, 3, 3), stride=3, padding=[[0, 0], [0, 0], [1, 0]]),
    case("p1d_pad_nested_nlc", (1, 5, 2), (2, 3, 3), (3,), stride=2, padding=[[0, 0], [2, 1], [0, 0]],
         data_format=NLC),
    case("p1d_same_s2_l5", (1, 2, 5), (2, 3, 3), (3,), stride=2, padding="same"),
    case("p1d_same_s2_l4", (1, 2, 4), (2, 3, 3), stride=2, padding="same"),
    case("p1d_same_s4_k2_l3", (1, 2, 3), (2, 3, 2), stride=4, padding="same"),
    case("p1d_same_upper", (1, 2, 5), (2, 3, 3), stride=2, padding="SAME"),
    case("p1d_same_k5_s1", (1, 2, 5), (2, 2, 5), (2,), padding="same"),
    case("p1d_same_op1", (1, 2, 5), (2, 3, 3), stride=2, padding="same", output_padding=1),
    case("p1d_valid_s3", (1, 2, 5), (2, 3, 3), (3,), stride=3, padding="valid"),
    case("p1d_d3_p2", (1, 2, 6), (2, 3, 3), (3,), dilation=3, padding=2),
    case("p1d_d3_s2_op1", (1, 2, 5), (2, 3, 3), stride=2, dilation=3, output_padding=1),
    case("p1d_groups2", (1, 4, 6), (4, 2, 3), (4,), stride=2, groups=2),
    case("p1d_depthwise", (2, 3, 5), (3, 1, 3), groups=3, padding=1),
    case("p1d_output_size", (1, 2, 5), (2, 3, 3), (3,), stride=2, padding=1, output_size=[10]),
    case("p1d_output_size_int", (1, 2, 5), (2, 3, 3), stride=2, padding=1, output_size=9),
    case("p1d_output_size_same", (1, 2, 5), (2, 3, 3), stride=2, padding="same", output_size=[10]),
    case("p1d_nlc_op1", (2, 5, 3), (3, 2, 3), (2,), stride=2, output_padding=1, data_format=NLC),
    case("p1d_fp64", (1, 3, 6), (3, 2, 4), (2,), dtype="float64", stride=3, padding=1, output_padding=2),
    case("p1d_bias_attr_none_no_bias", (1, 2, 5), (2, 3, 3), stride=2, bias_attr=None),
    case("p1d_tuple_args", (1, 2, 5), (2, 3, 3), stride=(2,), kernel_size=(3,), dilation=(1,), output_padding=(1,)),
    case("p1d_empty_output", (1, 2, 3), (2, 3, 3), (3,), padding=[2, 3]),
    case("p1d_k1_s3", (1, 2, 4), (2, 3, 1), (3,), stride=3),
    # ---- 2-D
    case("p2d_default", (1, 3, 4, 5), (3, 2, 3, 3), (2,)),
    case("p2d_s2_p1_op1", (2, 3, 4, 5), (3, 4, 3, 3), (4,), stride=2, padding=1, output_padding=1),
    case("p2d_s23_pad_list", (1, 2, 3, 4), (2, 3, 3, 2), stride=(2, 3), padding=[1, 0]),
    case("p2d_pad4", (1, 2, 4, 4), (2, 3, 3, 3), (3,), stride=2, padding=[1, 2, 0, 3]),
    case("p2d_pad_nested_nchw", (1, 2, 4, 3), (2, 2, 3, 3), stride=2, padding=[[0, 0], [0, 0], [1, 2], [0, 1]]),
    case("p2d_pad_nested_nhwc", (1, 4, 3, 2), (2, 2, 3, 3), (2,), stride=2, padding=((0, 0), (1, 0), (2, 1), (0, 0)),
         data_format=NHWC),
    case("p2d_same_s2", (1, 2, 5, 4), (2, 3, 3, 3), (3,), stride=2, padding="same"),
    case("p2d_same_s23_k2", (1, 2, 3, 5), (2, 2, 2, 4), stride=(2, 3), padding="same"),
    case("p2d_valid", (1, 2, 4, 3), (2, 3, 3, 2), stride=2, padding="valid"),
    case("p2d_nhwc_op1", (1, 4, 5, 3), (3, 2, 3, 3), (2,), stride=2, padding=1, output_padding=1, data_format=NHWC),
    case("p2d_groups2", (1, 4, 5, 5), (4, 3, 3, 3), (6,), stride=2, padding=1, groups=2),
    case("p2d_groups4_nhwc", (1, 3, 4, 4), (4, 1, 2, 3), stride=(1, 2), groups=4, data_format=NHWC),
    case("p2d_dilation21", (1, 2, 4, 4), (2, 3, 3, 3), (3,), dilation=(2, 1), padding=1),
    case("p2d_output_size", (1, 2, 4, 5), (2, 3, 3, 3), (3,), stride=(2, 3), padding=1, output_size=[8, 15]),
    case("p2d_output_size_drops_op", (1, 2, 4, 5), (2, 3, 3, 3), stride=2, padding=1, output_padding=1,
         output_size=[7, 9]),
    case("p2d_output_size_nhwc", (1, 4, 4, 2), (2, 3, 3, 3), stride=2, output_size=(10, 9), data_format=NHWC),
    case("p2d_fp64", (1, 2, 4, 4), (2, 3, 3, 3), (3,), dtype="float64", stride=2, padding="same"),
    case("p2d_odd_sizes", (1, 5, 7, 3), (5, 3, 5, 3), (3,), stride=(3, 2), padding="same"),
    case("p2d_k1", (1, 2, 3, 3), (2, 4, 1, 1), (4,), stride=2, output_padding=1),
    case("p2d_batch3", (3, 2, 3, 2), (2, 2, 3, 3), (2,), stride=2, padding=(1, 0), output_padding=(0, 1)),
    case("p2d_d3_s2_op1", (1, 2, 3, 4), (2, 2, 3, 3), stride=2, dilation=3, output_padding=1),
    case("p2d_kernel_rect", (1, 2, 4, 4), (2, 2, 2, 5), stride=2, padding=[0, 2]),
    case("p2d_same_l4", (1, 2, 4, 4), (2, 2, 3, 3), (2,), stride=2, padding="Same"),
    case("p2d_bias_attr_none_no_bias", (1, 2, 3, 3), (2, 2, 3, 3), stride=2, bias_attr=None),
    # ---- 3-D
    case("p2d_empty_output", (1, 2, 3, 3), (2, 3, 3, 3), padding=[1, 1, 2, 3]),
    case("p3d_default", (1, 2, 3, 3, 3), (2, 3, 2, 2, 2), (3,)),
    case("p3d_s2_p1_op", (1, 2, 3, 3, 2), (2, 2, 3, 3, 3), (2,), stride=2, padding=1, output_padding=(1, 0, 1)),
    case("p3d_pad6", (1, 2, 3, 2, 3), (2, 2, 3, 3, 3), stride=2, padding=[1, 0, 0, 2, 1, 1]),
    case("p3d_nested_ndhwc", (1, 3, 2, 3, 2), (2, 2, 2, 3, 3), (2,), stride=2,
         padding=[[0, 0], [1, 1], [0, 1], [2, 0], [0, 0]], data_format=NDHWC),
    case("p3d_same", (1, 2, 3, 4, 3), (2, 2, 3, 3, 2), (2,), stride=2, padding="same"),
    case("p3d_valid_s212", (1, 2, 2, 3, 2), (2, 3, 3, 2, 3), stride=(2, 1, 2), padding="valid"),
    case("p3d_ndhwc", (1, 2, 3, 3, 4), (4, 2, 3, 3, 3), (2,), stride=2, padding=1, data_format=NDHWC),
    case("p3d_groups2", (1, 4, 2, 3, 2), (4, 1, 2, 2, 2), (2,), stride=2, groups=2),
    case("p3d_output_size", (1, 2, 2, 3, 2), (2, 2, 3, 3, 3), stride=2, padding=1, output_size=[4, 6, 3]),
    case("p3d_output_size_drops_op", (1, 2, 2, 2, 2), (2, 2, 3, 3, 3), stride=2, output_padding=1,
         output_size=[5, 6, 5]),
    case("p3d_fp64", (1, 2, 2, 3, 2), (2, 2, 3, 3, 3), (2,), dtype="float64", stride=3, padding="same"),
    case("p3d_dilation", (1, 2, 3, 3, 3), (2, 2, 2, 3, 2), dilation=(1, 2, 3), padding=1),
    # ---- the release departs from its documentation: 'same' replaces the dilation by 1 (deconv: --quirks)
    case("quirk_same_d2_1d", (1, 2, 4), (2, 3, 3), (3,), stride=2, dilation=2, padding="same", kind="quirk"),
    case("quirk_same_d2_2d", (1, 2, 4, 4), (2, 3, 3, 3), dilation=2, padding="same", kind="quirk"),
    case("quirk_same_d3_3d_ndhwc", (1, 3, 2, 3, 2), (2, 2, 3, 2, 3), stride=2, dilation=(3, 1, 2), padding="same",
         data_format=NDHWC, kind="quirk"),
    # ---- rejected by the release only (output_padding in [stride, max(stride, dilation)): its CPU kernel)
    case("krnl_op_ge_stride_lt_dilation_2d", (1, 2, 4, 4), (2, 3, 3, 3), dilation=2, output_padding=1,
         kind="quirk_reject"),
    case("krnl_op_ge_stride_lt_dilation_1d", (1, 2, 4), (2, 3, 3), dilation=3, output_padding=1, kind="quirk_reject"),
    case("krnl_op_ge_stride_lt_dilation_3d", (1, 2, 3, 3, 3), (2, 2, 3, 3, 3), stride=(1, 2, 1), dilation=2,
         output_padding=(1, 0, 0), kind="quirk_reject"),
    # ---- accepted by Paddle, refused by deconv (policy): see the style's docstring
    case("refuse_out_channels_not_divisible", (1, 4, 5), (4, 2, 3), out_channels=5, groups=2, kind="refuse"),
    case("refuse_dilation_zero", (1, 2, 5), (2, 3, 3), dilation=0, kind="refuse"),
    # ---- rejected by Paddle
    case("bad_float16", (1, 2, 5), (2, 3, 3), dtype="float16", stride=2),
    case("bad_stride_zero", (1, 2, 5), (2, 3, 3), stride=0),
    case("bad_groups_in_channels", (1, 3, 5), (3, 2, 3), groups=2),
    case("bad_groups_zero", (1, 2, 5), (2, 3, 3), groups=0),
    case("bad_padding_negative", (1, 2, 4, 4), (2, 3, 3, 3), padding=[-1, -1]),
    case("bad_padding_length", (1, 2, 4, 4), (2, 3, 3, 3), padding=[1, 1, 1]),
    case("bad_padding_full", (1, 2, 5), (2, 3, 3), padding="FULL"),
    case("bad_padding_nested_channel", (1, 2, 4, 4), (2, 3, 3, 3), padding=[[0, 0], [1, 0], [1, 1], [1, 1]]),
    case("bad_data_format_rank", (1, 2, 4, 4), (2, 3, 3, 3), data_format="NCL"),
    case("bad_unbatched", (2, 4, 4), (2, 3, 3, 3)),
    case("bad_input_channels", (1, 3, 5), (2, 3, 3), in_channels=2),
    case("bad_kernel_size", (1, 2, 5), (2, 3, 3), kernel_size=2),
    case("bad_out_channels", (1, 2, 5), (2, 3, 3), out_channels=4),
    case("bad_op_ge_stride_and_dilation", (1, 2, 4, 4), (2, 3, 3, 3), stride=2, output_padding=2),
    case("bad_op_1d_above_stride", (1, 2, 5), (2, 3, 3), stride=2, dilation=4, output_padding=3),
    case("bad_output_size_small", (1, 2, 5), (2, 3, 3), stride=2, padding=1, output_size=[8]),
    case("bad_output_size_large", (1, 2, 4, 5), (2, 3, 3, 3), stride=2, padding=1, output_size=[7, 11]),
    case("bad_output_size_length", (1, 2, 4, 4), (2, 3, 3, 3), stride=2, output_size=[5, 5, 5]),
    case("bad_1d_output_size_with_op", (1, 2, 5), (2, 3, 3), stride=2, output_padding=[0], output_size=[11]),
    case("bad_unknown_keyword", (1, 2, 4, 4), (2, 3, 3, 3), pad_mode="same"),
    case("bad_bias_shape", (1, 2, 5), (2, 3, 3), (4,), stride=2),
    case("bad_output_length_1d", (1, 2, 3), (2, 3, 3), padding=3, kind="crash"),
    case("bad_output_length_2d_negative", (1, 2, 3, 3), (2, 3, 3, 3), padding=[1, 4], kind="crash"),
    case("bad_output_length_2d_both_negative", (1, 2, 3, 3), (2, 3, 3, 3), padding=3, kind="crash"),
    case("bad_output_length_3d_negative", (1, 2, 2, 2, 2), (2, 2, 2, 2, 2), padding=[0, 3, 0], kind="crash"),
]


def run(spec: dict):
    """(arrays, recorded options) for one case under Paddle; raises what Paddle raises."""
    import numpy as np
    import paddle

    rng = np.random.default_rng(zlib.crc32(spec["name"].encode()))
    arrays = {"x": rng.standard_normal(spec["x"]).astype(spec["dtype"]),
              "w": rng.standard_normal(spec["w"]).astype(spec["dtype"])}
    if spec["b"] is not None:
        arrays["b"] = rng.standard_normal(spec["b"]).astype(spec["dtype"])
    rank = len(spec["w"]) - 2
    kwargs = dict(spec["options"])
    output_size = kwargs.pop("output_size", None)
    groups = kwargs.get("groups", 1)
    kwargs.setdefault("in_channels", spec["w"][0])
    kwargs.setdefault("out_channels", spec["w"][1] * (groups if isinstance(groups, int) and groups > 0 else 1))
    kwargs.setdefault("kernel_size", tuple(spec["w"][2:]))
    if spec["b"] is None:
        kwargs.setdefault("bias_attr", False)
    paddle.set_default_dtype(spec["dtype"])
    layer = getattr(paddle.nn, f"Conv{rank}DTranspose")(**kwargs)
    layer.weight.set_value(arrays["w"])
    if "b" in arrays:
        layer.bias.set_value(arrays["b"])
    x = paddle.to_tensor(arrays["x"])
    y = layer(x) if output_size is None else layer(x, output_size=output_size)
    arrays["y"] = y.numpy()
    recorded = {k: v for k, v in kwargs.items() if k != "bias_attr" or "bias_attr" in spec["options"]}
    if output_size is not None:
        recorded["output_size"] = output_size
    return arrays, recorded


def run_in_child(spec: dict):
    """Run one case in a fresh process: (None, message) when it failed or died, else ((arrays, options), None)."""
    import numpy as np

    out = HERE / f".{spec['name']}.npz"
    child = subprocess.run([sys.executable, __file__, "--one", spec["name"], str(out)], capture_output=True, text=True)
    if child.returncode < 0:
        return None, f"process killed by signal {-child.returncode} (Paddle crashed)"
    if child.returncode != 0:
        lines = [line for line in child.stderr.splitlines() if line.strip()]
        return None, lines[-1] if lines else f"exit {child.returncode}"
    with np.load(out) as found:
        arrays = dict(found)
    out.unlink()
    return (arrays, json.loads(child.stdout.splitlines()[-1])), None


def one(name: str, out: str) -> None:
    import numpy as np

    spec = next(c for c in CASES if c["name"] == name)
    try:
        arrays, options = run(spec)
    except Exception as err:  # noqa: BLE001 - the parent records the message
        print(" ".join(f"{type(err).__name__}: {err}".split())[:300], file=sys.stderr)
        sys.exit(1)
    np.savez(out, **arrays)
    print(json.dumps(options))


def main() -> None:
    import numpy as np
    import paddle

    entries, arrays, quirk_rejects, refused = [], {}, [], []
    for spec in CASES:
        entry = {"name": spec["name"], "style": "paddle", "dtype": spec["dtype"], "input_shape": spec["x"],
                 "weight_shape": spec["w"], "bias_shape": spec["b"]}
        if spec["kind"] == "crash":
            done, message = run_in_child(spec)
        else:
            try:
                done, message = run(spec), None
            except Exception as err:  # noqa: BLE001 - every Paddle rejection is recorded
                done, message = None, " ".join(re.sub(r"\x1b?\[[0-9;]*m", "", f"{type(err).__name__}: {err}").split())
        if done is None:
            entry.update(options={k: repr(v) for k, v in spec["options"].items()}, expect="reject",
                         framework_error=message[:300])
        else:
            found, options = done
            y = found["y"]
            entry.update(options={k: repr(v) for k, v in options.items()}, expect="ok",
                         output_shape=list(y.shape), quirks=spec["kind"] == "quirk")
            arrays.update({f"{spec['name']}__{k}": v for k, v in found.items()})
            assert y.dtype == found["x"].dtype, (spec["name"], y.dtype)
        want = "reject" if spec["kind"] in ("quirk_reject", "crash") or spec["name"].startswith("bad_") else "ok"
        assert entry["expect"] == want, f"{spec['name']}: expected {want}, got {entry}"
        keep = {k: entry[k] for k in ("name", "style", "options", "dtype", "input_shape", "weight_shape", "bias_shape",
                                      "expect", "output_shape", "quirks", "framework_error") if k in entry}
        if spec["kind"] == "quirk_reject":
            quirk_rejects.append(keep)
        elif spec["kind"] == "refuse":
            refused.append(keep)
        else:
            entries.append(keep)
        print(f"{spec['name']:36s} {entry['expect']:6s} {entry.get('output_shape', entry.get('framework_error'))}")
    doc = {"framework": "PaddlePaddle (CPU)", "version": f"paddlepaddle {paddle.__version__}",
           "script": Path(__file__).name, "cases": entries, "quirk_rejects": quirk_rejects, "refused": refused}
    (HERE / "paddle.json").write_text(json.dumps(doc, indent=1) + "\n")
    np.savez_compressed(HERE / "paddle.npz", **arrays)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        one(sys.argv[2], sys.argv[3])
    else:
        main()
