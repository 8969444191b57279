"""Spot-level baselines: ridge and kNN on frozen encoder features of spot patches, and the training mean."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from ..nn import EncoderConfig, create_encoder
from ..pp import Normalization

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

logger = logging.getLogger(__name__)

__all__ = ["BASELINES", "SpotBaseline"]

BASELINES = ("ridge", "knn", "mean")
RIDGE_ALPHAS = tuple(np.logspace(-1, 5, 13))


class FeatureExtractor:
    """Global-average-pooled deepest features of a frozen encoder."""

    def __init__(self, config: EncoderConfig, seed: int = 0, device: str | torch.device = "cpu") -> None:
        torch.manual_seed(seed)  # fixes random weights, when the encoder has no pretrained ones
        self.encoder, self.config = create_encoder(config.name, None if config.weights == "random" else config.weights)
        self.device = torch.device(device)
        self.encoder.eval().to(self.device)
        self.mean = torch.tensor(self.config.mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(self.config.std, device=self.device).view(1, 3, 1, 1)

    @torch.no_grad()
    def __call__(self, patches: np.ndarray, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """``(n, P, P, 3)`` uint8 -> ``(n, channels)`` float32."""
        out = []
        for i in tqdm(range(0, len(patches), batch_size), desc="features", disable=not progress, leave=False):
            x = torch.from_numpy(patches[i : i + batch_size]).to(self.device).permute(0, 3, 1, 2).float() / 255
            deepest = self.encoder((x - self.mean) / self.std)[-1]
            out.append(deepest.mean(dim=(-2, -1)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.encoder.channels[-1]), np.float32)


def make_estimator(method: str, n_samples: int, n_features: int, n_components: int, k: int) -> Pipeline:
    """The sklearn estimator of a baseline (standardise -> PCA -> ridge / cosine kNN; or the mean)."""
    # scikit-learn is imported here, not with pixnet: only the baselines need it
    from sklearn.decomposition import PCA
    from sklearn.dummy import DummyRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if method == "mean":
        return make_pipeline(DummyRegressor(strategy="mean"))
    components = max(1, min(n_components, n_samples - 1, n_features))
    if method == "ridge":
        head = RidgeCV(alphas=RIDGE_ALPHAS, alpha_per_target=True)  # alpha per gene by efficient leave-one-out
    elif method == "knn":
        head = KNeighborsRegressor(n_neighbors=min(k, n_samples), metric="cosine", algorithm="brute")
    else:
        raise ValueError(f"Unknown baseline {method!r}; choose one of {BASELINES}.")
    return make_pipeline(StandardScaler(), PCA(n_components=components, random_state=0), head)


@dataclass
class SpotBaseline:
    """A fitted spot-level baseline, in the same genes, units and working resolution as a PixNet model.

    Built by :func:`pixnet.tl.train_baseline`; predicts with :func:`pixnet.tl.predict_baseline`. Baselines are
    comparisons, not products: they are not saved (their scikit-learn estimators would need pickle).

    Attributes
    ----------
    method
        ``"ridge"``: standardise -> PCA (``n_components``) -> ridge (alpha per gene by leave-one-out), as in
        HEST-Benchmark; ``"knn"``: the mean of the ``k`` nearest training spots by cosine distance in the same
        PCA space (as BLEEP averages its nearest neighbours); ``"mean"``: the per-gene training mean.
    genes, normalization, microns_per_pixel, patch_size
        As for PixNet: targets, units, working resolution and the patch side (working pixels) around each spot.
    encoder
        The frozen encoder's :class:`~pixnet.nn.EncoderConfig` (``None`` for ``"mean"``).

    Examples
    --------
    With ``sdata`` and ``model`` as after predict's example:

    >>> import pixnet
    >>> knn = pixnet.tl.train_baseline(sdata, "knn", shapes="bins_8um", like=model, k=10, progress=False)
    >>> knn.method, knn.genes == model.genes
    ('knn', True)
    >>> pixnet.tl.predict_baseline(sdata, "bins_16um", knn, progress=False)  # adds "knn_synthetic_square_016um"

    """

    method: str
    genes: list[str]
    normalization: Normalization
    microns_per_pixel: float
    patch_size: int
    encoder: EncoderConfig | None
    estimator: Pipeline
    n_train: int = 0
    params: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        encoder = f", encoder={self.encoder.name}/{self.encoder.weights}" if self.encoder else ""
        return (
            f"SpotBaseline({self.method!r}, {len(self.genes)} genes, {self.n_train} training spots, "
            f"{self.microns_per_pixel:g} µm/px, patch {self.patch_size} px{encoder})"
        )
