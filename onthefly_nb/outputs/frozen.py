"""The final dashboard as one block of HTML: what a dashboard's displays become when its run ends.

It holds the static summary (what hosts that strip scripts show), the stylesheet, the front end's
frozen entry (``static/frozen.js``) and the final trait values, binary ones in base64: wherever an
output's scripts run (JupyterLab and Notebook 7 for a trusted notebook, VS Code, nbconvert's HTML,
offline) the same dashboard draws, not connected to any kernel. No widget view is left in the
output, so a notebook reopened without its kernel never shows "model not found"."""

from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..dashboard.frames import finite, split_buffers

STATIC = Path(__file__).parent.parent / "static"
FROZEN_POINTS = 20_000  # the sample map keeps its first this many points (hard samples first)
POINT_ARRAYS = {"x": "<f4", "y": "<f4", "loss": "<f4", "cluster": "<u2", "index": "<u4"}


def frozen_html(values: dict[str, Any], summary: str) -> str:
    """The summary, and the dashboard drawn from ``values`` (every trait) where scripts run."""
    frozen = dict(values, points=_fewer_points(values.get("points")))
    state, paths, buffers = split_buffers(frozen)
    payload = {"state": finite(state), "saved": time.time(),
               "buffers": [{"path": p, "data": base64.b64encode(bytes(b)).decode()} for p, b in zip(paths, buffers)]}
    ident = f"onthefly-frozen-{secrets.token_hex(6)}"
    data = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")  # no early </script>
    return (f"<div id='{ident}'>{summary}</div><style>{(STATIC / 'widget.css').read_text()}</style>"
            f"<script>{(STATIC / 'frozen.js').read_text()}</script>"
            f"<script>(function(){{var el=document.getElementById('{ident}');"
            f"if(el&&window.ontheflyFrozen){{el.replaceChildren();window.ontheflyFrozen(el,{data});}}}})();</script>")


def _fewer_points(points: dict[str, Any] | None) -> dict[str, Any] | None:
    """The sample map cut to ``FROZEN_POINTS`` points, so a saved notebook stays small."""
    if points is None or points["n"] <= FROZEN_POINTS:
        return points
    cut = {key: np.frombuffer(points[key], dtype)[:FROZEN_POINTS].tobytes() for key, dtype in POINT_ARRAYS.items()}
    return {**points, **cut, "n": FROZEN_POINTS}
