import pytest
from conftest import shared_data

import pixnet
from pixnet.datasets import synthetic_visium


def test_reads_space_ranger_folders_and_zarr_stores(hd_folder, tmp_path):
    hd = pixnet.io.read(hd_folder)
    assert pixnet.io.describe_folder(hd_folder) == ("visium_hd", [])
    assert {"square_002um", "square_008um", "square_016um"} <= set(hd.tables)
    visium = pixnet.io.read(synthetic_visium(tmp_path / "visium", size_um=400, n_genes=5))
    assert len(visium.shapes) == 1 and "table" in visium.tables
    hd.write(tmp_path / "hd.zarr")
    assert pixnet.io.describe_folder(tmp_path / "hd.zarr")[0] == "zarr"
    assert set(pixnet.io.read(tmp_path / "hd.zarr").tables) == set(hd.tables)


def test_unknown_folders_are_refused_with_what_is_supported(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        pixnet.io.read(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"Space Ranger .* legacy ST sections"):
        pixnet.io.read(tmp_path)


def test_reads_a_section_of_a_legacy_st_folder():
    folder = shared_data("her2st")
    with pytest.raises(ValueError, match="choose one with section="):
        pixnet.io.read(folder)
    sdata = pixnet.io.read(folder, section="C3")
    assert "C3_spots" in sdata.shapes
