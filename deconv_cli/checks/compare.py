"""Compare two tensors element by element, in chunks, with bounded memory. Pure statistics; no framework names.

An element mismatches when ``|a - e| > atol + rtol * |e|`` (computed in float64); NaN matches NaN at
the same position; NaN or +-Inf on one side only (or Inf of the other sign) is a mismatch.

``Stats.update(actual_chunk, expected_chunk, offset)`` folds one block into running statistics, so a
comparison never holds more than one block of each side: the maximum and mean absolute error, the
maximum and mean relative error (over elements whose expected value is not 0), the mismatch count,
NaN/Inf counts per side, the K worst elements (largest absolute error; one-sided NaN/Inf first) with their N-d indices,
and an approximate median absolute error from a fixed histogram of the float64 exponent and top mantissa
bits (bins at most 3.1% wide, so within about 1.6% of the exact median; an exact median needs every error
in memory, which a streaming comparison does not keep).

``compare_refs`` reads two tensor references (any format tensor_io reads) block by block: batch slices,
then slices along the next axes when one batch row is larger than the block budget.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from ..core.errors import ConfigError, DeconvError

# Default tolerances per dtype, (atol, rtol): the looser of the two sides' dtypes applies.
# Reasoning (README "Checking results against a framework", with the golden measurements): a correct deconvolution differs from a framework's only by
# summation order, i.e. by a few units in the last place of the *output's scale* times sqrt(terms);
# an element near 0 (cancellation) needs atol, a large one rtol. float32: 1e-4 is the correctness target
# of docs/DESIGN.md section 3 (max error <= 1e-4 of the output scale); float16 keeps ~3 decimal digits (eps 9.8e-4), so a
# few ulps at |e| ~ 1-10 is 1e-2; float64 is 1e-9 relative. A one-position shift, a flipped kernel or
# swapped channel axes change values by O(output scale) and fail all of them by orders of magnitude.
DEFAULT_TOLERANCES = {
    "float16": (1e-2, 1e-2),
    "bfloat16": (5e-2, 5e-2),
    "float32": (1e-4, 1e-4),
    "float64": (1e-9, 1e-9),
}
_EXACT = (0.0, 0.0)  # integer and bool tensors compare exactly
# Bytes of block memory per compared element: both sides as float64, the difference, |e|, masks.
_BYTES_PER_ELEMENT = 96
_MAX_BLOCK = 1 << 22  # elements per block: bigger blocks gain nothing but memory
# |a - e| histogram for the median: the float64 bit pattern shifted right keeps the exponent and the top
# 5 mantissa bits, so each bin is at most 1/32 (3.1%) of its values wide.
_HIST_SHIFT = 52 - 5


def default_tolerances(*dtypes: str) -> tuple[float, float]:
    """(atol, rtol) for comparing tensors of these dtypes: the loosest of them."""
    found = [DEFAULT_TOLERANCES.get(str(d), _EXACT if _is_exact(str(d)) else DEFAULT_TOLERANCES["float64"]) for d in dtypes]
    return max(f[0] for f in found), max(f[1] for f in found)


def _is_exact(dtype: str) -> bool:
    return dtype.startswith(("int", "uint", "bool"))


class ShapeMismatch(DeconvError):
    """The two tensors have different shapes (exit 1)."""

    def __init__(self, message: str, hint: str | None = None, actual=None, expected=None):
        super().__init__(message, hint)
        self.actual = None if actual is None else tuple(actual)
        self.expected = None if expected is None else tuple(expected)

    def __reduce__(self):
        return self.__class__, (self.message, self.hint, self.actual, self.expected)

    def as_dict(self) -> dict:
        """The ``compare`` JSON object of tensors that cannot match: no statistics, both shapes, the error."""
        return {"match": False, "shape": list(self.actual), "expected_shape": list(self.expected), "error": str(self)}


@dataclass(frozen=True)
class Element:
    index: tuple[int, ...]
    actual: float
    expected: float
    abs: float | None  # None where one side is NaN or +-Inf

    def as_dict(self) -> dict:
        return {"index": list(self.index), "actual": _json_float(self.actual),
                "expected": _json_float(self.expected), "abs": self.abs}


def _json_float(value: float) -> float | str:
    """Floats for JSON; NaN and +-Inf (not JSON) as the strings 'nan', 'inf', '-inf'."""
    return value if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))


@dataclass
class Stats:
    """Running statistics over blocks of two same-shape tensors."""

    atol: float
    rtol: float
    top: int = 5
    total: int = 0
    mismatches: int = 0
    finite: int = 0  # elements where both sides are finite (the mean's denominator)
    sum_abs: float = 0.0
    max_abs: float = 0.0
    max_rel: float = 0.0
    sum_rel: float = 0.0
    nonzero: int = 0  # elements finite on both sides with expected != 0 (the mean relative error's denominator)
    nan: dict = field(default_factory=lambda: {"actual": 0, "expected": 0})
    inf: dict = field(default_factory=lambda: {"actual": 0, "expected": 0})
    _worst: list = field(default_factory=list)  # min-heap of (badness, tiebreak, Element)
    _hist: object = None

    def update(self, actual, expected, offset: tuple[int, ...] = ()) -> None:
        """Fold in one block; ``offset`` is the block's first index in the whole tensor (per axis)."""
        import numpy as np

        a, e = np.asarray(actual), np.asarray(expected)  # kept in their dtypes; the arithmetic is float64
        if a.dtype == bool:
            a = a.view(np.uint8)
        if e.dtype == bool:
            e = e.view(np.uint8)
        if a.shape != e.shape:
            raise ShapeMismatch(f"blocks differ in shape: {a.shape} vs {e.shape}")
        a, e = a.reshape(-1), e.reshape(-1)
        self.total += a.size
        if a.size == 0:
            return
        finite_a, finite_e = np.isfinite(a), np.isfinite(e)
        with np.errstate(invalid="ignore"):
            diff = np.subtract(a, e, dtype=np.float64)  # NaN/Inf where a side is not finite: zeroed below
        np.abs(diff, out=diff)
        mag = np.abs(e, dtype=np.float64)
        limit = mag * self.rtol
        limit += self.atol
        if finite_a.all() and finite_e.all():  # the common case: no NaN/Inf bookkeeping
            odd, n_both = None, a.size
            bad = diff > limit
        else:
            nan_a, nan_e = np.isnan(a), np.isnan(e)
            inf_a, inf_e = ~finite_a & ~nan_a, ~finite_e & ~nan_e
            for side, nan, inf in (("actual", nan_a, inf_a), ("expected", nan_e, inf_e)):
                self.nan[side] += int(np.count_nonzero(nan))
                self.inf[side] += int(np.count_nonzero(inf))
            both = finite_a & finite_e
            diff[~both] = 0.0
            with np.errstate(invalid="ignore"):
                bad = diff > limit  # NaN limits (expected NaN) compare False
            # one-sided NaN, one-sided Inf, or Inf of different signs: mismatches; NaN==NaN and Inf==Inf match
            odd = ~both & ~((nan_a & nan_e) | (inf_a & inf_e & (a == e)))
            bad |= odd
            n_both = int(np.count_nonzero(both))
            mag[~both] = 0.0
        self.mismatches += int(np.count_nonzero(bad))
        self.finite += n_both
        if n_both:
            self.sum_abs += float(diff.sum())
            self.max_abs = max(self.max_abs, float(diff.max()))
            positive = mag > 0
            rel = np.divide(diff, mag, out=np.zeros_like(diff), where=positive)
            self.max_rel = max(self.max_rel, float(rel.max()))
            self.sum_rel += float(rel.sum())
            self.nonzero += int(np.count_nonzero(positive))
            self._histogram(diff if odd is None else diff[both])
        self._keep_worst(a, e, diff, odd, tuple(actual.shape) if hasattr(actual, "shape") else a.shape, offset)

    def _histogram(self, diff) -> None:
        """Bins from the float64 bits (exponent and 5 mantissa bits): monotonic in |a - e| >= 0, one pass,
        no logarithm. Bin 0 holds the exact zeros."""
        import numpy as np

        if self._hist is None:
            self._hist = np.zeros(1 << (63 - _HIST_SHIFT), dtype=np.int64)
        self._hist += np.bincount(diff.view(np.int64) >> _HIST_SHIFT, minlength=self._hist.size)

    def _keep_worst(self, a, e, diff, odd, shape, offset) -> None:
        import numpy as np

        k = self.top
        if k <= 0:
            return
        badness = diff if odd is None else np.where(odd, np.inf, diff)
        if badness.size > k:  # the k largest; among ties at the k-th value, the earliest indices
            kth = badness[np.argpartition(badness, badness.size - k)[badness.size - k]]
            above = np.flatnonzero(badness > kth)
            candidates = np.concatenate([above, np.flatnonzero(badness == kth)[: k - above.size]])
        else:
            candidates = np.arange(badness.size)
        offset = tuple(offset) + (0,) * (len(shape) - len(offset))
        for flat in candidates.tolist():
            score = float(badness[flat])
            if score <= 0 or (len(self._worst) == k and score <= self._worst[0][0]):
                continue
            local = np.unravel_index(flat, shape) if shape else ()
            index = tuple(int(o) + int(i) for o, i in zip(offset, local))
            one_sided = odd is not None and bool(odd[flat])
            item = Element(index, float(a[flat]), float(e[flat]), None if one_sided else float(diff[flat]))
            entry = (score, tuple(-v for v in index), item)  # ties: the earlier index wins
            if len(self._worst) < k:
                heapq.heappush(self._worst, entry)
            else:
                heapq.heapreplace(self._worst, entry)

    @property
    def median_abs(self) -> float | None:
        """Approximate median of |a - e| over elements finite on both sides (the bin's geometric centre)."""
        if self._hist is None or not self.finite:
            return None
        import numpy as np

        cumulative = np.cumsum(self._hist)
        at = int(np.searchsorted(cumulative, (self.finite + 1) // 2))
        if at == 0:
            return 0.0
        low, high = (np.array([at, at + 1], dtype=np.int64) << _HIST_SHIFT).view(np.float64)
        return float(math.sqrt(low * high))  # the bin's geometric centre

    @property
    def worst(self) -> list[Element]:
        return [entry[2] for entry in sorted(self._worst, key=lambda x: (-x[0], [-v for v in x[1]]))]


@dataclass(frozen=True)
class Comparison:
    """The result of comparing ACTUAL with EXPECTED (docs/DESIGN.md section 5.1)."""

    shape: tuple[int, ...]
    dtypes: tuple[str, str]
    atol: float
    rtol: float
    total: int
    mismatches: int
    max_abs: float
    max_rel: float
    mean_abs: float
    median_abs: float | None
    nan: dict
    inf: dict
    worst: tuple[Element, ...]
    mean_rel: float = 0.0

    @property
    def match(self) -> bool:
        return self.mismatches == 0

    @property
    def fraction(self) -> float:
        return self.mismatches / self.total if self.total else 0.0

    def as_dict(self) -> dict:
        """The JSON fields of docs/DESIGN.md section 5.1, plus ``fraction``, ``median_abs`` (approximate),
        ``mean_rel`` and ``dtype``."""
        return {
            "match": self.match,
            "shape": list(self.shape),
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "mean_rel": self.mean_rel,
            "mean_abs": self.mean_abs,
            "median_abs": self.median_abs,
            "mismatches": self.mismatches,
            "total": self.total,
            "fraction": self.fraction,
            "nan": dict(self.nan),
            "inf": dict(self.inf),
            "atol": self.atol,
            "rtol": self.rtol,
            "dtype": {"actual": self.dtypes[0], "expected": self.dtypes[1]},
            "worst": [w.as_dict() for w in self.worst],
        }


def _finish(stats: Stats, shape, dtypes) -> Comparison:
    return Comparison(
        tuple(shape), tuple(dtypes), stats.atol, stats.rtol, stats.total, stats.mismatches, stats.max_abs,
        stats.max_rel, stats.sum_abs / stats.finite if stats.finite else 0.0, stats.median_abs,
        dict(stats.nan), dict(stats.inf), tuple(stats.worst), stats.sum_rel / stats.nonzero if stats.nonzero else 0.0,
    )


def _tolerances(atol, rtol, dtypes) -> tuple[float, float]:
    for dtype in dtypes:
        if str(dtype).startswith("complex"):
            raise ConfigError(f"cannot compare {dtype} tensors", "compare the real and imaginary parts separately")
    check_tolerances(atol, rtol)
    d_atol, d_rtol = default_tolerances(*dtypes)
    return (d_atol if atol is None else float(atol)), (d_rtol if rtol is None else float(rtol))


def check_tolerances(atol: float | None, rtol: float | None) -> None:
    """A given tolerance must be a finite number >= 0 (ConfigError, exit 2)."""
    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is not None and (not float(value) >= 0 or math.isinf(float(value))):
            raise ConfigError(f"--{name} {value} must be a finite number >= 0", f"write e.g. --{name} 1e-4")


def _check_shapes(actual_shape, expected_shape) -> None:
    if tuple(actual_shape) != tuple(expected_shape):
        raise ShapeMismatch(
            f"shapes differ: actual {tuple(actual_shape)} vs expected {tuple(expected_shape)}",
            actual=actual_shape, expected=expected_shape,
        )


def compare_refs(actual_ref, expected_ref, *, atol: float | None = None, rtol: float | None = None, top: int = 5,
                 budget: int | None = None) -> Comparison:
    """Compare two tensors block by block. Each side is a tensor reference (``str`` or ``tensor_io.Ref``) read
    from disk in blocks, or an in-memory array. ``budget``: bytes of block memory (default: the memory budget)."""
    if top < 0:
        raise ConfigError(f"--top {top} must be >= 0")
    if _is_stdin(actual_ref) and _is_stdin(expected_ref):
        raise ConfigError("only one tensor can come from stdin ('-')", "save the other to a file")
    actual = _source(actual_ref)
    try:
        expected = _source(expected_ref)
    except BaseException:
        actual.close()
        raise
    try:
        _check_shapes(actual.shape, expected.shape)
        atol, rtol = _tolerances(atol, rtol, (actual.dtype, expected.dtype))
        stats = Stats(atol, rtol, top)
        for index in blocks(actual.shape, _block_elements(budget)):
            stats.update(actual.read(index), expected.read(index), tuple(s.start for s in index))
    finally:
        actual.close()
        expected.close()
    return _finish(stats, actual.shape, (actual.dtype, expected.dtype))


class BlockComparison:
    """An actual tensor that arrives block by block (a run's tiles, in any order) compared with a reference read
    a window at a time: ``update(index, block)`` per block, then ``result()``. Each block is compared in pieces
    of the memory budget's size, so a large tile needs no more temporaries than ``compare_refs`` does."""

    def __init__(self, expected_ref, shape, dtype: str, *, atol: float | None = None, rtol: float | None = None,
                 top: int = 5):
        self._expected = _source(expected_ref)
        try:
            _check_shapes(shape, self._expected.shape)
            self.shape, self.dtypes = tuple(shape), (str(dtype), self._expected.dtype)
            self._stats = Stats(*_tolerances(atol, rtol, self.dtypes), top)
        except BaseException:
            self.close()
            raise
        self._elements = _block_elements(None)

    def update(self, index: tuple[slice, ...], block) -> None:
        """Fold in the block at ``index`` (one slice per axis, steps of 1) of the actual tensor."""
        start = tuple(s.start for s in index)
        for part in blocks(tuple(block.shape), self._elements):
            where = tuple(slice(a + p.start, a + p.stop) for a, p in zip(start, part))
            self._stats.update(block[part], self._expected.read(where), tuple(s.start for s in where))

    def result(self) -> Comparison:
        return _finish(self._stats, self.shape, self.dtypes)

    def close(self) -> None:
        self._expected.close()


def _block_elements(budget: int | None) -> int:
    if budget is None:
        from ..core.budget import memory_budget

        budget = memory_budget()
    return max(1, min(_MAX_BLOCK, int(budget) // _BYTES_PER_ELEMENT))


def blocks(shape: tuple[int, ...], elements: int):
    """Index tuples (one slice per axis) covering ``shape`` in C order, each at most ``elements`` big
    (or one row of the last axis). Whole batch slices when a batch row fits, else split the next axes."""
    shape = tuple(shape)
    if not shape:
        yield ()
        return
    if 0 in shape:
        return
    axis = 0  # the axis to step along: the first whose trailing block fits
    while axis < len(shape) - 1 and math.prod(shape[axis + 1 :]) > elements:
        axis += 1
    step = max(1, elements // math.prod(shape[axis + 1 :]))
    for lead in _product(shape[:axis]):
        for start in range(0, shape[axis], step):
            stop = min(start + step, shape[axis])
            yield (*(slice(i, i + 1) for i in lead), slice(start, stop), *(slice(0, n) for n in shape[axis + 1 :]))


def _product(shape):
    if not shape:
        yield ()
        return
    for i in range(shape[0]):
        for rest in _product(shape[1:]):
            yield (i, *rest)


# ---------------------------------------------------------------- reading blocks (the one place that does I/O)


class _Source:
    """One side of a comparison: ``shape``, ``dtype`` (a name) and ``read(index_tuple) -> ndarray``.

    Files that stream (.npy, .h5, ...) are read a window at a time through tensor_io's window reader;
    formats that cannot be read in parts (.npz members, stdin) and 0-d tensors are loaded whole.
    """

    def __init__(self, array=None, ref=None):
        from .. import tensor_io

        self._array, self._slices, self.ref = array, None, ref
        if array is not None:
            self.shape, self.dtype = tuple(array.shape), str(array.dtype)
            return
        if tensor_io.can_stream(ref):
            info = tensor_io.peek(ref)
            self.shape, self.dtype = tuple(info.shape), info.dtype
            if self.shape:  # a 0-d tensor is one number: loaded below
                self._slices = tensor_io.open_slices(ref)
                return
        self._array = tensor_io.load(ref)
        self.shape, self.dtype = tuple(self._array.shape), str(self._array.dtype)

    def read(self, index: tuple):
        if self._array is not None:
            return self._array[index] if index else self._array
        return self._slices[index]

    def close(self) -> None:
        if self._slices is not None:
            self._slices.close()


def _is_stdin(side) -> bool:
    return (isinstance(side, str) and side == "-") or getattr(side, "path", None) == "-"


def _source(side) -> _Source:
    from .. import tensor_io

    if isinstance(side, str):
        return _Source(ref=tensor_io.parse_ref(side))
    if isinstance(side, tensor_io.Ref):
        return _Source(ref=side)
    if not hasattr(side, "shape") or not hasattr(side, "dtype"):
        import numpy as np

        side = np.asarray(side)
    if type(side).__module__.split(".")[0] == "cupy":
        side = side.get()
    return _Source(array=side)
