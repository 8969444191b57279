import os
import warnings
from pathlib import Path

import pytest
import spatialdata_io

from pixnet.datasets import synthetic_spots, synthetic_visium_hd

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PIXNET_DATA", REPO.parent / "shared" / "data"))


def shared_data(name: str) -> Path:
    """A folder of real data, or skip the test when this machine has none (the suite must run without it)."""
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip(f"real data folder {folder} not present")
    return folder


def read_visium_hd(folder, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return spatialdata_io.visium_hd(folder, dataset_id="synthetic", load_segmentations_only=False, **kwargs)


@pytest.fixture(scope="session")
def hd_folder(tmp_path_factory):
    return synthetic_visium_hd(
        tmp_path_factory.mktemp("hd") / "sample", size_um=160, n_genes=24, seed=3, progress=False
    )


@pytest.fixture
def hd_sdata(hd_folder):
    return read_visium_hd(hd_folder)


@pytest.fixture
def spots_sdata():
    return synthetic_spots("visium", size_um=700, n_genes=24, seed=0)


# the tests' two small recipes, each defined once (tests add only what they are about): a random ResNet18
# fine-tuned at 1 µm/px (the "paper" preset, shrunk), and the "cpu" preset's frozen-encoder ensemble, shrunk
TINY_TRAINING = {
    "preset": "paper",
    "encoder_weights": "random",
    "decoder_width": 16,
    "patch_size": 96,
    "n_top_genes": 6,
    "batch_size": 4,
    "progress": False,
}
TINY_ENSEMBLE = {
    "preset": "cpu",
    "encoder": "resnet18",
    "encoder_weights": "random",
    "decoder_width": 16,
    "n_top_genes": 4,
    "map_units": "normalized",  # the preset's "auto" trains two more models (tests/models/test_map_units.py)
    "progress": False,
}


@pytest.fixture(scope="session")
def tiny_spots():
    """A small synthetic Visium sample (600 µm, 12 genes); tests must not change it."""
    return synthetic_spots("visium", size_um=600, n_genes=12, seed=5)


@pytest.fixture(scope="session")
def tiny_model(tiny_spots):
    """A PixNet trained for one epoch on ``tiny_spots`` with ``TINY_TRAINING`` (shared by every test of a worker)."""
    import pixnet

    return pixnet.tl.train(tiny_spots, epochs=1, **TINY_TRAINING)


def tiny_pixnet(
    genes=("G0", "G1", "G2"),
    microns_per_pixel: float = 1.0,
    decoder_width: int = 8,
    n_models: int = 1,
    output_stride: int = 1,
    pixel_skip: int = 0,
    map_units: str = "normalized",
):
    """An untrained PixNet with a random ResNet18 encoder (seed 0): the same weights at every call."""
    import torch

    import pixnet
    from pixnet.models import PixNet, PixNetConfig

    torch.manual_seed(0)
    config = PixNetConfig(
        genes=list(genes),
        gene_selection={"method": "list", "params": {}},
        normalization=pixnet.pp.Normalization("total_log").to_dict(),
        microns_per_pixel=microns_per_pixel,
        patch_size=64,
        encoder=pixnet.nn.EncoderConfig("resnet18").to_dict(),
        decoder_width=decoder_width,
        n_models=n_models,
        output_stride=output_stride,
        pixel_skip=pixel_skip,
        map_units=map_units,
    )
    return PixNet.build(config)


def killed_at_rename(monkeypatch, kill_at: int, action) -> bool:
    """Run ``action()`` with a KeyboardInterrupt at pixnet's ``kill_at``-th rename or replace; whether it finished.

    Only renames called from pixnet's modules count (zarr's own file writes pass through).
    """
    import os
    import sys
    from pathlib import Path

    rename, replace, calls = Path.rename, os.replace, []

    def counted(original, *args):
        if sys._getframe(2).f_globals.get("__name__", "").startswith("pixnet"):  # the caller of rename / replace
            calls.append(args)
            if len(calls) == kill_at:
                raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(Path, "rename", lambda *a: counted(rename, *a))
    monkeypatch.setattr(os, "replace", lambda *a: counted(replace, *a))
    try:
        action()
        return True
    except KeyboardInterrupt:
        return False
    finally:
        monkeypatch.setattr(Path, "rename", rename)
        monkeypatch.setattr(os, "replace", replace)


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on localhost (real downloads, no internet), its URL, and the paths requested."""
    import functools
    import http.server
    import threading

    folder = tmp_path / "served"
    folder.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_request(self, code="-", size="-"):
            requests.append(self.path)

        def log_message(self, format, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_port}", requests
    server.shutdown()
