"""The session as the dashboard sees it: a consistent snapshot of every component, and the trait
values of the contract (``contract.TRAITS``) made from it; the big arrays (the sample map, the
selection) are rebuilt only when they changed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ..experts.workshop import Workshop
from ..records.clusters import Clustering
from ..records.store import STEP_COLUMNS
from ..run.control import RunState
from ..run.hyperparameters import OPTIMIZER_KEYS
from ..run.metrics import finite
from ..run.training import Run
from ..steering.checkup import Checkup
from ..steering.plans import PlanBook
from .contract import CURVE_COLUMNS, MAX_MARKERS, MAX_SCALAR_POINTS

NOT_CLUSTERED = 0xFFFF
EVENTS_SHOWN = 50
SCALARS_SECONDS = 1.0  # while training, the scalars trait is rebuilt at most this often


class DashboardState:
    """Reads ``run`` (its records, metrics and log), the plans, the workshop, the checkup and the
    lineage; changes none of them."""

    def __init__(self, run: Run, plans: PlanBook, workshop: Workshop, checkup: Checkup,
                 lineage: Callable[[], list[dict[str, Any]]], error: Callable[[], str | None]) -> None:
        self.run = run
        self.plans = plans
        self.workshop = workshop
        self.checkup = checkup
        self.lineage = lineage
        self.error = error  # the failed run's traceback
        self._mapped: Clustering | None = None  # the clustering the points value shows
        self._map_version = 0
        self._points: dict[str, Any] | None = None
        self._selection: tuple[int, dict[str, Any]] | None = None
        self._scalars: tuple[int, float, list[dict[str, Any]]] = (-1, 0.0, [])  # (version, when, payload)
        self._overlays: dict[str, Callable[[], np.ndarray]] = {}  # other runs' per-step rows, by name

    def snapshot(self, max_rows: int = 1000) -> dict[str, Any]:
        """A consistent copy of what the dashboard shows (the curve as per-step rows)."""
        run, settings, records = self.run, self.run.settings, self.run.records
        summary = records.summary(max_rows)
        seen = summary["seen"]
        rate = run.loop.samples_per_sec if run.state is RunState.RUNNING else None
        left = None if run.total_steps is None else max(run.total_steps - run.step, 0)
        batch = run.train_loader.batch_size or 1
        return {
            "run": {
                "project": settings.project, "run_name": settings.run_name, "state": str(run.state),
                "step": run.step, "epoch": run.display_epoch(), "max_epochs": settings.max_epochs,
                "steps_per_epoch": run.loop.steps_per_epoch, "total_steps": run.total_steps,
                "samples_per_sec": rate, "eta_sec": (left * batch / rate) if rate and left is not None else None,
                "device": str(run.device), "error": self.error(),
                "val": run.metrics.summary("validation"), "test": run.metrics.summary("test"),
                "task": "classification" if records.store.is_classification else ("regression" if seen else None),
                "seen": seen, "n_samples": records.size, "lr": finite(run.lr()),
                "deterministic": settings.deterministic, "per_sample_off": run.loss.off,
            },
            "curve": summary["curve"],
            "val_curve": run.metrics.curve("validation"),
            "events": run.log.tail(EVENTS_SHOWN),
            "markers": run.log.markers(MAX_MARKERS),
            "clusters": cluster_rows(records.clustering),
            "histogram": {"edges": summary["edges"].tolist(), "counts": summary["counts"].tolist(),
                          "quantiles": {k: finite(v) for k, v in summary["quantiles"].items()}} if seen else None,
            "plans": self.plans.all(),
            "lineage": self.lineage(),
            "health": self.checkup.report,
            "compare": table_rows(self.workshop.table, self.workshop.table_version),
            "scalars": self._scalar_series(),
            "output": run.output.lines(),
            "hyperparameters": hyperparameter_values(run),
            "overlays": [overlay_payload(name, rows()) for name, rows in self._overlays.items()],
        }

    def overlays(self) -> list[str]:
        """The names of the runs overlaid on the loss chart."""
        return list(self._overlays)

    def overlay(self, name: str, rows: Callable[[], np.ndarray] | None) -> None:
        """Draw another run's median loss (``rows()``: its downsampled per-step rows) on the loss chart;
        None removes it."""
        if rows is None:
            self._overlays.pop(name, None)
        else:
            self._overlays[name] = rows

    def _scalar_series(self) -> list[dict[str, Any]]:
        """The scalars trait: rebuilt when a scalar was added, at most every second while running."""
        version, when, payload = self._scalars
        scalars, now = self.run.scalars, time.monotonic()
        running = self.run.state is RunState.RUNNING
        if scalars.version != version and not (running and now - when < SCALARS_SECONDS):
            payload = scalars.payload(MAX_SCALAR_POINTS)
            self._scalars = (scalars.version, now, payload)
        return payload

    def values(self) -> dict[str, Any]:
        """Every trait's value now (``contract.TRAITS``)."""
        snapshot = self.snapshot()
        values = {k: v for k, v in snapshot.items() if k != "curve"}
        values["curve"] = curve_payload(snapshot["curve"])
        values["points"] = self._map()
        values["selection"] = self._chosen()
        return values

    def _map(self) -> dict[str, Any] | None:
        clustering = self.run.records.clustering
        if clustering is not None and clustering is not self._mapped:
            self._mapped, self._map_version = clustering, self._map_version + 1
            self._points = points_payload(clustering, self.run.records, self._map_version)
        return self._points

    def _chosen(self) -> dict[str, Any]:
        records = self.run.records
        if self._selection is None or self._selection[0] != records.selection_version:
            version = records.selection_version
            self._selection = (version, selection_payload(records.selection, version))
        return self._selection[1]


def curve_payload(rows: np.ndarray) -> dict[str, Any]:
    """Per-step history rows as the ``curve`` trait: float32 row-major bytes plus column names."""
    picks = [STEP_COLUMNS.index(c) for c in CURVE_COLUMNS]
    data = np.ascontiguousarray(rows[:, picks], dtype="<f4")
    return {"n": int(len(data)), "columns": list(CURVE_COLUMNS), "data": data.tobytes()}


def points_payload(clustering: Clustering, records: Any, version: int) -> dict[str, Any]:
    """The sample map as the ``points`` trait: hard samples then the background subset, with their
    latest losses, cluster ids (65535 outside the hard set) and dataset indices, as little-endian arrays."""
    index = np.concatenate([clustering.indices, clustering.background]).astype("<u4")
    xy = np.concatenate([clustering.projection, clustering.background_projection]).astype("<f4")
    cluster = np.full(len(index), NOT_CLUSTERED, dtype="<u2")
    cluster[: len(clustering.indices)] = clustering.labels
    return {
        "version": version, "step": clustering.step, "source": clustering.source, "n": int(len(index)),
        "x": np.ascontiguousarray(xy[:, 0]).tobytes(), "y": np.ascontiguousarray(xy[:, 1]).tobytes(),
        "loss": records.map_losses(index).astype("<f4").tobytes(), "cluster": cluster.tobytes(),
        "index": index.tobytes(),
    }


def selection_payload(indices: np.ndarray, version: int) -> dict[str, Any]:
    return {"version": version, "n": int(len(indices)), "index": indices.astype("<u4").tobytes()}


def cluster_rows(clustering: Clustering | None) -> list[dict[str, Any]]:
    """The cluster summary as JSON rows for the dashboard."""
    if clustering is None:
        return []

    def counts(value: Any) -> str:
        return ", ".join(f"{k} ({v})" for k, v in value.items()) if isinstance(value, dict) else ""

    return [
        {"cluster": int(cid), "size": int(row["size"]), "mean_loss": finite(row["mean_loss"]),
         "loss_vs_median": finite(row["loss_vs_median"]), "top_labels": counts(row.get("top_labels")),
         "top_predictions": counts(row.get("top_predictions"))}
        for cid, row in clustering.summary.iterrows()
    ]


def table_rows(table: pd.DataFrame | None, version: int) -> dict[str, Any] | None:
    """A comparison DataFrame as ``{version, columns, rows}`` for the dashboard (model name first)."""
    if table is None:
        return None
    rows = [[str(name), *(finite(v) for v in row)] for name, row in zip(table.index, table.to_numpy().tolist())]
    return {"version": version, "columns": ["model", *map(str, table.columns)], "rows": rows}


def hyperparameter_values(run: Run) -> dict[str, Any] | None:
    """Each parameter group's learning rate, weight decay, momentum and betas (those it has), and
    the gradient clipping norm (None: off); None before another trainer made its optimizer."""
    if run.optimizer is None:
        return None
    groups = []
    for group in run.optimizer.param_groups:
        values = {key: finite(group[key]) for key in OPTIMIZER_KEYS if key != "betas" and key in group}
        values.setdefault("lr", None)
        if "betas" in group:
            values["beta1"], values["beta2"] = (finite(b) for b in group["betas"])
        groups.append(values)
    return {"groups": groups, "grad_clip_norm": run.loop.clip_norm}


def overlay_payload(name: str, rows: np.ndarray) -> dict[str, Any]:
    """An overlaid run as the overlays trait carries it: [step, median loss] of its finite rows."""
    step, median = STEP_COLUMNS.index("step"), STEP_COLUMNS.index("p50")
    kept = rows[np.isfinite(rows[:, median])]
    return {"name": name, "points": kept[:, [step, median]].tolist()}
