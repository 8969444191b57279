"""Training internals: data preparation, loss and loop (the public entry point is :func:`pixnet.tl.train`)."""
