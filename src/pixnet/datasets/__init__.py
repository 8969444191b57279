"""Samples: synthetic Visium HD and spot-based sections, and readers for public ST sections and HEST-1k."""

from ._hest import hest, hest_samples
from ._sections import her2st, read_st_section, stutility_mob
from ._spots import synthetic_spots
from ._tissue import SyntheticTissue
from ._truth import synthetic_truth
from ._visium import synthetic_visium
from ._visium_hd import synthetic_visium_hd

__all__ = [
    "SyntheticTissue",
    "her2st",
    "hest",
    "hest_samples",
    "read_st_section",
    "stutility_mob",
    "synthetic_spots",
    "synthetic_truth",
    "synthetic_visium",
    "synthetic_visium_hd",
]
