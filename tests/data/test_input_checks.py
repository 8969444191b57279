"""Inputs that would be read wrong without a word are refused or repaired, and said so."""

import gzip
import logging

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import tiny_pixnet
from PIL import Image
from spatialdata.models import Image2DModel
from spatialdata.transformations import get_transformation

import pixnet
from pixnet.datasets import read_st_section

IMAGE = "synthetic_visium_image"
TABLE = "synthetic_visium_table"


def _write_lattice_section(folder, extra_spots):
    """A 6 x 6 lattice of spots 40 px apart (5 µm/px at 200 µm per array unit), plus ``extra_spots``."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((400, 400, 3), 200, np.uint8)).save(folder / "S_HE.png")
    rows = [{"x": x, "y": y, "pixel_x": 50.0 + 40 * x, "pixel_y": 50.0 + 40 * y} for x in range(6) for y in range(6)]
    spots = pd.DataFrame(rows + extra_spots)
    spots.to_csv(folder / "S_selection.tsv", sep="\t", index=False)
    ids = spots["x"].astype(int).astype(str) + "x" + spots["y"].astype(int).astype(str)
    counts = pd.DataFrame(np.ones((len(spots), 2), int), index=ids, columns=["A", "B"])
    with gzip.open(folder / "S.tsv.gz", "wt") as f:
        counts.to_csv(f, sep="\t")
    return [folder / "S.tsv.gz", folder / "S_selection.tsv", folder / "S_HE.png"]


def test_st_reader_skips_outlier_and_unplaced_spots_and_names_them(tmp_path, caplog):
    extra = [{"x": 7, "y": 7, "pixel_x": 1e7, "pixel_y": 330.0}, {"x": 8, "y": 8, "pixel_x": np.nan, "pixel_y": 1.0}]
    files = _write_lattice_section(tmp_path, extra)
    with caplog.at_level(logging.WARNING):
        sdata = read_st_section(*files, "S", array_unit_um=200.0)
    assert sdata["S_table"].n_obs == 36
    assert pixnet.resolve_inputs(sdata).image.microns_per_pixel == pytest.approx(5.0)
    assert "1 spots without a position (NaN) are skipped: 8x8" in caplog.text
    assert "1 spots whose pixel positions are off the array's lattice" in caplog.text and ": 7x7" in caplog.text


def test_st_reader_refuses_an_image_above_the_pixel_limit_and_keeps_pils_own(tmp_path):
    files = _write_lattice_section(tmp_path, [])
    limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ValueError, match=r"400 x 400 px, above max_image_pixels=1e\+04"):
        read_st_section(*files, "S", array_unit_um=200.0, max_image_pixels=10_000)
    read_st_section(*files, "S", array_unit_um=200.0)
    assert limit == Image.MAX_IMAGE_PIXELS  # never lifted for the whole process


def test_st_reader_reads_a_tiled_tiff_lazily(tmp_path):
    import dask.array as da
    import tifffile

    files = _write_lattice_section(tmp_path, [])
    pixels = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "S_HE.tif", pixels, tile=(128, 128), compression="zlib")
    sdata = read_st_section(*files[:2], tmp_path / "S_HE.tif", "S", array_unit_um=200.0, max_image_pixels=20_000)
    data = sdata.images["S_image"].data  # max_image_pixels bounds a tile (16,384 px), not the image
    assert isinstance(data, da.Array) and "from-zarr" in str(list(data.dask.keys()))  # still on disk
    np.testing.assert_array_equal(data.compute(), np.moveaxis(pixels, -1, 0))
    with pytest.raises(ValueError, match=r"stored in pieces of 1.64e\+04 pixels, above max_image_pixels=1e\+04"):
        read_st_section(*files[:2], tmp_path / "S_HE.tif", "S", array_unit_um=200.0, max_image_pixels=10_000)
    tifffile.imwrite(tmp_path / "grey.tif", pixels[..., 0])
    with pytest.raises(ValueError, match="expected 8-bit RGB"):
        read_st_section(*files[:2], tmp_path / "grey.tif", "S", array_unit_um=200.0)


def _with_image(sdata, values):
    original = sdata.images[IMAGE]
    sdata.images[IMAGE] = Image2DModel.parse(
        values, dims=("c", "y", "x"), transformations=get_transformation(original, get_all=True)
    )
    return sdata


@pytest.mark.parametrize(
    ("dtype", "scale", "message"),
    [(np.float32, 1.0, "pixnet reads float images as 0-1"), (np.uint16, 1, "its values reach only")],
)
def test_images_stored_in_another_range_are_refused_unless_the_range_is_given(dtype, scale, message):
    sdata = pixnet.datasets.synthetic_spots("visium", size_um=300, n_genes=6)
    rgb = np.asarray(sdata.images[IMAGE].data)
    _with_image(sdata, (rgb * scale).astype(dtype))  # 8-bit values in a float / uint16 image
    with pytest.raises(ValueError, match=message):
        pixnet.resolve_inputs(sdata)
    resolved = pixnet.resolve_inputs(sdata, image_range=(0, 255))
    assert resolved.image.data.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(resolved.image.data), rgb)
    _with_image(sdata, rgb.astype(np.float32) / 255)  # the reading pixnet expects: accepted as it is
    np.testing.assert_array_equal(np.asarray(pixnet.resolve_inputs(sdata).image.data), rgb)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (np.log1p, "looks normalised or log-transformed"),
        (lambda x: x - x.max(), "negative values"),
        (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x), "1 NaN or infinite values"),
    ],
)
def test_training_refuses_tables_that_are_not_counts(edit, message):
    sdata = pixnet.datasets.synthetic_spots("visium", size_um=400, n_genes=6)
    table = sdata.tables[TABLE]
    table.X = sp.csr_matrix(edit(np.asarray(table.X.todense() if sp.issparse(table.X) else table.X, float)))
    with pytest.raises(ValueError, match=f"Table '{TABLE}' holds .*{message}"):
        pixnet.tl.train(sdata, preset="paper", encoder_weights="random", epochs=1, progress=False)


def _model(microns_per_pixel):
    return tiny_pixnet(("G0", "G1"), microns_per_pixel)


def test_predict_warns_on_a_coarser_image_and_refuses_integer_maps():
    sdata = pixnet.datasets.synthetic_spots("visium", size_um=300, n_genes=6)  # 0.5 µm/px
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float16'"):
        pixnet.tl.predict(sdata, shapes=[], model=_model(0.5), dtype="int8", copy=True)
    with pytest.warns(UserWarning, match=r"4.0x coarser than the model's 0.125 µm/px"):
        pixnet.tl.predict(sdata, shapes=[], model=_model(0.125), copy=True, progress=False)


def test_shapes_outside_the_image_count_their_inside_area_and_none_inside_is_refused():
    from spatialdata.models import ShapesModel

    sdata = pixnet.datasets.synthetic_spots("visium", size_um=300, n_genes=6)
    shapes = sdata.shapes["synthetic_visium_spots"]
    model = _model(0.5)
    tables = pixnet.tl.predict(sdata, shapes="synthetic_visium_spots", model=model, copy=True, progress=False).tables
    full = tables["pixnet_synthetic_visium_spots"].obs["area_um2"].to_numpy()
    assert "fraction_inside" not in tables["pixnet_synthetic_visium_spots"].obs
    moved = shapes.copy()
    moved.geometry = moved.geometry.translate(xoff=-moved.geometry.x.iloc[0])  # the first spot's centre on x = 0
    sdata.shapes["synthetic_visium_spots"] = ShapesModel.parse(moved)
    tables = pixnet.tl.predict(sdata, shapes="synthetic_visium_spots", model=model, copy=True, progress=False).tables
    obs = tables["pixnet_synthetic_visium_spots"].obs
    assert obs["fraction_inside"].iloc[0] == pytest.approx(0.5, abs=0.05)
    assert obs["area_um2"].iloc[0] == pytest.approx(full[0] * obs["fraction_inside"].iloc[0])
    far = shapes.copy()
    far.geometry = far.geometry.translate(xoff=1e6)
    sdata.shapes["synthetic_visium_spots"] = ShapesModel.parse(far)
    with pytest.raises(ValueError, match="None of the 2 shapes of 'synthetic_visium_spots' lies on image"):
        pixnet.tl.predict(sdata, shapes="synthetic_visium_spots", model=model, copy=True, progress=False)


def test_invalid_polygons_are_repaired_so_that_areas_and_pixels_agree():
    import geopandas as gpd
    from shapely.geometry import Polygon
    from spatialdata.models import ShapesModel

    sdata = pixnet.datasets.synthetic_spots("visium", size_um=300, n_genes=6)
    square = Polygon([(20, 20), (60, 20), (60, 60), (20, 60)])
    bow_tie = Polygon([(80, 80), (120, 120), (120, 80), (80, 120)])  # self-intersecting: shapely's area is 0
    cells = gpd.GeoDataFrame(geometry=[square, bow_tie], index=["ok", "bow_tie"])
    sdata.shapes["cells"] = ShapesModel.parse(cells, transformations=get_transformation(sdata[IMAGE], get_all=True))
    with pytest.warns(UserWarning, match=r"1 invalid polygons \(e.g. index 'bow_tie': Self-intersection.*make_valid"):
        tables = pixnet.tl.predict(sdata, shapes="cells", model=_model(0.5), copy=True, progress=False).tables
    area = tables["pixnet_cells"].obs["area_um2"].to_numpy()
    assert area[1] == pytest.approx(area[0] / 2, rel=0.05)  # the bow-tie's two triangles: half the square


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tile_size": 0}, r"tile_size must be a multiple of 32 map pixels \(at least 32\), got 0"),
        ({"tile_size": -32}, "tile_size must be a multiple of 32"),
        ({"tile_size": 100}, "tile_size must be a multiple of 32"),
        ({"halo": -32}, "halo must be a multiple of 32 map pixels, got -32"),
    ],
)
def test_predict_refuses_tiles_that_cannot_be_computed(options, message):
    sdata = pixnet.datasets.synthetic_spots("visium", size_um=300, n_genes=6)
    with pytest.raises(ValueError, match=message):
        pixnet.tl.predict(sdata, shapes="synthetic_visium_spots", model=_model(0.5), progress=False, **options)
    assert "pixnet_map" not in sdata.images


@pytest.mark.parametrize(
    ("options", "message"),
    [({"batch_size": 2.5}, "batch_size must be an integer, got 2.5"), ({"epochs": True}, "epochs must be an integer")],
)
def test_train_refuses_options_of_the_wrong_type(options, message):
    sdata = pixnet.datasets.synthetic_spots("visium", size_um=300, n_genes=6)
    with pytest.raises(ValueError, match=message):
        pixnet.tl.train(sdata, progress=False, **options)


def test_a_patch_far_larger_than_every_section_is_refused_before_it_is_allocated():
    sdata = pixnet.datasets.synthetic_spots("visium", size_um=300, n_genes=6)  # 75 px a side at 4 µm/px
    message = r"patch_size=4096 px \(16384 µm at 4 µm/px\) is more than twice the side of every .* at most 64"
    with pytest.raises(ValueError, match=message):
        pixnet.tl.train(sdata, patch_size=4096, progress=False)


def test_training_shapes_that_miss_the_image_or_repeat_ids_are_refused_up_front():
    from spatialdata.models import ShapesModel

    sdata = pixnet.datasets.synthetic_spots("visium", size_um=300, n_genes=6)
    spots = sdata.shapes["synthetic_visium_spots"]
    far = spots.copy()
    far.geometry = far.geometry.translate(xoff=1e6)
    sdata.shapes["synthetic_visium_spots"] = ShapesModel.parse(far)
    with pytest.raises(ValueError, match="None of the 2 shapes of 'synthetic_visium_spots' lies on image"):
        pixnet.tl.train(sdata, progress=False)
    repeated = spots.copy()
    repeated.index = [0] * len(repeated)
    sdata.shapes["synthetic_visium_spots"] = ShapesModel.parse(repeated)
    with pytest.raises(ValueError, match=r"'synthetic_visium_spots' have 1 ids used more than once \(e.g. '0'\)"):
        pixnet.tl.train(sdata, progress=False)
