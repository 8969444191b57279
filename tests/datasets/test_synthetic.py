import json

import h5py
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import spatialdata
import tifffile
from conftest import shared_data

import pixnet
from pixnet.datasets import SyntheticTissue, synthetic_spots, synthetic_visium, synthetic_visium_hd
from pixnet.datasets._tissue import STROMA, cytoplasm_label, nucleus_label


def test_render_is_tiling_invariant():
    tissue = SyntheticTissue(seed=5, microns_per_pixel=0.5)
    whole, whole_labels = tissue.render(100, 200, 300, 400)
    part, part_labels = tissue.render(250, 350, 90, 110)
    np.testing.assert_array_equal(part, whole[150:240, 150:260])
    np.testing.assert_array_equal(part_labels, whole_labels[150:240, 150:260])


def test_morphology_has_tissue_background_and_distinct_cell_types():
    tissue = SyntheticTissue(seed=0, microns_per_pixel=0.5)
    rgb, labels = tissue.render(0, 0, 1500, 1500)
    gray = rgb.mean(axis=2)
    assert (labels == 0).mean() > 0.05 and (labels >= STROMA).mean() > 0.3
    assert gray[labels == 0].mean() > gray[labels >= STROMA].mean() + 30
    colours = [rgb[labels == nucleus_label(t)].mean(axis=0) for t in range(len(tissue.cell_types))]
    sizes = [(labels == nucleus_label(t)).sum() for t in range(len(tissue.cell_types))]
    assert min(sizes) > 500
    distances = [np.linalg.norm(a - b) for i, a in enumerate(colours) for b in colours[i + 1 :]]
    assert min(distances) > 10  # every pair of nucleus types differs visibly in colour


def test_visium_hd_folder_reads_with_spatialdata_io(hd_folder, hd_sdata):
    assert set(hd_sdata.tables) == {"square_002um", "square_008um", "square_016um"}
    assert {"synthetic_full_image", "synthetic_hires_image", "synthetic_lowres_image"} <= set(hd_sdata.images)
    inputs = pixnet.resolve_inputs(hd_sdata, shapes=pixnet.bin_shapes(hd_sdata))
    assert inputs.image.name == "synthetic_full_image"
    assert inputs.image.microns_per_pixel == pytest.approx(0.2738242950835738, rel=1e-6)
    for size in (2, 8, 16):
        shapes = inputs.shapes[f"synthetic_square_{size:03d}um"]
        assert shapes.kind == "square"
        np.testing.assert_allclose(shapes.size_um, size, rtol=1e-6)
        assert shapes.table.n_obs == len(shapes) > 0
    with tifffile.TiffFile(next((hd_folder / "microscope_image").iterdir())) as tif:
        assert tif.pages[0].is_tiled and tif.pages[0].shape[2] == 3


def _by_array_position(table):
    obs = table.obs[["array_row", "array_col"]].astype(int)
    return pd.DataFrame(table.X.toarray(), index=pd.MultiIndex.from_frame(obs))


@pytest.mark.parametrize(
    ("small", "large", "factor"), [("square_002um", "square_008um", 4), ("square_008um", "square_016um", 2)]
)
def test_larger_bins_are_exact_sums_of_smaller_bins(hd_sdata, small, large, factor):
    fine, coarse = _by_array_position(hd_sdata.tables[small]), _by_array_position(hd_sdata.tables[large])
    parent = pd.MultiIndex.from_arrays(
        [fine.index.get_level_values(0) // factor, fine.index.get_level_values(1) // factor]
    )
    summed = fine.groupby(parent).sum()
    summed.index = pd.MultiIndex.from_tuples(summed.index)
    np.testing.assert_array_equal(summed.loc[coarse.index].to_numpy(), coarse.to_numpy())
    assert coarse.to_numpy().sum() > 1000


def test_bins_nest_geometrically(hd_sdata):
    inputs = pixnet.resolve_inputs(hd_sdata, shapes=["bins_2um", "bins_8um"])
    fine, coarse = inputs.shapes["synthetic_square_002um"], inputs.shapes["synthetic_square_008um"]
    fine_obs = fine.table.obs[["array_row", "array_col"]].astype(int).to_numpy() // 4
    coarse_obs = coarse.table.obs[["array_row", "array_col"]].astype(int)
    position = {tuple(rc): i for i, rc in enumerate(coarse_obs.to_numpy())}
    parent = np.array([position[tuple(rc)] for rc in fine_obs])
    offset = fine.centres[fine.shape_positions] - coarse.centres[coarse.shape_positions][parent]
    assert np.abs(offset).max() < coarse.half_size[0] - fine.half_size[0] + 1e-6


def test_expression_follows_morphology(hd_folder, hd_sdata):
    truth = json.loads((hd_folder / "pixnet_synthetic.json").read_text())
    assert truth["seed"] == 3 and truth["genes"] == list(hd_sdata.tables["square_008um"].var_names)
    tissue = SyntheticTissue(seed=3, n_genes=24, microns_per_pixel=truth["microns_per_pixel"])
    np.testing.assert_allclose(tissue.program, truth["program"])
    height, width, _ = truth["layout"]["image_shape"]
    _, labels = tissue.render(0, 0, height, width)
    shapes = pixnet.resolve_inputs(hd_sdata, shapes="bins_8um").shapes["synthetic_square_008um"]
    table = shapes.table
    for cell_type in range(len(tissue.cell_types)):
        marker = int(np.argmax(tissue.program[nucleus_label(cell_type)] / tissue.program[STROMA:].mean(axis=0)))
        fraction = []
        for (x, y), half in zip(
            shapes.centres[shapes.shape_positions], shapes.half_size[shapes.shape_positions], strict=True
        ):
            patch = labels[round(y - half) : round(y + half), round(x - half) : round(x + half)]
            fraction.append(np.isin(patch, [nucleus_label(cell_type), cytoplasm_label(cell_type)]).mean())
        share = table.X[:, marker].toarray().ravel() / np.maximum(table.X.sum(axis=1).A1, 1)
        # the marker share of a cell type follows how much of the bin its cells cover
        assert np.corrcoef(fraction, share)[0, 1] > 0.5, tissue.cell_types[cell_type].name


def test_same_seed_same_sample_and_other_seed_differs(tmp_path):
    kwargs = {"size_um": 48, "n_genes": 8, "progress": False}
    a = synthetic_visium_hd(tmp_path / "a", seed=1, **kwargs)
    b = synthetic_visium_hd(tmp_path / "b", seed=1, **kwargs)
    c = synthetic_visium_hd(tmp_path / "c", seed=2, **kwargs)

    def content(folder):
        with h5py.File(folder / "binned_outputs/square_002um/filtered_feature_bc_matrix.h5") as f:
            data = f["matrix/data"][:]
        image = tifffile.imread(folder / "microscope_image/synthetic_tissue_image.tif")
        return data, image

    (da, ia), (db, ib), (_, ic) = content(a), content(b), content(c)
    np.testing.assert_array_equal(da, db)
    np.testing.assert_array_equal(ia, ib)
    assert ia.shape == ic.shape and not np.array_equal(ia, ic)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        synthetic_visium_hd(tmp_path / "a", seed=1, **kwargs)


def test_layout_matches_real_space_ranger_fixture(hd_folder):
    fixture = shared_data("visium_hd_layout") / "binned_outputs" / "square_002um"
    ours = hd_folder / "binned_outputs" / "square_002um"
    for relative in (
        "filtered_feature_bc_matrix.h5",
        "spatial/tissue_positions.parquet",
        "spatial/scalefactors_json.json",
    ):
        assert (fixture / relative).exists() and (ours / relative).exists()
    assert pq.read_schema(ours / "spatial/tissue_positions.parquet").equals(
        pq.read_schema(fixture / "spatial/tissue_positions.parquet"), check_metadata=False
    )
    real_keys = set(json.loads((fixture / "spatial/scalefactors_json.json").read_text()))
    our_scalefactors = json.loads((ours / "spatial/scalefactors_json.json").read_text())
    assert set(our_scalefactors) == real_keys
    real = json.loads((fixture / "spatial/scalefactors_json.json").read_text())
    assert our_scalefactors["microns_per_pixel"] == pytest.approx(real["microns_per_pixel"], rel=1e-3)
    assert our_scalefactors["spot_diameter_fullres"] == pytest.approx(real["spot_diameter_fullres"], rel=1e-3)

    def h5_items(path):
        names = set()
        with h5py.File(path) as f:
            f.visit(names.add)
        return {n for n in names if "target_sets" not in n and n != "matrix/genes"}

    assert h5_items(ours / "filtered_feature_bc_matrix.h5") == h5_items(fixture / "filtered_feature_bc_matrix.h5")
    pattern = r"^s_002um_\d{5}_\d{5}-1$"
    assert pd.read_parquet(fixture / "spatial/tissue_positions.parquet")["barcode"].str.match(pattern).all()
    assert pd.read_parquet(ours / "spatial/tissue_positions.parquet")["barcode"].str.match(pattern).all()


@pytest.mark.parametrize(("technology", "diameter"), [("visium", 55.0), ("st", 100.0)])
def test_synthetic_spots(technology, diameter):
    sdata = synthetic_spots(technology, size_um=1200, n_genes=16, seed=2)
    sample = f"synthetic_{technology}"
    inputs = pixnet.resolve_inputs(sdata)
    spots = inputs.shapes[f"{sample}_spots"]
    assert spots.kind == "circle"
    np.testing.assert_allclose(spots.size_um, diameter)
    table = spots.table
    assert table.n_obs == len(spots) and table.X.sum() > 0
    np.testing.assert_allclose(table.obsm["spatial"], spots.centres[spots.shape_positions])
    with pytest.raises(ValueError, match="technology"):
        synthetic_spots("slide-seq")


def test_visium_folder_reads_with_spatialdata_io_and_resolves(tmp_path):
    import spatialdata_io

    folder = synthetic_visium(tmp_path / "visium", size_um=800, n_genes=12, seed=4)
    sdata = spatialdata_io.visium(folder, dataset_id="v1", fullres_image_file=folder / "tissue_image.tif")
    assert {"v1_full_image", "v1_hires_image", "v1_lowres_image"} <= set(sdata.images)
    # spatialdata-io keeps no scalefactors; the spots' radius and the Visium spot diameter tell the pixel size
    inputs = pixnet.resolve_inputs(sdata)
    assert "55 µm Visium spot diameter" in inputs.image.microns_per_pixel_source
    assert inputs.image.name == "v1_full_image"
    assert inputs.image.microns_per_pixel == pytest.approx(0.5, rel=1e-6)
    spots = inputs.shapes["v1"]
    assert spots.kind == "circle" and spots.table.n_obs == len(spots) > 10
    np.testing.assert_allclose(spots.centres[spots.shape_positions], spots.table.obsm["spatial"])
    np.testing.assert_allclose(spots.size_um, 55.0)


def test_a_blank_image_is_skipped_with_a_warning_and_named_when_it_is_the_only_one(tmp_path, caplog):
    folder = synthetic_visium(tmp_path / "visium", size_um=600, n_genes=6, seed=4)
    full = tifffile.imread(folder / "tissue_image.tif")
    tifffile.imwrite(folder / "tissue_image.tif", np.zeros_like(full), photometric="rgb")  # e.g. a failed export
    sdata = pixnet.io.read(folder)
    with caplog.at_level("WARNING", logger="pixnet"):
        inputs = pixnet.resolve_inputs(sdata)
    assert inputs.image.name == "visium_hires_image" and "blank" in caplog.text
    assert inputs.image.microns_per_pixel == pytest.approx(2.0, rel=1e-3)  # hires: a quarter of full resolution
    only_blank = spatialdata.SpatialData(
        images={"visium_full_image": sdata["visium_full_image"]}, shapes={"visium": sdata["visium"]}
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="pixnet"), pytest.raises(ValueError, match="pixel size"):
        pixnet.resolve_inputs(only_blank)  # no Visium reader record: the pixel size is unknown, but first:
    assert "['visium_full_image'] are blank" in caplog.text


def test_the_truth_of_a_cropped_sample_is_the_whole_samples_for_the_same_bins(tmp_path):
    folder = pixnet.datasets.synthetic_visium_hd(tmp_path / "hd", size_um=128, seed=0, progress=False)
    sdata = pixnet.io.read(folder)
    whole = pixnet.datasets.synthetic_truth(folder, sdata, "bins_8um")
    x0, y0, x1, y1 = sdata["synthetic_square_008um"].total_bounds
    crop = sdata.query.bounding_box(
        axes=("x", "y"),
        min_coordinate=[x0 + (x1 - x0) / 4, y0 + (y1 - y0) / 4],
        max_coordinate=[x1 - (x1 - x0) / 4, y1 - (y1 - y0) / 4],
        target_coordinate_system="synthetic",
    )
    part = pixnet.datasets.synthetic_truth(folder, crop, "bins_8um", image="synthetic_full_image")
    assert 0 < part.n_obs < whole.n_obs
    np.testing.assert_allclose(part.X, whole[part.obs_names].X)
