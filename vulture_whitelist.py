# ruff: noqa: B018  (vulture reads these bare attribute expressions as uses)
"""Names vulture cannot see used (``make lint``): attributes set on other libraries' objects, which those
libraries read."""

from types import SimpleNamespace

_ = SimpleNamespace()
_.ir_version  # onnx.ModelProto: the IR version the model declares
_.intra_op_num_threads  # onnxruntime.SessionOptions
_.inter_op_num_threads
_.execution_mode
_.log_severity_level
_.raw_data  # onnx.TensorProto: the bytes of an initializer read from its external data file
_.forward  # torch.nn.Module.forward in the fixture script, called by the module's __call__
