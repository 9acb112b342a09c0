"""Per-sample store to pandas: rows chosen by a query or by index, and exports that stream."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..errors import SliceQueryError
from .store import QUANTILE_NAMES, SampleStore

MAX_FEATURE_COLUMNS = 64
EXPORT_CHUNK_ROWS = 1_000_000
EXPORT_FORMATS = (".csv", ".parquet", ".json")

Selection = str | Sequence[int] | np.ndarray | None


def store_frame(store: SampleStore, rows: np.ndarray, quantiles: dict[str, float],
                names: Collection[str] | None = None, index: np.ndarray | None = None) -> pd.DataFrame:
    """The per-sample columns of ``rows``, or only those in ``names``; ``index`` gives their dataset
    indices when ``store`` is a subset (else ``rows`` are). Every column is computed for ``rows``
    alone, so a slice of a huge store costs its size."""
    c = lambda name: store.column(name)[rows]  # noqa: E731
    getters: dict[str, Callable[[], np.ndarray]] = {
        "index": lambda: rows if index is None else index,
        "loss": lambda: c("loss") + np.float32(0),  # -0.0 (a log of 1 negated) shows as 0
        "loss_mean": lambda: c("loss_mean"),
        "loss_std": lambda: store.loss_std(rows),
        "seen": lambda: c("seen"),
        "last_step": lambda: c("last_step"),
        "hardness": lambda: c("hardness"),
        "tail_count": lambda: c("tail_count"),
        "tail": lambda: (c("loss") >= quantiles.get("p95", np.inf)) & (c("loss") > quantiles.get("p50", np.inf)),
    }
    if store.is_classification:
        getters |= {
            "label": lambda: c("label"),
            "prediction": lambda: c("prediction"),
            "correct": lambda: (c("prediction") == c("label")) & (c("seen") > 0),
            "margin": lambda: c("margin"),
            "confidence": lambda: store.confidence(rows),
            "variability": lambda: store.variability(rows),
            "correctness": lambda: store.correctness(rows),
            "forgets": lambda: store.forgetting(rows),
        }
    return pd.DataFrame({name: get() for name, get in getters.items() if names is None or name in names})


def referenced(query: str) -> set[str]:
    """The identifiers a query names (a superset of the columns it reads)."""
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", query))


def feature_columns(dataset: Any, rows: np.ndarray) -> pd.DataFrame | None:
    """Raw inputs as columns x0.. for a TensorDataset of small vectors, else None."""
    tensors = getattr(dataset, "tensors", None)
    if not tensors or tensors[0].ndim != 2 or tensors[0].shape[1] > MAX_FEATURE_COLUMNS:
        return None
    values = tensors[0][torch.from_numpy(rows)].detach().cpu().numpy()
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


def apply_query(frame: pd.DataFrame, query: str, quantiles: dict[str, float],
                columns: Sequence[str]) -> pd.DataFrame:
    """Rows of ``frame`` matching a pandas query (index kept); ``q1`` .. ``q99`` name the loss
    quantiles. ``columns`` are all the columns a slice has, named when the query is bad."""
    if not query.strip():
        raise SliceQueryError("a slice query must be a non-empty string such as 'loss > q95'")
    names = {f"q{name[1:]}": quantiles.get(name, np.nan) for name in QUANTILE_NAMES}
    try:
        result = frame.query(query, resolvers=[names])
    except Exception as exc:  # pandas raises many types for a bad expression
        raise SliceQueryError(
            f"cannot evaluate slice query {query!r}: {type(exc).__name__}: {exc}. "
            f"Columns available: {', '.join(columns)}; loss quantiles: {', '.join(names)}."
        ) from None
    if not isinstance(result, pd.DataFrame):
        raise SliceQueryError(f"slice query {query!r} must be a filter, e.g. 'loss > q95'")
    return result


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
