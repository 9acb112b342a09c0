"""The session's event log: numbered, append-only, JSON-serialisable records of every kind the
contract declares (``dashboard.contract.EVENT_KINDS``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..dashboard.contract import EVENT, EVENT_KINDS, MARKER_KINDS
from ..dashboard.schema import Arr
from ..persist.saving import saved

KINDS = frozenset(EVENT_KINDS)
MARKERS = frozenset(MARKER_KINDS)
REFUSALS_LOGGED = 10  # refused messages logged one by one; after these, at most one a second


class EventLog:
    """Every control action and state change, in order. Safe to append from any thread."""

    def __init__(self, on_append: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._events: list[dict[str, Any]] = []
        self._markers: list[dict[str, Any]] = []  # the events of marker kinds, in order
        self._shown_markers: tuple[int, int, list[dict[str, Any]]] = (0, 0, [])  # (count, n, copy) last handed out
        self._lock = threading.Lock()
        self._on_append = on_append
        self._refusals = 0
        self._refusals_unlogged = 0
        self._next_refusal = 0.0

    def append(self, kind: str, step: int, **data: Any) -> dict[str, Any]:
        """Record an event; ``data`` must hold JSON-serialisable values only."""
        if kind not in KINDS:
            raise ValueError(f"event kind {kind!r} is not in the dashboard contract; declare it in EVENT_KINDS")
        with self._lock:
            event = {"seq": len(self._events), "time": time.time(), "step": step, "kind": kind, **data}
            self._events.append(event)
            if kind in MARKERS:
                self._markers.append(event)
        if self._on_append is not None:
            self._on_append(event)
        return event

    def refused(self, step: int, message: str, reason: str) -> None:
        """Log a refused dashboard message (``rejected_message``): the first ``REFUSALS_LOGGED`` each,
        then at most one a second, counting the ones left out since (``unlogged``), so a flood of bad
        messages cannot fill the log."""
        with self._lock:
            self._refusals += 1
            now = time.monotonic()
            if self._refusals > REFUSALS_LOGGED and now < self._next_refusal:
                self._refusals_unlogged += 1
                return
            self._next_refusal = now + 1.0
            unlogged, self._refusals_unlogged = self._refusals_unlogged, 0
        more = {"unlogged": unlogged} if unlogged else {}
        self.append("rejected_message", step, message=message, reason=reason, **more)

    def __len__(self) -> int:
        return len(self._events)

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._events]

    def tail(self, n: int) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._events[-n:]]

    def markers(self, n: int) -> list[dict[str, Any]]:
        """The latest ``n`` events of the kinds the loss chart draws (``contract.MARKER_KINDS``); the
        same list as last time while none was added (the publisher asks ten times a second)."""
        with self._lock:
            count, shown_n, shown = self._shown_markers
            if count != len(self._markers) or shown_n != n:
                shown = [dict(e) for e in self._markers[-n:]]
                self._shown_markers = (len(self._markers), n, shown)
            return shown

    def kinds(self) -> list[str]:
        with self._lock:
            return [e["kind"] for e in self._events]

    def state_dict(self) -> dict[str, Any]:
        return {"events": self.all()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Start from a saved session's events (numbering goes on after them)."""
        events = saved(Arr(EVENT), state["events"], "events")
        with self._lock:
            self._events = [dict(e) for e in events]
            self._markers = [e for e in self._events if e["kind"] in MARKERS]
            self._shown_markers = (-1, 0, [])
