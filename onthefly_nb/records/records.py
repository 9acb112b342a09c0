"""A run's per-sample records: the store, the per-step history, captured features, the latest
clustering and the dashboard's selection, behind one lock, with the slices users ask for."""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import pandas as pd

from ..data.losses import SampleLoss
from ..errors import ArchiveError, ConfigurationError
from .clusters import Clustering
from .features import FeatureBank, PenultimateCapture
from .recorder import Gather, Recorder
from .slices import (
    EXPORT_CHUNK_ROWS,
    Selection,
    apply_query,
    choose_rows,
    export_frame,
    feature_columns,
    referenced,
    store_frame,
)
from .store import STEP_COLUMNS, SampleStore, StepHistory
from .suspects import suspects


class Records:
    """What training has recorded of each sample and step. ``lock`` guards the store, the history
    and the features; slices and summaries take it themselves."""

    def __init__(self, dataset: Any, capture: PenultimateCapture | None = None) -> None:
        self.lock = threading.Lock()
        self.dataset = dataset
        self.store = SampleStore(len(dataset))
        self.history = StepHistory()
        self.capture = capture
        self.features = None if capture is None else FeatureBank(self.store.size, capture.dims)
        self.clustering: Clustering | None = None
        self.selection = np.empty(0, dtype=np.uint32)
        self.selection_version = 0
        self.recorder: Recorder | None = None

    @property
    def size(self) -> int:
        return self.store.size

    def make_recorder(self, loss: SampleLoss, stop_on_nan: bool, gather: Gather | None) -> Recorder:
        """The recorder that folds training steps into these records."""
        self.recorder = Recorder(self.store, self.history, self.lock, loss, stop_on_nonfinite=stop_on_nan,
                                 capture=self.capture, bank=self.features, gather=gather)
        return self.recorder

    @property
    def seen(self) -> int:
        """Sample visits recorded so far."""
        return 0 if self.recorder is None else int(self.recorder.samples)

    # ---- slices -------------------------------------------------------------------------------
    def slice(self, query: Selection = None, features: bool | None = None) -> pd.DataFrame:
        """Per-sample rows for a pandas query or dataset indices (see ``Session.slice``). The rows are
        copied under the lock once, so every row returned fits the query, and training waits only
        for that copy."""
        with self.lock:
            index = choose_rows(self.store, query)
            quantiles = self.store.quantiles()
            rows = self.store.subset(index)
            clustering = self.clustering
        view = _Rows(rows, index, quantiles, clustering, self.dataset)
        if isinstance(query, str):
            names = referenced(query) | {"index"}
            light = view.frame(names, features is not False and any(n[:1] == "x" for n in names))
            matched = apply_query(light, query, quantiles, list(view.frame(None, features, empty=True).columns))
            view = view.at(matched.index.to_numpy())
        return view.frame(None, features)

    def cluster_summary(self) -> pd.DataFrame:
        """Summary of the latest clustering of the hard samples (empty before the first)."""
        return self.clustering.summary if self.clustering is not None else pd.DataFrame()

    def suspects(self, threshold: float = 0.5) -> pd.DataFrame:
        """Samples whose label looks wrong, most suspect first (see ``suspects.py``)."""
        return suspects(self.slice(features=False), threshold)

    def rows(self, selection: Selection) -> np.ndarray:
        """The sorted dataset indices of a slice: a query, or indices (checked)."""
        if isinstance(selection, str):
            return self.slice(selection, features=False)["index"].to_numpy()
        return np.unique(choose_rows(self.store, selection))

    def reweighting(self, selection: Selection, factor: Any) -> tuple[np.ndarray | None, str | None]:
        """The rows a reweighting by ``factor`` applies to and their description (None, None: undo it)."""
        if selection is None:
            return None, None
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not 0 < factor < math.inf:
            raise ConfigurationError(f"factor must be a positive number, got {factor!r}")
        rows = self.rows(selection)
        if not len(rows):
            raise ConfigurationError(f"the slice {selection!r} holds no samples; nothing to reweight")
        return rows, self.describe(selection, rows)

    @staticmethod
    def describe(selection: Selection, rows: np.ndarray) -> str:
        """How a slice was chosen, in words (a query as written)."""
        return selection if isinstance(selection, str) else f"{len(rows)} chosen samples"

    def export_slice(self, path: str, query: Selection = None, features: bool | None = None,
                     chunk_rows: int = EXPORT_CHUNK_ROWS) -> str:
        return str(export_frame(self.slice(query, features), path, chunk_rows))

    def history_frame(self) -> pd.DataFrame:
        with self.lock:
            rows = self.history.rows()
        return pd.DataFrame(rows, columns=list(STEP_COLUMNS)).astype({"step": np.int64, "epoch": np.int64})

    def penultimate(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(mask, rows) of the captured penultimate features of ``indices``, if any are kept."""
        if self.features is None:
            return None
        with self.lock:
            return self.features.get(indices)

    def select(self, indices: Any) -> np.ndarray:
        """Set the selection (sorted unique dataset indices); returns it."""
        rows = choose_rows(self.store, np.asarray(indices, dtype=np.int64).reshape(-1))
        self.selection = np.unique(rows).astype(np.uint32)
        self.selection_version += 1
        return self.selection.astype(np.int64)

    def recent_labels(self, since_step: int) -> np.ndarray | None:
        """Labels of the samples seen after ``since_step`` (classification), or None."""
        if not self.store.is_classification:
            return None
        with self.lock:
            labels = self.store.label[self.store.last_step.astype(np.int64) > since_step]
        labels = labels[labels >= 0]
        return labels if len(labels) else None

    def summary(self, max_rows: int) -> dict[str, Any]:
        """A consistent copy of what the dashboard shows of the records: the downsampled history,
        visits, the latest losses' histogram and quantiles."""
        with self.lock:
            counts, edges = self.store.histogram()
            return {"curve": self.history.downsampled(max_rows), "seen": self.seen, "counts": counts, "edges": edges,
                    "quantiles": self.store.quantiles()}

    def map_losses(self, indices: np.ndarray) -> np.ndarray:
        with self.lock:
            return self.store.loss[indices]

    # ---- saving -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        with self.lock:
            store, history = self.store.block.copy(), self.history.rows()
        return {"arrays": {"store": {"block": store}, "history": {"rows": history},
                           "selection": {"indices": self.selection.copy()}},
                "config": {"samples": self.store.size, "classification": self.store.is_classification}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        config, arrays = state["config"], state["arrays"]
        if config["samples"] != self.store.size:
            raise ConfigurationError(f"the saved run trained on {config['samples']} samples but train_loader's "
                                     f"dataset has {self.store.size}; pass the same training data")
        _check_array("store", arrays["store"]["block"], self.store.block.shape, np.uint32)
        _check_array("history", arrays["history"]["rows"], (None, len(STEP_COLUMNS)), np.float64)
        selection = _check_array("selection", arrays["selection"]["indices"], (None,), np.uint32)
        if len(selection) and int(selection.max()) >= self.store.size:
            raise ArchiveError("the archive's selection names samples outside the dataset: it was altered")
        with self.lock:
            self.store.block[:] = arrays["store"]["block"]
            self.store.is_classification = config["classification"]
            self.history.extend(arrays["history"]["rows"])
        self.selection = arrays["selection"]["indices"]
        if self.recorder is not None:
            self.recorder.samples = int(self.store.seen.sum())


def _check_array(name: str, array: np.ndarray, shape: tuple[int | None, ...], dtype: Any) -> np.ndarray:
    """``array`` when it has ``shape`` (None: any length) and ``dtype``; else the archive was altered."""
    fits = array.dtype == np.dtype(dtype) and array.ndim == len(shape) and all(
        want in (None, got) for want, got in zip(shape, array.shape))
    if not fits:
        raise ArchiveError(f"the archive's {name} is {array.dtype} {array.shape}, not {np.dtype(dtype)} {shape}: "
                           f"it was altered or damaged; save the session again")
    return array


class _Rows:
    """A copy of some samples' store rows (``index`` their dataset indices), turned into frames."""

    def __init__(self, rows: SampleStore, index: np.ndarray, quantiles: dict[str, float],
                 clustering: Clustering | None, dataset: Any) -> None:
        self.rows, self.index, self.quantiles = rows, index, quantiles
        self.clustering, self.dataset = clustering, dataset

    def at(self, positions: np.ndarray) -> _Rows:
        return _Rows(self.rows.subset(positions), self.index[positions], self.quantiles, self.clustering, self.dataset)

    def frame(self, names: set[str] | None, features: bool | None, empty: bool = False) -> pd.DataFrame:
        """Store columns (all, or those in ``names``), cluster ids and raw features."""
        positions = np.arange(0 if empty else len(self.index))
        index = self.index[positions]
        frame = store_frame(self.rows, positions, self.quantiles, names, index=index)
        if names is None or "cluster" in names:
            frame["cluster"] = -1 if self.clustering is None else self.clustering.ids_of(index)
        if features is not False:
            inputs = feature_columns(self.dataset, index)
            if inputs is not None:
                frame = pd.concat([frame, inputs], axis=1)
            elif features:
                raise ConfigurationError("raw feature columns need a TensorDataset of vectors of at most 64 values")
        return frame
