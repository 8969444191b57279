"""Whether a model's dense map can resolve the shapes it is asked to read out."""

from __future__ import annotations

import warnings

from ..data.inputs import ResolvedShapes
from ..data.shape_size import typical_size_um

__all__ = ["check_map_resolves"]


def check_map_resolves(
    shapes: dict[str, ResolvedShapes],
    image_microns_per_pixel: float,
    map_microns_per_pixel: float,
    detail_um: float,
    stacklevel: int = 2,
) -> None:
    """Refuse shapes smaller than a pixel of the map; warn for shapes finer than the map's detail.

    ``detail_um`` is the side of the map's finest independent cell: its pixel times the stride at which the
    network stops (a PixNet decoder stopping at stride 4 upsamples a 4-pixel cell bilinearly; an Image2Gene map
    interpolates a grid of embeddings). A shape smaller than one pixel holds no pixel or one whole pixel: its sum
    says nothing about it. A shape smaller than the detail gets a share of a smoothly interpolated value.
    """
    for name, resolved in shapes.items():
        size = typical_size_um(resolved, image_microns_per_pixel)
        if size < 0.99 * map_microns_per_pixel:  # a 2 µm bin on a 2 µm/px map holds its one pixel
            raise ValueError(
                f"Shapes {name!r} (median {size:.3g} µm) are smaller than one pixel of the model's map "
                f"({map_microns_per_pixel:g} µm/px): most hold no pixel or one whole pixel, so their sums cannot "
                f"resolve them. Use a model trained at {size / 2:.3g} µm/px or finer (preset='auto' chooses 1 µm/px "
                "when trained on Visium HD bins), or read out larger shapes."
            )
        if size < 0.99 * detail_um:
            warnings.warn(
                f"Shapes {name!r} (median {size:.3g} µm) are finer than the detail of the model's map "
                f"({map_microns_per_pixel:g} µm/px, one independent value every {detail_um:g} µm): their values are "
                f"interpolated from cells larger than they are. For {size:.3g} µm shapes train a model whose map "
                "resolves them (e.g. preset='auto' on Visium HD bins, or output_stride=1).",
                UserWarning,
                stacklevel=stacklevel,
            )
