import gzip

import numpy as np
import pandas as pd
import pytest
from conftest import shared_data
from PIL import Image

import pixnet
from pixnet.datasets import her2st, read_st_section, stutility_mob


def _inside_vs_outside_gray(sdata, sample):
    inputs = pixnet.resolve_inputs(sdata, shapes=f"{sample}_spots", target_microns_per_pixel=4.0)
    image = inputs.image.data.values.mean(axis=0)
    spots = inputs.shapes[f"{sample}_spots"]
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    inside = np.zeros(image.shape, bool)
    for (x, y), r in zip(spots.centres, spots.half_size, strict=True):
        y0, y1, x0, x1 = int(max(y - r, 0)), int(y + r + 1), int(max(x - r, 0)), int(x + r + 1)
        inside[y0:y1, x0:x1] |= (xx[y0:y1, x0:x1] + 0.5 - x) ** 2 + (yy[y0:y1, x0:x1] + 0.5 - y) ** 2 <= r**2
    return image[inside].mean(), np.median(image[~inside]), inputs


@pytest.mark.parametrize("sample", ["C2", "C3", "C4", "C5"])
def test_her2st_spots_land_on_tissue(sample):
    sdata = her2st(sample, path=shared_data("her2st"))
    inside, background, inputs = _inside_vs_outside_gray(sdata, sample)
    assert 0.6 < inputs.image.microns_per_pixel / 2**inputs.image.level < 0.75
    spots = inputs.shapes[f"{sample}_spots"]
    np.testing.assert_allclose(spots.size_um, 100.0)
    assert 150 < spots.table.n_obs < 800 and spots.table.n_vars > 10_000
    assert inside < background - 15  # stained tissue under the spots, bright glass around
    assert float(spots.table.X.max()) > 10 and np.allclose(spots.table.X.data, np.round(spots.table.X.data))


@pytest.mark.parametrize("sample", ["MOB1", "MOB2", "MOB3"])
def test_stutility_mob_spots_land_on_tissue(sample):
    sdata = stutility_mob(sample, path=shared_data("stutility_mob"))
    inside, background, inputs = _inside_vs_outside_gray(sdata, sample)
    assert 4.2 < inputs.image.microns_per_pixel < 4.7
    assert inside < background - 15
    assert 300 < inputs.shapes[f"{sample}_spots"].table.n_obs < 500


def _write_fake_section(folder, sample):
    """A tiny section in the HER2ST file formats: a dark disk of tissue on white, four spots on it."""
    folder.mkdir(parents=True, exist_ok=True)
    image = np.full((400, 400, 3), 240, np.uint8)
    yy, xx = np.mgrid[:400, :400]
    image[(yy - 200) ** 2 + (xx - 200) ** 2 < 150**2] = (120, 60, 140)
    Image.fromarray(image).save(folder / f"{sample}_HE.jpg")
    spots = pd.DataFrame(
        {
            "x": [10, 11, 10, 11, 20],
            "y": [10, 10, 11, 11, 20],
            "pixel_x": [150, 250, 150, 250, 390],
            "pixel_y": [150, 150, 250, 250, 390],
            "selected": [1, 1, 1, 1, 0],
        }
    )
    spots["new_x"], spots["new_y"] = spots["x"].astype(float), spots["y"].astype(float)
    spots.to_csv(folder / f"{sample}_selection.tsv", sep="\t", index=False)
    counts = pd.DataFrame(
        np.arange(12).reshape(4, 3), index=["10x10", "11x10", "10x11", "11x11"], columns=["A", "B", "C"]
    )
    with gzip.open(folder / f"{sample}.tsv.gz", "wt") as f:
        counts.to_csv(f, sep="\t")


def test_st_section_reader_on_known_geometry(tmp_path):
    _write_fake_section(tmp_path, "S1")
    sdata = read_st_section(tmp_path / "S1.tsv.gz", tmp_path / "S1_selection.tsv", tmp_path / "S1_HE.jpg", "S1")
    table = sdata["S1_table"]
    assert table.n_obs == 4 and list(table.var_names) == ["A", "B", "C"]
    np.testing.assert_array_equal(table.X.toarray(), np.arange(12).reshape(4, 3))
    inputs = pixnet.resolve_inputs(sdata)
    assert inputs.image.microns_per_pixel == pytest.approx(2.0)  # 100 px per 200 µm array unit
    np.testing.assert_allclose(inputs.shapes["S1_spots"].half_size, 25.0)
    with pytest.raises(ValueError, match="lacks the columns"):
        read_st_section(tmp_path / "S1.tsv.gz", tmp_path / "S1.tsv.gz", tmp_path / "S1_HE.jpg", "S1")


def test_her2st_download_into_cache(tmp_path, monkeypatch, served):
    # the real download path, served over HTTP from a local folder laid out like the public repository
    root, url, _ = served
    repo = root / "data"
    _write_fake_section(tmp_path / "flat", "C2")
    (repo / "ST-cnts").mkdir(parents=True)
    (repo / "ST-spotfiles").mkdir()
    (repo / "ST-imgs/C/C2").mkdir(parents=True)
    (tmp_path / "flat/C2.tsv.gz").rename(repo / "ST-cnts/C2.tsv.gz")
    (tmp_path / "flat/C2_selection.tsv").rename(repo / "ST-spotfiles/C2_selection.tsv")
    (tmp_path / "flat/C2_HE.jpg").rename(repo / "ST-imgs/C/C2/5714_HE_BT_C2.jpg")
    monkeypatch.setenv("PIXNET_CACHE", str(tmp_path / "cache"))
    sdata = her2st("C2", base_url=f"{url}/data")
    assert sdata["C2_table"].n_obs == 4
    assert (tmp_path / "cache/her2st/C2_HE.jpg").exists()
    (repo / "ST-cnts/C2.tsv.gz").unlink()  # the second call reads the cache only
    assert her2st("C2", base_url=f"{url}/data")["C2_table"].n_obs == 4
    with pytest.raises(ValueError, match="No image location is known"):
        her2st("Z9", base_url=f"{url}/data")
    with pytest.raises(FileNotFoundError, match="Missing section files"):
        her2st("C2", path=tmp_path / "nowhere")


def test_ridge_on_frozen_features_beats_the_mean_on_a_held_out_her2st_section():
    folder = shared_data("her2st")
    train = [her2st(s, path=folder) for s in ("C2", "C3")]
    test = her2st("C4", path=folder)
    settings = {"microns_per_pixel": 4.0, "patch_size": 64, "n_top_genes": 50, "progress": False}
    settings |= {"encoder": "efficientnet_lite0", "encoder_weights": "imagenet"}
    summaries = {}
    for method in ("ridge", "mean"):
        baseline = pixnet.tl.train_baseline(train, method, **settings)
        pixnet.tl.predict_baseline(test, "C4_spots", baseline, progress=False)
        summaries[method] = pixnet.tl.evaluate(test, f"{method}_C4_spots").loc["pooled"]
    # measured 2026-11-28: ridge PCC@M 0.25, MSE 0.875 vs the mean's 0.954
    assert summaries["ridge"]["pcc_m"] > 0.15
    assert summaries["ridge"]["mse"] < summaries["mean"]["mse"]
    assert summaries["ridge"]["n_spots"] == test["C4_table"].n_obs
