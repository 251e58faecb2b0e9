"""A deliberately naive transposed convolution: loops over the scatter definition. The test oracle.

    y_full[n, g*Cg + co, i*s + t*d] += x[n, g*Cig + ci, i] * w[g*Cig + ci, co, t]
    y[n, c, o] = y_full[n, c, o + lo] (zero outside [0, full)) + bias[c]

Canonical layouts only: x (N, C_in, *L), w (C_in, C_out/g, *k), crops ((lo, hi), ...).
Accumulates in float64 and returns float64; callers cast.
"""

from __future__ import annotations

import itertools

import numpy as np


def reference_deconv(x, w, bias, *, stride, dilation, crops, groups):
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, cin = x.shape[:2]
    spatial = x.shape[2:]
    kernel = w.shape[2:]
    rank = len(spatial)
    cout_g = w.shape[1]
    cin_g = cin // groups
    full = [(spatial[a] - 1) * stride[a] + dilation[a] * (kernel[a] - 1) + 1 for a in range(rank)]
    out = [full[a] - crops[a][0] - crops[a][1] for a in range(rank)]
    y = np.zeros((n, cout_g * groups, *out))
    for ci in range(cin):
        g = ci // cin_g
        for i in itertools.product(*(range(v) for v in spatial)):
            for t in itertools.product(*(range(v) for v in kernel)):
                o = tuple(i[a] * stride[a] + t[a] * dilation[a] - crops[a][0] for a in range(rank))
                if all(0 <= o[a] < out[a] for a in range(rank)):
                    y[(slice(None), slice(g * cout_g, (g + 1) * cout_g), *o)] += (
                        x[(slice(None), ci, *i)][:, None] * w[(ci, slice(None), *t)][None, :]
                    )
    if bias is not None:
        y += np.asarray(bias, dtype=np.float64).reshape(1, -1, *([1] * rank))
    return y


def reference_conv(y, w, *, stride, dilation, crops, groups, spatial_in):
    """The forward convolution whose adjoint the deconvolution is (for <conv(y), x> == <y, deconv(x)>)."""
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n = y.shape[0]
    cin, cout_g = w.shape[:2]
    kernel = w.shape[2:]
    rank = len(kernel)
    cin_g = cin // groups
    x = np.zeros((n, cin, *spatial_in))
    out = y.shape[2:]
    for ci in range(cin):
        g = ci // cin_g
        for i in itertools.product(*(range(v) for v in spatial_in)):
            for t in itertools.product(*(range(v) for v in kernel)):
                o = tuple(i[a] * stride[a] + t[a] * dilation[a] - crops[a][0] for a in range(rank))
                if all(0 <= o[a] < out[a] for a in range(rank)):
                    x[(slice(None), ci, *i)] += (
                        y[(slice(None), slice(g * cout_g, (g + 1) * cout_g), *o)] * w[(ci, slice(None), *t)][None, :]
                    ).sum(axis=1)
    return x
