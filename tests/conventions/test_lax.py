"""The lax.conv_transpose padding arithmetic the jax and flax styles share, on cases worked by hand (the styles'
goldens check it against the released JAX)."""

from __future__ import annotations

import pytest

from deconv_cli.conventions import _lax
from deconv_cli.core.errors import ConfigError


def _crop(padding, n, k, s, d=1, consistent=False):
    crops, notes = _lax.crops(padding if isinstance(padding, str) else (padding,), (n,), (k,), (s,), (d,),
                              consistent=consistent, framework="JAX 0.10.2")
    assert len(notes) == 1 and notes[0]
    return crops[0]


@pytest.mark.parametrize("padding, n, k, s, d, crop", [
    ("SAME", 5, 3, 2, 1, (0, 1)),      # F 11, out L*s 10, s 2 < kd 3: start (3-2)//2 = 0
    ("SAME", 5, 4, 2, 1, (1, 1)),      # F 12, out 10, start (4-2)//2 = 1
    ("SAME", 4, 2, 3, 1, (0, -1)),     # F 11, out 12: s 3 >= kd 2, one zero past the data
    ("SAME", 4, 3, 1, 2, (2, 2)),      # kd 5, F 8, out 4, start (5-1)//2 = 2
    ("VALID", 4, 2, 3, 1, (0, -1)),    # out (L-1)*s + max(kd, s) = 12 against F 11
    ("VALID", 4, 3, 2, 1, (0, 0)),
    ((0, 0), 4, 3, 2, 1, (2, 2)),      # lax pairs pad the dilated input: crop kd-1 - p
    ((1, 3), 4, 3, 2, 1, (1, -1)),
    ("same", 6, 4, 1, 1, (2, 1)),      # stride 1: the forward convolution's 'same' of kd 4: (1, 2) -> crop (2, 1)
    ("SAME_LOWER", 6, 4, 1, 1, (1, 2)),
    ("valid", 6, 4, 1, 1, (3, 3)),
    ((-3, 0), 3, 3, 1, 1, (5, 0)),     # F 5: the output would be -2 long: an empty axis
])
def test_lax_padding_to_crops(padding, n, k, s, d, crop):
    assert _crop(padding, n, k, s, d) == crop


def test_consistent_padding_is_pytorchs():
    assert _crop((1, 2), 5, 3, 2, consistent=True) == (1, 2)
    assert _lax.pairs_for((1, 2), 3, 1, consistent=False) == (1, 0)
    assert _lax.pairs_for((1, 2), 3, 1, consistent=True) == (1, 2)


@pytest.mark.parametrize("padding, n, k, s, message", [
    ("same", 4, 3, 2, "String padding is not implemented"),
    ("FOO", 4, 3, 1, "Unrecognized padding type"),
    ((-6, 0), 3, 3, 2, "Negative padding is larger"),  # the dilated input has 5 positions
    ((-3, -3), 3, 3, 2, "Negative padding is larger"),
])
def test_lax_rejections_are_one_line(padding, n, k, s, message):
    with pytest.raises(ConfigError, match=message) as info:
        _crop(padding, n, k, s)
    assert "\n" not in str(info.value)


def test_wrong_number_of_pairs():
    with pytest.raises(ConfigError, match="Wrong number of explicit pads"):
        _lax.crops(((1, 1),), (4, 4), (3, 3), (1, 1), (1, 1), consistent=False, framework="JAX")
