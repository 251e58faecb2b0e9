"""deconv_cli: transposed convolution on saved tensors, in any framework's own keywords.

Python API (the same library the CLI uses)::

    y = deconv_cli.deconvolve(x, w, b, style="onnx", strides=(2, 2), auto_pad="SAME_UPPER")
    op = deconv_cli.Deconvolution(w, b, style="torch", stride=2, padding=1)   # made once ...
    y = op(x)                                                                # ... called many times
    record = deconv_cli.derive((1, 4, 5, 5), (4, 2, 3, 3), style="torch", stride=2)

Nothing heavy is imported here: numpy, h5py, rich and cupy load only when needed.
"""

from __future__ import annotations

import marshal
from collections import OrderedDict
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from .core.errors import ConfigError, DeconvError, TensorFileError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from numpy.typing import ArrayLike

    from .core.shapes import Derivation
    from .execution.tiles import TilePlan

__version__ = "0.1.0"
__all__ = ["ConfigError", "Deconvolution", "DeconvError", "TensorFileError", "deconvolve", "derive", "__version__"]


def derive(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    *,
    style: str = "torch",
    bias_shape: Sequence[int] | None = None,
    quirks: bool = False,
    dtypes: Mapping[str, str] | None = None,
    cast: str | None = None,
    **options: object,
) -> Derivation:
    """The shape derivation record for a style's options; reads no data. ``.as_dict()`` is the object
    ``deconv shape --json`` prints, built by the same code: shapes, config, per-dimension formulas, reachable
    sizes, ``dtype`` and ``nbytes``.

    ``dtypes``: each tensor's dtype by role (``{"input": "float16", "weight": "float16"}``), checked against the
    style as ``shape`` checks the files'; ``cast``: the dtype ``run --cast`` would use. The dtype defaults as
    ``shape``'s does: ``cast``, else the tensors', else float32.
    """
    from .execution.job import shape_record

    return shape_record(
        style, options, tuple(input_shape), tuple(weight_shape), None if bias_shape is None else tuple(bias_shape),
        quirks=quirks, dtypes=dtypes, cast=cast,
    )


def deconvolve(input: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, /, *, style: str = "torch",
               device: str = "cpu", quirks: bool = False, **options: object) -> Any:
    """Transposed convolution with a style's keywords. NumPy in -> NumPy out (anything ``numpy.asarray``
    takes, such as nested lists, is taken as its array), CuPy in -> CuPy out, dask array in -> a lazy dask
    array out (one task per tile of the same tile plan, same bits).

    The tensors are positional, so a style's own ``bias=True`` keyword (torch's module check) reaches
    the style; ``bias=<array>`` is taken as the bias tensor. Repeated calls with the same style, keywords,
    shapes and dtypes reuse the parsed keywords and the tile plan (a bounded cache); ``Deconvolution``
    holds the weight and keywords for calls on many inputs.
    """
    if bias is None and hasattr(options.get("bias"), "shape"):
        bias = options.pop("bias")  # type: ignore[assignment]
    x, w = _tensor(input, "input"), _tensor(weight, "weight")
    b = None if bias is None else _tensor(bias, "bias")
    return _prepare(style, device, quirks, options, x, w, b).run(x, w, b)


class Deconvolution:
    """A transposed convolution made once and called many times, as a ``torch.nn.ConvTranspose2d`` or an
    onnxruntime session is: the weight, bias, style and keywords are fixed here; ``op(x)`` runs it on an
    input, planning once per input shape and dtype. Same results as ``deconvolve`` with the same arguments.

        op = deconv_cli.Deconvolution(w, b, style="torch", stride=2, padding=1)
        y = op(x)

    The weight and bias are kept as given (a NumPy or CuPy array, or converted once with ``numpy.asarray``);
    changing their values in place changes later results, as with a framework's parameters.
    """

    __slots__ = ("weight", "bias", "style", "device", "quirks", "options", "_plans")

    def __init__(self, weight: ArrayLike, bias: ArrayLike | None = None, /, *, style: str = "torch",
                 device: str = "cpu", quirks: bool = False, **options: object) -> None:
        from . import conventions

        conventions.get(style)  # an unknown style is an error here, not at the first call
        self.weight = _tensor(weight, "weight")
        self.bias = None if bias is None else _tensor(bias, "bias")
        self.style, self.device, self.quirks, self.options = style, device, quirks, dict(options)
        self._plans: OrderedDict[tuple[Any, ...], _Prepared] = OrderedDict()

    def __call__(self, input: ArrayLike) -> Any:
        x = _tensor(input, "input")
        key = (type(x), x.shape, x.dtype)
        prepared = self._plans.get(key)
        if prepared is None:
            prepared = _prepare(self.style, self.device, self.quirks, self.options, x, self.weight, self.bias)
            _remember(self._plans, key, prepared, 16)
        return prepared.run(x, self.weight, self.bias)

    def derive(self, input_shape: tuple[int, ...], dtype: str | None = None) -> Derivation:
        """The shape derivation record for an input of this shape and dtype (default: the weight's)."""
        from .conventions.plan import plan

        dtypes = {"input": dtype or str(self.weight.dtype), "weight": str(self.weight.dtype)}
        if self.bias is not None:
            dtypes["bias"] = str(self.bias.dtype)
        return plan(self.style, self.options, tuple(input_shape), tuple(self.weight.shape),
                    None if self.bias is None else tuple(self.bias.shape), quirks=self.quirks, dtypes=dtypes)

    def __repr__(self) -> str:
        keywords = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"Deconvolution(weight {tuple(self.weight.shape)}, style={self.style!r}{keywords})"


class _Prepared(NamedTuple):
    tile_plan: TilePlan
    run: Callable[[Any, Any, Any], Any]  # (x, w, b) -> y, everything that does not depend on the values bound


_PREPARED: OrderedDict[tuple[Any, ...], _Prepared] = OrderedDict()  # by _key(): the last 256 problems
_ARRAY_TYPES: set[type] = set()  # the array types _tensor has taken as they are


def _tensor(value: object, role: str) -> Any:
    """A NumPy, CuPy or dask array as it is; anything else through ``numpy.asarray``, or a ConfigError."""
    if type(value) in _ARRAY_TYPES:
        return value
    if hasattr(value, "shape") and hasattr(value, "dtype") and _kind(value) in ("cupy", "dask", "numpy"):
        _ARRAY_TYPES.add(type(value))  # the check depends on the type alone (its attributes and module)
        return value
    import numpy as np

    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nesting, objects NumPy cannot make an array of
        raise ConfigError(f"{role}: numpy.asarray cannot make an array of this {type(value).__name__} ({exc})",
                          f"pass the {role} as a NumPy array, or nested lists of numbers of one shape") from None
    if array.dtype.kind not in "fiub":
        raise ConfigError(f"{role}: a {type(value).__name__} of {array.dtype} values is not a tensor of numbers",
                          f"pass the {role} as a float32 NumPy array")
    return array


def _kind(array: object) -> str:
    return type(array).__module__.split(".")[0]


def _prepare(style: str, device: str, quirks: bool, options: dict[str, object], x: Any, w: Any, b: Any) -> _Prepared:
    """The parsed keywords, engine and tile plan of a problem, from the cache where the problem was seen."""
    key = _key(style, device, quirks, options, x, w, b)
    prepared = None if key is None else _PREPARED.get(key)
    if prepared is None:
        prepared = _plan(style, device, quirks, options, x, w, b)
        if key is not None:
            _remember(_PREPARED, key, prepared, 256)
    return prepared


def _key(style: str, device: str, quirks: bool, options: dict[str, object], x: Any, w: Any, b: Any) -> tuple[Any, ...] | None:
    """The cache key: the keywords spelled so that types stay apart (``2``, ``2.0`` and ``True`` are equal but
    parse differently) in the order given: ``marshal``'s bytes where it takes them (built-in types only, a
    third of ``repr``'s cost: tiny 0.39 / 1.23 us), else their repr; None where a repr is elided (a large
    array's "...")."""
    try:
        spelled: bytes | str = marshal.dumps(options, 2)  # version 2: no back-references, one value one spelling
    except ValueError:  # a type marshal does not write (a NumPy scalar, a subclass)
        spelled = repr(options)
        if "..." in spelled:
            return None
    tensors = (type(x), x.shape, x.dtype, type(w), w.shape, w.dtype) + (() if b is None else (type(b), b.shape, b.dtype))
    return style, device, quirks, spelled, tensors


def _remember(cache: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any, size: int) -> None:
    cache[key] = value
    if len(cache) > size:
        cache.popitem(last=False)


def _plan(style: str, device: str, quirks: bool, options: dict[str, object], x: Any, w: Any, b: Any) -> _Prepared:
    from .conventions.plan import plan
    from .engines import get_engine
    from .execution import tiling

    kind = _kind(x)
    engine = get_engine("gpu" if kind == "cupy" else device)
    dtypes = {"input": str(x.dtype), "weight": str(w.dtype)}
    if b is not None:
        dtypes["bias"] = str(b.dtype)
    record = plan(style, options, tuple(x.shape), tuple(w.shape), None if b is None else tuple(b.shape),
                  quirks=quirks, dtypes=dtypes)
    tile_plan = tiling.plan_for(record, dtypes["input"])
    if kind == "dask":
        return _Prepared(tile_plan, partial(_lazy, tiling.to_dask, tile_plan, engine.DEVICE))
    if kind == "cupy":
        import cupy

        return _Prepared(tile_plan, partial(_in_memory, tiling.compute_in_memory, engine, tile_plan, cupy))
    tile = next(iter(tile_plan))
    if len(tile_plan) == 1 and tile.input_shape == tuple(x.shape):
        # compute_in_memory's one-tile case (a tile reading the whole input), its tile and path looked up once
        path = tiling.path_for(tile_plan)
        one = partial(_one_tile, tiling.compute_tile, engine, tile, path)
        fast = engine.runner(tile.config, tile.out_spatial, x, w, b, path) if hasattr(engine, "runner") else None
        return _Prepared(tile_plan, one if fast is None else partial(_fast_or, fast, one))
    return _Prepared(tile_plan, partial(_in_memory, tiling.compute_in_memory, engine, tile_plan, None))


def _lazy(to_dask: Callable[..., Any], tile_plan: TilePlan, device: str, x: Any, w: Any, b: Any) -> Any:
    return to_dask(x, w, b, tile_plan, device=device)


def _in_memory(compute: Callable[..., Any], engine: Any, tile_plan: TilePlan, xp: Any, x: Any, w: Any, b: Any) -> Any:
    return compute(engine, x, w, b, tile_plan, xp=xp)


def _fast_or(fast: Callable[..., Any], one: Callable[..., Any], x: Any, w: Any, b: Any) -> Any:
    """The engine's per-problem runner (same bytes as the tile call), or the tile call where it steps aside."""
    y = fast(x, w, b)
    return one(x, w, b) if y is None else y


def _one_tile(compute_tile: Callable[..., Any], engine: Any, tile: Any, path: str, x: Any, w: Any, b: Any) -> Any:
    return compute_tile(engine, x, w, b, tile, path)
