"""The padding arithmetic of ``jax.lax.conv_transpose``, which the jax and flax styles share.

Verified on jax/jaxlib 0.10.2 CPU (the golden scripts beside tests/golden/). ``conv_transpose`` is
``conv_general_dilated`` over the input dilated by the stride and padded by a pair (p_lo, p_hi) per spatial dim,
with the dilated window kd = d*(k-1) + 1. With the full transposed result F = (L-1)*s + kd, the output o reads
the full o + lo where

    padding                        pair (p_lo, p_hi) of the dilated input       crop (lo, hi)
    'SAME' (exactly)               (kd-1 - lo, ...) so that out = L*s           lo = 0 if s >= kd else (kd-s)//2
    'VALID' (exactly)              (kd-1, kd-1 + max(s-kd, 0))                  (0, min(kd-s, 0)): out = (L-1)*s + max(kd, s)
    pairs                          as given                                     (kd-1 - p_lo, kd-1 - p_hi)
    pairs, use_consistent_padding  PyTorch's padding                            (p_lo, p_hi)
    other strings, every stride 1  the forward convolution's padding of kd:
      'same' (any case)            (floor((kd-1)/2), ceil((kd-1)/2))            (ceil((kd-1)/2), floor((kd-1)/2))
      'same_lower'                 (ceil((kd-1)/2), floor((kd-1)/2))            (floor((kd-1)/2), ceil((kd-1)/2))
      'valid'                      (0, 0)                                       (kd-1, kd-1)

A negative pair shrinks the dilated input; once (L-1)*s + 1 + p_lo + p_hi is negative JAX rejects it, and an
output length below zero is an empty axis (JAX clamps it to 0). Negative crops are positions past the
data, which read zeros (then the bias).
"""

from __future__ import annotations

from ..core.config import Crops, Shape
from ..core.errors import ConfigError
from ..core.shapes import dilated_kernel, full_length

Pairs = tuple[tuple[int, int], ...]
FORWARD = ("same", "same_lower", "valid")  # what conv_general_dilated takes as strings (case-insensitive)


def crops(padding: str | Pairs, spatial: Shape, kernel: Shape, stride: Shape, dilation: Shape, *, consistent: bool,
          framework: str) -> tuple[Crops, tuple[tuple[str, ...], ...]]:
    """The crop pair of each spatial dim and how it was derived, or JAX's rejection as one clear line."""
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            _check_forward_string(padding, stride, framework)
    elif len(padding) != len(kernel):
        raise ConfigError(f"padding={list(padding)} has {len(padding)} pairs for a {len(kernel)}-D convolution "
                          f"({framework}: Wrong number of explicit pads)", f"give {len(kernel)} (low, high) pairs")
    out, notes = [], []
    for i, (n, k, s, d) in enumerate(zip(spatial, kernel, stride, dilation)):
        crop, note = _dim(i, n, k, s, d, padding if isinstance(padding, str) else padding[i], consistent, framework)
        out.append(crop)
        notes.append(note)
    return tuple(out), tuple(notes)


def _check_forward_string(padding: str, stride: Shape, framework: str) -> None:
    if max(stride) > 1:
        raise ConfigError(f"padding={padding!r} with strides {tuple(stride)}: a transposed convolution takes only 'SAME' "
                          f"and 'VALID' (exact case) or (low, high) pairs ({framework}: String padding is not implemented "
                          "for transposed convolution)", "use 'SAME', 'VALID' or pairs")
    if padding.lower() not in FORWARD:
        raise ConfigError(f"padding={padding!r} is not a padding JAX knows ({framework}: Unrecognized padding type)",
                          "use 'SAME', 'VALID' or (low, high) pairs")


def _dim(i: int, n: int, k: int, s: int, d: int, padding, consistent: bool, framework: str):
    kd, full = dilated_kernel(k, d), full_length(n, k, s, d)
    if padding == "SAME":
        lo = 0 if s >= kd else (kd - s) // 2
        crop, rule = (lo, full - lo - n * s), f"'SAME': output L*s = {n * s}, crop start " + (
            f"0 (s {s} >= kd {kd})" if s >= kd else f"(kd {kd} - s {s})//2 = {lo}")
    elif padding == "VALID":
        crop, rule = (0, min(kd - s, 0)), f"'VALID': output (L-1)*s + max(kd {kd}, s {s}) = {(n - 1) * s + max(kd, s)}"
    elif isinstance(padding, str):
        low, high = (kd - 1) // 2, kd // 2  # floor and ceil of (kd-1)/2
        key = padding.lower()
        crop = {"same": (high, low), "same_lower": (low, high), "valid": (kd - 1, kd - 1)}[key]
        rule = f"{padding!r} at stride 1: the forward convolution's padding of kd {kd}, crop {crop}"
    elif consistent:
        crop, rule = padding, f"use_consistent_padding: pair {padding} crops as PyTorch's padding"
    else:
        crop = (kd - 1 - padding[0], kd - 1 - padding[1])
        rule = f"pair {padding} pads the stride-dilated input: crop (kd-1 - {padding[0]}, kd-1 - {padding[1]}) = {crop}"
    dilated, pads = (n - 1) * s + 1, pairs_for(crop, k, d, consistent=False)
    if dilated + sum(pads) < 0:
        raise ConfigError(f"padding {padding} in spatial dimension {i} removes more than the stride-dilated input's "
                          f"{dilated} positions ({framework}: Negative padding is larger than the size of the "
                          "corresponding dimension)", "use a smaller negative padding")
    if full - crop[0] - crop[1] < 0:  # JAX gives an empty axis
        crop = (crop[0], full - crop[0])
        rule += "; the length would be negative: an empty axis"
    return crop, (f"kd = {d}*({k}-1) + 1 = {kd}, full (L-1)*s + kd = {full}", rule)


def pairs_for(crop: tuple[int, int], k: int, d: int, *, consistent: bool) -> tuple[int, int]:
    """The explicit padding pair that gives ``crop`` (the inverse, for ``explain --to``)."""
    if consistent:
        return crop
    kd = dilated_kernel(k, d)
    return kd - 1 - crop[0], kd - 1 - crop[1]
