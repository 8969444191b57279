import warnings

import pytest
from conftest import tiny_pixnet

import pixnet


def test_shapes_finer_than_the_maps_detail_get_a_warning_naming_its_resolution(hd_sdata):
    model = tiny_pixnet(output_stride=4)  # 1 µm/px, but one independent value every 4 µm
    with pytest.warns(
        UserWarning,
        match=r"finer than the detail of the model's map \(1 µm/px, one independent value "
        r"every 4 µm\)",
    ):
        pixnet.tl.predict(hd_sdata, shapes="bins_2um", model=model, progress=False)
    assert "pixnet_synthetic_square_002um" in hd_sdata.tables  # a warning, not a refusal


def test_shapes_smaller_than_a_map_pixel_are_refused_before_anything_is_added(hd_sdata):
    model = tiny_pixnet(microns_per_pixel=4.0)
    with pytest.raises(
        ValueError,
        match=r"'synthetic_square_002um' \(median 2 µm\) are smaller than one pixel of "
        r"the model's map \(4 µm/px\)",
    ):
        pixnet.tl.predict(hd_sdata, shapes=["bins_16um", "bins_2um"], model=model, progress=False)
    assert "pixnet_map" not in hd_sdata.images
    assert not any(name.startswith("pixnet_") for name in hd_sdata.tables)


def test_a_map_as_fine_as_the_shapes_neither_warns_nor_refuses(hd_sdata):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        pixnet.tl.predict(hd_sdata, shapes="bins_2um", model=tiny_pixnet(microns_per_pixel=2.0), progress=False)
