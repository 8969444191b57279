"""HEST-1k samples: a format-faithful synthetic folder read lazily, and trained and predicted through the CLI."""

import json

import anndata as ad
import dask.array as da
import numpy as np
import pytest
import tifffile

import pixnet
from pixnet.cli import main
from pixnet.data.images import pyramid_levels


def write_hest(folder, sample_id: str, seed: int = 0, technology: str = "Visium"):
    """A HEST-1k folder as the dataset ships it: wsis/{id}.tif (pyramidal, tiled), st/{id}.h5ad, metadata/{id}.json."""
    spots = pixnet.datasets.synthetic_spots("visium", size_um=700, n_genes=12, seed=seed, sample_id=sample_id)
    table = spots[f"{sample_id}_table"]
    image = np.moveaxis(pyramid_levels(spots[f"{sample_id}_image"])[0].values, 0, -1)
    for name in ("wsis", "st", "metadata"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(folder / "wsis" / f"{sample_id}.tif") as tif:
        options = {"tile": (256, 256), "photometric": "rgb", "compression": "zlib"}
        tif.write(image, subifds=2, **options)
        for factor in (2, 4):
            tif.write(image[::factor, ::factor], subfiletype=1, **options)
    st = ad.AnnData(X=table.X, obs=table.obs[["array_row", "array_col"]].copy(), var=table.var[[]].copy())
    st.obs_names = [f"{i}x{j}" for i, j in zip(st.obs["array_row"], st.obs["array_col"], strict=True)]
    st.obs["in_tissue"] = 1
    st.obsm["spatial"] = np.asarray(table.obsm["spatial"])  # spot centres in full-resolution WSI pixels
    st.write_h5ad(folder / "st" / f"{sample_id}.h5ad")
    metadata = {
        "dataset_title": "synthetic",
        "st_technology": technology,
        "species": "Homo sapiens",
        "organ": "Breast",
        "pixel_size_um_embedded": 0.5,
        "pixel_size_um_estimated": 0.5,
        "magnification": "20x",
        "fullres_px_width": image.shape[1],
        "fullres_px_height": image.shape[0],
        "spot_diameter": 55.0,
        "inter_spot_dist": 100.0,
        "spots_under_tissue": st.n_obs,
    }
    (folder / "metadata" / f"{sample_id}.json").write_text(json.dumps(metadata))
    return folder


def test_a_hest_sample_reads_lazily_and_resolves(tmp_path):
    folder = write_hest(tmp_path / "hest", "TENX00")
    write_hest(folder, "SPA01", seed=1)
    assert pixnet.io.describe_folder(folder) == ("hest", ["SPA01", "TENX00"])
    sdata = pixnet.io.read(folder, "TENX00")
    image = sdata["TENX00_image"]
    assert isinstance(pyramid_levels(image)[0].data, da.Array) and len(pyramid_levels(image)) == 5  # nothing read
    inputs = pixnet.resolve_inputs(sdata)
    assert inputs.image.microns_per_pixel == pytest.approx(0.5)
    spots = inputs.shapes["TENX00_spots"]
    assert spots.kind == "circle" and spots.table.n_obs == len(spots) > 20
    np.testing.assert_allclose(spots.size_um, 55.0)
    with pytest.raises(ValueError, match="choose one with sample_id="):
        pixnet.datasets.hest(None, folder)
    with pytest.raises(FileNotFoundError, match="lacks"):
        pixnet.datasets.hest("TENX99", folder)


def test_a_hest_folder_trains_and_predicts_through_the_cli(tmp_path, capsys):
    folder = write_hest(tmp_path / "hest", "TENX00")
    write_hest(folder, "TENX01", seed=1)
    model, store = tmp_path / "model", tmp_path / "tenx01.zarr"
    tiny = ["--preset", "paper", "--encoder-weights", "random", "--decoder-width", "8", "--patch-size", "64"]
    tiny += ["--microns-per-pixel", "2", "--n-genes", "6", "--epochs", "1", "--batch-size", "4"]
    assert main(["train", str(folder), "--section", "TENX00", "--out", str(model), "-q", *tiny]) == 0
    assert "Trained PixNet(6 genes, 2 µm/px" in capsys.readouterr().out
    args = ["predict", str(folder), "--section", "TENX01", "--model", str(model), "--shapes", "TENX01_spots"]
    assert main([*args, "--out", str(store), "-q"]) == 0
    assert main(["evaluate", str(store), "--predicted", "pixnet_TENX01_spots"]) == 0
    assert "pcc_m" in capsys.readouterr().out


@pytest.fixture(scope="module")
def hest_folder(tmp_path_factory):
    return write_hest(tmp_path_factory.mktemp("hest"), "TENX00")


def _damaged_copy(source, tmp_path, damage):
    import shutil

    folder = tmp_path / "damaged"
    shutil.copytree(source, folder)
    damage(folder)
    return folder


def _edit_metadata(**fields):
    def damage(folder):
        path = folder / "metadata" / "TENX00.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))

    return damage


def _write(relative, content):
    def damage(folder):
        path = folder / relative
        path.write_bytes(content(path.read_bytes()) if callable(content) else content)

    return damage


def _edit_st(edit):
    def damage(folder):
        path = folder / "st" / "TENX00.h5ad"
        table = ad.read_h5ad(path)
        edit(table)
        table.write_h5ad(path)

    return damage


def _nan_first_spot(table):
    table.obsm["spatial"] = table.obsm["spatial"].astype(float)
    table.obsm["spatial"][0, 0] = np.nan


def _grayscale(folder):
    tifffile.imwrite(folder / "wsis" / "TENX00.tif", np.zeros((64, 64), np.uint8))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_edit_metadata(pixel_size_um_estimated=0), r"TENX00.json: field 'pixel_size_um_estimated' must be a positive"),
        (_edit_metadata(pixel_size_um_estimated=-0.5), "field 'pixel_size_um_estimated' must be a positive number"),
        (_edit_metadata(pixel_size_um_estimated=float("nan")), "must be a positive number .*got nan"),
        (_edit_metadata(pixel_size_um_estimated="0.5um"), r"must be a positive number .*got '0.5um'"),
        (_edit_metadata(spot_diameter=-55), "field 'spot_diameter' must be a positive number"),
        (_write("metadata/TENX00.json", lambda b: b[: len(b) // 2]), r"TENX00.json is not valid JSON"),
        (_write("metadata/TENX00.json", b"[1, 2]"), "must hold a JSON object of metadata, got list"),
        (_write("st/TENX00.h5ad", lambda b: b[: len(b) // 2]), r"TENX00.h5ad is not a readable h5ad file"),
        (_write("wsis/TENX00.tif", lambda b: b[:4096]), r"TENX00.tif is not a readable TIFF"),
        (_edit_st(_nan_first_spot), r"obsm\['spatial'\] has 1 spots without finite coordinates"),
        (_edit_st(lambda t: t.obsm.__setitem__("spatial", t.obsm["spatial"][:, :1])), r"must hold x and y per spot"),
        (_grayscale, r"TENX00.tif has shape \(64, 64\): pixnet needs an RGB"),
    ],
)
def test_a_damaged_hest_folder_names_the_file_and_the_field(hest_folder, tmp_path, damage, message):
    folder = _damaged_copy(hest_folder, tmp_path, damage)
    with pytest.raises(ValueError, match=message):
        pixnet.datasets.hest("TENX00", folder)


def test_an_empty_hest_folder_says_so(tmp_path):
    (tmp_path / "st").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no HEST samples"):
        pixnet.datasets.hest(None, tmp_path)
