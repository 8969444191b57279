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

__all__ = ["BASELINES", "DepthOnly", "SpotBaseline"]

BASELINES = ("ridge", "knn", "mean", "depth")
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


class DepthOnly:
    """Predicts each spot's log depth from its features, and every gene as a linear function of that one value.

    What a predictor that knows nothing about any gene scores: its partial PCC given the measured depth is near 0,
    while on sparse spots its PCC@M can be high (see :func:`pixnet.tl.evaluate`).

    Examples
    --------
    >>> import numpy as np
    >>> from pixnet.models.baseline import DepthOnly, make_estimator
    >>> rng = np.random.default_rng(0)
    >>> features, log_depth = rng.normal(size=(50, 8)), rng.normal(size=50)
    >>> genes = np.column_stack([log_depth, -2 * log_depth])  # two genes that follow depth, with opposite signs
    >>> depth = make_estimator("depth", 50, 8, 4, 5).fit(features, genes, log_depth)
    >>> predicted = depth.predict(features)
    >>> round(float(np.corrcoef(predicted.T)[0, 1]), 6)  # one map for every gene: its sign and scale differ
    -1.0

    """

    def __init__(self, depth: Pipeline) -> None:
        self.depth = depth  # features -> log1p(total counts)
        self.coefficients = np.zeros((2, 0))  # (intercept, slope on log depth) per gene

    def fit(self, x: np.ndarray, y: np.ndarray, log_depth: np.ndarray) -> DepthOnly:
        """Fit the depth regression on ``x``, and each gene of ``y`` on the measured ``log_depth``."""
        self.depth.fit(x, log_depth)
        design = np.column_stack([np.ones_like(log_depth), log_depth])
        self.coefficients, *_ = np.linalg.lstsq(design, np.asarray(y, np.float64), rcond=None)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``(n, n_genes)``: every gene from the predicted log depth."""
        predicted = self.depth.predict(x)
        return np.column_stack([np.ones_like(predicted), predicted]) @ self.coefficients


def make_estimator(method: str, n_samples: int, n_features: int, n_components: int, k: int) -> Pipeline | DepthOnly:
    """The estimator of a baseline (standardise -> PCA -> ridge / cosine kNN / ridge on depth; or the mean)."""
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
    if method == "depth":
        return DepthOnly(
            make_pipeline(StandardScaler(), PCA(n_components=components, random_state=0), RidgeCV(RIDGE_ALPHAS))
        )
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
        PCA space (as BLEEP averages its nearest neighbours); ``"mean"``: the per-gene training mean;
        ``"depth"``: ridge in the same PCA space predicts the spot's sequencing depth (``log1p`` of its total
        counts) and every gene is a linear function of it (:class:`DepthOnly`), the score of one map of depth.
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
    estimator: Pipeline | DepthOnly
    n_train: int = 0
    params: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        encoder = f", encoder={self.encoder.name}/{self.encoder.weights}" if self.encoder else ""
        return (
            f"SpotBaseline({self.method!r}, {len(self.genes)} genes, {self.n_train} training spots, "
            f"{self.microns_per_pixel:g} µm/px, patch {self.patch_size} px{encoder})"
        )
