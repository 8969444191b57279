"""Training under torchrun (DDP, gloo, 2 CPU processes) follows the single-process run of the same global batch."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).with_name("ddp_script.py")


def _history(tmp_path, name, launcher, *flags):
    out = tmp_path / f"{name}.json"
    subprocess.run([*launcher, str(SCRIPT), str(out), *flags], check=True, timeout=600, capture_output=True)
    return json.loads(out.read_text())


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def _curve(history, key):
    return np.array([h[key] for h in history if key in h])


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The single-process run with frozen batch-norm statistics, which both tests compare with."""
    return _history(tmp_path_factory.mktemp("ddp"), "single", [sys.executable], "--batchnorm-eval")


def test_ddp_matches_single_process(tmp_path, single):
    ddp = _history(tmp_path, "ddp", TORCHRUN, "--batchnorm-eval")
    assert [h["epoch"] for h in ddp] == [h["epoch"] for h in single] == [0, 1, 2, 3]
    for key in ("val_loss", "val_pcc"):  # the untrained model: the same numbers up to summation order
        np.testing.assert_allclose(_curve(ddp, key)[0], _curve(single, key)[0], rtol=1e-5, err_msg=key)
    # Gradients reduced in another order differ in the last bits, and Adam turns a near-zero gradient's sign
    # into a full step, so the runs drift apart by epoch: on the machines seen so far within 1 % in the
    # losses and 0.0034 in a PCC over these few spots.
    for key in ("train_loss", "val_loss"):
        np.testing.assert_allclose(_curve(ddp, key), _curve(single, key), rtol=0.05, err_msg=key)
    for key in ("train_pcc", "val_pcc"):
        np.testing.assert_allclose(_curve(ddp, key), _curve(single, key), atol=0.02, err_msg=key)


def test_ddp_with_batch_statistics_follows_single_process(tmp_path, single):
    ddp = _history(tmp_path, "ddp", TORCHRUN)
    # the untrained model, evaluated (batch norm in eval mode in both runs), is identical up to summation order
    for key in ("val_loss", "val_pcc"):
        np.testing.assert_allclose(_curve(ddp, key)[0], _curve(single, key)[0], rtol=1e-5, err_msg=key)
    assert _curve(ddp, "val_loss")[-1] < _curve(ddp, "val_loss")[0]  # and it learns with per-process statistics
