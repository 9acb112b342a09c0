"""A self-contained HTML report of a session, readable offline: plotly inlined once, every text escaped."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from html import escape
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import plotly.graph_objects as go

from ..records.store import STEP_COLUMNS
from .figures import history_figure
from .summary import format_number


class Reported(Protocol):
    """What a report reads of a session (``onthefly_nb.Session`` is one)."""

    samples_per_sec: float | None
    metrics: dict[str, list[dict[str, Any]]]
    global_step: int
    clusters: pd.DataFrame
    lineage: list[dict[str, Any]]
    health_report: dict[str, Any] | None
    events: list[dict[str, Any]]
    comparison: pd.DataFrame | None

    def snapshot(self, max_rows: int = ...) -> dict[str, Any]: ...
    def slice(self, query: Any = ..., features: bool | None = ...) -> pd.DataFrame: ...


HARDEST_ROWS = 20
EVENT_ROWS = 200
CURVE_ROWS = 2000  # the loss curve is downsampled to this many steps, so long runs stay small
SAMPLE_COLUMNS = ("index", "label", "prediction", "loss", "loss_mean", "hardness", "margin", "confidence",
                  "forgets", "seen", "cluster")
CSS = """
.onthefly-report{font-family:system-ui,sans-serif;font-size:14px;color:#1f2328;max-width:1100px;margin:24px auto}
.onthefly-report h1{font-size:22px;margin:0 0 8px}
.onthefly-report-section{border-top:1px solid #d0d7de;margin-top:20px;padding-top:4px}
.onthefly-report-facts th{text-align:left;font-weight:500;padding-right:16px}
.onthefly-report-table{border-collapse:collapse;font-size:13px;margin:6px 0}
.onthefly-report-table th,.onthefly-report-table td{border:1px solid #d0d7de;padding:3px 8px;text-align:left}
.onthefly-report-table thead th{background:#f6f8fa}
.onthefly-report-empty,.onthefly-report-note{color:#6e7781}
.onthefly-report-figure{height:440px}
"""


def write_report(session: Reported, path: str | os.PathLike[str]) -> Path:
    """Write :func:`report_html` to ``path`` (UTF-8) atomically: a temporary file beside it, then renamed."""
    target = Path(path).expanduser()
    if not target.parent.is_dir():
        raise FileNotFoundError(f"cannot write the report {target}: the folder {target.parent} does not exist")
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a folder; pass a file name such as {target / 'report.html'}")
    text = report_html(session)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def report_html(session: Reported) -> str:
    """The whole report as one HTML page: run facts, loss curve, hardest samples, experts, health, events."""
    snapshot = session.snapshot(CURVE_ROWS)
    run = snapshot["run"]
    title = escape(f"{run['project']} / {run['run_name']}")
    sections = [_loss(session, snapshot), _hardest(session), _experts(session), _health(session.health_report),
                _events(session.events)]
    body = "".join(f"<section class='onthefly-report-section'><h2>{escape(h)}</h2>{content}</section>"
                   for h, content in sections)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>onthefly report · {title}</title>"
            f"<style>{CSS}</style></head><body><main class='onthefly-report'><h1>onthefly report · {title}</h1>"
            f"{_header(session, run)}{body}</main></body></html>")


def _header(session: Reported, run: dict[str, Any]) -> str:
    rate = session.samples_per_sec
    facts = [("run", run["run_name"]), ("project", run["project"]), ("status", run["state"]),
             ("step", f"{run['step']} / {run['total_steps'] or '?'}"),
             ("epoch", f"{run['epoch']} / {run['max_epochs'] or '?'}"),
             ("samples/s", "n/a" if rate is None else f"{rate:,.0f}"), ("device", run["device"])]
    for key, label in (("val", "validation"), ("test", "test")):
        if run.get(key):
            result = run[key]
            accuracy = f", accuracy {result['accuracy']:.1%}" if result.get("accuracy") is not None else ""
            facts.append((label, f"loss {format_number(result['loss'])}{accuracy} at step {result['step']}"))
    facts.append(("written", dt.datetime.now().astimezone().isoformat(timespec="seconds")))
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in facts)
    return f"<table class='onthefly-report-facts'>{rows}</table>"


def _loss(session: Reported, snapshot: dict[str, Any]) -> tuple[str, str]:
    curve = snapshot["curve"]
    if not len(curve):
        return "Loss over time", _empty("no step recorded yet")
    fig = history_figure(pd.DataFrame(curve, columns=list(STEP_COLUMNS)))
    for kind, results in session.metrics.items():
        points = [(m["step"], m["loss"]) for m in results if m["loss"] is not None]
        if points:
            fig.add_scatter(x=[s for s, _ in points], y=[v for _, v in points], name=f"{kind} loss",
                            mode="lines+markers")
    note = f"<p class='onthefly-report-note'>{len(curve)} of {session.global_step} steps shown</p>"
    return "Loss over time", _figure(fig, first=True) + (note if len(curve) < session.global_step else "")


def _hardest(session: Reported) -> tuple[str, str]:
    frame = session.slice(features=False)
    top = frame.sort_values("hardness", ascending=False, kind="stable").head(HARDEST_ROWS)
    html = _table(top[[c for c in SAMPLE_COLUMNS if c in top]], index=False) if len(top) else _empty("no sample seen")
    clusters = session.clusters
    html += "<h3>Clusters of hard samples</h3>" + (_table(clusters) if len(clusters) else _empty("not clustered yet"))
    return "Hardest samples", html


def _experts(session: Reported) -> tuple[str, str]:
    table = session.comparison
    html = "<h3>Comparison</h3>" + (_table(table) if table is not None else _empty("no comparison yet"))
    nodes = [{"parent": n["parent"], "child": n["id"], "kind": n["kind"], "step": n["step"], "state": n["state"],
              "budget": n.get("budget", ""), "slice": n.get("slice", "")} for n in session.lineage if n["parent"]]
    html += "<h3>Lineage</h3>" + (_table(pd.DataFrame(nodes), index=False) if nodes else _empty("no fork or merge"))
    return "Experts and merges", html


def _health(health: dict[str, Any] | None) -> tuple[str, str]:
    if not health:
        return "Health", _empty("no health check taken (call session.health())")
    when = dt.datetime.fromtimestamp(health["time"]).astimezone().isoformat(timespec="seconds")
    note = f"<p class='onthefly-report-note'>checked at step {health['step']}, {escape(when)}</p>"
    frame = pd.DataFrame(health["results"], columns=["check", "status", "evidence", "explanation"])
    return "Health", note + _table(frame, index=False)


def _events(events: list[dict[str, Any]]) -> tuple[str, str]:
    if not events:
        return "Events", _empty("no event yet")
    shown = events[-EVENT_ROWS:]
    rows = [{"seq": e["seq"], "time": dt.datetime.fromtimestamp(e["time"]).strftime("%Y-%m-%d %H:%M:%S"),
             "step": e["step"], "kind": e["kind"],
             "details": ", ".join(f"{k}={_short(v)}" for k, v in e.items() if k not in ("seq", "time", "step", "kind"))}
            for e in shown]
    note = f"<p class='onthefly-report-note'>the last {len(shown)} of {len(events)} events</p>"
    return "Events", note + _table(pd.DataFrame(rows), index=False)


def _figure(fig: go.Figure, first: bool) -> str:
    """A figure as a div; the first one carries plotly.js inline, the later ones reuse it."""
    div = fig.to_html(full_html=False, include_plotlyjs=first, default_height="100%",
                      config={"displaylogo": False})
    return f"<div class='onthefly-report-figure'>{div}</div>"


def _table(frame: pd.DataFrame, index: bool = True) -> str:
    return frame.to_html(escape=True, index=index, border=0, na_rep="", classes="onthefly-report-table",
                         float_format=lambda v: f"{v:.4g}")


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _empty(why: str) -> str:
    return f"<p class='onthefly-report-empty'>none yet: {escape(why)}</p>"
