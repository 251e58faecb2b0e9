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

import itertools
import shlex
import time
from dataclasses import dataclass

from .. import conventions, tensor_io
from ..conventions import STYLES
from ..core.config import DeconvConfig
from ..core.errors import ConfigError, DeconvError

READINGS = ("as saved", "swap in/out", "flip", "swap in/out + flip")
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

    def as_dict(self) -> dict:
        return {"style": self.style, "set": list(self.set), "weight": self.weight, "max_abs": self.max_abs,
                "command": self.command}


@dataclass(frozen=True)
class Detection:
    matches: tuple[Match, ...]
    tried: int  # candidates checked numerically
    checked_full: int  # candidates computed in full
    seconds: float
    limited: bool = False  # a reading's search stopped at the limit
    saved_weight: str | None = None  # where --save-weight wrote the best match's weight

    def as_dict(self) -> dict:
        return {"matches": [m.as_dict() for m in self.matches], "tried": self.tried, "checked_full": self.checked_full,
                "limited": self.limited, "seconds": round(self.seconds, 3), "saved_weight": self.saved_weight}


def detect(input: str, weight: str, expected: str, *, bias: str | None = None, styles=None, top: int = 3,
           limit: int = DEFAULT_LIMIT, save_weight: str | None = None, force: bool = False,
           progress=None) -> Detection:
    """Search option values and weight readings that reproduce EXPECTED; the ``top`` best configs, every
    style spelling of each (``styles``: restrict to these). ``save_weight``: write the weight as the best
    match's ``deconv run`` lines read it to this tensor reference (``force``: replace it). ``progress(done,
    total)`` after each weight reading is searched (the search's unit of work: seconds on large tensors)."""
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
    w = np.asarray(tensor_io.load(refs["weight"]))
    b = None if bias is None else np.asarray(tensor_io.load(refs["bias"])).reshape(-1)
    y = tensor_io.load(refs["expected"])  # .npy: memory-mapped; only sampled positions are read until step 3
    # a grouped weight saved as (groups, C_in/g, C_out/g, *k) (MegEngine; or (groups, C_out/g, C_in/g, *k))
    # is read as (C_in, C_out/g, *k) (or (C_out, C_in/g, *k)); the readings take it from there
    if w.ndim == x.ndim + 1 and w.ndim >= 4 and w.shape[0] * w.shape[1] in (x.shape[1], y.shape[1]):
        w = w.reshape(w.shape[0] * w.shape[1], *w.shape[2:])
    batched = x.ndim == w.ndim
    if x.ndim not in (w.ndim, w.ndim - 1) or w.ndim < 3 or y.ndim != x.ndim:
        raise ConfigError(
            f"input {x.shape}, weight {w.shape} and expected {tuple(y.shape)} are not one transposed convolution",
            "give INPUT (N, C, *spatial), WEIGHT (C_in, C_out/groups, *kernel) and EXPECTED (N, C_out, *spatial)",
        )
    xc = x if batched else x[None]
    yshape = tuple(y.shape) if batched else (1, *y.shape)
    if b is not None and b.size != yshape[1]:
        raise ConfigError(f"bias has {b.size} values but EXPECTED has {yshape[1]} channels (axis 1)")
    search = _Search(xc, b, y if batched else y[None], yshape, limit)
    found = []  # (max_abs, reading index, config, canonical weight)
    seen = []  # the canonical weights searched so far: a reading equal to an earlier one adds nothing
    for r, reading in enumerate(READINGS):
        canonical = _read_weight(w, reading, xc.shape[1], yshape[1])
        if canonical is not None and not any(g == canonical[1] and np.array_equal(v, canonical[0]) for v, g in seen):
            wc, groups = canonical  # (not a reading equal to an earlier one: a depthwise weight's swap)
            seen.append((wc, groups))
            for config, error in search.search(wc, groups):
                found.append((error, r, config, wc))
        if progress is not None:
            progress(r + 1, len(READINGS))
    found.sort(key=lambda f: (f[0], f[1], _plainness(f[2])))
    recipe = _Recipe(refs, infos, only, limit, target, READINGS[found[0][1]] if found else None)
    matches = []
    configs = 0
    for error, r, config, wc in found:
        lines = _spellings(config, READINGS[r], wc, recipe, x.shape, styles, error)
        if lines:
            if target is not None and not configs:
                tensor_io.save(target, np.ascontiguousarray(w.reshape(infos["weight"].shape) if r == 0 else wc), force=force)
            matches.extend(lines)
            configs += 1
        if configs >= top:
            break
    saved = str(target) if target is not None and configs else None
    return Detection(tuple(matches), search.tried, search.full, time.perf_counter() - t0, search.exhausted, saved)


def _read_weight(w, reading: str, c_in: int, c_out: int):
    """The canonical weight (C_in, C_out/g, *k) and groups for one reading of the saved weight, or None when
    the shapes rule it out."""
    import numpy as np

    a, bdim, kernel = w.shape[0], w.shape[1], w.shape[2:]
    if reading.startswith("swap"):  # saved as (C_out, C_in/g, *k)
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
    if reading.endswith("flip"):
        wc = np.flip(wc, axis=tuple(range(2, w.ndim)))
    return np.ascontiguousarray(wc), groups


def reading_code(reading: str, shape, groups: int, rank: int) -> str:
    """NumPy code turning the saved weight ``w`` into the reading's canonical weight (for the printed recipe)."""
    code = "w"
    if len(shape) == rank + 3:  # grouped (g, C_in/g, C_out/g, *k): merge the first two axes
        shape = (shape[0] * shape[1], *shape[2:])
        code = f"w.reshape({tuple(shape)})"
    a, bdim, kernel = shape[0], shape[1], tuple(shape[2:])
    if reading.startswith("swap"):
        if groups == 1:
            code = f"{code}.swapaxes(0, 1)"
        else:
            c_in = groups * bdim
            code = (f"{code}.reshape({(groups, a // groups, bdim, *kernel)}).swapaxes(1, 2)"
                    f".reshape({(c_in, a // groups, *kernel)})")
    if reading.endswith("flip"):
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
    best: str | None


def _spellings(config, reading, wc, recipe: _Recipe, input_shape, styles, error) -> list[Match]:
    infos = recipe.infos
    canonical_input = (input_shape[0], *input_shape[1:]) if len(input_shape) == config.rank + 2 else (1, *input_shape)
    weight_shape = infos["weight"].shape if reading == "as saved" else tuple(wc.shape)
    matches = []
    for style in styles:
        try:
            expression = conventions.get(style).express(config, canonical_input)
            if not expression.expressible:
                continue
            found = _spelled(style, expression, config, input_shape, weight_shape, infos)
        except DeconvError:
            continue
        if found is None:
            continue
        items = tuple(f"{key}={_value(value)}" for key, value in expression.options.items())
        matches.append(Match(style, items, reading, error, _command(style, items, reading, config, recipe, found)))
    return matches


def _spelled(style, expression, config, input_shape, weight_shape, infos):
    """How ``expression`` runs on the files: () with the weight as read, or the permutation that re-lays the
    reading's canonical weight into the style's own layout (Keras's (k..., filters, C_in)); None: it does not."""
    from ..conventions.plan import plan

    bias_shape = infos["bias"].shape if "bias" in infos else None
    want = (config.kernel, config.stride, config.dilation, config.crops, config.groups, False)
    expected = tuple(infos["expected"].shape)
    for shape in dict.fromkeys((tuple(weight_shape), tuple(expression.weight_shape))):
        try:
            record = plan(style, expression.options, tuple(input_shape), shape, bias_shape)
        except DeconvError:
            continue
        got = record.config
        if (got.kernel, got.stride, got.dilation, got.crops, got.groups, got.channels_last) != want:
            continue
        if tuple(record.output_shape) != expected:
            continue
        if got.weight_perm is None and shape == tuple(weight_shape):
            return ()
        if got.weight_perm is not None and shape == tuple(expression.weight_shape):
            return tuple(sorted(range(len(shape)), key=got.weight_perm.__getitem__))  # canonical -> the style's
    return None


def _value(value) -> str:
    """A --set value as parse_set reads it: bare words unquoted, tuples without spaces."""
    if isinstance(value, str) and value.isidentifier():
        return value
    return repr(value).replace(" ", "")


def _command(style, items, reading, config, recipe: _Recipe, relayout: tuple = ()) -> str:
    """The run line of one match; ``relayout``: the permutation into the style's own weight layout (Keras's
    (k..., filters, C_in)), which the weight file it reads must have."""
    refs = recipe.refs
    weight, lines = str(refs["weight"]), []
    if recipe.target is not None and reading == recipe.best and not relayout:  # --save-weight wrote it
        weight = str(recipe.target)
    elif reading != "as saved" or relayout:
        stem = refs["weight"].path.rsplit(".", 1)[0]
        name = reading.replace(" + ", "-").replace(" in/out", "").replace(" ", "-")
        if relayout:
            name = style if reading == "as saved" else f"{name}.{style}"
        weight = f"{stem}.{name}.npy"
        lines.append(_resave_line(reading, config, recipe, weight, relayout))
    parts = ["deconv", "run", str(refs["input"]), weight]
    if "bias" in refs:
        parts += ["--bias", str(refs["bias"])]
    parts += ["--style", style]
    for item in items:
        parts += ["--set", item]
    parts += ["--expect", str(refs["expected"])]
    lines.append(shlex.join(parts))
    return "\n".join(lines)


def _resave_line(reading, config, recipe: _Recipe, weight: str, relayout: tuple = ()) -> str:
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
        return shlex.join([*parts, "--top", "1", "--save-weight", weight])
    code = reading_code(reading, recipe.infos["weight"].shape, config.groups, config.rank)
    if relayout:  # into the style's own weight layout
        code = f"{code}.transpose({relayout})"
    return f"# save the weight w re-laid as {code} to {weight}"
