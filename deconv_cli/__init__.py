"""deconv_cli: transposed convolution on saved tensors, in any framework's own keywords.

Python API (the same library the CLI uses)::

    y = deconv_cli.deconvolve(x, w, b, style="onnx", strides=(2, 2), auto_pad="SAME_UPPER")
    record = deconv_cli.derive((1, 4, 5, 5), (4, 2, 3, 3), style="torch", stride=2)

Nothing heavy is imported here: numpy, h5py, rich and cupy load only when needed.
"""

from __future__ import annotations

from .core.errors import ConfigError, DeconvError, TensorFileError

__version__ = "0.1.0"
__all__ = ["ConfigError", "DeconvError", "TensorFileError", "deconvolve", "derive", "__version__"]


def derive(input_shape, weight_shape, *, style: str = "torch", bias_shape=None, quirks: bool = False, **options):
    """The shape derivation record (a ``shapes.Derivation``) for a style's options; reads no data."""
    from .conventions.plan import plan

    return plan(style, options, input_shape, weight_shape, bias_shape, quirks=quirks)


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

    plan = tiling.plan_for(record, dtypes["input"])  # the tiles every run of this problem computes
    if lazy:
        return tiling.to_dask(input, weight, bias, plan, device=engine.DEVICE)
    if on_gpu:
        import cupy

        return tiling.compute_in_memory(engine, input, weight, bias, plan, xp=cupy)
    return tiling.compute_in_memory(engine, input, weight, bias, plan)
