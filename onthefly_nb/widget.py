"""The anywidget dashboard and the thread that publishes session snapshots to it."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import numpy as np
import traitlets

from .store import STEP_COLUMNS

if TYPE_CHECKING:
    from .session import Session

STATIC = Path(__file__).parent / "static"
CURVE_COLUMNS = ("step", "p5", "p25", "p50", "p75", "p95", "mean")
PUBLISH_INTERVAL = 0.1
COMMANDS = ("pause", "resume", "stop", "step", "validate", "test")


def _bundle(name: str) -> Path:
    path = STATIC / name
    if not path.exists():
        raise FileNotFoundError(
            f"the dashboard's front-end bundle {path} is missing. In a source checkout run "
            f"`npm install && npm run build` (or `make build`); installed wheels ship it."
        )
    return path


def curve_payload(rows: np.ndarray) -> dict[str, Any]:
    """Per-step history rows as the ``curve`` trait: float32 row-major bytes plus column names."""
    picks = [STEP_COLUMNS.index(c) for c in CURVE_COLUMNS]
    data = np.ascontiguousarray(rows[:, picks], dtype="<f4")
    return {"n": int(len(data)), "columns": list(CURVE_COLUMNS), "data": data.tobytes()}


class Dashboard(anywidget.AnyWidget):
    """Live view of a Session. Python writes the state traits; the browser only sends commands."""

    _esm = _bundle("widget.js")
    _css = _bundle("widget.css")

    run = traitlets.Dict().tag(sync=True)
    curve = traitlets.Dict().tag(sync=True)
    val_curve = traitlets.List().tag(sync=True)
    events = traitlets.List().tag(sync=True)
    clusters = traitlets.List().tag(sync=True)

    def __init__(self, session: Session, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._session = session
        self._apply(session.snapshot())
        self.on_msg(self._on_message)
        self._publisher = Publisher(session, self)
        self._publisher.start()

    def _apply(self, snapshot: dict[str, Any]) -> None:
        with self.hold_sync():
            self.run = snapshot["run"]
            self.curve = curve_payload(snapshot["curve"])
            self.val_curve = snapshot["val_curve"]
            self.events = snapshot["events"]
            self.clusters = snapshot["clusters"]

    def close(self) -> None:
        """Close the comm and let the publisher thread end."""
        super().close()
        self._session._changed.set()

    def _on_message(self, _widget: Any, content: dict[str, Any], _buffers: list[bytes]) -> None:
        """Commands from the browser: only requests are made here; the trainer acts on them."""
        if not isinstance(content, dict) or content.get("type") != "command":
            return
        name = content.get("name")
        session = self._session
        if name == "pause":
            session.pause(wait=False)
        elif name == "resume":
            session.resume()
        elif name == "stop":
            session.stop(wait=False)
        elif name == "step":
            n = content.get("n", 1)
            if isinstance(n, int) and not isinstance(n, bool) and n >= 1:
                session.step(n, wait=False)
        elif name == "validate" and session.val_loader is not None:
            session.validate(wait=False)
        elif name == "test" and session.test_loader is not None:
            session.test(wait=False)


class Publisher(threading.Thread):
    """Sends a session's snapshot to its dashboard when it changed, at most 10 times a second."""

    def __init__(self, session: Session, widget: Dashboard, interval: float = PUBLISH_INTERVAL) -> None:
        super().__init__(name=f"onthefly-publish-{session.run_name}", daemon=True)
        self._changed = session._changed
        self._session = session
        self._widget = widget
        self._interval = interval

    def run(self) -> None:
        while True:
            self._changed.wait()
            started = time.monotonic()
            self._changed.clear()
            if self._widget.comm is None:
                return
            self._widget._apply(self._session.snapshot())
            time.sleep(max(0.0, self._interval - (time.monotonic() - started)))
