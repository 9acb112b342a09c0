"""Dense per-sample arrays over the dataset and per-step loss quantiles, all vectorised."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

QUANTILES = (0.01, 0.05, 0.25, 0.50, 0.75, 0.95, 0.99)
QUANTILE_NAMES = ("p1", "p5", "p25", "p50", "p75", "p95", "p99")
STEP_COLUMNS = ("step", "epoch", *QUANTILE_NAMES, "max", "mean")
HISTOGRAM_BINS = 64
TAIL_PERCENTILE = 0.95
SUMMARY_SAMPLE = 100_000


class Visits(NamedTuple):
    """One flush worth of per-sample observations, one position per (sample, step) visit."""

    indices: np.ndarray
    losses: np.ndarray
    steps: np.ndarray
    percentiles: np.ndarray  # the loss's rank within its batch, 0 (easiest) to 1 (hardest)
    labels: np.ndarray | None = None
    predictions: np.ndarray | None = None
    margins: np.ndarray | None = None
    p_true: np.ndarray | None = None  # probability given to the true label

    def at(self, where: np.ndarray) -> Visits:
        return Visits(*(None if v is None else v[where] for v in self))


def loss_quantiles(losses: np.ndarray, axis: int | None = None) -> np.ndarray:
    """p1..p99, max and mean of ``losses`` (along ``axis``), as the last dimension."""
    q = np.quantile(losses, QUANTILES, axis=axis)
    stats = np.concatenate([q, [losses.max(axis=axis)], [losses.mean(axis=axis)]])
    return np.moveaxis(stats, 0, -1)


def row_quantiles(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: ``loss_quantiles`` (numpy's linear method), and each value's percentile rank.

    One argsort per row gives both. Percentiles run from 0 (lowest) to 1 (highest).
    """
    width = block.shape[1]
    order = np.argsort(block, axis=1)
    ordered = np.take_along_axis(block, order, axis=1).astype(np.float64)
    position = np.asarray(QUANTILES) * (width - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, width - 1)
    q = ordered[:, low] + (position - low) * (ordered[:, high] - ordered[:, low])
    percentiles = np.empty(block.shape, dtype=np.float32)
    ranks = np.broadcast_to(np.arange(width, dtype=np.float32) / max(width - 1, 1), block.shape)
    np.put_along_axis(percentiles, order, ranks, axis=1)
    return np.column_stack([q, ordered[:, -1], ordered.mean(axis=1)]), percentiles


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
    """What training has seen of each sample, one row per dataset index.

    Columns: latest loss, running mean and variance of the loss, times seen, last step;
    hardness (running mean of the loss's percentile within its batch) and how often it
    was in the top 5 % of its batch. For classification also label, prediction, margin
    (true-class logit minus the best other) and the Data Maps training dynamics
    (Swayamdipta et al. 2020): running mean and variance of the probability of the true
    label over visits, how often it was right, and forgetting events (right, then wrong
    at the next visit). Each sample is one 56-byte row of a ``(size, 14)`` uint32 block,
    so an update gathers and scatters whole rows instead of fourteen scattered arrays
    (``block``, read and written under the records' lock).
    """

    COLUMNS = ("loss", "loss_mean", "loss_m2", "seen", "last_step", "label", "prediction", "margin",
               "hardness", "tail_count", "p_true_mean", "p_true_m2", "correct_count", "forgets")
    _TYPES = (np.float32, np.float32, np.float32, np.uint32, np.uint32, np.int32, np.int32, np.float32,
              np.float32, np.uint32, np.float32, np.float32, np.uint32, np.uint32)

    def __init__(self, size: int, block: np.ndarray | None = None, classification: bool = False) -> None:
        self.size = size
        self.is_classification = classification
        self._summary_rows: np.ndarray | None = None
        if block is not None:
            self.block = block
            return
        self.block = np.zeros((size, len(self.COLUMNS)), dtype=np.uint32)
        for name, value in (("loss", np.nan), ("label", -1), ("prediction", -1), ("margin", np.nan)):
            self.column(name)[:] = value

    def column(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        """A writable view of one column, of the whole store or of gathered ``rows``."""
        i = _POSITION[name]
        block = self.block if rows is None else rows
        return block[:, i].view(self._TYPES[i])

    loss = property(lambda self: self.column("loss"), doc="Latest loss of each sample (NaN if unseen).")
    loss_mean = property(lambda self: self.column("loss_mean"), doc="Mean loss over the times seen.")
    seen = property(lambda self: self.column("seen"), doc="How many times each sample was trained on.")
    last_step = property(lambda self: self.column("last_step"), doc="Step at which it was last seen.")
    label = property(lambda self: self.column("label") if self.is_classification else None)
    prediction = property(lambda self: self.column("prediction") if self.is_classification else None)
    margin = property(lambda self: self.column("margin") if self.is_classification else None)

    @property
    def nbytes(self) -> int:
        return self.block.nbytes

    def subset(self, rows: np.ndarray) -> SampleStore:
        """A copy of the rows ``rows`` as a store of their own (row i is dataset index ``rows[i]``)."""
        return SampleStore(len(rows), self.block[rows], self.is_classification)

    def loss_std(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Standard deviation of each sample's loss across the times it was seen."""
        return std(self.column("loss_m2")[rows], self.seen[rows])

    def confidence(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Data Maps confidence: mean probability of the true label over visits."""
        return self.column("p_true_mean")[rows]

    def variability(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Data Maps variability: standard deviation of that probability over visits."""
        return std(self.column("p_true_m2")[rows], self.seen[rows])

    def correctness(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Data Maps correctness: the fraction of visits at which the prediction was right."""
        return (self.column("correct_count")[rows] / np.maximum(self.seen[rows], 1)).astype(np.float32)

    def forgetting(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Forgetting events (right, then wrong at the next visit; Toneva et al. 2019). A sample seen
        but never predicted right counts as forgotten infinitely often, their convention: it ranks first."""
        forgets = self.column("forgets")[rows].astype(np.float32)
        forgets[(self.column("correct_count")[rows] == 0) & (self.seen[rows] > 0)] = np.inf
        return forgets

    def update(self, visits: Visits) -> None:
        """Fold in one flush of visits; an index visited twice is applied in order."""
        indices = visits.indices
        if indices.size and (indices.min() < 0 or indices.max() >= self.size):
            bad = indices[(indices < 0) | (indices >= self.size)][0]
            raise IndexError(f"sample index {bad} is outside the dataset of {self.size} samples")
        self.is_classification |= visits.labels is not None
        if not self._has_repeats(indices):
            self._apply(visits)
            return
        rank = occurrence_rank(indices)
        for r in range(int(rank.max()) + 1):
            self._apply(visits.at(rank == r))

    def _has_repeats(self, indices: np.ndarray) -> bool:
        """Stamp each position into ``last_step``: a repeated index keeps only its last stamp.

        Every update rewrites ``last_step`` for all its indices, so the stamp never survives.
        """
        stamp = self.column("last_step")
        positions = np.arange(len(indices), dtype=np.uint32)
        stamp[indices] = positions
        return not np.array_equal(stamp[indices], positions)

    def _apply(self, v: Visits) -> None:
        rows = self.block.take(v.indices, axis=0)
        col = lambda name: self.column(name, rows)  # noqa: E731
        seen_before = col("seen").copy()
        count = seen_before + 1
        _welford(col("loss_mean"), col("loss_m2"), v.losses, count)
        col("seen")[:] = count
        col("loss")[:] = v.losses
        col("last_step")[:] = v.steps
        col("hardness")[:] += (v.percentiles - col("hardness")) / count
        col("tail_count")[:] += v.percentiles >= TAIL_PERCENTILE
        if v.labels is not None:
            was_right = (seen_before > 0) & (col("prediction") == col("label"))
            right = v.predictions == v.labels
            col("forgets")[:] += was_right & ~right
            col("correct_count")[:] += right
            _welford(col("p_true_mean"), col("p_true_m2"), v.p_true, count)
            col("label")[:] = v.labels
            col("prediction")[:] = v.predictions
            col("margin")[:] = v.margins
        self.block[v.indices] = rows

    def seen_mask(self) -> np.ndarray:
        return self.seen > 0

    def latest_losses(self) -> np.ndarray:
        """Latest losses of the samples seen, or of a fixed random subset of them in a large store.

        Stores above ``SUMMARY_SAMPLE`` samples summarise a fixed random subset of that many
        indices (rank error of a quantile about 0.2 %), so a dashboard tick costs the same at
        10M samples as at 200k; while too few of that subset were seen, every sample seen is used.
        """
        if self.size > SUMMARY_SAMPLE:
            if self._summary_rows is None:
                rng = np.random.default_rng(0)
                self._summary_rows = np.sort(rng.choice(self.size, SUMMARY_SAMPLE, replace=False))
            rows = self._summary_rows
            seen = self.seen[rows] > 0
            if seen.sum() >= SUMMARY_SAMPLE // 10:
                return self.loss[rows[seen]]
        return self.loss[self.seen_mask()]

    def quantiles(self) -> dict[str, float]:
        """Quantiles, max and mean of the latest loss over the samples seen (see ``latest_losses``)."""
        latest = self.latest_losses()
        if latest.size == 0:
            return {}
        names = (*QUANTILE_NAMES, "max", "mean")
        return dict(zip(names, loss_quantiles(latest.astype(np.float64)).tolist()))

    def histogram(self, bins: int = HISTOGRAM_BINS) -> tuple[np.ndarray, np.ndarray]:
        """Counts and edges of the latest losses over ``bins`` fixed-width bins from 0 (or the least
        loss, if negative) to the largest; when every loss is the same value, one bin of no width
        at it (edges ``[v, v]``), so no axis is invented."""
        latest = self.latest_losses()
        latest = latest[np.isfinite(latest)]
        low = min(0.0, float(latest.min())) if latest.size else 0.0
        high = float(latest.max()) if latest.size else 1.0
        if latest.size and float(latest.min()) == high:
            return np.array([latest.size]), np.array([high, high])
        return np.histogram(latest, bins=bins, range=(low, high if high > low else low + 1.0))


_POSITION = {name: i for i, name in enumerate(SampleStore.COLUMNS)}


def _welford(mean: np.ndarray, m2: np.ndarray, x: np.ndarray, count: np.ndarray) -> None:
    """One step of Welford's running mean and sum of squared deviations, in place."""
    delta = x - mean
    mean += delta / count
    with np.errstate(over="ignore"):  # a diverging run's squared deviations overflow to inf, honestly
        m2 += delta * (x - mean)


def std(m2: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Standard deviation from Welford's sum of squared deviations and the count."""
    return np.sqrt(m2 / np.maximum(seen, 1)).astype(np.float32)


_MEAN_COLUMN = STEP_COLUMNS.index("mean")


def _first_where(hit: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The first position of each bucket (beginning at ``starts``) where ``hit`` holds; each has one."""
    positions = np.flatnonzero(hit)
    return positions[np.searchsorted(positions, starts)]


class StepHistory:
    """Per-step rows of :data:`STEP_COLUMNS` in a growable float64 array."""

    def __init__(self, capacity: int = 1024) -> None:
        self._rows = np.empty((capacity, len(STEP_COLUMNS)), dtype=np.float64)
        self._n = 0
        self._picks: tuple[int, int, np.ndarray] = (0, 0, np.empty(0, dtype=np.int64))  # downsampled's full buckets

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

    def first(self, n: int) -> np.ndarray:
        """A copy of the first ``n`` rows."""
        return self._rows[: min(n, self._n)].copy()

    def last(self, n: int) -> np.ndarray:
        """A copy of the last ``n`` rows."""
        return self._rows[max(self._n - n, 0) : self._n].copy()

    def downsampled(self, max_rows: int) -> np.ndarray:
        """At most ``max_rows`` rows, the first and the last included: the latest ``2/5`` of them as
        they are (a recent spike or a "last 100 steps" view keeps every step), and for each bucket
        of the steps before, the rows of its lowest and highest mean loss, in step order, so no
        spike or dip vanishes between picks (a NaN mean counts as the highest). Buckets are a power
        of two steps wide, so the picks of full buckets are kept and only new steps are looked at."""
        n = self._n
        if n <= max_rows:
            return self.rows()
        dense = max_rows * 2 // 5
        buckets = (max_rows - dense - 1) // 2
        older = n - dense
        width = 1 << max(0, int(np.ceil(np.log2(older / buckets))))
        full = older // width
        cached_width, cached_full, cached = self._picks
        if cached_width != width:
            cached_full, cached = 0, np.empty(0, dtype=np.int64)
        if full > cached_full:
            cached = np.r_[cached, self._extremes(cached_full * width, full * width, width)]
            self._picks = (width, full, cached)
        tail = self._extremes(full * width, older, width) if older > full * width else np.empty(0, np.int64)
        picks = np.unique(np.r_[0, cached, tail, np.arange(older, n)])
        return self._rows[picks].copy()

    def _extremes(self, start: int, stop: int, width: int) -> np.ndarray:
        """Positions of the lowest and highest mean loss in each ``width`` rows of [start, stop)."""
        mean = np.nan_to_num(self._rows[start:stop, _MEAN_COLUMN], nan=np.inf)
        starts = np.arange(0, stop - start, width)
        sizes = np.diff(np.r_[starts, stop - start])
        low = _first_where(mean == np.repeat(np.minimum.reduceat(mean, starts), sizes), starts)
        high = _first_where(mean == np.repeat(np.maximum.reduceat(mean, starts), sizes), starts)
        return start + np.r_[low, high]
