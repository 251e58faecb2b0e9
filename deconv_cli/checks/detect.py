"""The porting detective (``deconv detect``): which options and weight reading reproduce a saved output.

Works in the canonical config space, so every style is covered by one search:

1. Shapes first (integers only). For each reading of the saved weight (as saved; in/out channel axes
   swapped; kernel flipped; both) the channel counts fix the groups; per spatial dimension every
   (stride, dilation, crop lo, crop hi) whose output length equals EXPECTED's is a candidate (bounded:
   stride <= MAX_STRIDE, dilation <= MAX_DILATION, crops within the dilated kernel, extensions below
   max(stride, dilation) as output_padding allows). Per-dimension lists combine into configs, same
   stride and dilation on every dimension first (mixed ones only while none of those matched), at most
   ``limit`` per reading (``tried`` says how many in all, ``limited`` whether a limit cut a search short).
2. Numbers on a few output positions: each candidate is evaluated directly at a handful of sampled
   positions of EXPECTED (a gather over the taps that reach them; nothing else is computed), then at
   more positions; most candidates fail on the first.
3. Survivors are computed in full by the engine and compared with EXPECTED (compare.py, default
   tolerances), streamed.
4. Each matching config is written in every style's keywords (the styles' ``express``) and kept where
   ``job.plan`` parses that spelling with the files' shapes back to the same config, so every printed
   ``deconv run`` line runs as is (after re-saving the weight for a reading other than "as saved", which
   ``--save-weight`` does for the best match).
"""

from __future__ import annotations

import dataclasses
import itertools
import shlex
import time
from dataclasses import dataclass
from typing import NamedTuple

from .. import conventions, tensor_io
from ..conventions import STYLES
from ..core.config import DeconvConfig
from ..core.errors import ConfigError, DeconvError

READINGS = ("as saved", "swap in/out", "flip", "swap in/out + flip")
# where the saved weight keeps its two channel axes: (a, b, *k) as PyTorch, ONNX and most others, (*k, a, b) as
# Keras, TensorFlow, Flax and JAX's HWIO, or (a, *k, b) as Dragon's NHWC; each reading applies to each
LAYOUTS = ("channels first", "kernel first", "kernel inside")
MAX_STRIDE = 16
MAX_DILATION = 4
DEFAULT_LIMIT = 100_000  # candidates per weight reading
_FIRST_POINTS, _MORE_POINTS = 6, 48
_MAX_FULL_CHECKS = 64


@dataclass(frozen=True)
class Match:
    style: str
    set: tuple[str, ...]
    weight: str  # one of READINGS
    max_abs: float
    command: str  # the ready-to-paste line(s)
    layout: str = LAYOUTS[0]  # one of LAYOUTS: where the saved weight's channel axes are

    def as_dict(self) -> dict:
        return {"style": self.style, "set": list(self.set), "weight": self.weight, "layout": self.layout,
                "max_abs": self.max_abs, "command": self.command}


class _Reading(NamedTuple):
    layout: str  # one of LAYOUTS
    reading: str  # one of READINGS

    def __str__(self) -> str:
        return self.reading if self.layout == LAYOUTS[0] else f"{self.layout}, {self.reading}"


_ALL_READINGS = tuple(_Reading(layout, reading) for layout in LAYOUTS for reading in READINGS)


@dataclass(frozen=True)
class Detection:
    matches: tuple[Match, ...]
    tried: int  # candidates checked numerically
    checked_full: int  # candidates computed in full
    seconds: float
    limited: bool = False  # a reading's search stopped at the limit
    saved_weight: str | None = None  # where --save-weight wrote the best match's weight
    channels_last: bool = False  # the input and output were read channels last

    def as_dict(self) -> dict:
        return {"matches": [m.as_dict() for m in self.matches], "tried": self.tried, "checked_full": self.checked_full,
                "limited": self.limited, "seconds": round(self.seconds, 3), "saved_weight": self.saved_weight}


def detect(input: str, weight: str, expected: str, *, bias: str | None = None, styles=None, top: int = 3,
           limit: int = DEFAULT_LIMIT, save_weight: str | None = None, force: bool = False,
           channels_last: bool = False, progress=None) -> Detection:
    """Search option values and weight readings that reproduce EXPECTED; the ``top`` best configs, every
    style spelling of each (``styles``: restrict to these). ``save_weight``: write the weight as the best
    match's ``deconv run`` lines read it to this tensor reference (``force``: replace it). ``channels_last``:
    INPUT and EXPECTED hold channels on their last axis, and only spellings that read them so are kept.
    ``progress(done, total)`` after each weight reading is searched (the search's unit of work: seconds on
    large tensors)."""
    import numpy as np

    t0 = time.perf_counter()
    only = tuple(styles) if styles else None
    styles = only or tuple(STYLES)
    refs = {"input": input, "weight": weight, "expected": expected}
    if bias is not None:
        refs["bias"] = bias
    refs = {role: tensor_io.parse_ref(text) for role, text in refs.items()}
    if any(ref.path == "-" for ref in refs.values()):
        raise ConfigError("detect reads its tensors from files, not stdin", "save the tensor to a file first")
    target = None if save_weight is None else tensor_io.parse_ref(save_weight)
    if target is not None:
        if target.path == "-":
            raise ConfigError("--save-weight needs a file, not stdout", "give it a path such as w.fixed.npy")
        tensor_io.check_writable(target, force=force)
    infos = {role: tensor_io.peek(ref) for role, ref in refs.items()}
    x = np.asarray(tensor_io.load(refs["input"]))
    w = saved = np.asarray(tensor_io.load(refs["weight"]))
    b = None if bias is None else np.asarray(tensor_io.load(refs["bias"])).reshape(-1)
    y = tensor_io.load(refs["expected"])  # .npy: memory-mapped; only sampled positions are read until step 3
    # a grouped weight saved as (groups, C_in/g, C_out/g, *k) (MegEngine; or (groups, C_out/g, C_in/g, *k))
    # is read as (C_in, C_out/g, *k) (or (C_out, C_in/g, *k)); the readings take it from there
    channel = -1 if channels_last else 1  # of a batched tensor
    if w.ndim == x.ndim + 1 and w.ndim >= 4 and w.shape[0] * w.shape[1] in (x.shape[channel], y.shape[channel]):
        w = w.reshape(w.shape[0] * w.shape[1], *w.shape[2:])
    batched = x.ndim == w.ndim
    if x.ndim not in (w.ndim, w.ndim - 1) or w.ndim < 3 or y.ndim != x.ndim:
        layout = "*spatial, C" if channels_last else "C, *spatial"
        raise ConfigError(
            f"input {x.shape}, weight {w.shape} and expected {tuple(y.shape)} are not one transposed convolution",
            f"give INPUT (N, {layout}), WEIGHT (C_in, C_out/groups, *kernel) and EXPECTED (N, {layout.replace('C', 'C_out')})",
        )
    if channels_last:  # the search works channels first, on views
        x, y = np.moveaxis(x, -1, 1 if batched else 0), np.moveaxis(y, -1, 1 if batched else 0)
    xc = x if batched else x[None]
    yshape = tuple(y.shape) if batched else (1, *y.shape)
    if b is not None and b.size != yshape[1]:
        raise ConfigError(f"bias has {b.size} values but EXPECTED has {yshape[1]} channels (axis 1)")
    search = _Search(xc, b, y if batched else y[None], yshape, limit)
    found = []  # (max_abs, reading index, config, canonical weight)
    seen = []  # the canonical weights searched so far: a reading equal to an earlier one adds nothing
    for r, reading in enumerate(_ALL_READINGS):
        grouped = w is not saved  # a (groups, ...) weight: its channel axes are first
        canonical = None if grouped and reading.layout != LAYOUTS[0] else _read_weight(w, reading, xc.shape[1], yshape[1])
        if canonical is not None and not any(g == canonical[1] and np.array_equal(v, canonical[0]) for v, g in seen):
            wc, groups = canonical  # (not a reading equal to an earlier one: a depthwise weight's swap)
            seen.append((wc, groups))
            for config, error in search.search(wc, groups):
                found.append((error, r, config, wc))
        if progress is not None:
            progress(r + 1, len(_ALL_READINGS))
    found.sort(key=lambda f: (f[0], f[1], _plainness(f[2])))
    recipe = _Recipe(refs, infos, only, limit, target, _ALL_READINGS[found[0][1]] if found else None, channels_last)
    matches = []
    configs = 0
    for error, r, config, wc in found:
        config = dataclasses.replace(config, channels_last=channels_last)
        lines = _spellings(config, _ALL_READINGS[r], saved, wc, recipe, xc.shape, styles, error)
        if lines:
            if target is not None and not configs:
                tensor_io.save(target, np.ascontiguousarray(wc), force=force)
            matches.extend(lines)
            configs += 1
        if configs >= top:
            break
    saved = str(target) if target is not None and configs else None
    return Detection(tuple(matches), search.tried, search.full, time.perf_counter() - t0, search.exhausted, saved,
                     channels_last)


def _read_weight(w, reading: _Reading, c_in: int, c_out: int):
    """The canonical weight (C_in, C_out/g, *k) and groups for one reading of the saved weight, or None when
    the shapes rule it out."""
    import numpy as np

    if reading.layout == "kernel first":
        w = np.moveaxis(w, (-2, -1), (0, 1))
    elif reading.layout == "kernel inside":
        w = np.moveaxis(w, -1, 1)
    a, bdim, kernel = w.shape[0], w.shape[1], w.shape[2:]
    if reading.reading.startswith("swap"):  # saved as (C_out, C_in/g, *k)
        if a != c_out or c_in % bdim:
            return None
        groups = c_in // bdim
        if c_out % groups:
            return None
        wc = w.reshape((groups, c_out // groups, bdim, *kernel)).swapaxes(1, 2).reshape((c_in, c_out // groups, *kernel))
    else:
        if a != c_in or c_out % bdim:
            return None
        groups = c_out // bdim
        if c_in % groups:
            return None
        wc = w
    if reading.reading.endswith("flip"):
        wc = np.flip(wc, axis=tuple(range(2, w.ndim)))
    return np.ascontiguousarray(wc), groups


def reading_code(reading: _Reading, shape, groups: int, rank: int) -> str:
    """NumPy code turning the saved weight ``w`` into the reading's canonical weight (for the printed recipe)."""
    code = "w"
    if len(shape) == rank + 3:  # grouped (g, C_in/g, C_out/g, *k): merge the first two axes
        shape = (shape[0] * shape[1], *shape[2:])
        code = f"w.reshape({tuple(shape)})"
    if reading.layout == "kernel first":
        shape = (shape[-2], shape[-1], *shape[:-2])
        code = f"np.moveaxis({code}, (-2, -1), (0, 1))"
    elif reading.layout == "kernel inside":
        shape = (shape[0], shape[-1], *shape[1:-1])
        code = f"np.moveaxis({code}, -1, 1)"
    a, bdim, kernel = shape[0], shape[1], tuple(shape[2:])
    if reading.reading.startswith("swap"):
        if groups == 1:
            code = f"{code}.swapaxes(0, 1)"
        else:
            c_in = groups * bdim
            code = (f"{code}.reshape({(groups, a // groups, bdim, *kernel)}).swapaxes(1, 2)"
                    f".reshape({(c_in, a // groups, *kernel)})")
    if reading.reading.endswith("flip"):
        code = f"np.flip({code}, axis={tuple(range(2, len(shape)))})"
    return code


def _plainness(config: DeconvConfig) -> tuple:
    """Among equally good configs, the plainer first: small dilation, stride, crops."""
    return (sum(config.dilation), sum(config.stride), sum(abs(lo) + abs(hi) for lo, hi in config.crops))


class _Search:
    def __init__(self, x, b, y, yshape, limit: int):
        import numpy as np

        from .compare import default_tolerances

        self.x, self.b, self.y, self.yshape, self.limit = x, b, y, yshape, limit
        self.tried = self.full = 0
        self.exhausted = False  # whether some reading's search stopped at the limit
        self.atol, self.rtol = default_tolerances(str(x.dtype), str(y.dtype))
        rng = np.random.default_rng(0)
        total = int(np.prod(yshape))
        flat = np.concatenate([[0, total - 1], rng.integers(0, total, size=_MORE_POINTS)]) if total else np.zeros(0, int)
        order = np.unique(flat[:_MORE_POINTS])  # sorted reads from a memory map
        self.points = np.array(np.unravel_index(order, yshape)).T if total else np.zeros((0, len(yshape)), int)
        values = np.asarray(y[tuple(self.points.T)], dtype=np.float64) if total else np.zeros(0)
        # the first few points are spread: both corners, then the rest
        pick = np.r_[0, len(order) - 1, np.arange(1, len(order) - 1)] if len(order) > 2 else np.arange(len(order))
        self.points, self.values = self.points[pick], values[pick]

    # ------------------------------------------------ 1. shapes, 2a. a few positions for many candidates at once
    def search(self, wc, groups: int):
        """Configs (with their full max abs error) that reproduce EXPECTED with canonical weight ``wc``.

        Options of all dimensions but the last are enumerated; for each such lead, the input and weight
        are contracted over the lead dimensions at the first sampled positions once, and every option of
        the last dimension is then evaluated in one vectorised gather.
        """
        import numpy as np

        c_in, kernel, rank = self.x.shape[1], tuple(wc.shape[2:]), wc.ndim - 2
        per_dim = [self._dim_options(n, k, out) for n, k, out in zip(self.x.shape[2:], kernel, self.yshape[2:])]
        if not all(per_dim):
            return
        pts = self.points[:_FIRST_POINTS]
        want = self.values[:_FIRST_POINTS]
        count, per_group, cg = len(pts), self.yshape[1] // groups, c_in // groups
        co = pts[:, 1]
        channels = (co // per_group)[:, None] * cg + np.arange(cg)[None, :]  # (P, cg)
        weights = wc[channels, (co % per_group)[:, None]].astype(np.float64)  # (P, cg, *k)
        bias = 0.0 if self.b is None else self.b[co].astype(np.float64)
        last = per_dim[-1]
        k_last, n_last = kernel[-1], self.x.shape[-1]
        idx_last, ok_last = zip(*(_dim_gather(s, d, lo, k_last, pts[:, -1], n_last) for s, d, lo, _ in last))
        idx_last, ok_last = np.stack(idx_last), np.stack(ok_last)  # (O, P, k_last)
        base_index = (pts[:, 0].reshape(-1, *(1,) * rank), channels.reshape(count, cg, *(1,) * (rank - 1)))
        gathers = []  # per lead dimension: (stride, dilation, lo) -> (index, mask) shaped for broadcasting
        for j, options in enumerate(per_dim[:-1]):
            shape = [count, 1] + [1] * (rank - 1)
            shape[2 + j] = kernel[j]
            gathers.append({})
            for s, d, lo, _ in options:
                if (s, d, lo) not in gathers[j]:
                    idx, ok = _dim_gather(s, d, lo, kernel[j], pts[:, 2 + j], self.x.shape[2 + j])
                    gathers[j][(s, d, lo)] = (idx.reshape(shape), ok.reshape(shape))
        p_index = np.arange(count)[None, :, None]
        t_index = np.arange(k_last)[None, None, :]
        # plausible leads first: the same stride and dilation on every dimension, then the rest; within each,
        # by each dimension's plausibility rank (small dilation, small stride, symmetric crops)
        rank_of = [{o: i for i, o in enumerate(options)} for options in per_dim[:-1]]
        leads = sorted(itertools.product(*per_dim[:-1]),
                       key=lambda lead: (len({o[:2] for o in lead}) > 1, sum(r[o] for r, o in zip(rank_of, lead))))
        budget_end, matched = self.tried + self.limit, False
        for lead in leads:
            if matched and len({o[:2] for o in lead}) > 1:
                return  # a match with uniform stride and dilation: mixed ones are not searched
            if self.tried >= budget_end:
                self.exhausted = True
                return
            # x at the lead taps, all of the last axis: (P, cg, k_0..k_{r-2}, n_last), masked
            index = [base_index[0], base_index[1]]
            mask = True
            for j, option in enumerate(lead):
                idx, ok = gathers[j][option[:3]]
                index.append(idx)
                mask = mask & ok
            taps = self.x[(*index, slice(None))].astype(np.float64)  # (P, cg, *k_lead, n_last)
            if mask is not True:
                taps *= mask[..., None]
            lead_axes = "".join(chr(ord("a") + j) for j in range(rank - 1))
            partial = np.einsum(f"pc{lead_axes}n,pc{lead_axes}t->pnt", taps, weights)  # (P, n_last, k_last)
            allowed = budget_end - self.tried
            got = (partial[p_index, idx_last[:allowed], t_index] * ok_last[:allowed]).sum(axis=2) + bias  # (O, P)
            self.tried += len(got)
            good = np.all(np.abs(got - want) <= self.atol + self.rtol * np.abs(want), axis=1)
            for o in np.flatnonzero(good).tolist():
                combo = (*lead, last[o])
                config = DeconvConfig(
                    kernel=kernel, stride=tuple(c[0] for c in combo), dilation=tuple(c[1] for c in combo),
                    crops=tuple((c[2], c[3]) for c in combo), groups=groups, in_channels=c_in,
                    out_channels=self.yshape[1],
                )
                error = self.check(config, wc)
                if error is not None:
                    matched = matched or len({c[:2] for c in combo}) == 1
                    yield config, error

    def _dim_options(self, n: int, k: int, out: int) -> list:
        """(stride, dilation, crop lo, crop hi) giving ``out`` from ``n`` with kernel ``k``: crops within the
        dilated kernel, extensions (negative hi) shorter than max(stride, dilation)."""
        options = []
        for d in range(1, (MAX_DILATION if k > 1 else 1) + 1):
            extent = d * (k - 1) + 1
            for s in range(1, (MAX_STRIDE if n > 1 else 1) + 1):
                total = (n - 1) * s + extent - out
                for lo in range(0, extent):
                    hi = total - lo
                    if -(max(s, d) - 1) <= hi <= extent - 1:
                        options.append((s, d, lo, hi))
        return sorted(options, key=lambda o: (o[1], o[0], abs(o[2] - o[3]), o[2]))

    # ------------------------------------------------ 2. a few positions, then 3. in full
    def check(self, config: DeconvConfig, wc) -> float | None:
        """After the first positions: more positions, then in full. The max abs error on a match, else None."""
        import numpy as np

        got = self._at_points(config, wc, len(self.values))
        if not np.all(np.abs(got - self.values) <= self.atol + self.rtol * np.abs(self.values)):
            return None
        if self.full >= _MAX_FULL_CHECKS:  # sampled positions that cannot tell candidates apart (a flat EXPECTED)
            self.exhausted = True
            return None
        self.full += 1
        from ..engines import get_engine
        from .compare import compare_refs

        engine = get_engine("cpu")
        out = engine.to_host(engine.deconvolve(self.x, wc, self.b, config, tuple(self.yshape[2:])))
        result = compare_refs(out, self.y, top=0)
        return result.max_abs if result.match else None

    def _at_points(self, config: DeconvConfig, wc, count: int):
        """The output at the first ``count`` sampled positions, from the taps that reach each."""
        import numpy as np

        pts = self.points[:count]
        rank = config.rank
        per_group = config.out_channels // config.groups
        cg = config.in_channels // config.groups
        co = pts[:, 1]
        channels = (co // per_group)[:, None] * cg + np.arange(cg)[None, :]  # (P, cg)
        index = [pts[:, 0].reshape(-1, *(1,) * (rank + 1)), channels.reshape(len(pts), cg, *(1,) * rank)]
        mask = np.ones((len(pts), 1, *(1,) * rank), dtype=bool)
        for j in range(rank):
            idx, ok = _dim_gather(config.stride[j], config.dilation[j], config.crops[j][0], config.kernel[j],
                                  pts[:, 2 + j], self.x.shape[2 + j])
            shape = [len(pts), 1] + [1] * rank
            shape[2 + j] = config.kernel[j]
            index.append(idx.reshape(shape))
            mask = mask & ok.reshape(shape)
        taps = self.x[tuple(index)].astype(np.float64)  # (P, cg, *k)
        weights = wc[channels, (co % per_group)[:, None]].astype(np.float64)  # (P, cg, *k)
        got = (taps * weights * mask).reshape(len(pts), -1).sum(axis=1)
        if self.b is not None:
            got = got + self.b[co].astype(np.float64)
        return got



def _dim_gather(s, d, lo, k, o, n):
    """Input index and validity per (position, tap) on one dimension: full index o + lo = i*s + t*d."""
    import numpy as np

    t = np.arange(k)[None, :]
    pos = (o + lo)[:, None] - t * d
    i = pos // s
    ok = (pos % s == 0) & (i >= 0) & (i < n)
    return np.clip(i, 0, n - 1), ok


# ---------------------------------------------------------------- 4. writing the matches in each style


@dataclass(frozen=True)
class _Recipe:
    """What the printed lines need: the files, the search's own arguments (to print a ``--save-weight``
    line that finds the same best match) and the reading of the best match (None: no match)."""

    refs: dict
    infos: dict
    only: tuple | None  # --style, when the search was restricted
    limit: int
    target: object  # the --save-weight reference, or None
    best: _Reading | None
    channels_last: bool  # --channels-last


def _spellings(config, reading: _Reading, saved, wc, recipe: _Recipe, canonical_input, styles, error) -> list[Match]:
    """Each style's keywords for ``config``; ``saved``: the weight as the file holds it, ``wc``: the reading's
    canonical weight; ``canonical_input``: the input's shape (N, C, *spatial)."""
    matches = []
    for style in styles:
        try:
            expression = conventions.get(style).express(config, canonical_input)
            if not expression.expressible:
                continue
            found = _spelled(style, expression, config, saved, wc, recipe.infos)
        except DeconvError:
            continue
        if found is None:
            continue
        items = tuple(f"{key}={_value(value)}" for key, value in expression.options.items())
        command = _command(style, items, reading, config, recipe, found)
        matches.append(Match(style, items, reading.reading, error, command, reading.layout))
    return matches


def _spelled(style, expression, config, saved, wc, infos):
    """How ``expression`` runs on the files: "saved" where the style reads the weight file as it is (its own
    layout of the file gives the reading's canonical weight), () with the canonical weight re-saved, or the
    permutation that re-lays the canonical weight into the style's own layout (Keras's (k..., filters, C_in));
    None: it does not run."""
    import numpy as np

    from ..conventions.plan import plan
    from ..engines._common import to_canonical_weight

    bias_shape = infos["bias"].shape if "bias" in infos else None
    want = (config.kernel, config.stride, config.dilation, config.crops, config.groups, config.channels_last, config.flip)
    expected, input_shape = tuple(infos["expected"].shape), tuple(infos["input"].shape)
    for shape in dict.fromkeys((saved.shape, wc.shape, tuple(expression.weight_shape))):
        try:
            record = plan(style, expression.options, input_shape, shape, bias_shape)
        except DeconvError:
            continue
        got = record.config
        if (got.kernel, got.stride, got.dilation, got.crops, got.groups, got.channels_last, got.flip) != want:
            continue
        if tuple(record.output_shape) != expected:
            continue
        if shape == saved.shape and np.array_equal(to_canonical_weight(saved, got, np), wc):
            return "saved"
        if got.weight_perm is None and shape == wc.shape:
            return ()
        if got.weight_perm is not None and shape == tuple(expression.weight_shape):
            return tuple(sorted(range(len(shape)), key=got.weight_perm.__getitem__))  # canonical -> the style's
    return None


def _value(value) -> str:
    """A --set value as parse_set reads it: bare words unquoted, tuples without spaces."""
    if isinstance(value, str) and value.isidentifier():
        return value
    return repr(value).replace(" ", "")


def _command(style, items, reading: _Reading, config, recipe: _Recipe, found) -> str:
    """The run line of one match (after the line that makes its weight file, where it needs one): ``found`` is
    ``_spelled``'s answer, "saved" for the weight file as it is, else the permutation from the canonical weight
    into the style's own layout, which the weight file it reads must have."""
    refs = recipe.refs
    weight, lines = str(refs["weight"]), []
    if found != "saved":
        if recipe.target is not None and reading == recipe.best and not found:  # --save-weight wrote it
            weight = str(recipe.target)
        else:
            stem = refs["weight"].path.rsplit(".", 1)[0]
            name = str(reading).replace(", ", "-").replace(" + ", "-").replace(" in/out", "").replace(" ", "-")
            if reading == _ALL_READINGS[0]:  # as saved, in the style's own layout or the canonical one
                name = style if found else "canonical"
            elif found:
                name = f"{name}.{style}"
            weight = f"{stem}.{name}.npy"
            lines.append(_resave_line(reading, config, recipe, weight, found))
    parts = ["deconv", "run", str(refs["input"]), weight]
    if "bias" in refs:
        parts += ["--bias", str(refs["bias"])]
    parts += ["--style", style]
    for item in items:
        parts += ["--set", item]
    parts += ["--expect", str(refs["expected"])]
    lines.append(shlex.join(parts))
    return "\n".join(lines)


def _resave_line(reading: _Reading, config, recipe: _Recipe, weight: str, relayout: tuple = ()) -> str:
    """How to get the weight file the run line reads: this search again with --save-weight (it saves the best
    match's reading), or for another reading or a style's own layout the NumPy re-layout of the loaded weight ``w``."""
    refs = recipe.refs
    if reading == recipe.best and not relayout:
        parts = ["deconv", "detect", str(refs["input"]), str(refs["weight"]), str(refs["expected"])]
        if "bias" in refs:
            parts += ["--bias", str(refs["bias"])]
        if recipe.only is not None and len(recipe.only) == 1:
            parts += ["--style", recipe.only[0]]
        if recipe.limit != DEFAULT_LIMIT:
            parts += ["--limit", str(recipe.limit)]
        if recipe.channels_last:
            parts.append("--channels-last")
        return shlex.join([*parts, "--top", "1", "--save-weight", weight])
    code = reading_code(reading, recipe.infos["weight"].shape, config.groups, config.rank)
    if relayout:  # into the style's own weight layout
        code = f"{code}.transpose({relayout})"
    return f"# save the weight w re-laid as {code} to {weight}"
