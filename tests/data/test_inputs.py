import logging

import anndata as ad
import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from spatialdata import SpatialData
from spatialdata.models import Image2DModel, ShapesModel, TableModel
from spatialdata.transformations import Identity, Scale, Sequence, Translation, get_transformation, set_transformation

import pixnet

SAMPLE = "synthetic_visium"


def _table(spots_sdata):
    return spots_sdata[f"{SAMPLE}_table"]


def _replace_table(sdata, name, table):
    del sdata.tables[name]
    sdata.tables[name] = table


def test_spots_resolve_in_pixel_frame(spots_sdata):
    inputs = pixnet.resolve_inputs(spots_sdata)
    assert inputs.image.microns_per_pixel == pytest.approx(0.5)
    spots = inputs.shapes[f"{SAMPLE}_spots"]
    np.testing.assert_allclose(spots.half_size, 27.5 / 0.5)
    assert isinstance(inputs.image.data.data, da.Array)
    assert "circles" in inputs.summary()


def test_transformations_and_levels_are_followed(spots_sdata):
    # image placed at 2 µm-units with an offset; shapes given in µm: both must land on the same pixels
    image = spots_sdata.images[f"{SAMPLE}_image"]
    shapes = spots_sdata.shapes[f"{SAMPLE}_spots"]
    pixel_centres = shapes.geometry.get_coordinates().to_numpy()
    micron_shapes = ShapesModel.parse(
        pixel_centres * 0.5,
        geometry=0,
        radius=shapes["radius"].to_numpy() * 0.5,
        index=shapes.index,
        transformations={"microns": Identity()},
    )
    set_transformation(
        image,
        {"microns": Sequence([Scale([0.5, 0.5], axes=("x", "y")), Translation([0, 0], axes=("x", "y"))])},
        set_all=True,
    )
    sdata = SpatialData(images={"he": image}, shapes={"spots": micron_shapes})
    inputs = pixnet.resolve_inputs(sdata, microns_per_pixel=0.5)
    resolved = inputs.shapes["spots"]
    np.testing.assert_allclose(resolved.centres, pixel_centres)
    np.testing.assert_allclose(resolved.half_size, 55.0)
    assert inputs.image.coordinate_system == "microns" and resolved.table is None


def test_pyramid_level_follows_target_resolution(hd_sdata):
    full = pixnet.resolve_inputs(hd_sdata, shapes="bins_16um")
    coarse = pixnet.resolve_inputs(hd_sdata, shapes="bins_16um", target_microns_per_pixel=1.2)
    assert coarse.image.level == 2
    assert coarse.image.microns_per_pixel == pytest.approx(full.image.microns_per_pixel * 4)
    a, b = full.shapes["synthetic_square_016um"], coarse.shapes["synthetic_square_016um"]
    np.testing.assert_allclose(b.centres, a.centres / 4)
    np.testing.assert_allclose(b.size_um, 16.0)
    with pytest.raises(ValueError, match=r"levels 0..4"):
        pixnet.resolve_inputs(hd_sdata, shapes="bins_16um", level=7)


def test_bin_aliases(hd_sdata):
    for alias in ("bins_2um", "2um", "square_002um", "synthetic_square_002um"):
        assert pixnet.find_shapes(hd_sdata, alias) == "synthetic_square_002um"
    with pytest.raises(KeyError, match="available"):
        pixnet.find_shapes(hd_sdata, "bins_4um")
    with pytest.raises(ValueError, match="Several shapes"):
        pixnet.resolve_inputs(hd_sdata)
    inputs = pixnet.resolve_inputs(hd_sdata, table="square_008um")
    assert list(inputs.shapes) == ["synthetic_square_008um"]


def test_hires_image_is_a_downscaled_copy_and_full_resolution_is_chosen(hd_sdata):
    inputs = pixnet.resolve_inputs(hd_sdata, shapes="bins_8um")
    assert inputs.image.name == "synthetic_full_image"
    hires = pixnet.resolve_inputs(hd_sdata, image="synthetic_hires_image", shapes="bins_8um")
    ratio = inputs.image.shape[0] / hires.image.shape[0]
    np.testing.assert_allclose(
        hires.shapes["synthetic_square_008um"].centres * ratio, inputs.shapes["synthetic_square_008um"].centres
    )


def test_user_polygons(hd_sdata):
    # cell-like polygons a user adds, in the full-res pixel frame of the image
    centres = np.array([[100.0, 120.0], [300.0, 200.0], [250.5, 400.25]])
    polygons = [shapely.Point(x, y).buffer(9.0) for x, y in centres]
    hd_sdata.shapes["cells"] = ShapesModel.parse(
        gpd.GeoDataFrame(geometry=polygons), transformations={"synthetic": Identity()}
    )
    resolved = pixnet.resolve_inputs(hd_sdata, shapes="cells", target_microns_per_pixel=0.6).shapes["cells"]
    assert resolved.kind == "polygon" and resolved.half_size is None
    np.testing.assert_allclose(resolved.centres, centres / 2, atol=1e-6)
    np.testing.assert_allclose(resolved.polygons.area.to_numpy(), shapely.area(np.array(polygons)) / 4, rtol=1e-6)


# ---------------------------------------------------------------------------------------------- refusals
def test_no_shared_coordinate_system(spots_sdata):
    set_transformation(spots_sdata.shapes[f"{SAMPLE}_spots"], {"elsewhere": Identity()}, set_all=True)
    with pytest.raises(ValueError, match=r"share no coordinate system|No image shares a coordinate system"):
        pixnet.resolve_inputs(spots_sdata)
    with pytest.raises(ValueError, match="share no coordinate system"):
        pixnet.resolve_inputs(spots_sdata, image=f"{SAMPLE}_image")
    with pytest.raises(ValueError, match="does not hold"):
        pixnet.resolve_inputs(spots_sdata, image=f"{SAMPLE}_image", coordinate_system="elsewhere")


def test_pixel_size_unknown(spots_sdata):
    del _table(spots_sdata).uns["spatial"]
    with pytest.raises(ValueError, match=r"pixel size of image .* is unknown.*microns_per_pixel="):
        pixnet.resolve_inputs(spots_sdata)
    assert pixnet.resolve_inputs(spots_sdata, microns_per_pixel=0.5).image.microns_per_pixel == 0.5
    with pytest.raises(ValueError, match="positive"):
        pixnet.resolve_inputs(spots_sdata, microns_per_pixel=-1)


def test_pixel_size_sources_disagree(spots_sdata, caplog):
    spots_sdata.images[f"{SAMPLE}_image"].attrs["microns_per_pixel"] = 0.9
    with pytest.raises(ValueError, match="disagree"):
        pixnet.resolve_inputs(spots_sdata)
    with caplog.at_level(logging.WARNING, logger="pixnet"):
        assert pixnet.resolve_inputs(spots_sdata, microns_per_pixel=0.5).image.microns_per_pixel == 0.5
    assert "disagrees" in caplog.text


def test_table_does_not_annotate_shapes(spots_sdata):
    other = ShapesModel.parse(
        np.array([[10.0, 10.0]]), geometry=0, radius=np.array([5.0]), transformations={SAMPLE: Identity()}
    )
    spots_sdata.shapes["other"] = other
    with pytest.raises(ValueError, match="does not annotate shapes 'other'"):
        pixnet.resolve_inputs(spots_sdata, shapes="other", table=f"{SAMPLE}_table")
    with pytest.raises(ValueError, match="No table annotates shapes 'other'"):
        pixnet.resolve_inputs(spots_sdata, shapes="other", require_table=True)
    assert pixnet.resolve_inputs(spots_sdata, shapes="other", microns_per_pixel=0.5).shapes["other"].table is None


def test_duplicate_instance_ids(spots_sdata):
    table = _table(spots_sdata).copy()
    table.obs["spot_id"] = np.zeros(table.n_obs, dtype=int)
    _replace_table(spots_sdata, f"{SAMPLE}_table", table)
    with pytest.raises(ValueError, match="duplicate instance ids"):
        pixnet.resolve_inputs(spots_sdata)


def test_missing_instance_ids(spots_sdata):
    table = _table(spots_sdata).copy()
    table.obs["spot_id"] = table.obs["spot_id"] + 10_000
    _replace_table(spots_sdata, f"{SAMPLE}_table", table)
    with pytest.raises(ValueError, match=r"reference shapes missing from 'synthetic_visium_spots'"):
        pixnet.resolve_inputs(spots_sdata)


def test_empty_table(spots_sdata):
    table = _table(spots_sdata)[:, []].copy()  # spatialdata itself refuses a table without rows
    _replace_table(spots_sdata, f"{SAMPLE}_table", table)
    with pytest.raises(ValueError, match=r"is empty \(\d+ rows x 0 genes\)"):
        pixnet.resolve_inputs(spots_sdata)


def _image_sdata(n_channels):
    data = np.full((n_channels, 64, 64), 200, dtype=np.uint8)
    image = Image2DModel.parse(data, dims=("c", "y", "x"), transformations={"px": Identity()})
    shapes = ShapesModel.parse(
        np.array([[32.0, 32.0]]), geometry=0, radius=np.array([4.0]), transformations={"px": Identity()}
    )
    return SpatialData(images={"img": image}, shapes={"spots": shapes})


def test_grayscale_refused_rgba_handled():
    with pytest.raises(ValueError, match=r"grayscale .*RGB H&E"):
        pixnet.resolve_inputs(_image_sdata(1), microns_per_pixel=0.5)
    rgba = pixnet.resolve_inputs(_image_sdata(4), microns_per_pixel=0.5)
    assert rgba.image.data.sizes["c"] == 3


def test_not_spatialdata():
    with pytest.raises(TypeError, match="SpatialData"):
        pixnet.resolve_inputs(ad.AnnData(np.zeros((2, 2))))


def test_points_without_radius_refused():
    sdata = _image_sdata(3)
    points = gpd.GeoDataFrame(geometry=[shapely.Point(5, 5)])
    sdata.shapes["points"] = ShapesModel.parse(points.assign(radius=1.0), transformations={"px": Identity()})
    del sdata.shapes["points"]["radius"]
    with pytest.raises(ValueError, match="without a 'radius'"):
        pixnet.resolve_inputs(sdata, shapes="points", microns_per_pixel=0.5)


def test_table_aligned_when_rows_are_shuffled(spots_sdata):
    table = _table(spots_sdata)
    order = np.random.default_rng(0).permutation(table.n_obs)
    shuffled = table[order].copy()
    _replace_table(spots_sdata, f"{SAMPLE}_table", TableModel.parse(shuffled))
    spots = pixnet.resolve_inputs(spots_sdata).shapes[f"{SAMPLE}_spots"]
    np.testing.assert_allclose(spots.centres[spots.shape_positions], shuffled.obsm["spatial"])
    assert list(spots.table.obs_names) == list(pd.Index(shuffled.obs_names))


def test_visium_hd_bins_read_as_circles_are_squares(hd_folder, hd_sdata):
    from conftest import read_visium_hd

    light = read_visium_hd(hd_folder, bins_as_squares=False)
    a = pixnet.resolve_inputs(hd_sdata, shapes="bins_8um").shapes["synthetic_square_008um"]
    b = pixnet.resolve_inputs(light, shapes="bins_8um").shapes["synthetic_square_008um"]
    assert a.kind == b.kind == "square"
    np.testing.assert_allclose(b.centres, a.centres)
    np.testing.assert_allclose(b.half_size, a.half_size)


def test_a_dense_map_over_the_image_is_never_taken_for_the_he(spots_sdata):
    he = spots_sdata.images["synthetic_visium_image"]
    level0 = he["scale0"]["image"] if hasattr(he, "children") else he
    transformations = get_transformation(he, get_all=True)
    height, width = level0.sizes["y"], level0.sizes["x"]
    finer = da.zeros((5, 2 * height, 2 * width), chunks=(5, 256, 256))  # more pixels than the H&E
    scaled = {cs: Sequence([Scale([0.5, 0.5], axes=("x", "y")), t]) for cs, t in transformations.items()}
    spots_sdata.images["pixnet_map"] = Image2DModel.parse(finer, dims=("c", "y", "x"), transformations=scaled)
    assert pixnet.resolve_inputs(spots_sdata).image.name == "synthetic_visium_image"
