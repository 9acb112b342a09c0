"""Per-sample store to pandas: one row per sample seen, filtered by a query."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import SliceQueryError
from .store import SampleStore


def store_frame(store: SampleStore) -> pd.DataFrame:
    """A DataFrame of every sample seen so far (call it under the store's lock)."""
    seen = np.flatnonzero(store.seen_mask())
    columns: dict[str, np.ndarray] = {
        "index": seen,
        "loss": store.loss[seen],
        "loss_mean": store.loss_mean[seen],
        "loss_std": store.loss_std()[seen],
        "seen": store.seen[seen],
        "last_step": store.last_step[seen],
    }
    if store.is_classification:
        label, prediction = store.column("label")[seen], store.column("prediction")[seen]
        columns["label"] = label
        columns["prediction"] = prediction
        columns["margin"] = store.column("margin")[seen]
        columns["correct"] = prediction == label
    return pd.DataFrame(columns)


def apply_query(frame: pd.DataFrame, query: str | None) -> pd.DataFrame:
    """Rows of ``frame`` matching a pandas query expression; every row when ``query`` is None."""
    if query is None:
        return frame
    if not isinstance(query, str) or not query.strip():
        raise SliceQueryError(f"a slice query must be a non-empty string such as 'loss > 2', got {query!r}")
    try:
        result = frame.query(query)
    except Exception as exc:  # pandas raises many types for a bad expression
        raise SliceQueryError(
            f"cannot evaluate slice query {query!r}: {type(exc).__name__}: {exc}. "
            f"Columns available: {', '.join(frame.columns)}."
        ) from None
    if not isinstance(result, pd.DataFrame):
        raise SliceQueryError(f"slice query {query!r} must be a filter, e.g. 'loss > 2'")
    return result.reset_index(drop=True)
