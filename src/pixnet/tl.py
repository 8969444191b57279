"""Tools: training, prediction, aggregation and evaluation (functional API in the style of ``squidpy.tl``)."""

__all__: list[str] = []
