"""Run control applied by the trainer thread at step boundaries.

Callers (the notebook, the dashboard, the magics) only set requests under a condition
variable; the trainer reads a single flag after every step and takes the slow path only
when something was asked. Queued actions (validation, tests) run on the trainer thread
at the next boundary, paused or not, so they never interleave with a step.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from enum import Enum
from typing import Any

from ..errors import StateError


class RunState(str, Enum):
    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


TERMINAL = frozenset({RunState.FINISHED, RunState.STOPPED, RunState.FAILED})

Notify = Callable[[str, int, dict[str, Any]], None]
HEARTBEAT_SECONDS = 1.0
MAX_QUEUED_ACTIONS = 32  # a flood of requests is refused rather than stalling the next boundary


class Controller:
    """Pause, resume, step, stop and queued actions, all taking effect between steps."""

    def __init__(self, notify: Notify) -> None:
        self._cond = threading.Condition()
        self._notify = notify
        self.state = RunState.IDLE
        self.step = 0
        self.attention = False
        self._pause_requested = False
        self._pause_at: int | None = None
        self._stop_requested = False
        self._actions: deque[tuple[Callable[[], Any], Future]] = deque()
        self._in_place = threading.Lock()  # actions run on their caller's thread (no run) one at a time
        self.on_enter: Callable[[], None] = _nothing
        self.on_leave: Callable[[], None] = _nothing
        self.heartbeat: Callable[[], None] | None = None  # called every HEARTBEAT_SECONDS while paused

    # ---- caller side -------------------------------------------------------------
    def request_pause(self) -> None:
        with self._cond:
            self._pause_requested, self._pause_at = True, None
            self._wake()

    def request_resume(self) -> None:
        with self._cond:
            self._pause_requested, self._pause_at = False, None
            self._wake()

    def request_steps(self, n: int) -> int:
        """Run ``n`` more steps, then pause; returns the step it will pause at."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"step(n) needs a whole number of steps >= 1, got {n!r}")
        with self._cond:
            self._pause_requested = False
            self._pause_at = self.step + n
            self._wake()
            return self._pause_at

    def request_stop(self) -> None:
        with self._cond:
            self._stop_requested = True
            self._wake()

    def submit(self, action: Callable[[], Any]) -> Future:
        """Run ``action`` on the trainer thread at the next boundary (or here, one caller at a time,
        if no run is under way). Raises StateError when ``MAX_QUEUED_ACTIONS`` already wait."""
        future: Future = Future()
        with self._cond:
            if self.state not in TERMINAL and self.state is not RunState.IDLE:
                if len(self._actions) >= MAX_QUEUED_ACTIONS:
                    raise StateError(f"{len(self._actions)} requests already wait for the next step boundary "
                                     f"(step {self.step}); wait for them to run, then ask again")
                self._actions.append((action, future))
                self._wake()
                return future
        with self._in_place:  # evaluations save and restore the model's mode and the RNG around them
            run_into(action, future)
        return future

    def note(self, kind: str, at: int | None = None, **data: Any) -> None:
        """Log an event at the current step, or at step ``at`` (from the trainer thread)."""
        self._notify(kind, self.step if at is None else at, data)

    def wait_until(self, predicate: Callable[[RunState], bool], timeout: float | None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.state), timeout)

    def _wake(self) -> None:
        self.attention = True
        self._cond.notify_all()

    # ---- trainer side -----------------------------------------------------------
    def begin(self) -> None:
        with self._cond:
            self._set(RunState.RUNNING, "started")

    def at_boundary(self, step: int, may_wait: bool = True) -> bool | None:
        """Called by the trainer after each step; blocks while paused. True means stop; None
        (only when ``may_wait`` is False) that something was asked for, which a thread that may
        wait must serve (the kernel's main thread hands the boundary to a background thread).

        When something was asked for, ``on_enter`` runs first (the trainer flushes its
        records, so a paused run shows every step) and ``on_leave`` runs last.
        """
        self.step = step
        if not self.attention:
            return False
        if not may_wait:
            return None
        self.on_enter()
        try:
            return self._serve(step)
        finally:
            self.on_leave()

    def _serve(self, step: int) -> bool:
        with self._cond:
            while True:
                for _ in range(len(self._actions)):  # those asked for so far: later ones wait a step
                    action, future = self._actions.popleft()
                    self._cond.release()
                    try:
                        run_into(action, future)
                    finally:
                        self._cond.acquire()
                if self._stop_requested:
                    self._set(RunState.STOPPING, "stopping")
                    return True
                if self._pause_at is not None and step >= self._pause_at:
                    self._pause_requested, self._pause_at = True, None
                if not self._pause_requested:
                    break
                if self._actions:  # asked while the ones before ran: pausing, there is no next step to wait for
                    continue
                entering = self.state is not RunState.PAUSED
                if entering:
                    self._set(RunState.PAUSED, "paused")
                if self.heartbeat is None:
                    self._cond.wait()
                elif entering or not self._cond.wait(HEARTBEAT_SECONDS):
                    self._cond.release()
                    try:
                        self.heartbeat()
                    finally:
                        self._cond.acquire()
            if self.state is RunState.PAUSED:
                self._set(RunState.RUNNING, "resumed")
            self.attention = self._pause_at is not None or bool(self._actions)  # later asks: next step
            return False

    def mirror(self, state: RunState) -> None:
        """Take on another rank's state at this boundary: ``PAUSED``, ``RUNNING`` again, or ``STOPPING``."""
        with self._cond:
            if self.state is not state:
                self._set(state, {RunState.PAUSED: "paused", RunState.RUNNING: "resumed"}.get(state, str(state)))

    def end(self, state: RunState, error: str | None = None) -> None:
        """Enter a terminal state and settle queued actions: run them, or fail them on error."""
        with self._cond:
            self._set(state, str(state), **({"error": error} if error else {}))
            left = list(self._actions)
            self._actions.clear()
            self.attention = False
        for action, future in left:
            if error is None:
                run_into(action, future)
            elif future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError(f"the run failed before this could run: {error}"))

    def _set(self, state: RunState, kind: str, **data: Any) -> None:
        self.state = state
        self._notify(kind, self.step, data)
        self._cond.notify_all()


def _nothing() -> None:
    return None


def run_into(action: Callable[[], Any], future: Future) -> None:
    """Run ``action`` and settle ``future`` with its result or exception."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(action())
    except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
        future.set_exception(exc)
