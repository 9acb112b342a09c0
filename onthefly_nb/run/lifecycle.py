"""A run's life: started (on a background thread, on the calling one, or in a Jupyter kernel on
its main thread between cells: ``kernel.py``), waited for, stopped, and concluded as finished,
stopped or failed. Failures end the run, never the kernel: the error is kept, shown, and
re-raised by ``wait``. Whichever thread drives the run's steps, one drives at a time."""

from __future__ import annotations

import atexit
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from torch import nn

from ..errors import ConfigurationError, StateError
from ..persist.saving import finish_exports
from .control import TERMINAL, RunState
from .kernel import KernelDriver, current_kernel
from .loop import HANDOVER
from .training import Run


class Lifecycle:
    """Owns the driving of ``run``; ``on_end`` callbacks run once the run has concluded."""

    def __init__(self, run: Run, name: str) -> None:
        self.run = run
        self.name = name
        self.thread: threading.Thread | None = None  # the latest background thread that drove the run
        self.kernel: KernelDriver | None = None
        self.error: BaseException | None = None
        self.traceback: str | None = None
        self.on_begin: list[Callable[[], None]] = []  # when the run is started or another trainer claims it
        self.on_end: list[Callable[[], None]] = []
        self._steps: Iterator[str | None] | None = None
        self._driving = threading.Lock()
        self._driver: threading.Thread | None = None  # the thread inside the steps now
        self._claimed: threading.Thread | None = None  # another trainer's fit, called directly
        self._done = threading.Event()
        LIVE.add(self)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def started(self) -> bool:
        return self._steps is not None or self._claimed is not None

    def on_training_thread(self) -> bool:
        """Whether the calling thread is training now (inside a step, a boundary, a queued action)."""
        current = threading.current_thread()
        return current is self._driver or current is self._claimed

    def check_wait(self, wait: bool, what: str) -> None:
        """Refuse a ``wait=True`` call on the training thread: it would wait for itself."""
        if wait and self.on_training_thread() and not self.done:
            raise StateError(f"{what}(wait=True) on the training thread would wait for itself; pass wait=False")

    def start(self, paused: bool = False) -> None:
        """Train without blocking: in a Jupyter kernel on its main thread between cells (at full
        speed), elsewhere on a new background thread; with ``paused`` it waits before step 1."""
        self._begin(paused)
        found = current_kernel() if self.run.fit is None and self.run.ranks is None else None
        if found is not None:
            self.kernel = KernelDriver(self, *found)
            self.kernel.start()
            return
        self.thread = threading.Thread(target=self.drive, args=(True,), name=f"onthefly-train-{self.name}",
                                       daemon=True)
        self.thread.start()

    def run_here(self) -> None:
        """Train on the calling thread until the end."""
        self._begin(False)
        self.drive(True)

    def _begin(self, paused: bool) -> None:
        if self.run.optimizer is None and self.run.fit is None:
            raise ConfigurationError("this session has no optimizer to train with: pass optimizer=... "
                                     "(e.g. torch.optim.Adam(model.parameters(), lr=1e-3))")
        if self.started:
            raise StateError(f"session {self.name!r} was already started; it is {self.run.state}.")
        self._steps = self.run.training()
        for callback in self.on_begin:
            callback()
        if paused:
            self.run.controller.request_pause()
        self.run.controller.begin()

    def claim(self, thread: threading.Thread) -> None:
        """Another trainer's fit, called directly on ``thread``, drives the run (``external.py``)."""
        if self.started:
            raise StateError(f"session {self.name!r} was already started; it is {self.run.state}.")
        self._claimed = thread
        for callback in self.on_begin:
            callback()

    def drive(self, may_wait: bool, until: Callable[[], bool] = lambda: False, blocking: bool = True) -> str | None:
        """Run steps on this thread until the run ends ("done"), ``until()`` holds after a step
        ("yielded"), or a boundary needs a thread that may wait while this one may not (HANDOVER).
        None when another thread drives now and ``blocking`` is False."""
        if not self._driving.acquire(blocking=blocking):
            return None
        try:
            if self.done:
                return "done"
            self._driver, self.run.loop.waiting_allowed = threading.current_thread(), may_wait
            while True:
                try:
                    signal = next(self._steps)  # type: ignore[arg-type]
                except StopIteration:
                    self.conclude(None)
                    return "done"
                except BaseException as exc:  # noqa: BLE001 - kept, shown, and re-raised by wait()
                    self.conclude(exc)
                    return "done"
                if signal == HANDOVER:
                    return HANDOVER
                if until():
                    return "yielded"
        finally:
            self._driver = None
            self._driving.release()

    def conclude(self, error: BaseException | None) -> None:
        """End the run: finished, stopped (asked to, or Ctrl-C) or failed with ``error``."""
        end, message = RunState.FINISHED, None
        if isinstance(error, KeyboardInterrupt):
            self.error, end = error, RunState.STOPPED
        elif error is not None:
            self.error = error
            self.traceback = "".join(traceback.format_exception(error))
            end, message = RunState.FAILED, f"{type(error).__name__}: {error}"
        elif self.run.state is RunState.STOPPING:
            end = RunState.STOPPED
        if error is not None:  # the frames' locals hold the loader's iterator: let its workers go now
            traceback.clear_frames(error.__traceback__)
        self.run.loop.close()
        self.run.controller.end(end, message)
        try:
            for callback in self.on_end:  # the final state reaches every dashboard before wait() returns
                callback()
        finally:
            self._done.set()

    def wait(self, timeout: float | None = None, reached: Callable[[], bool] | None = None) -> None:
        """Block until training ends, or until ``reached()`` (in a kernel, on its main thread, driving
        the run meanwhile); re-raises the exception that failed the run."""
        if self.kernel is not None and threading.current_thread() is threading.main_thread():
            finished = self.kernel.wait(timeout, reached or (lambda: False))
        elif reached is None:
            finished = not self.started or self.wait_done(timeout)
        else:
            finished = self._poll(timeout, reached)
        if self.error is not None:
            raise self.error
        if not finished:
            raise TimeoutError(f"training still {self.run.state} after {timeout} s")

    def _poll(self, timeout: float | None, reached: Callable[[], bool]) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (self.done or reached()):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self._done.wait(0.02)
        return True

    def wait_done(self, timeout: float | None) -> bool:
        """Wait for the end of the run and, for a background run, for its thread to exit."""
        if not self._done.wait(timeout):
            return False
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        return True

    def stop(self, wait: bool, timeout: float) -> None:
        """Stop at the next step boundary, paused or not (and, with ``wait``, wait for the end)."""
        self.run.controller.request_stop()
        if not self.started:
            self.run.controller.end(RunState.STOPPED)
            self._done.set()
        elif wait and not self.on_training_thread():
            self._wait_stopped(timeout)

    def _wait_stopped(self, timeout: float) -> None:
        if self.kernel is not None and threading.current_thread() is threading.main_thread():
            self.kernel.wait(timeout)  # the main thread may be the one that has to drive to the stop
        else:
            self.wait_done(timeout)

    def wait_for(self, done: Callable[[RunState], bool], wait: bool, timeout: float, what: str) -> None:
        """Wait (unless not asked to, or on the training thread) until ``done(state)``."""
        if not wait or not self.started or self.on_training_thread():
            return
        if not self.run.controller.wait_until(done, timeout):
            raise TimeoutError(f"{what} did not take effect within {timeout} s (status: {self.run.state})")

    @property
    def ended(self) -> bool:
        return self.run.state in TERMINAL


class Supersedable(Protocol):
    """What :func:`supersede` needs of a session."""

    model: nn.Module
    run_name: str
    global_step: int
    status: str
    done: bool
    event_log: Any

    def stop(self, wait: bool = ..., timeout: float = ...) -> Any: ...


def supersede(sessions: list[Supersedable], model: nn.Module, by: str, seconds: float) -> None:
    """Stop the unfinished sessions that train ``model`` (a notebook cell run again builds a new one);
    StateError if one has not stopped within ``seconds`` (stuck in a step), so two never step it."""
    for other in sessions:
        if other.model is not model or other.done:
            continue
        other.event_log.append("superseded", other.global_step, by=by)
        other.stop(timeout=seconds)
        if not other.done:
            raise StateError(
                f"session {other.run_name!r} still trains this model (step {other.global_step}, {other.status}): "
                f"it was asked to stop, but its step has not ended in {seconds:.0f} s. Wait for it or restart the "
                f"kernel, then build the new session.")


LIVE: weakref.WeakSet[Lifecycle] = weakref.WeakSet()
EXIT_SECONDS = 60.0  # how long interpreter exit waits for runs to stop and exports to be written


@atexit.register
def _at_exit() -> None:
    """The interpreter exits (a script ends while it trains): every run stops at its next step
    boundary, running what was asked of it (an export's copy), and the exports asked for are
    written, so the process exits normally with nothing lost."""
    for lifecycle in list(LIVE):
        if lifecycle.started and not lifecycle.done:
            lifecycle.stop(True, EXIT_SECONDS)
    finish_exports(EXIT_SECONDS)

