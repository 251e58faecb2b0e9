"""What a deconvolution is, with no framework, array or file in it: the canonical config, option text, shape
arithmetic, the memory budget and the errors. Imports nothing else of deconv_cli (the bottom layer)."""
