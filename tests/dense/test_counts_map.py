import numpy as np
from conftest import tiny_pixnet

import pixnet


def test_a_counts_map_reads_out_each_shapes_composition_of_its_sums(hd_sdata):
    model = tiny_pixnet(genes=["SYN000", "SYN001", "SYN002"], map_units="counts", pixel_skip=8)
    assert model.channels == ["SYN000", "SYN001", "SYN002", "other_genes"]
    pixnet.tl.predict(hd_sdata, shapes=["bins_2um", "bins_8um"], model=model, progress=False)
    assert list(hd_sdata["pixnet_map"].coords["c"].values) == model.channels
    for bins in ("002", "008"):
        table = hd_sdata[f"pixnet_synthetic_square_{bins}um"]
        assert list(table.var_names) == model.genes
        pixnet.tl.aggregate(hd_sdata, "pixnet_map", f"synthetic_square_{bins}um", key_added=f"sums{bins}")
        sums = hd_sdata[f"sums{bins}_synthetic_square_{bins}um"][table.obs_names].X  # expected counts
        composition = sums[:, :3] / sums.sum(axis=1, keepdims=True)  # over the modelled and the other genes
        expected = np.log1p(composition * 1e4 * table.obs["area_um2"].to_numpy()[:, None] / 100)
        np.testing.assert_allclose(table.X, expected, rtol=1e-4)


def test_from_count_sums_is_the_normalisation_of_counts():
    normalization = pixnet.pp.Normalization()
    counts = np.array([[3.0, 1.0], [0.0, 5.0]])
    other = np.array([4.0, 5.0])
    from_sums = normalization.from_count_sums(np.column_stack([counts, other]), np.array([64.0, 4.0]))
    measured = normalization.transform(normalization.values(counts, counts.sum(axis=1) + other, np.array([64.0, 4.0])))
    np.testing.assert_allclose(from_sums, measured)
