"""Training curves from a model's history."""

from __future__ import annotations

# pyplot is imported where a figure is drawn: `import pixnet` does not start a matplotlib backend
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..models.pixnet import PixNet
from ._utils import finish

__all__ = ["training_curves"]


def training_curves(model: PixNet, *, save: str | Path | None = None) -> Figure:
    """Loss and mean per-gene PCC per epoch, on training and (when there was one) validation spots.

    Epoch 0 is the untrained model on the validation spots, so the curves show what training gained.

    Parameters
    ----------
    model
        A trained model (its ``history``).
    save
        Write the figure to this file.

    Returns
    -------
    The figure, whose two axes show the loss and the mean per-gene PCC by epoch.

    Examples
    --------
    >>> import pixnet
    >>> sdata = pixnet.datasets.synthetic_spots("visium", size_um=600)
    >>> model = pixnet.tl.train(sdata, epochs=2, n_top_genes=4, n_models=1, validation="region", progress=False)
    >>> fig = pixnet.pl.training_curves(model, save="training_curves.png")
    >>> [h["epoch"] for h in model.history]  # epoch 0: the untrained model on the held-out region
    [0, 1, 2]

    """
    import matplotlib.pyplot as plt

    history = model.history
    if not history:
        raise ValueError("The model has no training history (it was built, not trained).")
    fig, (loss_ax, pcc_ax) = plt.subplots(1, 2, figsize=(9, 3.5), layout="constrained")
    members = sorted({h.get("member", 1) for h in history})  # an ensemble's decoders train one after another
    for ax, metric, label in ((loss_ax, "loss", "loss (MSE + λ(1 − PCC))"), (pcc_ax, "pcc", "mean per-gene PCC")):
        for member in members:
            for split, style in (("train", "-o"), ("val", "--s")):
                points = [
                    (h["epoch"], h[f"{split}_{metric}"])
                    for h in history
                    if f"{split}_{metric}" in h and h.get("member", 1) == member
                ]
                if points:
                    name = split if len(members) == 1 else f"{split}, member {member}"
                    ax.plot(*zip(*points, strict=True), style, label=name, markersize=4)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.legend()
    best = min((h["val_loss"], h["epoch"]) for h in history if "val_loss" in h) if "val_loss" in history[-1] else None
    epochs = max(h["epoch"] for h in history)
    suffix = f", best validation loss {best[0]:.3f} at epoch {best[1]}" if best else ""
    trained = f"{epochs} epochs" if len(members) == 1 else f"{len(members)} ensemble members x {epochs} epochs"
    fig.suptitle(f"{type(model).__name__} training: {trained}, {len(model.genes)} genes{suffix}")
    finish(fig, save)
    return fig
