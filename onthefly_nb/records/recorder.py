"""Per-sample losses recorded on the training thread, folded into the store in batches.

The hot path only appends detached tensors to a list. Small outputs (logits of shape
[N, C], regression vectors) are kept as they are and processed together at the next
``flush``: one unreduced-loss call, one margin computation and one host copy for all the
steps since the last flush (a tenth of a second while a dashboard shows the run, else half a
second). Larger outputs are reduced to their per-sample columns right away, so the memory
kept between flushes stays bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import torch

from ..data.losses import SampleLoss, reduce_to_samples
from ..errors import NonFiniteLossError
from .features import CAPTURE_EVERY, HARD_PERCENTILE, FeatureBank, PenultimateCapture
from .store import STEP_COLUMNS, SampleStore, StepHistory, Visits, row_quantiles

MAX_PENDING_STEPS = 256
DEFER_BUDGET = 1 << 20  # output elements kept between flushes (4 MB of float32)


@dataclass
class _Step:
    step: int
    epoch: int
    indices: list[int]
    losses: torch.Tensor | None  # None until the unreduced loss runs on the outputs
    outputs: torch.Tensor | None  # kept while deferred
    targets: torch.Tensor | None
    columns: torch.Tensor | None = None  # [loss, (label, prediction, margin, p_true)] x samples, once done
    features: torch.Tensor | None = None  # penultimate features, when captured


def is_classification(outputs: object, targets: object) -> bool:
    """Logits of shape [N, C>1] with integer class targets of shape [N]."""
    return (
        isinstance(outputs, torch.Tensor)
        and isinstance(targets, torch.Tensor)
        and outputs.ndim == 2
        and outputs.shape[1] > 1
        and outputs.is_floating_point()
        and targets.ndim == 1
        and not targets.is_floating_point()
        and not targets.is_complex()
    )


Gather = Callable[[np.ndarray, np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray, np.ndarray] | None"]


class Recorder:
    """Collects each step's per-sample losses and folds them into a store and history."""

    def __init__(self, store: SampleStore, history: StepHistory, lock: threading.Lock,
                 loss: SampleLoss, stop_on_nonfinite: bool = True,
                 capture: PenultimateCapture | None = None, bank: FeatureBank | None = None,
                 gather: Gather | None = None) -> None:
        self.store = store
        self.gather = gather  # on a torchrun launch: every rank's visits, joined on rank 0
        self.capture = capture
        self.bank = bank
        self.loss = loss  # its per_sample may be found on the first batch (a scalar loss)
        self.history = history
        self.lock = lock
        self.stop_on_nonfinite = stop_on_nonfinite
        self._pending: list[_Step] = []
        self._classification: bool | None = None
        self._deferred_shapes: tuple[torch.Size, torch.Size] | None = None
        self._deferred_elements = 0
        self._staging: torch.Tensor | None = None  # slots for the features pending steps keep
        self._staged = 0
        self.samples = 0

    def __len__(self) -> int:
        return len(self._pending)

    def open(self) -> None:
        """Hook the model for features: a run begins."""
        if self.capture is not None:
            self.capture.attach()

    def close(self) -> None:
        """Remove the feature hook from the model: the run is over."""
        if self.capture is not None:
            self.capture.remove()

    @property
    def full(self) -> bool:
        """True when the pending steps should be flushed now to bound the memory they hold."""
        return len(self._pending) >= MAX_PENDING_STEPS or self._deferred_elements >= DEFER_BUDGET

    def record(self, step: int, epoch: int, indices: list[int], losses: torch.Tensor | None,
               outputs: Any, targets: Any) -> None:
        """Keep this step's values for the next flush (detached; no device sync).

        ``losses`` is None when the per-sample loss is still to be evaluated on the outputs.
        """
        if self._classification is None:
            self._classification = is_classification(outputs, targets)
        if isinstance(outputs, torch.Tensor):
            outputs = outputs.detach()
        if losses is not None:
            losses = losses.detach()
        features = self._features(step, len(indices))
        if self._defer(outputs, targets):
            keep = losses is None or self._classification
            self._pending.append(_Step(step, epoch, indices, losses, outputs if keep else None,
                                       targets if keep else None, features=features))
            return
        with torch.no_grad():
            columns = self._columns(outputs, targets, losses, len(indices))
        self._pending.append(_Step(step, epoch, indices, None, None, None, columns, features))

    def _features(self, step: int, batch_size: int) -> torch.Tensor | None:
        """This batch's captured penultimate features, when there is one row per sample."""
        if self.capture is None:
            return None
        features = self.capture.take()
        self.capture.active = (step + 1) % CAPTURE_EVERY == 0
        if features is None or features.shape[0] != batch_size:
            return None
        self._deferred_elements += features.numel()
        return self._stage(features)

    def _stage(self, features: torch.Tensor) -> torch.Tensor:
        """A copy of ``features`` in a preallocated slot, kept until the next flush. The activation
        itself is freed with its step: tensors that outlive their step fragment the heap, and every
        step then pays page faults for its batch."""
        staging = self._staging
        if staging is None or staging.shape[1:] != features.shape or staging.dtype != features.dtype \
                or staging.device != features.device:
            slots = min(MAX_PENDING_STEPS // CAPTURE_EVERY, DEFER_BUDGET // features.numel()) + 2
            staging = self._staging = features.new_empty((slots, *features.shape))
            self._staged = 0
        if self._staged == len(staging):
            return features.clone()
        slot = staging[self._staged]
        self._staged += 1
        return slot.copy_(features)

    def _defer(self, outputs: Any, targets: Any) -> bool:
        """Keep small outputs for the flush, if shaped like those kept so far."""
        if not (isinstance(outputs, torch.Tensor) and isinstance(targets, torch.Tensor)) or outputs.ndim > 2:
            return False
        shapes = (outputs.shape[1:], targets.shape[1:])
        if self._deferred_shapes is None:
            self._deferred_shapes = shapes
        if shapes != self._deferred_shapes:
            return False
        self._deferred_elements += outputs.numel()
        return True

    def _columns(self, outputs: Any, targets: Any, losses: torch.Tensor | None, size: int) -> torch.Tensor:
        """Rows [loss] or [loss, label, prediction, margin, p_true] over ``size`` samples, as float32."""
        if isinstance(outputs, torch.Tensor) and outputs.dtype in (torch.float16, torch.bfloat16):
            outputs = outputs.float()  # mixed precision: per-sample values in float32
        if losses is None:
            losses = reduce_to_samples(self.loss.per_sample(outputs, targets), size)  # type: ignore[misc]
        rows = [losses.float()]
        if self._classification:
            rows += _classify(outputs.float(), targets.long())
        return torch.stack(rows)

    def flush(self) -> int:
        """Fold pending steps into the store; returns how many steps were folded."""
        pending, self._pending = self._pending, []
        self._deferred_shapes, self._deferred_elements = None, 0
        self._staged = 0  # the slots are read below, before this thread records again
        if not pending:
            return 0
        columns = self._host_columns(pending)
        losses = columns[0]
        sizes = np.fromiter((len(p.indices) for p in pending), dtype=np.int64, count=len(pending))
        indices = np.fromiter(chain.from_iterable(p.indices for p in pending), dtype=np.int64,
                              count=int(sizes.sum()))
        if self.gather is not None:
            joined = self.gather(columns, indices, sizes)
            if joined is None:  # not rank 0: rank 0 keeps the store
                self.samples += len(indices)
                return len(pending)
            columns, indices, sizes = joined
            losses = columns[0]
        steps = np.repeat(np.fromiter((p.step for p in pending), dtype=np.int64, count=len(pending)), sizes)
        if self.stop_on_nonfinite and not np.isfinite(losses).all():
            self._fold_before_nonfinite(pending, columns, indices, sizes, steps)
            raise _nonfinite_error(losses, indices, steps)
        self._fold(pending, columns, indices, sizes, steps)
        return len(pending)

    def _fold_before_nonfinite(self, pending: list[_Step], columns: np.ndarray, indices: np.ndarray,
                               sizes: np.ndarray, steps: np.ndarray) -> None:
        """The steps before the first non-finite loss go into the store as usual; that step's row
        (a NaN mean) joins the history, so the chart and the health check show where it broke."""
        bad_step = int(steps[np.flatnonzero(~np.isfinite(columns[0]))[0]])
        kept = sum(1 for p in pending if p.step < bad_step)
        cut = int(sizes[:kept].sum())
        if kept:
            self._fold(pending[:kept], columns[:, :cut], indices[:cut], sizes[:kept], steps[:cut])
        broken = [p for p in pending[kept:] if p.step == bad_step]
        rows, _ = _step_rows(broken, columns[0, cut:cut + int(sizes[kept:kept + len(broken)].sum())],
                             sizes[kept:kept + len(broken)])
        with self.lock:
            self.history.extend(rows)

    def _fold(self, pending: list[_Step], columns: np.ndarray, indices: np.ndarray, sizes: np.ndarray,
              steps: np.ndarray) -> None:
        """Fold the host columns of ``pending`` into the store, the history and the feature bank."""
        losses = columns[0]
        rows, percentiles = _step_rows(pending, losses, sizes)
        classes = ()
        if len(columns) > 1:
            classes = (columns[1].astype(np.int32), columns[2].astype(np.int32), columns[3], columns[4])
        hard = _hard_features(pending, percentiles) if self.bank is not None else None
        visits = Visits(indices, losses, steps, percentiles, *classes)
        with self.lock:
            for part in _epochs(pending, sizes):  # within an epoch a sampler rarely repeats an index
                self.store.update(visits.at(part))
            self.history.extend(rows)
            if hard is not None:
                self.bank.put(indices[hard[0]], hard[1])  # type: ignore[union-attr]
            self.samples += len(indices)

    def _host_columns(self, pending: list[_Step]) -> np.ndarray:
        """Every pending sample's columns in one host copy; deferred steps processed together."""
        deferred = [p for p in pending if p.columns is None]
        with torch.no_grad():
            if deferred:
                outputs = targets = losses = None
                if deferred[0].outputs is not None:
                    outputs = torch.cat([p.outputs for p in deferred])  # type: ignore[misc]
                    targets = torch.cat([p.targets for p in deferred])  # type: ignore[misc]
                if deferred[0].losses is not None:
                    losses = torch.cat([p.losses for p in deferred])  # type: ignore[misc]
                done = self._columns(outputs, targets, losses, sum(len(p.indices) for p in deferred))
                if len(deferred) == len(pending):
                    return done.cpu().numpy()
                for p, chunk in zip(deferred, done.split([len(p.indices) for p in deferred], dim=1)):
                    p.columns = chunk
            return torch.cat([p.columns for p in pending], dim=1).cpu().numpy()  # type: ignore[misc]


def _epochs(pending: list[_Step], sizes: np.ndarray) -> list[slice]:
    """Visit positions of each epoch the pending steps span (usually one)."""
    if pending[0].epoch == pending[-1].epoch:
        return [slice(None)]
    ends = np.cumsum(sizes)
    cuts = [int(ends[i]) for i in range(len(pending) - 1) if pending[i].epoch != pending[i + 1].epoch]
    bounds = [0, *cuts, int(ends[-1])]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _hard_features(pending: list[_Step], percentiles: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Positions and features of the visits in the top of their batch's losses."""
    captured = [p for p in pending if p.features is not None]
    if not captured:
        return None
    if len(captured) == len(pending):  # the usual case: every step captured its features
        positions = np.arange(len(percentiles))
    else:
        starts = np.cumsum([0] + [len(p.indices) for p in pending])
        positions = np.concatenate([np.arange(starts[i], starts[i + 1])
                                    for i, p in enumerate(pending) if p.features is not None])
    hard = np.flatnonzero(percentiles[positions] >= HARD_PERCENTILE)
    if not hard.size:
        return None
    features = torch.cat([p.features for p in captured])  # type: ignore[misc]
    return positions[hard], features[torch.from_numpy(hard).to(features.device)].float().cpu().numpy()


def _classify(logits: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    """Labels, predictions, margins (true logit minus best other) and p(true label), as float rows;
    a label that is no class (``ignore_index``, -100 by default) has no margin or p(true): NaN."""
    valid = (labels >= 0) & (labels < logits.shape[1])
    column = torch.where(valid, labels, 0)[:, None]
    true = logits.gather(1, column).squeeze(1)
    others = logits.scatter(1, column, float("-inf")).amax(1)
    p_true = (true - logits.logsumexp(1)).exp()
    unknown = torch.tensor(float("nan"), device=logits.device)
    return [labels.float(), logits.argmax(1).float(), torch.where(valid, true - others, unknown),
            torch.where(valid, p_true, unknown)]


def _step_rows(pending: list[_Step], losses: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One row of (step, epoch, quantiles..., max, mean) per step, and each loss's percentile in its
    step's batch (the batches a step accumulated gradients over count as one)."""
    steps = np.fromiter((p.step for p in pending), dtype=np.int64, count=len(pending))
    first = np.r_[True, steps[1:] != steps[:-1]]
    if not first.all():  # gradient accumulation: consecutive entries of one step become one
        group = np.cumsum(first) - 1
        sizes = np.bincount(group, weights=sizes).astype(np.int64)
        pending = [p for p, keep in zip(pending, first) if keep]
    rows = np.empty((len(pending), len(STEP_COLUMNS)), dtype=np.float64)
    rows[:, 0] = [p.step for p in pending]
    rows[:, 1] = [p.epoch for p in pending]
    if (sizes == sizes[0]).all():
        rows[:, 2:], percentiles = row_quantiles(losses.reshape(len(pending), sizes[0]))
        return rows, percentiles.ravel()
    percentiles = np.empty(len(losses), dtype=np.float32)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    for size in np.unique(sizes):
        which = np.flatnonzero(sizes == size)
        positions = starts[which, None] + np.arange(size)
        rows[which, 2:], group = row_quantiles(losses[positions])
        percentiles[positions] = group
    return rows, percentiles


def _nonfinite_error(losses: np.ndarray, indices: np.ndarray, steps: np.ndarray) -> NonFiniteLossError:
    bad = np.flatnonzero(~np.isfinite(losses))
    first_step = int(steps[bad[0]])
    samples = indices[bad][steps[bad] == first_step][:5].tolist()
    return NonFiniteLossError(
        f"the loss became {losses[bad[0]]} at step {first_step} (samples {samples}). "
        f"Check the learning rate, the inputs of those samples, or log/division operations in "
        f"the model or loss; pass stop_on_nan=False to keep training through non-finite losses."
    )
