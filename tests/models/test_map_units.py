"""``map_units="auto"``: the map's units chosen by single models' results on held-out training tissue."""

import json

import pytest
import torch
from conftest import TINY_TRAINING

import pixnet
from pixnet.models import PixNet, PixNetParams
from pixnet.models.pixnet import MAP_UNITS
from pixnet.training.plan import TrainingPlan
from pixnet.training.presets import PRESETS


@pytest.fixture(scope="module")
def chosen(tiny_spots):
    return pixnet.tl.train(tiny_spots, epochs=1, map_units="auto", **TINY_TRAINING)


def test_the_units_with_the_better_held_out_partial_pcc_are_chosen_and_recorded(chosen, tiny_spots, tmp_path):
    record = chosen.config.map_units_choice
    assert chosen.config.map_units == record["chosen"] in MAP_UNITS
    other = next(units for units in MAP_UNITS if units != record["chosen"])
    assert record[record["chosen"]]["partial_pcc"] >= record[other]["partial_pcc"]
    assert record["split"] == "the right-most 25% of the shapes"
    # the chosen units' held-out model is the reliability estimate: no further training for reliability=True
    reliability = chosen.config.reliability
    assert reliability["split"] == record["split"] and len(reliability["pcc"]) == len(chosen.genes)
    assert sum(filter(None, reliability["partial_pcc"])) / len(chosen.genes) == pytest.approx(
        record[record["chosen"]]["partial_pcc"]
    )
    # the final model is the one the chosen units train directly: the choice changes nothing else
    direct = pixnet.tl.train(tiny_spots, epochs=1, map_units=record["chosen"], **TINY_TRAINING)
    for name, tensor in direct.network.state_dict().items():
        torch.testing.assert_close(chosen.network.state_dict()[name], tensor, rtol=0, atol=0)
    assert direct.config.map_units_choice == {} and direct.config.reliability == {}

    chosen.save(tmp_path / "model")
    assert PixNet.load(tmp_path / "model").config.map_units_choice == record
    config = tmp_path / "model" / "config.json"
    stored = json.loads(config.read_text())
    stored["config"]["map_units_choice"]["chosen"] = "auto"
    config.write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="field 'map_units_choice' must be empty, or a record of the map units"):
        PixNet.load(tmp_path / "model")


def test_the_cpu_preset_chooses_unless_the_options_train_one_units_only():
    plan = TrainingPlan().resolved({}, PRESETS["cpu"])
    assert PixNet._resolve_params(PixNetParams(), PRESETS["cpu"], plan).map_units == "auto"
    assert PixNet._resolve_params(PixNetParams(loss="poisson"), PRESETS["cpu"], plan).map_units == "normalized"
    with pytest.raises(ValueError, match="map_units='auto' trains \\(or may train\\) the composition"):
        PixNet._resolve_params(PixNetParams(loss="poisson", map_units="auto"), PRESETS["cpu"], plan)


def test_when_no_tissue_can_be_held_out_the_map_is_normalised_with_a_warning():
    def cannot_hold_out(options):
        raise ValueError("no training shapes lie wholly inside a patch")

    with pytest.warns(UserWarning, match="could not train on part of the data .*no training shapes"):
        params, decided = PixNet._decide_on_held_out(PixNetParams(map_units="auto"), cannot_hold_out)
    assert params.map_units == "normalized" and decided == {}
    assert PixNet._decide_on_held_out(PixNetParams(map_units="counts"), cannot_hold_out)[0].map_units == "counts"
