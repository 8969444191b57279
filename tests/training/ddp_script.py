"""Train a small model and write its history as JSON: run directly or under torchrun (see test_distributed.py)."""

import json
import os
import sys

import torch

import pixnet


def main(out: str, batchnorm_eval: bool) -> None:
    """Train on a small synthetic section and write the history to ``out`` (from rank 0)."""
    torch.set_num_threads(1)
    if batchnorm_eval:
        # batch statistics are per process on CPU (SyncBatchNorm needs GPUs); frozen statistics make every sample
        # independent of its batch-mates, so DDP must then reproduce the single-process run exactly
        torch.nn.BatchNorm2d.train = lambda self, mode=True: torch.nn.Module.train(self, False)
    sdata = pixnet.datasets.synthetic_spots("visium", size_um=900, n_genes=12, seed=4)
    model = pixnet.tl.train(
        sdata,
        preset="paper",
        encoder_weights="random",
        decoder_width=16,
        patch_size=96,
        n_top_genes=6,
        batch_size=4,
        epochs=3,
        validation="region",
        seed=0,
        progress=False,
        device="cpu",
    )
    if int(os.environ.get("RANK", "0")) == 0:
        with open(out, "w") as f:
            json.dump(model.history, f)


if __name__ == "__main__":  # collected as a module (doctests) it must not train
    main(sys.argv[1], "--batchnorm-eval" in sys.argv)
