"""From training SpatialData objects to checked, split :class:`~pixnet.data.patches.Section` objects."""

from __future__ import annotations

from collections.abc import Sequence

from spatialdata import SpatialData

from ..pp import Normalization, check_counts
from .inputs import ResolvedInputs, resolve_inputs
from .patches import Section, build_section, split_by_region, split_by_section
from .spans import check_on_image

__all__ = ["check_patch_fits", "name_sections", "resolve_sections", "training_sections"]


def _per_section(value, n: int, what: str) -> list:
    """One value per section.

    For ``shapes`` a flat list of names means "these shape sets in every section"; per-section shapes are a
    list of lists (or names, or None).
    """
    per_section = isinstance(value, list | tuple) and (
        what != "shapes" or any(isinstance(v, list | tuple) or v is None for v in value)
    )
    if not per_section:
        return [value] * n
    if len(value) != n:
        raise ValueError(f"{what}= has {len(value)} entries for {n} sections; give one per section or one for all.")
    return list(value)


def check_patch_fits(resolved: Sequence[ResolvedInputs], patch_size: int, microns_per_pixel: float) -> None:
    """Refuse a training patch larger than every section's image, before a padded image of its size is allocated."""
    sides = [
        max(r.image.data.sizes["y"], r.image.data.sizes["x"]) * r.image.microns_per_pixel / microns_per_pixel
        for r in resolved
    ]
    if patch_size > 2 * max(sides):
        largest = int(max(sides))
        raise ValueError(
            f"patch_size={patch_size} px ({patch_size * microns_per_pixel:g} µm at {microns_per_pixel:g} µm/px) is "
            f"more than twice the side of every training image (the largest is {largest} px a side at that "
            "resolution): each patch would be mostly padding, and memory grows with its area. Choose a patch_size "
            f"of at most {max(32, largest // 32 * 32)}."
        )


def resolve_sections(
    sdata: SpatialData | Sequence[SpatialData],
    image,
    shapes,
    table,
    microns_per_pixel: float,
    resolve_kwargs: dict | None,
) -> tuple[list[SpatialData], list[ResolvedInputs]]:
    """The training objects and their resolved, measured inputs (bad input fails here, before any image is read)."""
    objects = [sdata] if isinstance(sdata, SpatialData) else list(sdata)
    if not objects:
        raise ValueError("Training needs at least one SpatialData object.")
    n = len(objects)
    per_section = zip(
        objects,
        _per_section(image, n, "image"),
        _per_section(shapes, n, "shapes"),
        _per_section(table, n, "table"),
        strict=True,
    )
    resolved = [
        resolve_inputs(
            o, i, s, t, require_table=True, target_microns_per_pixel=microns_per_pixel, **(resolve_kwargs or {})
        )
        for o, i, s, t in per_section
    ]
    for r in resolved:
        check_on_image(r)
        for shape_set in r.shapes.values():
            check_counts(shape_set.table, shape_set.table_name)
    return objects, resolved


def name_sections(resolved: list[ResolvedInputs], names: list[str] | None) -> list[str]:
    """``names``, or the image element names (numbered where two sections share one)."""
    names = names or [r.image.name for r in resolved]
    if len(set(names)) != len(names):
        names = [f"{name}_{i}" for i, name in enumerate(names)]
    return names


def training_sections(
    resolved: list[ResolvedInputs],
    names: list[str],
    genes: list[str],
    normalization: Normalization,
    microns_per_pixel: float,
    patch_size: int,
    validation: str | None = None,
    validation_fraction: float = 0.2,
    validation_sections: Sequence[str] = (),
) -> list[Section]:
    """The sections' image crops and shapes at the working resolution, with each shape's validation flag set.

    ``validation``: ``None`` (every shape trains), ``"region"`` (the right-most ``validation_fraction`` of each
    section) or ``"section"`` (the sections named in ``validation_sections``).
    """
    sections = [
        build_section(
            r,
            name=name,
            genes=genes,
            normalization=normalization,
            microns_per_pixel=microns_per_pixel,
            margin_px=patch_size // 2,
        )
        for r, name in zip(resolved, names, strict=True)
    ]
    for section in sections:
        for s in section.shape_sets:
            extent = int(max((s.bbox[:, 1] - s.bbox[:, 0]).max(), (s.bbox[:, 3] - s.bbox[:, 2]).max()))
            if extent > patch_size:
                raise ValueError(
                    f"Shapes {s.name!r} of section {section.name!r} span up to {extent} px at {microns_per_pixel:g} "
                    f"µm/px, more than patch_size={patch_size}; use a larger patch_size or a coarser "
                    "microns_per_pixel."
                )
    if validation == "region":
        split_by_region(sections, validation_fraction)
    else:
        split_by_section(sections, list(validation_sections) if validation == "section" else [])
    return sections
