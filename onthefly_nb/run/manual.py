"""Your own training loop, tracked: ``session.track()`` gives it the session's index-keyed batches,
records the per-sample losses of the outputs it computes, and applies pause, step and stop at its
step boundaries (between one batch and the next), with the dashboard, plan cards and saving as
for a run the session trains itself.

    with session.track() as run:
        for indices, (x, y) in run.batches():
            optimizer.zero_grad()
            outputs = model(x)
            loss_fn(outputs, y).backward()
            optimizer.step()
            run.record(indices, outputs, y)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from ..errors import StateError
from .external import ExternalRun
from .lifecycle import Lifecycle


def _driven_by_the_user() -> None:
    raise StateError("this session is trained by your own loop (session.track()); it has no fit of its own to start")


class TrackedRun:
    """The handle ``session.track()`` returns: a context manager over one run of the user's loop."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.run = lifecycle.run
        self._external = ExternalRun(lifecycle, _driven_by_the_user)
        self._owner: threading.Thread | None = None
        self._pending = False  # a batch was handed out and its step boundary is still due

    def __enter__(self) -> TrackedRun:
        self._external.begin(self.run.optimizer)
        self._owner = threading.current_thread()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._external.end(error)

    def batches(self) -> Iterator[tuple[list[int], Any]]:
        """The training loader's batches as ``(dataset indices, batch)``, epoch after epoch until the
        session's ``max_epochs``/``max_steps``, or a stop; each step boundary (pause, step, stop,
        queued requests) is served before the next batch is handed out."""
        if threading.current_thread() is not self._owner:
            raise StateError("iterate run.batches() inside `with session.track() as run:`, on the same thread")
        loop, settings = self.run.loop, self.run.settings
        while settings.max_epochs is None or loop.epoch < settings.max_epochs:
            for indices, batch in loop.loader:
                if self._finished():
                    return
                self._pending = True
                yield indices, batch
                if self._boundary():
                    return
            self._external.epoch_end()
        self._boundary()

    def record(self, indices: list[int], outputs: Any, targets: Any) -> None:
        """The outputs the loop computed for the batch of ``indices``, and its targets: their per-sample
        losses (the session's ``loss_fn``, unreduced) are kept at the next flush, on detached copies."""
        detach = getattr(outputs, "detach", None)
        self._external.record(indices, detach() if detach else outputs, targets)

    def _boundary(self) -> bool:
        """After the loop's step: serve the boundary once; True means stop."""
        if not self._pending:
            return False
        self._pending = False
        return self._external.boundary() or self._finished()

    def _finished(self) -> bool:
        steps = self.run.settings.max_steps
        return steps is not None and self.run.step >= steps
