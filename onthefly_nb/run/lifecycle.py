"""A run's life: started on a background thread (or the calling one), waited for, stopped, and
concluded as finished, stopped or failed. Failures end the run, never the kernel: the error is
kept, shown, and re-raised by ``wait``."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable

from ..errors import ConfigurationError, StateError
from .control import TERMINAL, RunState
from .training import Run


class Lifecycle:
    """Owns the training thread of ``run``; ``on_end`` callbacks run once the run has concluded."""

    def __init__(self, run: Run, name: str) -> None:
        self.run = run
        self.name = name
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.traceback: str | None = None
        self.on_end: list[Callable[[], None]] = []
        self._done = threading.Event()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def started(self) -> bool:
        return self.thread is not None

    def on_training_thread(self) -> bool:
        return self.thread is threading.current_thread()

    def start(self, paused: bool = False) -> None:
        """Train on a new background thread; with ``paused`` it waits before step 1."""
        self._check_trainable()
        self.claim(threading.Thread(target=self._train, name=f"onthefly-train-{self.name}", daemon=True))
        if paused:
            self.run.controller.request_pause()
        self.run.controller.begin()
        self.thread.start()  # type: ignore[union-attr]

    def run_here(self) -> None:
        """Train on the calling thread until the end."""
        self._check_trainable()
        self.claim(threading.current_thread())
        self.run.controller.begin()
        self._train()

    def claim(self, thread: threading.Thread) -> None:
        """Make ``thread`` the training thread (once)."""
        if self.thread is not None:
            raise StateError(f"session {self.name!r} was already started; it is {self.run.state}.")
        self.thread = thread

    def _check_trainable(self) -> None:
        if self.run.optimizer is None and self.run.fit is None:
            raise ConfigurationError("this session has no optimizer to train with: pass optimizer=... "
                                     "(e.g. torch.optim.Adam(model.parameters(), lr=1e-3))")

    def _train(self) -> None:
        error = None
        try:
            self.run.train()
        except BaseException as exc:  # noqa: BLE001 - kept, shown, and re-raised by wait()
            error = exc
        finally:
            self.conclude(error)

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
        self.run.loop.recorder.close()
        self.run.controller.end(end, message)
        self._done.set()
        for callback in self.on_end:
            callback()

    def wait(self, timeout: float | None = None) -> None:
        """Block until training ends; re-raises the exception that failed the run."""
        if self.thread is not None and not self.wait_done(timeout):
            raise TimeoutError(f"training still {self.run.state} after {timeout} s")
        if self.error is not None:
            raise self.error

    def wait_done(self, timeout: float | None) -> bool:
        """Wait for the end of the run and, for a background run, for its thread to exit."""
        if not self._done.wait(timeout):
            return False
        thread = self.thread
        if thread is not None and thread.daemon and thread is not threading.current_thread():
            thread.join()
        return True

    def stop(self, wait: bool, timeout: float) -> None:
        """Stop at the next step boundary, paused or not (and, with ``wait``, wait for the end)."""
        self.run.controller.request_stop()
        if self.thread is None:
            self.run.controller.end(RunState.STOPPED)
            self._done.set()
        elif wait and not self.on_training_thread():
            self.wait_done(timeout)

    def wait_for(self, done: Callable[[RunState], bool], wait: bool, timeout: float, what: str) -> None:
        """Wait (unless not asked to, or on the training thread) until ``done(state)``."""
        if not wait or self.thread is None or self.on_training_thread():
            return
        if not self.run.controller.wait_until(done, timeout):
            raise TimeoutError(f"{what} did not take effect within {timeout} s (status: {self.run.state})")

    @property
    def ended(self) -> bool:
        return self.run.state in TERMINAL
