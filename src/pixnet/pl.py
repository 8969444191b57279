"""Plots of predictions, measurements and model training (functional API in the style of ``squidpy.pl``)."""

__all__: list[str] = []
