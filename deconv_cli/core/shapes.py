"""Pure shape math on ints: the per-dimension derivation of a transposed convolution's output.

No numpy, no I/O, no state. ``derive`` takes a canonical config and the input's shape and returns one
``DimDerivation`` per spatial dimension with the formulas written out with their numbers, so a report
can show exactly how every output size came about.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from .config import DeconvConfig, Shape
from .errors import ConfigError


def dilated_kernel(kernel: int, dilation: int) -> int:
    """``d*(k - 1) + 1``: the extent one kernel covers."""
    return dilation * (kernel - 1) + 1


def full_length(size_in: int, kernel: int, stride: int, dilation: int) -> int:
    """``(n - 1)*s + d*(k - 1) + 1``: the length of the un-cropped transposed-conv result."""
    return (size_in - 1) * stride + dilated_kernel(kernel, dilation)


def split_total(total: int, *, larger_at_end: bool) -> tuple[int, int]:
    """Split a total crop into (lo, hi); the odd unit goes to the end or to the beginning.

    Floor/ceil are exact for negative totals too: split_total(-3, larger_at_end=True) == (-2, -1).
    """
    lo = total // 2 if larger_at_end else -(-total // 2)
    return lo, total - lo


# Spatial axes are named the way layouts name them: (N, C, D, H, W), (N, C, H, W), (N, C, L).
AXIS_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def axis_names(rank: int) -> tuple[str, ...]:
    return AXIS_NAMES[rank]


def _signed(v: int) -> str:
    return f"- {v}" if v >= 0 else f"+ {-v}"


@dataclass(frozen=True)
class DimDerivation:
    """How one spatial dimension's output size came about."""

    axis: int
    size_in: int
    kernel: int
    stride: int
    dilation: int
    crop: tuple[int, int]
    notes: tuple[str, ...] = ()
    name: str = ""  # D, H, W (L for 1-D): the layout's name for this spatial axis
    tensor_axis: int | None = None  # the axis of the input tensor it is

    @property
    def full(self) -> int:
        return full_length(self.size_in, self.kernel, self.stride, self.dilation)

    @property
    def size_out(self) -> int:
        return self.full - self.crop[0] - self.crop[1]

    @property
    def full_formula(self) -> str:
        n, k, s, d = self.size_in, self.kernel, self.stride, self.dilation
        return f"full = ({n}-1)*{s} + {d}*({k}-1) + 1 = {self.full}"

    @property
    def out_formula(self) -> str:
        lo, hi = self.crop
        return f"out = {self.full} {_signed(lo)} {_signed(hi)} = {self.size_out}"

    def as_dict(self) -> dict:
        return {
            "axis": self.axis,
            "name": self.name,
            "tensor_axis": self.tensor_axis,
            "in": self.size_in,
            "kernel": self.kernel,
            "stride": self.stride,
            "dilation": self.dilation,
            "full": self.full,
            "crop": list(self.crop),
            "out": self.size_out,
            "formulas": [self.full_formula, self.out_formula],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Derivation:
    """The whole shape story: canonical config, input/output shapes and one record per dimension."""

    config: DeconvConfig
    input_shape: Shape
    output_shape: Shape
    dims: tuple[DimDerivation, ...]
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    style: str = ""
    options: tuple[tuple[str, object], ...] = ()
    weight_shape: Shape = ()
    bias_shape: Shape | None = None
    quirks: bool = False
    # The output sizes the style's size keywords reach, as JSON (conventions.plan sets it: probing a style's
    # parser belongs to the layer above this one); without it as_dict has no "reachable".
    reachable_json: Callable[[Derivation], list] | None = field(default=None, compare=False, repr=False)
    # The dtype the job computes in and each tensor's bytes in it (input, weight, bias, output), in the records
    # `deconv shape` prints and deconv_cli.derive returns (execution.job.shape_record sets them).
    dtype: str | None = None
    nbytes: tuple[tuple[str, int | None], ...] = ()

    @property
    def output_spatial(self) -> Shape:
        return tuple(d.size_out for d in self.dims)

    def as_dict(self, *, with_reachable: bool = True) -> dict:
        """The JSON record: shapes, style and options, canonical config, per-dimension derivation, and
        ``reachable``: per spatial axis, {size keyword: {output size: that keyword's value}} (conventions.plan.reachable;
        a long run of sizes is written {"first..last": "value..value"}). ``run`` records leave it out
        (``with_reachable=False``): it probes the style's parser many times."""
        config = asdict(self.config)
        config["crops"] = [list(c) for c in self.config.crops]
        return {
            "style": self.style,
            "options": {k: _jsonable(v) for k, v in self.options},
            "input_shape": list(self.input_shape),
            "weight_shape": list(self.weight_shape),
            "output_shape": list(self.output_shape),
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
            "dims": [d.as_dict() for d in self.dims],
            "notes": list(self.notes),
            "warnings": list(self.warnings),
        } | ({"reachable": self.reachable_json(self)} if with_reachable and self.reachable_json else {}) | (
            {"dtype": self.dtype, "nbytes": dict(self.nbytes)} if self.dtype is not None else {}
        )


def _jsonable(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, (int, float, str, bool)) or value is None else repr(value)


def derive(
    config: DeconvConfig,
    input_shape: Shape,
    *,
    dim_notes: tuple[tuple[str, ...], ...] = (),
    notes: tuple[str, ...] = (),
    warnings: tuple[str, ...] = (),
    style: str = "",
    options: tuple[tuple[str, object], ...] = (),
    weight_shape: Shape = (),
    bias_shape: Shape | None = None,
    quirks: bool = False,
) -> Derivation:
    """Check the input shape against the config and derive the output shape.

    Raises ConfigError when the input's rank or channel count disagrees with the config, or when an
    output dimension would be negative.
    """
    input_shape = tuple(int(v) for v in input_shape)
    want_rank = config.rank + (2 if config.batched else 1)
    if len(input_shape) != want_rank:
        raise ConfigError(
            f"input has {len(input_shape)} dimensions {input_shape}, a "
            f"{'batched' if config.batched else 'unbatched'} {config.rank}-D deconvolution needs {want_rank}"
        )
    batch_axis, channel_axis, spatial_axes = config.input_axes()
    if input_shape[channel_axis] != config.in_channels:
        raise ConfigError(
            f"input has {input_shape[channel_axis]} channels (axis {channel_axis}) but the weight expects "
            f"{config.in_channels}",
            "check the weight layout and the data format",
        )
    dims = []
    names = axis_names(config.rank)
    for i, axis in enumerate(spatial_axes):
        dim = DimDerivation(
            axis=i,
            size_in=input_shape[axis],
            kernel=config.kernel[i],
            stride=config.stride[i],
            dilation=config.dilation[i],
            crop=config.crops[i],
            notes=dim_notes[i] if i < len(dim_notes) else (),
            name=names[i],
            tensor_axis=axis,
        )
        if dim.size_in < 1:
            raise ConfigError(f"input spatial axis {names[i]} has size {dim.size_in}", "inputs must be non-empty")
        if dim.size_out < 0:
            raise ConfigError(f"output axis {names[i]} would have negative size ({dim.out_formula})")
        dims.append(dim)
    batch = input_shape[batch_axis] if batch_axis is not None else None
    output_shape = config.output_shape(batch, tuple(d.size_out for d in dims))
    return Derivation(
        config, input_shape, output_shape, tuple(dims), tuple(notes), tuple(warnings), style, tuple(options),
        tuple(weight_shape), None if bias_shape is None else tuple(bias_shape), quirks,
    )
