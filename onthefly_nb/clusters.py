"""Group the hard samples into candidate regimes, off the training thread.

Features are the raw inputs when the dataset holds small vectors, else the penultimate-layer
features captured for the hard samples during training (see ``features.py``), each with the
log loss as one more column; else each sample's loss history (mean, spread, hardness, margin,
confidence). MiniBatchKMeans clusters them, with k chosen by silhouette score within [2, 8]
(the smallest k near the best score) unless given; PCA gives a 2-D map whose axes keep a
fixed sign from one refresh to the next.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.cluster import MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from .slices import MAX_FEATURE_COLUMNS

K_BOUNDS = (2, 8)
MAX_CLUSTERED = 100_000
SILHOUETTE_SAMPLE = 5_000
SILHOUETTE_SLACK = 0.02
REPRESENTATIVES = 5

FeatureLookup = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray] | None"]


@dataclass
class Clustering:
    """One clustering of the hard samples: ids per dataset index (-1 elsewhere) and summaries."""

    step: int
    source: str
    indices: np.ndarray  # dataset indices of the clustered samples
    labels: np.ndarray  # cluster id of each, numbered by decreasing mean loss
    projection: np.ndarray  # 2-D map of each
    summary: pd.DataFrame = field(repr=False)

    def ids(self, size: int) -> np.ndarray:
        """Cluster id of every dataset index, -1 for samples not clustered."""
        ids = np.full(size, -1, dtype=np.int16)
        ids[self.indices] = self.labels
        return ids


def hard_samples(frame: pd.DataFrame, quantile: float = 0.9, limit: int = MAX_CLUSTERED) -> pd.DataFrame:
    """Samples in the top ``1 - quantile`` by latest loss (the tail now) or by hardness (the mean
    within-batch loss percentile over visits: hard all along); the hardest ``limit`` of them."""
    tail = frame["loss"] >= frame["loss"].quantile(quantile)
    persistent = frame["hardness"] >= frame["hardness"].quantile(quantile)
    hard = frame[tail | persistent]
    return hard.nlargest(limit, "hardness") if len(hard) > limit else hard


def features_of(hard: pd.DataFrame, lookup: FeatureLookup | None = None) -> tuple[pd.DataFrame, np.ndarray, str]:
    """The hard samples that have features, and those features, standardised: raw inputs x0..
    when present, else captured penultimate features, else the loss-history columns."""
    inputs = [c for c in hard.columns if c[:1] == "x" and c[1:].isdigit()]
    found = lookup(hard["index"].to_numpy()) if lookup is not None and not inputs else None
    if inputs and len(inputs) <= MAX_FEATURE_COLUMNS:
        values, source = hard[inputs].to_numpy(np.float32), "inputs"
    elif found is not None and found[0].sum() >= 3:
        hard, values, source = hard[found[0]], found[1], "penultimate features"
    else:
        history = [c for c in ("loss_mean", "loss_std", "hardness", "margin", "confidence", "variability")
                   if c in hard.columns]
        values, source = hard[history].to_numpy(np.float32), "loss history"
    if source != "loss history":  # the loss level is part of a regime's signature
        values = np.column_stack([values, np.log1p(hard["loss"].to_numpy(np.float32))])
    return hard, StandardScaler().fit_transform(np.nan_to_num(values)), source


def choose_k(features: np.ndarray, bounds: tuple[int, int] = K_BOUNDS, seed: int = 0) -> int:
    """The smallest k within ``bounds`` whose silhouette score on a subsample is within
    ``SILHOUETTE_SLACK`` of the best: fewer, larger regimes unless more are clearly better."""
    low, high = bounds[0], min(bounds[1], len(features) - 1)
    if high <= low:
        return max(1, min(low, len(features)))
    rng = np.random.default_rng(seed)
    sample = features[rng.choice(len(features), min(len(features), SILHOUETTE_SAMPLE), replace=False)]
    scores = {}
    for k in range(low, high + 1):
        labels = MiniBatchKMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(sample)
        if len(set(labels)) > 1:
            scores[k] = silhouette_score(sample, labels)
    if not scores:
        return low
    best = max(scores.values())
    return min(k for k, score in scores.items() if score >= best - SILHOUETTE_SLACK)


def cluster(frame: pd.DataFrame, step: int, k: int | None = None, lookup: FeatureLookup | None = None,
            seed: int = 0) -> Clustering | None:
    """Cluster the hard samples of a slice frame; None when there are too few of them."""
    hard = hard_samples(frame)
    if len(hard) < 3:
        return None
    hard, features, source = features_of(hard, lookup)
    k = k or choose_k(features, seed=seed)
    model = MiniBatchKMeans(n_clusters=k, n_init=3, random_state=seed).fit(features)
    raw = model.labels_
    order = pd.Series(hard["loss"].to_numpy()).groupby(raw).mean().sort_values(ascending=False).index
    renumber = np.empty(k, dtype=np.int16)
    renumber[np.asarray(order)] = np.arange(len(order))
    labels = renumber[raw]
    projection = _projection(features, seed)
    summary = _summary(hard, labels, features, model.cluster_centers_[np.asarray(order)], frame["loss"].median())
    return Clustering(step, source, hard["index"].to_numpy(), labels, projection, summary)


def _projection(features: np.ndarray, seed: int) -> np.ndarray:
    if features.shape[1] < 2:
        return np.column_stack([features[:, 0], np.zeros(len(features))]).astype(np.float32)
    pca = PCA(n_components=2, random_state=seed).fit(features)
    signs = np.sign(pca.components_[np.arange(2), np.abs(pca.components_).argmax(1)])
    return (pca.transform(features) * signs).astype(np.float32)


def _summary(hard: pd.DataFrame, labels: np.ndarray, features: np.ndarray, centers: np.ndarray,
             median_loss: float) -> pd.DataFrame:
    rows = []
    for cid in range(len(centers)):
        members = hard[labels == cid]
        distance = np.linalg.norm(features[labels == cid] - centers[cid], axis=1)
        row = {"cluster": cid, "size": len(members), "mean_loss": float(members["loss"].mean()),
               "loss_vs_median": float(members["loss"].mean() / median_loss) if median_loss else np.nan,
               "representatives": members["index"].to_numpy()[np.argsort(distance)[:REPRESENTATIVES]].tolist()}
        if "label" in members:
            row["top_labels"] = members["label"].value_counts().head(3).to_dict()
            row["top_predictions"] = members["prediction"].value_counts().head(3).to_dict()
        rows.append(row)
    return pd.DataFrame(rows).set_index("cluster")
