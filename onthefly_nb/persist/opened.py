"""A saved session opened read-only: its loss history, events, validation results and scalars,
without the model or the data it trained on (``onthefly_nb.open_saved``, ``%onthefly load``).
To continue training it, ``Session.load(path, model, optimizer, ...)``.

It can be overlaid on a live session's loss chart (``session.overlay(opened)``) to compare runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ArchiveError
from ..records.store import STEP_COLUMNS, StepHistory
from . import saving


class SavedRun:
    """What a saved session recorded, read from its verified archive."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        state = saving.read(path)
        self.path = Path(path)
        self.config: dict[str, Any] = state["config"]
        rows = state["arrays"].get("history", {}).get("rows")
        if not isinstance(rows, np.ndarray) or rows.ndim != 2 or rows.shape[1] != len(STEP_COLUMNS):
            raise ArchiveError(f"{path} holds no loss history of the expected shape; it is not a saved session")
        self.steps = StepHistory(max(len(rows), 1))
        self.steps.extend(rows.astype(np.float64))
        self.events: list[dict[str, Any]] = state["events"]
        documents = state["documents"]
        self.metrics: dict[str, list[dict[str, Any]]] = documents.get("metrics", {})
        series = (documents.get("scalars") or {}).get("series", {})
        self.scalars = pd.DataFrame([(name, int(step), value) for name, points in series.items()
                                     for step, value in points], columns=["name", "step", "value"])

    @property
    def name(self) -> str:
        """``project/run_name`` as the run was saved."""
        return f"{self.config.get('project', 'default')}/{self.config.get('run_name', 'run')}"

    @property
    def history(self) -> pd.DataFrame:
        """Per-step train loss quantiles, as ``Session.history``."""
        return pd.DataFrame(self.steps.rows(), columns=list(STEP_COLUMNS)).astype({"step": np.int64, "epoch": np.int64})

    def __repr__(self) -> str:
        return f"<onthefly_nb.SavedRun {self.name}: {len(self.steps)} steps, read-only, from {self.path}>"


def open_saved(path: str | os.PathLike[str]) -> SavedRun:
    """Open a saved session read-only (a .zip or a folder ``session.export`` wrote)."""
    return SavedRun(path)
