import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import spatialdata
from spatialdata.models import TableModel

import pixnet
from pixnet.metrics import gene_metrics, summarize_metrics


def test_gene_metrics_match_hand_computed_values():
    predicted = np.array([[1.0, 2.0, 5.0], [2.0, 2.0, 3.0], [3.0, 2.0, 1.0], [4.0, 2.0, 3.0]])
    measured = np.array([[2.0, 1.0, 1.0], [4.0, 2.0, 2.0], [6.0, 3.0, 3.0], [8.0, 4.0, 2.0]])
    got = gene_metrics(predicted, measured, ["up", "flat", "down"]).set_index("gene")
    # gene "up": measured = 2 x predicted -> PCC 1; errors 1, 2, 3, 4
    assert got.loc["up", "pcc"] == pytest.approx(1.0)
    assert got.loc["up", "mse"] == pytest.approx((1 + 4 + 9 + 16) / 4)
    assert got.loc["up", "mae"] == pytest.approx(2.5)
    # gene "flat": the prediction is constant -> PCC undefined, flagged
    assert np.isnan(got.loc["flat", "pcc"]) and got.loc["flat", "constant"]
    assert got.loc["flat", "mse"] == pytest.approx((1 + 0 + 1 + 4) / 4)
    # gene "down": p - mean = (2, 0, -2, 0), m - mean = (-1, 0, 1, 0) -> PCC -1
    assert got.loc["down", "pcc"] == pytest.approx(-1.0)
    assert (got["n_spots"] == 4).all() and got["section"].eq("all").all()


def test_calibration_tells_compressed_from_calibrated_predictions():
    rng = np.random.default_rng(0)
    measured = rng.normal(size=(200, 1))
    signal = measured + 0.5 * rng.normal(size=(200, 1))
    cov = np.cov(signal[:, 0], measured[:, 0])
    calibrated = signal * cov[0, 1] / cov[0, 0]  # the least-squares fit of measured on signal
    got = gene_metrics(np.hstack([calibrated, 0.1 * calibrated]), np.hstack([measured, measured]), ["cal", "squeezed"])
    got = got.set_index("gene")
    assert got.loc["cal", "slope"] == pytest.approx(1.0)
    assert got.loc["squeezed", "slope"] == pytest.approx(10.0)  # a tenth of the spread: measured moves 10x more
    assert got.loc["squeezed", "std_ratio"] == pytest.approx(0.1 * got.loc["cal", "std_ratio"])
    assert got.loc["cal", "pcc"] == pytest.approx(got.loc["squeezed", "pcc"])  # PCC cannot see the scale


def test_constant_gene_policy_and_quartiles():
    per_gene = pd.DataFrame(
        {
            "section": "s",
            "gene": list("abcde"),
            "pcc": [0.1, 0.2, 0.3, 0.4, np.nan],
            "mse": [1.0, 2.0, 3.0, 4.0, 5.0],
            "mae": 1.0,
            "std_ratio": [0.5, 1.0, 2.0, 4.0, np.nan],
            "slope": [0.5, 1.0, 2.0, 3.0, np.nan],
            "n_spots": 10,
            "constant": [False, False, False, False, True],
        }
    )
    omit = summarize_metrics(per_gene, "omit").loc["s"]
    assert omit["pcc_m"] == pytest.approx(0.25)
    assert omit["pcc_s"] == pytest.approx(0.25)
    assert omit["pcc_f"] == pytest.approx(0.175)  # numpy's linear quantile of 0.1..0.4 at 0.25
    assert omit["mse"] == pytest.approx(3.0) and omit["n_constant"] == 1
    assert omit["std_ratio"] == pytest.approx(1.5) and omit["slope"] == pytest.approx(1.5)  # medians, NaN left out
    minus_one = summarize_metrics(per_gene, "minus_one").loc["s"]
    assert minus_one["pcc_m"] == pytest.approx((0.1 + 0.2 + 0.3 + 0.4 - 1) / 5)
    assert minus_one["pcc_s"] == pytest.approx(0.2)
    assert minus_one["pcc_f"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="constant_genes must be one of"):
        summarize_metrics(per_gene, "zero")


def _tables(seed=0):
    """A measured count table over two sections and a predicted table in 'none' units, matched by instance id."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(5, (30, 4)).astype(np.float32)
    obs = pd.DataFrame(
        {"region": pd.Categorical(["spots"] * 30), "spot_id": np.arange(30), "section": ["A"] * 15 + ["B"] * 15}
    )
    measured = TableModel.parse(
        ad.AnnData(
            sp.csr_matrix(counts), obs=obs.set_index(obs.index.astype(str)), var=pd.DataFrame(index=list("wxyz"))
        ),
        region="spots",
        region_key="region",
        instance_key="spot_id",
    )
    order = rng.permutation(30)
    noise = rng.normal(0, 1, (30, 4))
    pred_obs = pd.DataFrame(
        {"region": pd.Categorical(["spots"] * 30), "spot_id": order}, index=[f"p{i}" for i in order]
    )
    predicted = TableModel.parse(
        ad.AnnData(
            (counts[order] + noise[order]).astype(np.float32), obs=pred_obs, var=pd.DataFrame(index=list("wxyz"))
        ),
        region="spots",
        region_key="region",
        instance_key="spot_id",
    )
    return measured, predicted, counts, counts + noise


def test_evaluate_matches_rows_by_instance_id_and_stores_results():
    measured, predicted, counts, values = _tables()
    summary = pixnet.tl.evaluate(None, predicted, measured, normalization="none")
    expected = summarize_metrics(gene_metrics(values, counts, list("wxyz")))
    assert summary.index.tolist() == ["pooled"]
    np.testing.assert_allclose(
        summary[["pcc_m", "mse", "mae"]].to_numpy(), expected[["pcc_m", "mse", "mae"]].to_numpy()
    )
    stored = predicted.uns["pixnet_evaluation"]
    assert stored["params"]["mode"] == "pooled" and len(stored["per_gene"]) == 4

    per_section = pixnet.tl.evaluate(
        None, predicted, measured, normalization="none", mode="per_section", section_key="section"
    )
    assert per_section.index.tolist() == ["A", "B", "mean"]
    assert per_section.loc["mean", "pcc_m"] == pytest.approx(per_section.loc[["A", "B"], "pcc_m"].mean())
    assert per_section.loc["A", "n_spots"] == 15
    genes = pixnet.tl.evaluate(None, predicted, measured, normalization="none", per_gene=True, key_added=None)
    assert set(genes["gene"]) == set("wxyz")


def test_a_second_evaluation_against_another_table_says_it_replaced_the_first(caplog):
    measured, predicted, _, _ = _tables()
    described = f"measured (an AnnData of {measured.n_obs} x {measured.n_vars} passed directly)"
    pixnet.tl.evaluate(None, predicted, measured, normalization="none")
    assert predicted.uns["pixnet_evaluation"]["params"]["measured"] == described
    with caplog.at_level("WARNING", logger="pixnet"):
        pixnet.tl.evaluate(None, predicted, measured, normalization="none")  # the same table again: silent
        assert "Replaced" not in caplog.text
        pixnet.tl.evaluate(None, predicted, measured[:20].copy(), normalization="none")
    assert f"the evaluation against {described} moved to uns['pixnet_evaluation_earlier']" in caplog.text
    assert predicted.uns["pixnet_evaluation_earlier"]["params"]["measured"] == described
    assert predicted.uns["pixnet_evaluation"]["summary"]["n_spots"].iloc[0] == 20
    sdata = spatialdata.SpatialData(tables={"counts": measured, "subset": measured[:20].copy()})
    pixnet.tl.evaluate(sdata, predicted, "counts", normalization="none")  # named tables keep their names
    pixnet.tl.evaluate(sdata, predicted, "subset", normalization="none")
    assert predicted.uns["pixnet_evaluation_vs_counts"]["params"]["measured"] == "counts"


def test_evaluate_refuses_what_it_cannot_compare():
    measured, predicted, *_ = _tables()
    with pytest.raises(ValueError, match="does not record its units"):
        pixnet.tl.evaluate(None, predicted, measured)
    with pytest.raises(ValueError, match="missing from the predicted table"):
        pixnet.tl.evaluate(None, predicted[:, :2].copy(), measured, normalization="none", genes=list("wxyz"))
    with pytest.raises(ValueError, match="have no prediction"):
        pixnet.tl.evaluate(None, predicted[:20].copy(), measured, normalization="none")
    with pytest.raises(ValueError, match="mode must be"):
        pixnet.tl.evaluate(None, predicted, measured, normalization="none", mode="global")
    with pytest.raises(ValueError, match="per_section"):
        pixnet.tl.evaluate(None, predicted, measured, normalization="none", mode="per_section", section_key="donor")


def _sparse_spots(seed=0, n_spots=400, n_genes=30):
    """Poisson counts of spots whose depth and composition vary independently; the log-normalised truth."""
    rng = np.random.default_rng(seed)
    depth = np.exp(rng.normal(np.log(60), 0.8, n_spots))  # sparse: most genes have a few counts per spot, or none
    composition = rng.dirichlet(np.full(n_genes, 0.5), size=1) * np.exp(0.8 * rng.normal(size=(n_spots, n_genes)))
    composition /= composition.sum(axis=1, keepdims=True)
    counts = rng.poisson(depth[:, None] * composition).astype(np.float32)
    measured = ad.AnnData(counts, var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)]))
    return measured, np.log1p(1e4 * composition)


def test_partial_pcc_gives_a_map_of_depth_nothing_and_the_composition_its_due():
    measured, composition = _sparse_spots()
    log_depth = np.log1p(np.asarray(measured.X.sum(axis=1)).ravel())
    depth_map = measured.copy()
    depth_map.X = np.repeat(log_depth[:, None], measured.n_vars, axis=1).astype(np.float32)
    knows_composition = measured.copy()
    knows_composition.X = composition.astype(np.float32)
    kwargs = {"normalization": "total_log", "key_added": None}
    depth_only = pixnet.tl.evaluate(None, depth_map, measured, **kwargs).loc["pooled"]
    gene_specific = pixnet.tl.evaluate(None, knows_composition, measured, **kwargs).loc["pooled"]
    # on sparse spots the paper's metric rewards depth ...
    assert depth_only["pcc_m"] > 0.2
    # ... which the partial PCC removes exactly, while the composition keeps its agreement
    assert depth_only["partial_pcc_m"] == 0.0 and depth_only["partial_pcc_f"] == 0.0
    assert gene_specific["partial_pcc_m"] > 0.3
    assert depth_only["depth_abs_pcc"] == pytest.approx(1.0)
    assert gene_specific["depth_abs_pcc"] < 0.2
    # one map with a sign per gene is one component; independent compositions are many
    assert depth_only["pc1_share"] == pytest.approx(1.0)
    assert gene_specific["pc1_share"] < 0.3


def test_partial_pcc_matches_the_residual_correlation_by_hand():
    rng = np.random.default_rng(1)
    depth = rng.normal(size=50)
    predicted, measured = rng.normal(size=(50, 2)), rng.normal(size=(50, 2)) + depth[:, None]
    got = gene_metrics(predicted, measured, ["a", "b"], depth=depth)
    for g in range(2):
        residual = [v - np.polyval(np.polyfit(depth, v, 1), depth) for v in (predicted[:, g], measured[:, g])]
        assert got.loc[g, "partial_pcc"] == pytest.approx(np.corrcoef(*residual)[0, 1])
        assert got.loc[g, "depth_pcc"] == pytest.approx(np.corrcoef(predicted[:, g], depth)[0, 1])
    with pytest.raises(ValueError, match="one finite value per spot"):
        gene_metrics(predicted, measured, ["a", "b"], depth=depth[:10])


def test_first_component_share_per_section():
    measured, predicted, *_ = _tables()
    summary = pixnet.tl.evaluate(
        None, predicted, measured, normalization="none", mode="per_section", section_key="section", key_added=None
    )
    values = predicted[predicted.obs["spot_id"].argsort()].X  # rows in measured order
    share_a = pixnet.metrics.first_component_share(values[:15])
    assert summary.loc["A", "pc1_share"] == pytest.approx(share_a)
    assert summary.loc["mean", "pc1_share"] == pytest.approx(summary.loc[["A", "B"], "pc1_share"].mean())
    assert 0.25 <= share_a < 1.0


def test_evaluating_shapes_that_were_never_measured_says_so():
    import geopandas as gpd
    from conftest import tiny_pixnet
    from shapely.geometry import box
    from spatialdata.models import ShapesModel
    from spatialdata.transformations import get_transformation

    sdata = pixnet.datasets.synthetic_spots("visium", size_um=300, n_genes=6)
    image = sdata["synthetic_visium_image"]
    cells = gpd.GeoDataFrame(geometry=[box(20, 20, 40, 40), box(50, 50, 70, 70)])
    sdata["cells"] = ShapesModel.parse(cells, transformations=get_transformation(image, get_all=True))
    model = tiny_pixnet(genes=list(sdata["synthetic_visium_table"].var_names[:3]), microns_per_pixel=0.5)
    pixnet.tl.predict(sdata, shapes="cells", model=model, progress=False)
    with pytest.raises(ValueError, match=r"'cells': they were never measured, .* to compare the predictions with"):
        pixnet.tl.evaluate(sdata, "pixnet_cells")
