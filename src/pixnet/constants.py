"""The names pixnet gives to what it adds to SpatialData and AnnData objects, in one place."""

from __future__ import annotations

__all__ = ["Keys"]


class Keys:
    """Keys of the elements, ``uns`` entries, ``obs`` columns and layers that pixnet writes.

    Examples
    --------
    >>> from pixnet.constants import Keys
    >>> Keys.map("pixnet"), Keys.table("pixnet", "bins_2um")
    ('pixnet_map', 'pixnet_bins_2um')

    """

    PREFIX = "pixnet"
    """Default ``key_added`` of :func:`pixnet.tl.predict`."""
    UNS = "pixnet"
    """``uns`` entry of every table pixnet writes (its settings); such a table is never taken for a measurement."""
    EVALUATION = "pixnet_evaluation"
    """``uns`` entry where :func:`pixnet.tl.evaluate` stores its per-gene metrics and summary."""
    AREA = "area_um2"
    """``obs`` column: each shape's area in µm² (what extensive units need)."""
    FRACTION_INSIDE = "fraction_inside"
    """``obs`` column, only where some shapes are cut by the image's edge: the part of each inside the image."""
    STD = "std"
    """Layer (and ``uns`` note) of the ensemble's per-shape standard deviation."""
    MAP_FINGERPRINT = "pixnet_map_fingerprint"
    """``attrs`` entry of a dense map in memory: the digest of its model, image and settings, so that a later
    :func:`pixnet.tl.predict` of the same can read other shapes out of it instead of running the model again."""
    LOWER, UPPER = "lower", "upper"
    """Layers of the conformal interval (``pixnet.tl.predict(interval=...)``)."""
    EXPECTED_PCC, EXPECTED_PARTIAL_PCC, NO_EXPECTED_SKILL = "expected_pcc", "expected_partial_pcc", "no_expected_skill"
    """``var`` columns of a model trained with ``reliability=True``: its held-out per-gene PCC, partial PCC and flag."""
    OTHER_COUNTS = "other_genes"
    """Channel of a counts map (``map_units="counts"``): the expected counts of the genes the model leaves out."""

    @staticmethod
    def map(prefix: str) -> str:
        """The dense map's image element."""
        return f"{prefix}_map"

    @staticmethod
    def std_map(prefix: str) -> str:
        """The image element of the ensemble's per-pixel standard deviation."""
        return f"{prefix}_std"

    @staticmethod
    def table(prefix: str, shapes: str) -> str:
        """The table of predictions (or aggregates) annotating ``shapes``."""
        return f"{prefix}_{shapes}"
