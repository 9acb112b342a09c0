"""The anywidget dashboard and the thread that publishes session snapshots to it."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import numpy as np
import traitlets
from IPython.display import DisplayHandle, display

from ..outputs.summary import summary_html
from ..records.store import STEP_COLUMNS
from ..run.control import TERMINAL
from .commands import receive
from .protocol import PROTOCOL_VERSION

if TYPE_CHECKING:
    from ..records.clusters import Clustering
    from ..session import Session

STATIC = Path(__file__).parent.parent / "static"
CURVE_COLUMNS = ("step", "p5", "p25", "p50", "p75", "p95", "mean")
PUBLISH_INTERVAL = 0.1
NOT_CLUSTERED = 0xFFFF
TERMINAL_STATES = {str(state) for state in TERMINAL}


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


def points_payload(clustering: Clustering, losses: np.ndarray, version: int) -> dict[str, Any]:
    """The sample map as the ``points`` trait: hard samples then the background subset, with their
    latest losses (``losses`` is the store's loss column), cluster ids (65535 outside the hard set)
    and dataset indices, as little-endian binary arrays."""
    index = np.concatenate([clustering.indices, clustering.background]).astype("<u4")
    xy = np.concatenate([clustering.projection, clustering.background_projection]).astype("<f4")
    cluster = np.full(len(index), NOT_CLUSTERED, dtype="<u2")
    cluster[: len(clustering.indices)] = clustering.labels
    return {
        "version": version, "step": clustering.step, "source": clustering.source, "n": int(len(index)),
        "x": np.ascontiguousarray(xy[:, 0]).tobytes(), "y": np.ascontiguousarray(xy[:, 1]).tobytes(),
        "loss": losses[index].astype("<f4").tobytes(), "cluster": cluster.tobytes(), "index": index.tobytes(),
    }


def selection_payload(indices: np.ndarray, version: int) -> dict[str, Any]:
    return {"version": version, "n": int(len(indices)), "index": indices.astype("<u4").tobytes()}


TRAITS = ("run", "curve", "val_curve", "events", "clusters", "histogram", "points", "selection", "plans",
          "lineage", "health", "compare")


RENDERER_MIME = "application/vnd.onthefly.dashboard+json"  # VS Code's renderer (widgets/)


def in_vscode() -> bool:
    """Whether VS Code launched this kernel (its renderer then shows the dashboard too)."""
    return any(key.startswith("VSCODE_") for key in os.environ)


class TraitState:
    """Turns a session's snapshots into the dashboard's trait values (docs/protocol.md), for any
    transport; the big arrays (the map, the selection) are rebuilt only when they changed."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._mapped: Clustering | None = None  # the clustering the points value shows
        self._map_version = 0
        self._selection_version = -1
        self.values: dict[str, Any] = {"points": None, "selection": {}}

    def update(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        """Every trait value for ``snapshot`` (the big arrays kept from last time unless changed)."""
        session = self._session
        values = self.values
        values.update({key: snapshot[key] for key in ("run", "val_curve", "events", "clusters", "histogram",
                                                      "plans", "lineage", "health", "compare")})
        values["curve"] = curve_payload(snapshot["curve"])
        clustering = session.clustering
        if clustering is not None and clustering is not self._mapped:
            self._mapped, self._map_version = clustering, self._map_version + 1
            with session._lock:
                values["points"] = points_payload(clustering, session.store.loss, self._map_version)
        if session.selection_version != self._selection_version:
            self._selection_version = session.selection_version
            values["selection"] = selection_payload(session.selection, self._selection_version)
        return values


class Dashboard(anywidget.AnyWidget):
    """Live view of a Session. Python writes every trait; the browser only sends messages
    (commands, selections, plan decisions), which the session queues for the trainer."""

    _esm = _bundle("widget.js")
    _css = _bundle("widget.css")

    run = traitlets.Dict().tag(sync=True)
    curve = traitlets.Dict().tag(sync=True)
    val_curve = traitlets.List().tag(sync=True)
    events = traitlets.List().tag(sync=True)
    clusters = traitlets.List().tag(sync=True)
    histogram = traitlets.Dict(allow_none=True).tag(sync=True)
    points = traitlets.Dict(allow_none=True).tag(sync=True)
    selection = traitlets.Dict().tag(sync=True)
    plans = traitlets.List().tag(sync=True)
    lineage = traitlets.List().tag(sync=True)
    health = traitlets.Dict(allow_none=True).tag(sync=True)
    compare = traitlets.Dict(allow_none=True).tag(sync=True)

    def __init__(self, session: Session, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._session = session
        self._state = TraitState(session)
        self._displays: list[DisplayHandle] = []
        self._ended = False
        self._apply(session.snapshot())
        self.on_msg(self._on_message)
        self._publisher = Publisher(session, self)
        self._publisher.start()

    def _apply(self, snapshot: dict[str, Any]) -> None:
        """Set every trait from a snapshot in one batched update; unchanged values are not resent."""
        values = self._state.update(snapshot)
        with self.hold_sync():
            for key in TRAITS:
                setattr(self, key, values[key])
        if not self._ended and snapshot["run"]["state"] in TERMINAL_STATES:
            self._ended = True
            self._finalize_displays()

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict, dict] | None:
        """The widget view plus a static HTML summary, which a notebook saved without its
        widget state (or opened without a kernel) still shows, and, when the session serves its
        bridge (always in VS Code), the payload of VS Code's onthefly renderer."""
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is not None:
            bundle[0]["text/html"] = summary_html(self._session.snapshot())
            session = self._session
            bridge = session.bridge() if session._bridge is None and in_vscode() else session._bridge
            if bridge is not None:
                bundle[0][RENDERER_MIME] = {"url": f"http://127.0.0.1:{bridge.port}/", "token": bridge.token,
                                            "session": session.run_name}
        return bundle

    def _ipython_display_(self, **kwargs: Any) -> None:
        """Display with a display id, so the static summary can be replaced by the final one."""
        bundle = self._repr_mimebundle_()
        if bundle is not None:
            self._displays.append(display(bundle[0], metadata=bundle[1], raw=True, display_id=True))

    def _finalize_displays(self) -> None:
        """Once the run has ended: every display of this dashboard gets the final summary."""
        bundle = self._repr_mimebundle_()
        if bundle is not None:
            for handle in self._displays:
                handle.update(bundle[0], metadata=bundle[1], raw=True)

    def close(self) -> None:
        """Close the comm and let the publisher thread end."""
        super().close()
        self._session._changed.set()

    def _on_message(self, _widget: Any, content: Any, buffers: list[bytes]) -> None:
        """Messages from the browser, on the shell thread (see :func:`commands.receive`); a refused
        one is answered with an error message."""
        reason = receive(self._session, content, buffers)
        if reason is not None:
            self.send({"type": "error", "protocol": PROTOCOL_VERSION, "reason": reason})


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
