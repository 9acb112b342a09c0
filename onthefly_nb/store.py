"""Dense per-sample arrays over the dataset and per-step loss quantiles, all vectorised."""

from __future__ import annotations

import numpy as np

QUANTILES = (0.01, 0.05, 0.25, 0.50, 0.75, 0.95, 0.99)
QUANTILE_NAMES = ("p1", "p5", "p25", "p50", "p75", "p95", "p99")
STEP_COLUMNS = ("step", "epoch", *QUANTILE_NAMES, "max", "mean")
HISTOGRAM_BINS = 64


def loss_quantiles(losses: np.ndarray, axis: int | None = None) -> np.ndarray:
    """p1..p99, max and mean of ``losses`` (along ``axis``), as the last dimension."""
    q = np.quantile(losses, QUANTILES, axis=axis)
    stats = np.concatenate([q, [losses.max(axis=axis)], [losses.mean(axis=axis)]])
    return np.moveaxis(stats, 0, -1)


def occurrence_rank(indices: np.ndarray) -> np.ndarray:
    """For each position, how many earlier positions hold the same index (0 for the first)."""
    order = np.argsort(indices, kind="stable")
    ordered = indices[order]
    positions = np.arange(len(indices))
    run_start = np.maximum.accumulate(np.where(np.r_[True, ordered[1:] != ordered[:-1]], positions, 0))
    rank = np.empty(len(indices), dtype=np.int64)
    rank[order] = positions - run_start
    return rank


class SampleStore:
    """Latest loss, running mean and variance, times seen and last step, per dataset index.

    For classification it also keeps label, prediction and margin (true-class logit minus
    the best other logit); whether the prediction was right is ``prediction == label``.
    That is 32 bytes per sample at most.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.loss = np.full(size, np.nan, dtype=np.float32)
        self.loss_mean = np.zeros(size, dtype=np.float32)
        self._loss_m2 = np.zeros(size, dtype=np.float32)
        self.seen = np.zeros(size, dtype=np.uint32)
        self.last_step = np.zeros(size, dtype=np.uint32)
        self.label: np.ndarray | None = None
        self.prediction: np.ndarray | None = None
        self.margin: np.ndarray | None = None

    @property
    def is_classification(self) -> bool:
        return self.label is not None

    @property
    def nbytes(self) -> int:
        arrays = (self.loss, self.loss_mean, self._loss_m2, self.seen, self.last_step,
                  self.label, self.prediction, self.margin)
        return sum(a.nbytes for a in arrays if a is not None)

    def loss_std(self) -> np.ndarray:
        """Standard deviation of each sample's loss across the times it was seen."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(self._loss_m2 / np.maximum(self.seen, 1)).astype(np.float32)

    def update(
        self,
        indices: np.ndarray,
        losses: np.ndarray,
        steps: np.ndarray,
        labels: np.ndarray | None = None,
        predictions: np.ndarray | None = None,
        margins: np.ndarray | None = None,
    ) -> None:
        """Record one loss per position; an index seen twice is applied in order."""
        if indices.size and (indices.min() < 0 or indices.max() >= self.size):
            bad = indices[(indices < 0) | (indices >= self.size)][0]
            raise IndexError(f"sample index {bad} is outside the dataset of {self.size} samples")
        if labels is not None and self.label is None:
            self.label = np.full(self.size, -1, dtype=np.int32)
            self.prediction = np.full(self.size, -1, dtype=np.int32)
            self.margin = np.full(self.size, np.nan, dtype=np.float32)
        rank = occurrence_rank(indices)
        passes = int(rank.max(initial=-1)) + 1
        for r in range(passes):
            at = slice(None) if passes == 1 else rank == r
            idx = indices[at]
            self._welford(idx, losses[at])
            self.loss[idx] = losses[at]
            self.last_step[idx] = steps[at]
            if labels is not None:
                self.label[idx] = labels[at]
                self.prediction[idx] = predictions[at]
                self.margin[idx] = margins[at]

    def _welford(self, idx: np.ndarray, x: np.ndarray) -> None:
        count = self.seen[idx] + 1
        delta = x - self.loss_mean[idx]
        mean = self.loss_mean[idx] + delta / count
        self._loss_m2[idx] += delta * (x - mean)
        self.loss_mean[idx] = mean
        self.seen[idx] = count

    def seen_mask(self) -> np.ndarray:
        return self.seen > 0

    def quantiles(self) -> dict[str, float]:
        """Quantiles, max and mean of the latest loss over every sample seen so far."""
        latest = self.loss[self.seen_mask()]
        if latest.size == 0:
            return {}
        names = (*QUANTILE_NAMES, "max", "mean")
        return dict(zip(names, loss_quantiles(latest.astype(np.float64)).tolist()))

    def histogram(self, bins: int = HISTOGRAM_BINS) -> tuple[np.ndarray, np.ndarray]:
        """Counts and edges of the latest losses over ``bins`` fixed-width bins from 0 to max."""
        latest = self.loss[self.seen_mask()]
        latest = latest[np.isfinite(latest)]
        low = min(0.0, float(latest.min())) if latest.size else 0.0
        high = float(latest.max()) if latest.size else 1.0
        return np.histogram(latest, bins=bins, range=(low, high if high > low else low + 1.0))


class StepHistory:
    """Per-step rows of :data:`STEP_COLUMNS` in a growable float64 array."""

    def __init__(self, capacity: int = 1024) -> None:
        self._rows = np.empty((capacity, len(STEP_COLUMNS)), dtype=np.float64)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def extend(self, rows: np.ndarray) -> None:
        need = self._n + len(rows)
        if need > len(self._rows):
            grown = np.empty((max(need, 2 * len(self._rows)), self._rows.shape[1]), dtype=np.float64)
            grown[: self._n] = self._rows[: self._n]
            self._rows = grown
        self._rows[self._n : need] = rows
        self._n = need

    def rows(self) -> np.ndarray:
        """A copy of every row so far."""
        return self._rows[: self._n].copy()

    def downsampled(self, max_rows: int) -> np.ndarray:
        """At most ``max_rows`` rows spread evenly over the history, the last one included."""
        if self._n <= max_rows:
            return self.rows()
        picks = np.unique(np.linspace(0, self._n - 1, max_rows).round().astype(np.int64))
        return self._rows[picks].copy()
