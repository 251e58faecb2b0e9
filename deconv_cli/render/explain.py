"""Write one style's deconvolution in another style's keywords (``deconv explain``, ``shape --all-styles``).

The source is parsed into its canonical config as usual; the target style's ``express`` writes that
config in its own keywords and verifies the spelling by parsing it back. Layouts travel as recipes:
how to re-lay the input and the weight from the source's files into the target's.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from .. import conventions
from ..conventions import Expression
from ..core.config import Shape
from ..core.errors import DeconvError
from ..core.shapes import Derivation


@dataclass(frozen=True)
class Explanation:
    source: str
    expression: Expression
    input: str | None  # how to re-lay the source input, None when it can be used as is
    weight: str
    output_shape: Shape | None  # the target's output shape for the written options

    @property
    def set(self) -> list[str]:
        return [f"{key}={_literal(value)}" for key, value in self.expression.options.items()]

    def as_dict(self) -> dict:
        e = self.expression
        return {
            "style": e.style,
            "set": self.set,
            "expressible": e.expressible,
            "weight": self.weight,
            "input": self.input,
            "crop": None if e.crop is None else [list(c) for c in e.crop],
            "reason": e.reason,
            "input_shape": list(e.input_shape),
            "weight_shape": list(e.weight_shape),
            "output_shape": None if self.output_shape is None else list(self.output_shape),
        }

    def command_words(self) -> list[str]:
        e = self.expression
        parts = ["deconv", "shape", "--style", e.style, "--input-shape", ",".join(map(str, e.input_shape)),
                 "--weight-shape", ",".join(map(str, e.weight_shape))]
        for key, value in e.options.items():
            parts += ["--set", set_item(key, value)]
        return parts

    def command(self) -> str:
        return shlex.join(self.command_words())


def _literal(value) -> str:
    return repr(value).replace(" ", "")


def set_item(key: str, value: object) -> str:
    """``KEY=VALUE`` as --set parses it back to ``value``: a bare word for a name-like string (no quotes
    for the shell to eat), else the Python literal without spaces."""
    if isinstance(value, str) and value.isidentifier():
        return f"{key}={value}"
    return f"{key}={_literal(value)}"


def canonical_input_shape(record: Derivation) -> Shape:
    """The source input's shape as (N, C, *spatial), N = 1 for an unbatched input."""
    batch_axis, channel_axis, spatial_axes = record.config.input_axes()
    shape = record.input_shape
    batch = shape[batch_axis] if batch_axis is not None else 1
    return (batch, shape[channel_axis], *(shape[a] for a in spatial_axes))


def explain(record: Derivation, style: str) -> Explanation:
    """``record`` (any style) written in ``style``'s keywords."""
    config = record.config
    expression = conventions.get(style).express(config, canonical_input_shape(record))
    steps = []
    if not config.batched:
        steps.append("add a batch axis: x[None]")
    if config.channels_last:
        # after the batch axis is added (unbatched inputs), the channels are last either way
        steps.append(f"move channels to axis 1: np.moveaxis(x, {config.rank + 1}, 1)")
    return Explanation(record.style, expression, "; ".join(steps) or None, _weight_recipe(record, expression),
                       _output_shape(expression))


def _weight_recipe(record: Derivation, expression: Expression) -> str:
    config = record.config
    steps = []
    if config.weight_perm is not None:
        steps.append(f"transpose {tuple(config.weight_perm)}")
    if record.weight_shape and tuple(record.weight_shape) != config.weight_shape:
        steps.append(f"reshape to {config.weight_shape}")
    if config.flip:
        steps.append(f"reverse the kernel axes {tuple(range(2, config.rank + 2))}")
    source = f"from {record.style}'s {tuple(record.weight_shape)}: {', '.join(steps)} -> (C_in, C_out/groups, *k); " if steps else ""
    return f"{source}{expression.style}: {expression.weight}"


def _output_shape(expression: Expression) -> Shape | None:
    from ..conventions.plan import plan

    try:
        return plan(expression.style, expression.options, expression.input_shape, expression.weight_shape).output_shape
    except DeconvError:  # an inexpressible config may have no valid spelling at all
        return None
