"""The CPU engine: the generic algorithm bound to NumPy."""

from __future__ import annotations

import numpy as np

from ..config import DeconvConfig, Shape
from . import _generic

NAME = "numpy"
DEVICE = "cpu"


def deconvolve(x, w, bias, config: DeconvConfig, out_spatial: Shape):
    return _generic.deconvolve(np.asarray(x), np.asarray(w), None if bias is None else np.asarray(bias), config, out_spatial, xp=np)


def to_host(array):
    return array
