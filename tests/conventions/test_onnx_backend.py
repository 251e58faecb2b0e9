"""The ONNX project's own ConvTranspose node tests (shipped in the onnx wheel), run through deconv_cli.

``onnx.backend.test.case.node.convtranspose`` defines ``ConvTranspose.export_*`` functions that each
build a node and hand ``(node, inputs, outputs, name)`` to ``expect``. We call them with ``expect``
swapped for a collector, turn the node's attributes into ``style="onnx"`` options and compare
deconv's result with the expected output. Needs only ``onnx`` (a dev dependency), never onnxruntime.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
convtranspose = pytest.importorskip("onnx.backend.test.case.node.convtranspose")

import deconv_cli  # noqa: E402

# Cases deconv is known not to reproduce, with the reason: name -> reason. Every other case must pass.
KNOWN_DIFFERENCES: dict[str, str] = {}


def _collect() -> list[tuple[str, object, list[np.ndarray], list[np.ndarray]]]:
    cases = []

    def collector(node, inputs, outputs, name, **kwargs):
        cases.append((name, node, list(inputs), list(outputs)))

    saved = convtranspose.expect
    convtranspose.expect = collector
    try:
        owner = convtranspose.ConvTranspose
        for attr in sorted(vars(owner)):
            if attr.startswith("export"):
                getattr(owner, attr)()
    finally:
        convtranspose.expect = saved
    return cases


def _options(node) -> dict:
    options = {}
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list):
            value = tuple(value)
        options[attr.name] = value
    return options


CASES = _collect()


def test_cases_were_collected():
    assert len(CASES) >= 10, [name for name, *_ in CASES]
    assert not set(KNOWN_DIFFERENCES) - {name for name, *_ in CASES}, "stale KNOWN_DIFFERENCES entries"


@pytest.mark.parametrize("name, node, inputs, outputs", CASES, ids=[case[0] for case in CASES])
def test_onnx_node_case(name, node, inputs, outputs):
    if name in KNOWN_DIFFERENCES:
        pytest.xfail(KNOWN_DIFFERENCES[name])
    assert node.op_type == "ConvTranspose"
    present = [n for n in node.input if n]
    assert len(present) == len(inputs) and len(inputs) in (2, 3)
    x, w = inputs[:2]
    b = inputs[2] if len(inputs) == 3 else None
    (expected,) = outputs
    got = deconv_cli.deconvolve(x, w, b, style="onnx", **_options(node))
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype
    scale = max(1.0, float(np.abs(expected.astype(np.float64)).max(initial=0.0)))
    np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64), rtol=1e-5, atol=1e-5 * scale)
