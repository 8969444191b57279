import numpy as np
import pytest
from conftest import tiny_pixnet

import pixnet


def test_each_bin_gets_its_measured_parents_composition_in_the_models_units(hd_sdata):
    genes = ["SYN000", "SYN003", "SYN007"]
    pixnet.tl.parent_baseline(hd_sdata, "bins_2um", "bins_8um", tiny_pixnet(genes=genes))
    table = hd_sdata["parent_synthetic_square_002um"]
    bins2, bins8 = hd_sdata["square_002um"], hd_sdata["square_008um"]
    assert table.n_obs == bins2.n_obs and list(table.var_names) == genes
    parents = {(r, c): i for i, (r, c) in enumerate(zip(bins8.obs.array_row, bins8.obs.array_col, strict=True))}
    counts = bins8.X.toarray()
    for name in bins2.obs_names[:: max(1, bins2.n_obs // 40)]:
        row, col = bins2.obs.loc[name, ["array_row", "array_col"]]
        parent = parents[(row // 4, col // 4)]
        composition = counts[parent, bins8.var_names.get_indexer(genes)] / counts[parent].sum()
        expected = np.log1p(composition * 1e4 * 4.0 / 100.0)  # total_log of a 2 µm (4 µm²) bin
        np.testing.assert_allclose(table[name].X[0], expected, rtol=1e-5)
    evaluated = pixnet.tl.evaluate(hd_sdata, "parent_synthetic_square_002um", key_added=None)
    assert evaluated.loc["pooled", "n_spots"] == bins2.n_obs


def test_parent_bins_must_be_coarser(hd_sdata):
    with pytest.raises(ValueError, match=r"'bins_2um' \(.* px\) must be coarser than 'bins_8um'"):
        pixnet.tl.parent_baseline(hd_sdata, "bins_8um", "bins_2um", tiny_pixnet(genes=["SYN000"]))
    assert "parent_synthetic_square_008um" not in hd_sdata.tables
