"""Plotly figures of a session's per-sample and per-step records."""

from __future__ import annotations

from typing import Any, Protocol

import pandas as pd
import plotly.graph_objects as go

from ..dashboard.contract import CLUSTER_COLORS
from ..records.clusters import Clustering
from ..records.slices import Selection


class Figured(Protocol):
    """What a figure reads of a session (``onthefly_nb.Session`` is one)."""

    history: pd.DataFrame
    clustering: Clustering | None

    def slice(self, query: Any = ..., features: bool | None = ...) -> pd.DataFrame: ...

KINDS = ("loss", "history", "datamap", "map")


def figure(session: Figured, kind: str = "loss", slice: Selection = None) -> go.Figure:
    """``loss``: histogram of the slice's latest losses over all samples'; ``history``: the
    per-step loss quantile fan; ``datamap``: Data Maps (variability, confidence) coloured by
    correctness; ``map``: the 2-D map of the clustered hard samples, coloured by cluster."""
    if kind not in KINDS:
        raise ValueError(f"unknown figure {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "history":
        return history_figure(session.history)
    frame = session.slice(slice, features=False)
    if kind == "loss":
        return _loss(session.slice(features=False), frame, slice)
    if kind == "datamap":
        if "confidence" not in frame:
            raise ValueError("Data Maps need a classification run (logits [N, C] with integer labels)")
        return _datamap(frame)
    return _map(session, frame)


def _loss(everything: pd.DataFrame, chosen: pd.DataFrame, selection: Selection) -> go.Figure:
    fig = go.Figure(go.Histogram(x=everything["loss"], name="all samples", opacity=0.5, nbinsx=64))
    if selection is not None:
        fig.add_histogram(x=chosen["loss"], name=f"slice ({len(chosen)})", opacity=0.8, nbinsx=64)
    return fig.update_layout(barmode="overlay", xaxis_title="latest loss", yaxis_title="samples",
                             title="Per-sample loss")


def history_figure(history: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for low, high, name in (("p5", "p95", "p5–p95"), ("p25", "p75", "p25–p75")):
        fig.add_scatter(x=history["step"], y=history[high], line={"width": 0}, showlegend=False, hoverinfo="skip")
        fig.add_scatter(x=history["step"], y=history[low], fill="tonexty", line={"width": 0}, name=name)
    fig.add_scatter(x=history["step"], y=history["p50"], name="median", line={"width": 2})
    return fig.update_layout(xaxis_title="step", yaxis_title="train loss per sample", title="Loss quantiles")


def _datamap(frame: pd.DataFrame) -> go.Figure:
    fig = go.Figure(go.Scattergl(
        x=frame["variability"], y=frame["confidence"], mode="markers",
        marker={"color": frame["correctness"], "colorscale": "Viridis", "showscale": True, "size": 4,
                "colorbar": {"title": "correctness"}},
        customdata=frame[["index", "loss"]], hovertemplate="sample %{customdata[0]}<br>loss %{customdata[1]:.3g}",
    ))
    return fig.update_layout(xaxis_title="variability", yaxis_title="confidence", title="Data Map")


def _map(session: Figured, frame: pd.DataFrame) -> go.Figure:
    clustering = session.clustering
    if clustering is None:
        raise ValueError("no clustering yet: call session.cluster() first")
    points = pd.DataFrame({"index": clustering.indices, "cluster": clustering.labels,
                           "x": clustering.projection[:, 0], "y": clustering.projection[:, 1]})
    points = points[points["index"].isin(frame["index"])].merge(frame[["index", "loss"]], on="index")
    fig = go.Figure()
    for cid, members in points.groupby("cluster"):
        fig.add_scattergl(x=members["x"], y=members["y"], mode="markers", name=f"cluster {cid}",
                          marker={"size": 5, "color": CLUSTER_COLORS[int(cid) % len(CLUSTER_COLORS)]},
                          customdata=members[["index", "loss"]],
                          hovertemplate="sample %{customdata[0]}<br>loss %{customdata[1]:.3g}")
    return fig.update_layout(title=f"Hard samples at step {clustering.step} ({clustering.source})",
                             xaxis_title="component 1", yaxis_title="component 2")
