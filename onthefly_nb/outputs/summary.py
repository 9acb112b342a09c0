"""A static HTML summary of a session: what a saved notebook shows without a kernel."""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np

from ..records.store import STEP_COLUMNS

WIDTH, HEIGHT = 360, 90
_STEP, _P25, _P50, _P75 = (STEP_COLUMNS.index(c) for c in ("step", "p25", "p50", "p75"))


def summary_html(snapshot: dict[str, Any]) -> str:
    """The run's state, figures and loss curve as self-contained HTML (inline styles and SVG)."""
    run = snapshot["run"]
    facts = [("status", run["state"]), ("step", f"{run['step']} / {run.get('total_steps') or '?'}"),
             ("epoch", f"{run['epoch']} / {run['max_epochs'] or '?'}"), ("samples seen", f"{run['seen']:,}")]
    curve = snapshot["curve"]
    if len(curve):
        facts.append(("train loss (median, last step)", f"{curve[-1, _P50]:.4g}"))
    for key, label in (("val", "validation"), ("test", "test")):
        result = run.get(key)
        if result:
            accuracy = f", accuracy {result['accuracy']:.1%}" if result.get("accuracy") is not None else ""
            facts.append((label, f"loss {result['loss']:.4g}{accuracy} at step {result['step']}"))
    health = snapshot.get("health")
    if health:
        flagged = [f"{r['check']}: {r['status']}" for r in health["results"] if r["status"] != "pass"]
        facts.append(("health", "; ".join(flagged) or "all checks pass"))
    rows = "".join(f"<tr><th style='text-align:left;padding-right:12px;font-weight:500'>{escape(k)}</th>"
                   f"<td>{escape(str(v))}</td></tr>" for k, v in facts)
    clusters = "".join(
        f"<li>cluster {c['cluster']}: {c['size']} samples, mean loss {format_number(c['mean_loss'])}"
        f"{' (' + escape(c['top_labels']) + ')' if c.get('top_labels') else ''}</li>"
        for c in snapshot["clusters"][:3])
    title = escape(f"{run['project']} / {run['run_name']}")
    return (
        "<div class='onthefly-static' style='font-family:system-ui,sans-serif;font-size:13px;"
        "border:1px solid #d0d7de;border-radius:6px;padding:10px 12px;max-width:720px'>"
        f"<div style='font-weight:600;margin-bottom:6px'>onthefly · {title}</div>"
        f"<div style='display:flex;gap:16px;flex-wrap:wrap'><table>{rows}</table>{_sparkline(curve)}</div>"
        + (f"<div style='margin-top:6px'>Hardest clusters<ul style='margin:2px 0'>{clusters}</ul></div>"
           if clusters else "")
        + "<div style='color:#6e7781;margin-top:4px'>Static summary; run the notebook for the live "
          "dashboard.</div></div>"
    )


def format_number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _sparkline(curve: np.ndarray) -> str:
    """The median train loss with its p25-p75 band, as an inline SVG."""
    finite = curve[np.isfinite(curve[:, [_P25, _P50, _P75]]).all(axis=1)] if len(curve) else curve
    if len(finite) < 2:
        return ""
    steps = finite[:, _STEP]
    low, high = float(finite[:, _P25].min()), float(finite[:, _P75].max())
    span_x, span_y = float(steps[-1] - steps[0]) or 1.0, (high - low) or 1.0

    def points(column: int) -> list[str]:
        xs = (steps - steps[0]) / span_x * WIDTH
        ys = HEIGHT - (finite[:, column] - low) / span_y * HEIGHT
        return [f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys)]

    band = " ".join(points(_P75) + points(_P25)[::-1])
    return (f"<svg width='{WIDTH}' height='{HEIGHT}' viewBox='0 0 {WIDTH} {HEIGHT}' role='img' "
            f"aria-label='train loss over steps'><polygon points='{band}' fill='#4c78a8' opacity='0.25'/>"
            f"<polyline points='{' '.join(points(_P50))}' fill='none' stroke='#4c78a8' stroke-width='1.5'/></svg>")
