"""Benchmarks, not tests: the suite against PyTorch and onnxruntime (suite), tiling (tiles) and batch (batch).
May import every layer below the command line."""
