"""Every golden case recorded from a real framework (tests/golden/*.json), checked without the framework."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

import deconv_cli
from deconv_cli.core.errors import ConfigError

GOLDEN = Path(__file__).parent / "golden"


def _cases():
    for path in sorted(GOLDEN.glob("*.json")):
        record = json.loads(path.read_text())
        # quirk_rejects: rejected only by the released framework's defect (the documented semantics accept them)
        for case in record["cases"] + [dict(c, quirks=True) for c in record.get("quirk_rejects", [])]:
            yield pytest.param(path.stem, case, id=f"{path.stem}-{case['name']}")


def _options(case) -> dict:
    return {key: ast.literal_eval(text) if _literal(text) else text for key, text in case["options"].items()}


def _literal(text: str) -> bool:
    try:
        ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return False
    return True


def _tolerance(y: np.ndarray) -> float:
    scale = max(1.0, float(np.abs(y.astype(np.float64)).max(initial=0.0)))
    return (2e-2 if y.dtype == np.float16 else 1e-4) * scale


@pytest.mark.parametrize("framework, case", list(_cases()))
def test_golden(framework, case):
    options = _options(case)
    quirks = bool(case.get("quirks", False))
    if case["expect"] == "reject":
        x = np.zeros(case["input_shape"], dtype=case["dtype"])
        w = np.zeros(case["weight_shape"], dtype=case.get("weight_dtype", case["dtype"]))
        b = None if case["bias_shape"] is None else np.zeros(case["bias_shape"], dtype=case["dtype"])
        with pytest.raises(ConfigError) as err:
            deconv_cli.deconvolve(x, w, b, style=case["style"], quirks=quirks, **options)
        assert err.value.exit_code == 2
        if quirks:  # a defect-only rejection: the documented semantics compute it, with a warning
            record = deconv_cli.derive(x.shape, w.shape, style=case["style"], bias_shape=None if b is None else b.shape, **options)
            assert record.warnings
        return
    with np.load(GOLDEN / f"{framework}.npz") as arrays:
        x, w, y = (arrays[f"{case['name']}__{k}"] for k in "xwy")
        b = arrays.get(f"{case['name']}__b")
    got = deconv_cli.deconvolve(x, w, b, style=case["style"], quirks=quirks, **options)
    assert got.shape == y.shape == tuple(case["output_shape"])
    assert got.dtype == y.dtype
    err = float(np.abs(got.astype(np.float64) - y.astype(np.float64)).max(initial=0.0))
    assert err <= _tolerance(y), f"max abs error {err}"
    if quirks:
        record = deconv_cli.derive(x.shape, w.shape, style=case["style"], bias_shape=None if b is None else b.shape, **options)
        assert record.warnings, "the default (documented) semantics must warn where the framework deviates"
