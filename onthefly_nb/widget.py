"""The anywidget dashboard and the thread that publishes session snapshots to it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import numpy as np
import traitlets
from IPython.display import DisplayHandle, display

from .control import TERMINAL
from .protocol import PROTOCOL_VERSION, Message, decode
from .store import STEP_COLUMNS
from .summary import summary_html

if TYPE_CHECKING:
    from .clusters import Clustering
    from .session import Session

STATIC = Path(__file__).parent / "static"
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
        self._mapped: Clustering | None = None  # the clustering the points trait shows
        self._map_version = 0
        self._selection_version = -1
        self._displays: list[DisplayHandle] = []
        self._ended = False
        self._apply(session.snapshot())
        self.on_msg(self._on_message)
        self._publisher = Publisher(session, self)
        self._publisher.start()

    def _apply(self, snapshot: dict[str, Any]) -> None:
        """Set every trait from a snapshot in one batched update; unchanged values are not resent,
        and the big arrays (map, selection) are rebuilt only when they changed."""
        session = self._session
        with self.hold_sync():
            self.run = snapshot["run"]
            self.curve = curve_payload(snapshot["curve"])
            self.val_curve = snapshot["val_curve"]
            self.events = snapshot["events"]
            self.clusters = snapshot["clusters"]
            self.histogram = snapshot["histogram"]
            self.plans = snapshot["plans"]
            self.lineage = snapshot["lineage"]
            self.health = snapshot["health"]
            self.compare = snapshot["compare"]
            clustering = session.clustering
            if clustering is not None and clustering is not self._mapped:
                self._mapped, self._map_version = clustering, self._map_version + 1
                with session._lock:
                    self.points = points_payload(clustering, session.store.loss, self._map_version)
            if session.selection_version != self._selection_version:
                self._selection_version = session.selection_version
                self.selection = selection_payload(session.selection, self._selection_version)
        if not self._ended and snapshot["run"]["state"] in TERMINAL_STATES:
            self._ended = True
            self._finalize_displays()

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict, dict] | None:
        """The widget view plus a static HTML summary, which a notebook saved without its
        widget state (or opened without a kernel) still shows."""
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is not None:
            bundle[0]["text/html"] = summary_html(self._session.snapshot())
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
        """Messages from the browser, on the shell thread, checked against the protocol first:
        only requests are made here, the trainer acts on them at a step boundary. A message that
        does not fit (or that the session refuses) is logged, answered with an error message, and
        otherwise ignored."""
        try:
            message = decode(content, buffers)
            if message.type == "command":
                self._command(message)
            elif message.type == "select":
                self._session.select(message.indices)
            elif message.decision == "approve":
                self._session.approve(message.plan_id, **message.params)  # type: ignore[arg-type]
            else:
                self._session.reject(message.plan_id)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - a bad message must never reach the trainer
            kind = content.get("type") if isinstance(content, dict) else type(content).__name__
            reason = f"{type(exc).__name__}: {exc}"
            self._session._log.append("rejected_message", self._session.global_step, message=str(kind)[:60],
                                      reason=reason[:500])
            self.send({"type": "error", "protocol": PROTOCOL_VERSION, "reason": reason[:500]})

    def _command(self, message: Message) -> None:
        name = message.name
        session = self._session
        if name == "pause":
            session.pause(wait=False)
        elif name == "resume":
            session.resume()
        elif name == "stop":
            session.stop(wait=False)
        elif name == "step":
            session.step(message.n, wait=False)  # type: ignore[arg-type]
        elif name == "validate" and session.val_loader is not None:
            session.validate(wait=False)
        elif name == "test" and session.test_loader is not None:
            session.test(wait=False)
        elif name == "health":
            session.health(wait=False)
        elif name == "compare":
            session.compare(wait=False)
        elif name == "determinism":
            self._report_failure(name, session.check_determinism(wait=False))
        elif name == "export":
            session.export(session.default_export_path(), wait=False)
        else:
            raise ValueError(f"command {name!r} is not available in this session")


    def _report_failure(self, command: str, future: Future) -> None:
        """Log a command that failed on the trainer thread, so the dashboard shows why."""
        session = self._session

        def done(finished: Future) -> None:
            if finished.exception() is not None:
                exc = finished.exception()
                session._log.append("command_failed", session.global_step, command=command,
                                    reason=f"{type(exc).__name__}: {exc}")

        future.add_done_callback(done)


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
