"""Checking tensors against a deconvolution: compare (tolerances, worst elements) and detect (which keywords
give a saved output). May import core, conventions, engines and tensor_io."""
