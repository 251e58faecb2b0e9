"""plan()'s cache: keyed by the options' spelling, and never by a spelling that could stand for other values."""

from __future__ import annotations

from deconv_cli.conventions.plan import plan


class _Elided:
    """An integer keyword whose repr hides its value, as NumPy's repr of a large array does ("...")."""

    def __init__(self, value: int):
        self.value = value

    def __index__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return "Elided(...)"


def test_an_elided_spelling_is_never_served_from_the_cache():
    shapes = dict(input_shape=(1, 2, 5, 5), weight_shape=(2, 3, 3, 3))
    assert plan("torch", {"stride": _Elided(2)}, **shapes).output_shape == (1, 3, 11, 11)
    assert plan("torch", {"stride": _Elided(3)}, **shapes).output_shape == (1, 3, 15, 15)


def test_the_same_spelling_is_planned_once():
    shapes = dict(input_shape=(1, 2, 5, 5), weight_shape=(2, 3, 3, 3))
    assert plan("torch", {"stride": 2}, **shapes) is plan("torch", {"stride": 2}, **shapes)
    assert plan("torch", {"stride": (2, 2)}, **shapes) is not plan("torch", {"stride": 2}, **shapes)
