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

from .slices import MAX_FEATURE_COLUMNS

K_BOUNDS = (2, 8)
MAX_CLUSTERED = 100_000
SILHOUETTE_SAMPLE = 5_000
SILHOUETTE_SLACK = 0.02
REPRESENTATIVES = 5
MAP_POINTS = 1_000_000  # points on the sample map: every hard sample, then a fixed subset of the others
HISTORY_COLUMNS = ("loss_mean", "loss_std", "hardness", "margin", "confidence", "variability")

FeatureLookup = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray] | None"]


@dataclass
class Clustering:
    """One clustering of the hard samples: ids per dataset index (-1 elsewhere), summaries, and the
    sample map (the hard samples and a fixed subset of the others on the same 2-D projection)."""

    step: int
    source: str
    indices: np.ndarray  # dataset indices of the clustered samples
    labels: np.ndarray  # cluster id of each, numbered by decreasing mean loss
    projection: np.ndarray  # 2-D map of each
    summary: pd.DataFrame = field(repr=False)
    background: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False)
    background_projection: np.ndarray = field(default_factory=lambda: np.empty((0, 2), np.float32), repr=False)

    def ids(self, size: int) -> np.ndarray:
        """Cluster id of every dataset index, -1 for samples not clustered."""
        ids = np.full(size, -1, dtype=np.int16)
        ids[self.indices] = self.labels
        return ids

    def ids_of(self, indices: np.ndarray) -> np.ndarray:
        """Cluster id of each of the dataset ``indices``, -1 for samples not clustered."""
        order = np.argsort(self.indices)
        ordered = self.indices[order]
        at = np.minimum(np.searchsorted(ordered, indices), max(len(ordered) - 1, 0))
        ids = np.full(len(indices), -1, dtype=np.int16)
        if len(ordered):
            found = ordered[at] == indices
            ids[found] = self.labels[order][at[found]]
        return ids


def hard_samples(frame: pd.DataFrame, quantile: float = 0.9, limit: int = MAX_CLUSTERED) -> pd.DataFrame:
    """Samples in the top ``1 - quantile`` by latest loss (the tail now) or by hardness (the mean
    within-batch loss percentile over visits: hard all along); the hardest ``limit`` of them."""
    tail = frame["loss"] >= frame["loss"].quantile(quantile)
    persistent = frame["hardness"] >= frame["hardness"].quantile(quantile)
    hard = frame[tail | persistent]
    return hard.nlargest(limit, "hardness") if len(hard) > limit else hard


def feature_source(frame: pd.DataFrame, lookup: FeatureLookup | None) -> str:
    """Where features come from: raw inputs x0.. when present, else captured penultimate
    features when enough samples have them, else the loss-history columns."""
    inputs = [c for c in frame.columns if c[:1] == "x" and c[1:].isdigit()]
    if inputs and len(inputs) <= MAX_FEATURE_COLUMNS:
        return "inputs"
    found = lookup(frame["index"].to_numpy()) if lookup is not None else None
    return "penultimate features" if found is not None and found[0].sum() >= 3 else "loss history"


def raw_features(rows: pd.DataFrame, source: str, lookup: FeatureLookup | None) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows that have features from ``source``, and those features (not yet standardised)."""
    if source == "inputs":
        values = rows[[c for c in rows.columns if c[:1] == "x" and c[1:].isdigit()]].to_numpy(np.float32)
    elif source == "penultimate features":
        found = lookup(rows["index"].to_numpy()) if lookup is not None else None
        if found is None:
            return rows.iloc[:0], np.empty((0, 1), np.float32)
        rows, values = rows[found[0]], found[1]
    else:
        history = [c for c in HISTORY_COLUMNS if c in rows.columns]
        return rows, np.nan_to_num(rows[history].to_numpy(np.float32))
    # the loss level is part of a regime's signature
    return rows, np.nan_to_num(np.column_stack([values, np.log1p(rows["loss"].to_numpy(np.float32))]))


def choose_k(features: np.ndarray, bounds: tuple[int, int] = K_BOUNDS, seed: int = 0) -> int:
    """The smallest k within ``bounds`` whose silhouette score on a subsample is within
    ``SILHOUETTE_SLACK`` of the best: fewer, larger regimes unless more are clearly better."""
    from sklearn.cluster import MiniBatchKMeans  # sklearn takes seconds to import: only when clustering
    from sklearn.metrics import silhouette_score

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
            seed: int = 0, map_points: int = MAP_POINTS) -> Clustering | None:
    """Cluster the hard samples of a slice frame; None when there are too few of them."""
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.preprocessing import StandardScaler

    hard = hard_samples(frame)
    if len(hard) < 3:
        return None
    source = feature_source(hard, lookup)
    hard, values = raw_features(hard, source, lookup)
    if len(hard) < 3:
        return None
    scaler = StandardScaler().fit(values)
    features = scaler.transform(values)
    k = k or choose_k(features, seed=seed)
    model = MiniBatchKMeans(n_clusters=k, n_init=3, random_state=seed).fit(features)
    raw = model.labels_
    order = pd.Series(hard["loss"].to_numpy()).groupby(raw).mean().sort_values(ascending=False).index
    renumber = np.empty(k, dtype=np.int16)
    renumber[np.asarray(order)] = np.arange(len(order))
    labels = renumber[raw]
    project = _projector(features, seed)
    summary = _summary(hard, labels, features, model.cluster_centers_[np.asarray(order)], frame["loss"].median())
    others = _background(frame, hard, map_points - len(hard), seed)
    others, other_values = raw_features(others, source, lookup)
    return Clustering(step, source, hard["index"].to_numpy(), labels, project(features), summary,
                      others["index"].to_numpy(), project(scaler.transform(other_values)) if len(others) else
                      np.empty((0, 2), np.float32))


def _background(frame: pd.DataFrame, hard: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    """Up to ``limit`` samples outside the hard set, a subset fixed by the seed (stable across refreshes)."""
    others = frame[~frame["index"].isin(hard["index"])]
    if limit <= 0:
        return others.iloc[:0]
    if len(others) <= limit:
        return others
    priority = np.random.default_rng(seed).permutation(int(frame["index"].max()) + 1)
    return others.iloc[np.argsort(priority[others["index"].to_numpy()], kind="stable")[:limit]]


def _projector(features: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """A 2-D PCA fitted on the hard samples, with the sign of each axis fixed across refreshes."""
    from sklearn.decomposition import PCA

    if features.shape[1] < 2:
        return lambda x: np.column_stack([x[:, 0], np.zeros(len(x))]).astype(np.float32)
    pca = PCA(n_components=2, random_state=seed).fit(features)
    signs = np.sign(pca.components_[np.arange(2), np.abs(pca.components_).argmax(1)])
    return lambda x: (pca.transform(x) * signs).astype(np.float32)


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
