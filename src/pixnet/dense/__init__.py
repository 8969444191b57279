"""The dense map: computed lazily tile by tile, aggregated over shapes by streaming, written into a store."""

from .lazy_map import lazy_dense_map
from .map_cache import MapCache

__all__ = ["MapCache", "lazy_dense_map"]
