"""``.keras``: the weights of a Keras 3 model file (``model.keras:layers/conv2d_transpose/vars/0``), read only.

A ``.keras`` file is a zip of ``config.json``, ``metadata.json`` and ``model.weights.h5``; the HDF5 file is
opened inside the zip with h5py (no TensorFlow, no Keras), so that shapes come from its headers and a weight
is read only when it is loaded. ``deconv_cli.models.keras`` reads the layers from ``config.json``.
"""

from __future__ import annotations

import contextlib
import json
import zipfile

from ._common import ArrayInfo, Ref, missing
from .onnx import ModelError

STREAMS = False  # read only
CONTAINER = True
WEIGHTS = "model.weights.h5"


def _not_keras(path: str, why: str) -> ModelError:
    return ModelError(f"{path} is not a Keras 3 model ({why})", "give a .keras file saved by Keras 3's model.save")


def read_config(path: str) -> dict:
    """The model's config.json; ModelError when the file is not a Keras 3 model."""
    try:
        with zipfile.ZipFile(path) as archive:
            if WEIGHTS not in archive.namelist():
                raise _not_keras(path, f"no {WEIGHTS} in the zip")
            config = json.loads(archive.read("config.json"))
    except zipfile.BadZipFile:
        raise _not_keras(path, "not a zip file") from None
    except KeyError:
        raise _not_keras(path, "no config.json in the zip") from None
    except (ValueError, UnicodeDecodeError):
        raise _not_keras(path, "config.json is not JSON") from None
    if not isinstance(config, dict) or "config" not in config:
        raise _not_keras(path, "config.json holds no model config")
    return config


@contextlib.contextmanager
def weights(path: str):
    """The open ``model.weights.h5`` inside the zip (h5py reads it in place: the zip stores it uncompressed)."""
    import h5py

    try:
        with zipfile.ZipFile(path) as archive, archive.open(WEIGHTS) as raw, h5py.File(raw, "r") as h5:
            yield h5
    except (zipfile.BadZipFile, KeyError):
        raise _not_keras(path, f"no readable {WEIGHTS}") from None


def _datasets(h5) -> dict:
    import h5py

    found = {}
    h5.visititems(lambda name, item: found.__setitem__(name, item) if isinstance(item, h5py.Dataset) else None)
    return found


def describe(ref: Ref) -> list[ArrayInfo]:
    with weights(ref.path) as h5:
        found = _datasets(h5)
        if ref.key is not None and ref.key.strip("/") not in found:
            raise missing(ref, ref.key, sorted(found))
        names = [ref.key.strip("/")] if ref.key is not None else sorted(found)
        return [ArrayInfo(n, tuple(found[n].shape), found[n].dtype.name) for n in names]


def load(ref: Ref, info: ArrayInfo):
    with weights(ref.path) as h5:
        return h5[info.name][()]
