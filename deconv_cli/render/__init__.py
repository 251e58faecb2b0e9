"""What people read: the derivation report, explain (one deconvolution in another style) and code snippets.
May import every layer below it (core up to execution); nothing here computes a deconvolution."""
