"""Per-sample store to pandas: rows chosen by a query or by index, and exports that stream."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import SliceQueryError
from .store import QUANTILE_NAMES, SampleStore

MAX_FEATURE_COLUMNS = 64
EXPORT_CHUNK_ROWS = 1_000_000
EXPORT_FORMATS = (".csv", ".parquet", ".json")

Selection = str | Sequence[int] | np.ndarray | None


def store_frame(store: SampleStore, rows: np.ndarray, quantiles: dict[str, float]) -> pd.DataFrame:
    """The per-sample columns of ``rows`` (call it under the store's lock)."""
    seen = store.seen[rows]
    columns: dict[str, np.ndarray] = {
        "index": rows,
        "loss": store.loss[rows],
        "loss_mean": store.loss_mean[rows],
        "loss_std": store.loss_std()[rows],
        "seen": seen,
        "last_step": store.last_step[rows],
        "hardness": store.column("hardness")[rows],
        "tail_count": store.column("tail_count")[rows],
        "tail": store.loss[rows] >= quantiles.get("p95", np.inf),
    }
    if store.is_classification:
        label, prediction = store.column("label")[rows], store.column("prediction")[rows]
        columns |= {
            "label": label,
            "prediction": prediction,
            "correct": (prediction == label) & (seen > 0),
            "margin": store.column("margin")[rows],
            "confidence": store.confidence()[rows],
            "variability": store.variability()[rows],
            "correctness": store.correctness()[rows],
            "forgets": store.column("forgets")[rows],
        }
    return pd.DataFrame(columns)


def feature_columns(dataset: Any, rows: np.ndarray) -> pd.DataFrame | None:
    """Raw inputs as columns x0.. for a TensorDataset of small vectors, else None."""
    tensors = getattr(dataset, "tensors", None)
    if not tensors or tensors[0].ndim != 2 or tensors[0].shape[1] > MAX_FEATURE_COLUMNS:
        return None
    values = tensors[0][rows].detach().cpu().numpy()
    return pd.DataFrame(values, columns=[f"x{i}" for i in range(values.shape[1])])


def choose_rows(store: SampleStore, selection: Selection) -> np.ndarray:
    """Every sample seen so far, or the dataset indices given (checked against the dataset)."""
    if selection is None or isinstance(selection, str):
        return np.flatnonzero(store.seen_mask())
    rows = np.asarray(selection)
    if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise SliceQueryError(
            f"select samples with a query string or a list of dataset indices, got {type(selection).__name__}"
        )
    bad = rows[(rows < 0) | (rows >= store.size)]
    if bad.size:
        raise SliceQueryError(f"indices {bad[:5].tolist()} are outside the dataset of {store.size} samples")
    return rows.astype(np.int64)


def apply_query(frame: pd.DataFrame, query: str | None, quantiles: dict[str, float]) -> pd.DataFrame:
    """Rows of ``frame`` matching a pandas query; ``q1`` .. ``q99`` name the store's loss quantiles."""
    if query is None:
        return frame
    if not query.strip():
        raise SliceQueryError("a slice query must be a non-empty string such as 'loss > q95'")
    names = {f"q{name[1:]}": quantiles.get(name, np.nan) for name in QUANTILE_NAMES}
    try:
        result = frame.query(query, resolvers=[names])
    except Exception as exc:  # pandas raises many types for a bad expression
        raise SliceQueryError(
            f"cannot evaluate slice query {query!r}: {type(exc).__name__}: {exc}. "
            f"Columns available: {', '.join(frame.columns)}; loss quantiles: {', '.join(names)}."
        ) from None
    if not isinstance(result, pd.DataFrame):
        raise SliceQueryError(f"slice query {query!r} must be a filter, e.g. 'loss > q95'")
    return result.reset_index(drop=True)


def export_frame(frame: pd.DataFrame, path: str | Path, chunk_rows: int = EXPORT_CHUNK_ROWS) -> Path:
    """Write ``frame`` to .csv, .parquet or .json (JSON lines) in chunks; returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise ValueError(f"cannot export to {path.name!r}: use a path ending in {', '.join(EXPORT_FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = _chunks(frame, chunk_rows)
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        first = pa.Table.from_pandas(next(chunks), preserve_index=False)
        with pq.ParquetWriter(path, first.schema) as writer:
            writer.write_table(first)
            for chunk in chunks:
                writer.write_table(pa.Table.from_pandas(chunk, schema=first.schema, preserve_index=False))
        return path
    with path.open("w", newline="") as out:
        for i, chunk in enumerate(chunks):
            if suffix == ".csv":
                chunk.to_csv(out, header=i == 0, index=False)
            else:
                chunk.to_json(out, orient="records", lines=True)
                if len(chunk):
                    out.write("\n")
    return path


def _chunks(frame: pd.DataFrame, rows: int) -> Iterator[pd.DataFrame]:
    yield frame.iloc[:rows]
    for start in range(rows, len(frame), rows):
        yield frame.iloc[start : start + rows]
