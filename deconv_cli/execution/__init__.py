"""Running jobs: job plans, tile plans, the run loop, executors (threads, processes, Dask), manifests and
batches. May import core, conventions, engines, tensor_io and checks."""
