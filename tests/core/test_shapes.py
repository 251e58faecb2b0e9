"""Pure shape math: formulas with numbers, splits, derive() checks, and a brute-force footprint property."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deconv_cli.core.config import DeconvConfig
from deconv_cli.core.errors import ConfigError
from deconv_cli.core.shapes import derive, full_length, split_total


def config(**overrides) -> DeconvConfig:
    base = dict(kernel=(4,), stride=(2,), dilation=(1,), crops=((0, 0),), groups=1, in_channels=3, out_channels=2)
    base.update(overrides)
    return DeconvConfig(**base)


def test_formula_strings_carry_the_numbers():
    d = derive(config(crops=((1, -1),)), (1, 3, 5)).dims[0]
    assert d.full_formula == "full = (5-1)*2 + 1*(4-1) + 1 = 12"
    assert d.out_formula == "out = 12 - 1 + 1 = 12"
    assert d.size_out == 12


@pytest.mark.parametrize(
    "total, upper, expected",
    [(3, True, (1, 2)), (3, False, (2, 1)), (0, True, (0, 0)), (-3, True, (-2, -1)), (-3, False, (-1, -2)), (4, False, (2, 2))],
)
def test_split_total(total, upper, expected):
    assert split_total(total, larger_at_end=upper) == expected


def test_output_shape_in_layout():
    cfg = config(kernel=(3, 3), stride=(2, 2), dilation=(1, 1), crops=((0, 0), (0, 0)), channels_last=True)
    assert derive(cfg, (2, 5, 6, 3)).output_shape == (2, 11, 13, 2)
    cfg = config(batched=False)
    assert derive(cfg, (3, 5)).output_shape == (2, 12)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 3, 5, 5), "input has 4 dimensions (1, 3, 5, 5), a batched 1-D deconvolution needs 3."),
        ((1, 4, 5), "input has 4 channels (axis 1) but the weight expects 3. Check the weight layout and the data format."),
    ],
)
def test_derive_rejects_mismatches(shape, message):
    with pytest.raises(ConfigError) as err:
        derive(config(), shape)
    assert str(err.value) == message


def test_negative_output_is_rejected():
    with pytest.raises(ConfigError, match="negative size"):
        derive(config(crops=((8, 8),)), (1, 3, 5))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(stride=(0,)), "stride=(0,) must be positive in every dimension."),
        (dict(groups=2), "groups=2 must divide input channels 3 and output channels 2."),
        (dict(kernel=(1, 1, 1, 1), stride=(1,) * 4, dilation=(1,) * 4, crops=((0, 0),) * 4),
         "spatial rank 4 is not supported. Use a 1-D, 2-D or 3-D convolution."),
    ],
)
def test_config_validates_itself(overrides, message):
    with pytest.raises(ConfigError) as err:
        config(**overrides)
    assert str(err.value) == message


@given(
    n=st.integers(1, 7), k=st.integers(1, 5), s=st.integers(1, 4), d=st.integers(1, 3),
    lo=st.integers(-3, 3), hi=st.integers(-3, 3),
)
def test_derive_matches_brute_force_footprint(n, k, s, d, lo, hi):
    """full is one past the largest scattered index; out = full - lo - hi."""
    footprint = {i * s + t * d for i in range(n) for t in range(k)}
    assert full_length(n, k, s, d) == max(footprint) + 1
    if full_length(n, k, s, d) - lo - hi >= 0:
        dim = derive(config(kernel=(k,), stride=(s,), dilation=(d,), crops=((lo, hi),)), (1, 3, n)).dims[0]
        assert dim.size_out == max(footprint) + 1 - lo - hi


@pytest.mark.parametrize(
    "batched, channels_last, axes",
    [(True, False, (0, 1, (2, 3))), (True, True, (0, 3, (1, 2))), (False, False, (None, 0, (1, 2))), (False, True, (None, 2, (0, 1)))],
)
def test_input_axes(batched, channels_last, axes):
    cfg = config(kernel=(3, 3), stride=(1, 1), dilation=(1, 1), crops=((0, 0), (0, 0)), batched=batched, channels_last=channels_last)
    assert cfg.input_axes() == axes


def test_config_hash_is_worked_out_once_and_survives_copies():
    """The engine caches per config; equal configs hash alike, also across pickling and dataclasses.replace."""
    import dataclasses
    import pickle

    kw = dict(kernel=(3, 3), stride=(2, 2), dilation=(1, 1), crops=((1, 0), (1, 0)), groups=1, in_channels=4,
              out_channels=6)
    a, b = DeconvConfig(**kw), DeconvConfig(**{k: (tuple(v) if isinstance(v, tuple) else v) for k, v in kw.items()})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    c = pickle.loads(pickle.dumps(a))
    assert c == a and hash(c) == hash(a)
    d = dataclasses.replace(a, channels_last=True)
    assert d != a and hash(d) == hash(DeconvConfig(**kw, channels_last=True)) and hash(d) != hash(a)
