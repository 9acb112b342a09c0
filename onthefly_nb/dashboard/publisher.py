"""One publisher feeds every transport: it turns a session's state into trait values at most ten
times a second while someone watches, and hands each sink (a widget, the WebSocket bridge) the
traits that changed since the last publication."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

PUBLISH_INTERVAL = 0.1
ALIVE_SECONDS = 1.0  # with nothing to publish, sinks hear that the kernel lives this often

Values = dict[str, Any]


class Sink(Protocol):
    """Where trait values go: the anywidget view, the bridge's clients."""

    def publish(self, changed: Values) -> None:
        """Send the traits that changed (name to value); called on the publisher's thread."""

    def alive(self) -> None:
        """Say the kernel is alive though nothing changed (the front end shows a lost connection
        when it hears nothing for a few seconds)."""


class Publisher:
    """Publishes ``values()`` (every trait) when ``changed`` is set, at most every ``interval`` seconds,
    to the attached sinks, and says it is alive every ``ALIVE_SECONDS`` when nothing changes; its
    thread runs while any sink is attached. ``on_watched(True)`` when the
    first sink attaches, ``(False)`` when the last detaches (the trainer flushes faster meanwhile)."""

    def __init__(self, values: Callable[[], Values], changed: threading.Event, name: str,
                 on_watched: Callable[[bool], None] = lambda _watched: None,
                 interval: float = PUBLISH_INTERVAL) -> None:
        self._values = values
        self._changed = changed
        self._name = name
        self._on_watched = on_watched
        self.interval = interval
        self._sinks: list[Sink] = []
        self._lock = threading.Lock()
        self._published: Values | None = None
        self._thread: threading.Thread | None = None

    def current(self) -> Values:
        """Every trait's latest published value (computed now if nothing was published yet)."""
        with self._lock:
            if self._published is None:
                self._published = self._values()
            return dict(self._published)

    def attach(self, sink: Sink) -> Values:
        """Publish to ``sink`` from now on; returns every trait's current value, to start it from."""
        with self._lock:
            if self._published is None:
                self._published = self._values()
            current = dict(self._published)
            self._sinks.append(sink)
            first = len(self._sinks) == 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=f"onthefly-publish-{self._name}", daemon=True)
                self._thread.start()
        if first:
            self._on_watched(True)
        self._changed.set()
        return current

    def detach(self, sink: Sink) -> None:
        with self._lock:
            if sink in self._sinks:
                self._sinks.remove(sink)
            last = not self._sinks
        if last:
            self._on_watched(False)
        self._changed.set()  # the thread sees there is no one left

    @property
    def watched(self) -> bool:
        return bool(self._sinks)

    @property
    def running(self) -> bool:
        """Whether the publishing thread is alive (it ends once no sink is left)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _run(self) -> None:
        while True:
            changed = self._changed.wait(ALIVE_SECONDS)
            started = time.monotonic()
            self._changed.clear()
            with self._lock:
                sinks = list(self._sinks)
                if not sinks:
                    self._thread = None
                    return
            if not changed:
                for sink in sinks:
                    sink.alive()
                continue
            self.publish_now(sinks)
            time.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    def publish_now(self, sinks: list[Sink] | None = None) -> Values:
        """Compute every trait now and hand the changed ones to the sinks; returns what changed."""
        values = self._values()
        with self._lock:
            last = self._published or {}
            changed = {k: v for k, v in values.items() if k not in last or last[k] != v}
            self._published = values
            sinks = list(self._sinks) if sinks is None else sinks
        if changed:
            for sink in sinks:
                sink.publish(changed)
        return changed
