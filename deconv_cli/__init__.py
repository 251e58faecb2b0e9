"""deconv_cli: transposed convolution on saved tensors, in any framework's own keywords.

Python API (the same library the CLI uses)::

    y = deconv_cli.deconvolve(x, w, b, style="onnx", strides=(2, 2), auto_pad="SAME_UPPER")
    record = deconv_cli.derive((1, 4, 5, 5), (4, 2, 3, 3), style="torch", stride=2)

Nothing heavy is imported here: numpy, h5py, rich and cupy load only when needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .core.errors import ConfigError, DeconvError, TensorFileError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from .core.shapes import Derivation

__version__ = "0.1.0"
__all__ = ["ConfigError", "DeconvError", "TensorFileError", "deconvolve", "derive", "__version__"]


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


def deconvolve(input, weight, bias=None, /, *, style: str = "torch", device: str = "cpu", quirks: bool = False, **options):
    """Transposed convolution with a style's keywords. NumPy in -> NumPy out, CuPy in -> CuPy out,
    dask array in -> a lazy dask array out (one task per tile of the same tile plan, same bits).

    The tensors are positional, so a style's own ``bias=True`` keyword (torch's module check) reaches
    the style; ``bias=<array>`` is taken as the bias tensor.
    """
    from .conventions.plan import plan
    from .engines import get_engine

    if bias is None and hasattr(options.get("bias"), "shape"):
        bias = options.pop("bias")
    on_gpu = type(input).__module__.split(".")[0] == "cupy"
    lazy = type(input).__module__.split(".")[0] == "dask"
    engine = get_engine("gpu" if on_gpu else device)
    dtypes = {"input": str(input.dtype), "weight": str(weight.dtype)}
    if bias is not None:
        dtypes["bias"] = str(bias.dtype)
    record = plan(
        style, options, input.shape, weight.shape, None if bias is None else bias.shape, quirks=quirks, dtypes=dtypes
    )
    from .execution import tiling

    tile_plan = tiling.plan_for(record, dtypes["input"])  # the tiles every run of this problem computes
    if lazy:
        return tiling.to_dask(input, weight, bias, tile_plan, device=engine.DEVICE)
    if on_gpu:
        import cupy

        return tiling.compute_in_memory(engine, input, weight, bias, tile_plan, xp=cupy)
    return tiling.compute_in_memory(engine, input, weight, bias, tile_plan)
