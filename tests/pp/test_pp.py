import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pixnet.pp import Normalization, normalize, select_genes, spot_totals


def _table(x, genes):
    table = ad.AnnData(sp.csr_matrix(np.asarray(x, dtype=np.float32)))
    table.var_names = genes
    return table


def test_select_top_genes_by_mean_fraction_balances_sections():
    genes = ["a", "b", "c"]
    # section 1 is 100x deeper; by raw counts it would decide alone ("a"), by fractions "c" wins overall
    deep = _table([[600, 300, 100], [600, 300, 100]], genes)
    shallow = _table([[0, 1, 9], [0, 2, 8]], genes)
    record = select_genes([deep, shallow], n_top=2)
    # mean fractions: a = (0.6 + 0) / 2 = 0.3, b = (0.3 + 0.15) / 2 = 0.225, c = (0.1 + 0.85) / 2 = 0.475
    assert record == {"method": "top_mean", "params": {"n_top": 2}, "genes": ["c", "a"]}
    assert select_genes(deep, genes=["b"])["genes"] == ["b"]
    with pytest.raises(ValueError, match="missing"):
        select_genes(deep, genes=["zzz"])
    with pytest.raises(ValueError, match="n_top"):
        select_genes(deep, n_top=0)


def test_normalisations_against_hand_computed_values():
    table = _table([[1, 3, 6], [0, 0, 0]], ["a", "b", "c"])
    total = normalize(table, ["b"], Normalization("total", {"target_sum": 10.0}))
    np.testing.assert_allclose(total, [[3.0], [0.0]])  # totals use all genes, not only the selected ones
    paper = normalize(table, ["b", "c"])
    np.testing.assert_allclose(paper, np.log1p([[3e4 / 10, 6e4 / 10], [0, 0]]), rtol=1e-6)
    np.testing.assert_allclose(normalize(table, ["c"], Normalization("log1p", {})), np.log1p([[6.0], [0.0]]))
    assert paper.dtype == np.float32
    with pytest.raises(ValueError, match="Unknown normalisation"):
        Normalization("zscore")
    record = Normalization("total", {"target_sum": 5.0}).to_dict()
    assert Normalization.from_dict(record) == Normalization("total", {"target_sum": 5.0})


def test_area_scaling_makes_values_extensive():
    # one 16 µm bin and its total split evenly into four 8 µm bins: their values add up to the parent's
    parent = _table([[40, 60]], ["a", "b"])
    child = _table([[10, 15]] * 4, ["a", "b"])
    norm = Normalization("total", {"target_sum": 1.0, "reference_area_um2": 64.0})
    parent_value = normalize(parent, ["a"], norm, area_um2=256.0)
    child_values = normalize(child, ["a"], norm, area_um2=64.0)
    np.testing.assert_allclose(child_values.sum(), parent_value.sum())
    np.testing.assert_allclose(parent_value, [[0.4 * 4]])
    log_norm = Normalization("total_log", {"target_sum": 1.0, "reference_area_um2": 64.0})
    np.testing.assert_allclose(
        log_norm.inverse_transform(normalize(parent, ["a"], log_norm, 256.0)), parent_value, rtol=1e-6
    )


def test_exposure_turns_values_back_into_counts():
    table = _table([[10, 30], [1, 3]], ["a", "b"])
    area = np.array([64.0, 256.0])
    for method in ("total_log", "total", "log1p", "none"):
        norm = Normalization(method, {"target_sum": 1e4, "reference_area_um2": 100.0})
        values = norm.inverse_transform(normalize(table, ["a", "b"], norm, area_um2=area))
        exposure = norm.exposure(spot_totals(table), area)
        np.testing.assert_allclose(values * exposure[:, None], [[10, 30], [1, 3]], rtol=1e-5)


def test_gene_lists_that_cannot_be_modelled_are_refused_up_front():
    table = ad.AnnData(np.ones((3, 3)), var=pd.DataFrame(index=["SYN001", "SYN002", "CD74"]))
    with pytest.raises(ValueError, match=r"genes lists \['SYN001'\] more than once"):
        select_genes(table, genes=["SYN001", "SYN001"])
    with pytest.raises(ValueError, match="non-empty list of gene names"):
        select_genes(table, genes=[])
    with pytest.raises(ValueError, match="non-empty list of gene names"):
        select_genes(table, genes="SYN001")
    with pytest.raises(ValueError, match="did you mean 'CD74'"):
        select_genes(table, genes=["cd74"])
    twice = ad.AnnData(np.ones((3, 2)), var=pd.DataFrame(index=["CD74", "CD74"]))
    with pytest.raises(ValueError, match=r"names 1 genes more than once.*var_names_make_unique"):
        select_genes(twice, n_top=1)
