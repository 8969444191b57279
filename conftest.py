"""Test-session setup: each worker's share of the cores; doctest fixtures (a scratch folder, a predicted sample)."""

import os

import pytest

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pytest_configure(config):
    """Give each xdist worker its share of the cores, before the workers start.

    Set here, in the controller, the limit is inherited by the workers and by every process they start (notebook
    kernels, torchrun): torch's and BLAS's thread pools spin-wait, and two pools of two threads on two cores
    made a notebook 2.7x slower than alone.
    """
    workers = getattr(config.option, "numprocesses", None)
    if isinstance(workers, int) and workers > 1 and "PYTEST_XDIST_WORKER" not in os.environ:
        threads = str(max(1, (os.cpu_count() or 2) // workers))
        for name in THREAD_VARIABLES:
            os.environ.setdefault(name, threads)


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
