"""Training inside a Jupyter kernel at the speed of the user's own cell.

PyTorch's CPU kernels run on GNU OpenMP teams, one per calling thread, and libgomp throttles
every team once the threads it manages outnumber the cores: after the kernel's main thread has
run any parallel torch work (building the data, say), a loop on a background thread runs at
about half speed (docs/benchmarks.md). So between cells the run trains on the kernel's main
thread, in turns, as ipykernel's event-loop integration does for GUI toolkits
(``kernel.eventloop``): a turn ends after the step during which a message for the main shell
arrived (a cell, a widget message), so the kernel answers within a step. While a cell runs
longer than ``CELL_GRACE_SECONDS``, and wherever the run has to wait (a pause, a queued action,
an epoch end with validation, the end), a background thread drives it instead; that thread exits
when it hands back, so its OpenMP team goes too. ``session.wait()`` on the main thread drives the
run itself. An interrupt (the stop button) pauses the run.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from .control import RunState
from .loop import HANDOVER
from .training import Run

TURN_SECONDS = 0.1  # the longest turn on the main thread; it ends at once when a message for the shell waits
CHECK_SECONDS = 0.002  # how often a turn looks for such a message (a syscall and some Python each time)
CELL_GRACE_SECONDS = 0.05  # a cell that runs longer hands training to a background thread


def current_kernel() -> tuple[Any, Any] | None:
    """(shell, kernel) of the ipykernel this is called in, on its main thread, when its event loop
    is free (no GUI toolkit integration) or ours; else None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    if kernel is None or getattr(kernel, "io_loop", None) is None:
        return None
    loop = getattr(kernel, "eventloop", 1)
    return (shell, kernel) if loop is None or loop is TURNS.installed else None


class Turns:
    """The one function the kernel's event loop calls (``kernel.eventloop``): a turn for every run
    that wants one, in the order they asked. Used on the kernel's main thread only."""

    def __init__(self) -> None:
        self.drivers: list[KernelDriver] = []
        self.installed: Any = None

    def want(self, driver: KernelDriver) -> bool:
        """Give ``driver`` turns; False if the kernel's event loop belongs to a GUI toolkit."""
        kernel = driver.kernel
        if kernel.eventloop is not None and kernel.eventloop is not self.installed:
            return False
        if driver not in self.drivers:
            self.drivers.append(driver)
        if kernel.eventloop is None:
            def turn(_kernel: Any) -> None:
                if turn is self.installed:
                    for each in list(self.drivers):
                        each.main_turn()

            turn.exit_hook = lambda _kernel: None  # type: ignore[attr-defined]  # what %gui calls to leave it
            self.installed = kernel.eventloop = turn
        return True

    def drop(self, driver: KernelDriver) -> None:
        if driver in self.drivers:
            self.drivers.remove(driver)
        if not self.drivers and self.installed is not None:
            if driver.kernel.eventloop is self.installed:
                driver.kernel.eventloop = None
            self.installed = None


class Drivable(Protocol):
    """What the driver needs of a run's lifecycle (``lifecycle.Lifecycle``)."""

    run: Run
    name: str
    thread: threading.Thread | None
    done: bool

    def drive(self, may_wait: bool, until: Callable[[], bool], blocking: bool = True) -> str | None: ...
    def wait_done(self, timeout: float | None) -> bool: ...


class KernelDriver:
    """Drives a run from the kernel's main thread between cells, from background threads otherwise."""

    def __init__(self, lifecycle: Drivable, shell: Any, kernel: Any) -> None:
        self.lifecycle = lifecycle
        self.shell, self.kernel = shell, kernel
        from ipykernel.eventloops import get_shell_stream  # a kernel is running: ipykernel is there

        self._shell_stream = get_shell_stream(kernel)
        self.cell_running = threading.Event()
        self.main_waiting = False  # session.wait() on the main thread wants to drive
        self._background: threading.Thread | None = None
        self._guard = threading.Lock()  # one background driver at a time
        self.steps_on_main = 0  # steps the main thread trained (tests and benchmarks read these)
        self.handovers = 0  # times a background thread took over
        self.interrupts = 0

    def start(self) -> None:
        """Start training (called from a cell): on the main thread once that cell ends, in the
        background if it runs on for longer than ``CELL_GRACE_SECONDS``."""
        self.shell.events.register("pre_run_cell", self._cell_starts)
        self.shell.events.register("post_run_cell", self._cell_ends)
        self.cell_running.set()
        self._to_background(grace=CELL_GRACE_SECONDS)

    # ---- the main thread, between cells ---------------------------------------------------------
    def _install(self) -> None:
        """Ask for turns on the main thread (called there), unless a cell runs or the run is over."""
        if self.lifecycle.done or self.cell_running.is_set():
            return
        if not TURNS.want(self):  # a GUI toolkit took the kernel's event loop: train in the background
            self._to_background(grace=0.0)

    def _uninstall(self) -> None:
        TURNS.drop(self)

    def main_turn(self) -> None:
        """Train for a few milliseconds, then let the kernel handle its messages."""
        if self.cell_running.is_set() or self.lifecycle.done:
            self._uninstall()
            return
        now = time.perf_counter()
        deadline, check = now + TURN_SECONDS, [now + CHECK_SECONDS]

        def turn_over() -> bool:
            now = time.perf_counter()
            if now < check[0]:
                return False
            check[0] = now + CHECK_SECONDS
            return self.message_waiting() or now >= deadline

        outcome = self._drive_on_main(turn_over)
        if outcome is None or outcome == HANDOVER:  # a background thread drives (or must) meanwhile
            self._uninstall()
            if outcome == HANDOVER:
                self._to_background(grace=0.0)
        elif outcome == "done":
            self._finish()

    def message_waiting(self) -> bool:
        """Whether a message for the main shell arrived. It is read and handed to the kernel's handler,
        which runs once the turn returns: checking the socket's events instead would consume the
        edge-triggered notification the kernel's loop waits for (as ipykernel's Qt loop notes). A
        message the loop read just before this turn began waits as a task of its own."""
        if self._shell_stream.flush(limit=1):
            return True
        try:
            current = asyncio.current_task()
            return any(task is not current and not task.done() for task in asyncio.all_tasks())
        except RuntimeError:  # no event loop runs on this thread
            return False

    def _drive_on_main(self, until: Any) -> str | None:
        """Drive on the main thread, with an interrupt pausing the run instead of breaking a step."""
        previous = signal.signal(signal.SIGINT, self._interrupted)
        step = self.lifecycle.run.step
        try:
            return self.lifecycle.drive(False, until, blocking=False)
        finally:
            signal.signal(signal.SIGINT, previous)
            self.steps_on_main += self.lifecycle.run.step - step

    def _interrupted(self, _signum: int, _frame: Any) -> None:
        """The kernel was interrupted while training: pause at the next step boundary."""
        run = self.lifecycle.run
        self.interrupts += 1
        run.log.append("interrupted", run.step)
        run.controller.request_pause()

    # ---- cells -----------------------------------------------------------------------------------
    def _cell_starts(self, _info: Any = None) -> None:
        self.cell_running.set()
        self._uninstall()
        self._to_background(grace=CELL_GRACE_SECONDS)
        previous = signal.getsignal(signal.SIGINT)

        def interrupted(signum: int, frame: Any) -> None:  # the cell's interrupt also pauses the run
            self._interrupted(signum, frame)
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGINT, interrupted)  # ipykernel puts its own back after the cell

    def _cell_ends(self, _result: Any = None) -> None:
        self.cell_running.clear()
        self._install()

    # ---- background threads ---------------------------------------------------------------------
    def _to_background(self, grace: float) -> None:
        """Start a background driver (after ``grace`` seconds, if a cell still runs then)."""
        with self._guard:
            if self.lifecycle.done or (self._background is not None and self._background.is_alive()):
                return
            self._background = threading.Thread(target=self._background_drive, args=(grace,),
                                                name=f"onthefly-train-{self.lifecycle.name}", daemon=True)
            self.lifecycle.thread = self._background
            self._background.start()

    def _background_drive(self, grace: float) -> None:
        if grace and self._ended_within(grace):
            self._leave_background()
            return
        self.handovers += 1
        while True:
            outcome = self.lifecycle.drive(True, self._main_may_take_over)
            with self._guard:  # hand back, unless a cell started meanwhile (its driver would be this one)
                if outcome == "done" or self._main_may_take_over():
                    self._background = None
                    break
        if outcome == "done":
            self.kernel.io_loop.add_callback(self._finish)
        else:
            self.kernel.io_loop.add_callback(self._install)

    def _leave_background(self) -> None:
        with self._guard:
            self._background = None
        self.kernel.io_loop.add_callback(self._install)

    def _ended_within(self, seconds: float) -> bool:
        """Whether the running cell ends within ``seconds`` (short cells keep the main thread's turns)."""
        deadline = time.monotonic() + seconds
        while self.cell_running.is_set() and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self.cell_running.is_set()

    def _main_may_take_over(self) -> bool:
        """After a background step: hand back once no cell runs (or wait() drives) and the run runs."""
        state = self.lifecycle.run.state
        return state is RunState.RUNNING and (self.main_waiting or not self.cell_running.is_set())

    # ---- session.wait() on the main thread ------------------------------------------------------
    def wait(self, timeout: float | None, reached: Callable[[], bool] = lambda: False) -> bool:
        """Drive the run on the main thread until it ends or ``reached()`` (the background serves what
        must wait); False if ``timeout`` passed first. An interrupt pauses the run and raises
        KeyboardInterrupt."""
        deadline = None if timeout is None else time.monotonic() + timeout
        expired = lambda: deadline is not None and time.monotonic() >= deadline  # noqa: E731
        interrupts, self.main_waiting = self.interrupts, True
        try:
            while not self.lifecycle.done and not reached() and not expired():
                if self.interrupts != interrupts:
                    raise KeyboardInterrupt("interrupted: the run pauses at its next step; session.resume() goes on")
                outcome = None
                if self.lifecycle.run.state is RunState.RUNNING:
                    outcome = self._drive_on_main(lambda: expired() or reached())
                    if outcome == HANDOVER:
                        self._to_background(grace=0.0)
                if outcome in (None, HANDOVER):
                    self.lifecycle.wait_done(0.02)
            return self.lifecycle.done or reached()
        finally:
            self.main_waiting = False

    def _finish(self) -> None:
        """The run has ended: stop taking turns and listening to cells."""
        self._uninstall()
        for event, callback in (("pre_run_cell", self._cell_starts), ("post_run_cell", self._cell_ends)):
            try:
                self.shell.events.unregister(event, callback)
            except ValueError:
                pass


TURNS = Turns()
