"""Doctest fixtures: docstring examples run in a scratch folder, with a small predicted sample at hand."""

import pytest

# the model of tl.predict's example (a few seconds of training)
DOCTEST_MODEL = {"preset": "paper", "encoder_weights": "random", "decoder_width": 16, "patch_size": 64, "epochs": 1}


@pytest.fixture(scope="session")
def _predicted_sample(tmp_path_factory):
    import pixnet

    folder = tmp_path_factory.mktemp("doctest") / "sample_hd"
    sdata = pixnet.io.read(pixnet.datasets.synthetic_visium_hd(folder, size_um=128, progress=False))
    model = pixnet.tl.train(sdata, shapes="bins_8um", seed=0, progress=False, **DOCTEST_MODEL)
    pixnet.tl.predict(sdata, shapes="bins_2um", model=model, progress=False)
    return sdata, model


@pytest.fixture(autouse=True)
def _doctest_setup(request, tmp_path, monkeypatch):
    if not isinstance(request.node, pytest.DoctestItem):
        return
    monkeypatch.chdir(tmp_path)  # examples write their samples and figures here, never into the checkout
    # examples that say they continue tl.predict's get its sample (a fresh copy) and model
    if "as after predict's example" in (request.node.dtest.docstring or ""):
        import spatialdata

        sdata, model = request.getfixturevalue("_predicted_sample")
        request.getfixturevalue("doctest_namespace").update(sdata=spatialdata.deepcopy(sdata), model=model)
