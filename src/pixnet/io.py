"""Open what users point pixnet at: a SpatialData zarr store, a Space Ranger folder or a legacy ST section folder."""

from __future__ import annotations

import warnings
from pathlib import Path

from spatialdata import SpatialData

__all__ = ["SECTION_FORMATS", "describe_folder", "read", "section_names"]

#: Legacy ST section folder formats: name -> (file pattern that names a section, reader in pixnet.datasets).
SECTION_FORMATS = {"her2st": "*_selection.tsv", "stutility_mob": "alignment_table_*.tsv"}


def section_names(folder: str | Path, pattern: str) -> list[str]:
    """Names of the sections in ``folder``, found by their spot tables (``"C2"`` from ``C2_selection.tsv``).

    Parameters
    ----------
    folder
        A folder of legacy ST sections.
    pattern
        File pattern with one ``*`` that stands for the section name, e.g. ``SECTION_FORMATS["her2st"]``.

    Returns
    -------
    The section names, sorted.

    Examples
    --------
    >>> import pixnet
    >>> pixnet.io.section_names("shared/data/her2st", pixnet.io.SECTION_FORMATS["her2st"])  # doctest: +SKIP
    ['C2', 'C3']

    """
    prefix, suffix = pattern.split("*")
    return sorted(p.name.removeprefix(prefix).removesuffix(suffix) for p in Path(folder).glob(pattern))


def describe_folder(path: str | Path) -> tuple[str, list[str]]:
    """The format of ``path`` and the sections it holds.

    Returns
    -------
    ``("zarr" | "visium_hd" | "visium" | "hest" | "her2st" | "stutility_mob", section names)``; the section names
    are empty except for HEST-1k folders (sample ids) and legacy ST folders.

    Examples
    --------
    >>> import pixnet
    >>> folder = pixnet.datasets.synthetic_visium_hd("sample_hd", size_um=128, progress=False)
    >>> pixnet.io.describe_folder(folder)
    ('visium_hd', [])
    >>> pixnet.io.describe_folder("shared/data/her2st")  # doctest: +SKIP
    ('her2st', ['C2', 'C3'])

    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    if (path / "zarr.json").is_file() or (path / ".zgroup").is_file():
        return "zarr", []
    if (path / "binned_outputs").is_dir():
        return "visium_hd", []
    if (path / "spatial").is_dir() and any(path.glob("*filtered_feature_bc_matrix.h5")):
        return "visium", []
    if all((path / folder).is_dir() for folder in ("wsis", "st", "metadata")):
        from .datasets import hest_samples

        return "hest", hest_samples(path)
    for name, pattern in SECTION_FORMATS.items():
        names = section_names(path, pattern)
        if names:
            return name, names
    raise ValueError(
        f"{path} is not a SpatialData zarr store, a Space Ranger (Visium / Visium HD) output folder, or a folder "
        "of legacy ST sections (HER2ST: {name}.tsv.gz, {name}_selection.tsv, {name}_HE.jpg; STUtility: "
        "{name}.tsv.gz, alignment_table_{name}.tsv, {name}.jpg). Convert it to SpatialData with spatialdata-io "
        "and write it with sdata.write('sample.zarr')."
    )


def read(path: str | Path, section: str | None = None) -> SpatialData:
    """Open a sample as SpatialData, whatever of the supported layouts it is in.

    Parameters
    ----------
    path
        A SpatialData zarr store (opened lazily with :func:`spatialdata.read_zarr`); a Space Ranger output folder,
        Visium HD (``binned_outputs/``, read with :func:`spatialdata_io.visium_hd`, all bin sizes) or Visium
        (read with :func:`spatialdata_io.visium`); or a folder of legacy ST sections in the HER2ST or STUtility
        layout (read with :func:`pixnet.datasets.her2st` / :func:`pixnet.datasets.stutility_mob`).
    section
        Which section of a legacy ST folder that holds several.

    Returns
    -------
    The SpatialData object. Space Ranger folders get the element prefix (``dataset_id``) from their file names,
    or the folder's name.

    Examples
    --------
    >>> import pixnet
    >>> folder = pixnet.datasets.synthetic_visium_hd("sample_hd", size_um=128, progress=False)
    >>> sdata = pixnet.io.read(folder)
    >>> sorted(sdata.tables)
    ['square_002um', 'square_008um', 'square_016um']

    """
    path = Path(path)
    kind, sections = describe_folder(path)
    if kind == "zarr":
        import spatialdata

        from .dense.store import recover_store

        recover_store(path)  # a pixnet write that was killed mid-swap is completed first
        return spatialdata.read_zarr(path)
    if kind == "hest":
        from .datasets import hest

        return hest(section, path)
    if kind in SECTION_FORMATS:
        from . import datasets

        if section is None and len(sections) > 1:
            raise ValueError(f"{path} holds the sections {sections}; choose one with section=.")
        if section is not None and section not in sections:
            raise ValueError(f"{path} has no section {section!r}; it holds {sections}.")
        return getattr(datasets, kind)(section or sections[0], path)
    import spatialdata_io

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if kind == "visium_hd":
            prefixes = [p.name.removesuffix("_feature_slice.h5") for p in path.glob("*_feature_slice.h5")]
            dataset_id = prefixes[0] if prefixes else path.name
            return spatialdata_io.visium_hd(path, dataset_id=dataset_id, load_segmentations_only=False)
        fullres = next((p for p in path.glob("*tissue_image.tif*")), None)
        return spatialdata_io.visium(path, dataset_id=path.name, fullres_image_file=fullres)
