"""Per-gene reliability and conformal intervals from a further model trained without part of the data."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_TRAINING

import pixnet
from pixnet.metrics import reliability_ranking
from pixnet.models.held_out import INTERVAL_LEVELS, held_out_split

SPOTS = "synthetic_visium_spots"


@pytest.fixture(scope="module")
def reliable(tiny_spots):
    return pixnet.tl.train(tiny_spots, epochs=1, reliability=True, **TINY_TRAINING)


def test_the_record_comes_from_the_held_out_quarter_and_survives_saving(reliable, tmp_path):
    record = reliable.config.reliability
    assert record["split"] == "the right-most 25% of the shapes"
    assert len(record["pcc"]) == len(record["partial_pcc"]) == len(reliable.genes)
    assert record["levels"] == list(INTERVAL_LEVELS)
    low, high = np.array(record["residual_low"]), np.array(record["residual_high"])
    assert low.shape == high.shape == (len(INTERVAL_LEVELS), len(reliable.genes))
    assert (np.diff(high - low, axis=0) >= 0).all() and (low <= high).all()  # a higher level is never narrower
    reliable.save(tmp_path / "model")
    assert pixnet.models.PixNet.load(tmp_path / "model").config.reliability == record
    config = tmp_path / "model" / "config.json"
    stored = json.loads(config.read_text())
    stored["config"]["reliability"]["residual_high"][0][0] = "wide"
    config.write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="field 'reliability' must be empty, or a reliability record"):
        pixnet.models.PixNet.load(tmp_path / "model")


def test_predict_adds_intervals_and_reliability_and_evaluate_measures_them(reliable, tiny_spots):
    predicted = pixnet.tl.predict(tiny_spots, shapes=SPOTS, model=reliable, interval=0.9, copy=True, progress=False)
    table = predicted.tables[f"pixnet_{SPOTS}"]
    record = reliable.config.reliability
    low, high = (np.array(record[k][INTERVAL_LEVELS.index(0.9)], np.float32) for k in ("residual_low", "residual_high"))
    np.testing.assert_allclose(table.layers["upper"] - table.X, np.broadcast_to(high, table.shape), atol=1e-5)
    np.testing.assert_allclose(table.layers["lower"] - table.X, np.broadcast_to(low, table.shape), atol=1e-5)
    expected = table.var["expected_pcc"].to_numpy()
    np.testing.assert_allclose(expected, np.array(reliable.config.reliability["pcc"], float))
    n = reliable.config.reliability["n_shapes"]
    assert (table.var["no_expected_skill"] == ~(expected > 2 / np.sqrt(n))).all()

    summary = pixnet.tl.evaluate(None, table, tiny_spots.tables["synthetic_visium_table"], key_added=None)
    assert summary.loc["pooled", "interval_level"] == 0.9
    assert 0 <= summary.loc["pooled", "interval_coverage"] <= 1
    assert summary.loc["pooled", "interval_width"] == pytest.approx((high - low).mean(), rel=1e-4)
    per_gene = pixnet.tl.evaluate(None, table, tiny_spots.tables["synthetic_visium_table"], per_gene=True)
    actual = per_gene.set_index("gene")["pcc"]
    assert summary.loc["pooled", "reliability_spearman"] == pytest.approx(
        reliability_ranking(table.var["expected_pcc"], actual)
    )


def test_intervals_are_refused_where_they_were_not_calibrated(reliable, tiny_model, tiny_spots):
    kwargs = {"shapes": SPOTS, "copy": True, "progress": False}
    with pytest.raises(ValueError, match="needs a model trained with reliability=True"):
        pixnet.tl.predict(tiny_spots, model=tiny_model, interval=0.9, **kwargs)
    with pytest.raises(ValueError, match=r"one of the model's calibrated levels \[0.5, 0.8, 0.9, 0.95\]"):
        pixnet.tl.predict(tiny_spots, model=reliable, interval=0.99, **kwargs)
    sdata = pixnet.datasets.synthetic_spots("visium", size_um=600, n_genes=12, seed=5)
    big = sdata.shapes[SPOTS].copy()
    big["radius"] = big["radius"] * 2
    sdata.shapes["big_spots"] = big
    with pytest.raises(ValueError, match=r"calibrated on shapes of .* 'big_spots' has shapes of"):
        pixnet.tl.predict(sdata, model=reliable, interval=0.9, shapes="big_spots", copy=True, progress=False)


def test_with_several_sections_one_whole_section_is_held_out():
    sections = [pixnet.datasets.synthetic_spots("visium", size_um=400, n_genes=6, seed=s) for s in (1, 2, 3)]
    resolved = [pixnet.resolve_inputs(s) for s in sections]
    training, region, held, index, split = held_out_split(sections, resolved, ["A", "B", "C"], seed=0)
    assert region is None and held is sections[index] and sorted([*training, index]) == [0, 1, 2]
    assert split == f"section {['A', 'B', 'C'][index]!r}"
    one = held_out_split(sections[:1], resolved[:1], None, seed=0)
    kept, out = (len(s.shapes[SPOTS]) for s in one[1:3])
    assert kept + out == len(sections[0].shapes[SPOTS]) and out == pytest.approx(0.25 * (kept + out), abs=2)
    assert len(one[2].tables["synthetic_visium_table"]) == out  # the held-out shapes' measurements, no more


def test_reliability_ranking():
    expected = pd.Series([0.1, 0.5, 0.3, np.nan], index=list("abcd"))
    actual = pd.Series([0.2, 0.6, 0.4, 0.9], index=list("abcd"))
    assert reliability_ranking(expected, actual) == pytest.approx(1.0)
    assert np.isnan(reliability_ranking(expected[:2], actual))
