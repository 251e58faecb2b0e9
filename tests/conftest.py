import os

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def environment_as_it_was():
    """Each test leaves the environment as it found it: code that owns its process may set variables there
    (deconv bench pins DECONV_THREADS and the BLAS variables), and processes started by later tests (Dask
    workers) would inherit them."""
    before = dict(os.environ)
    yield
    if os.environ != before:
        os.environ.clear()
        os.environ.update(before)


def pytest_collection_modifyitems(config, items):
    """GPU tests run only where CuPy sees a device; elsewhere they are skipped, and say why."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    from deconv_cli.engines import cupy_engine

    problem = cupy_engine.unavailable()
    if problem:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=f"no GPU: {problem}"))
