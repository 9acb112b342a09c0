"""A Session driven by another trainer's loop (Lightning, Hugging Face) through its callbacks.

Each training batch the other trainer takes is one step: its outputs (captured from the forward
pass it already ran) and targets are recorded under its dataset indices (from an ``IndexTape``
on the training loader, or carried in the batch); after each optimizer step
the step boundary applies pause, step and stop. The
session starts with ``session.start()`` (the other trainer's ``fit`` on the session's thread, so
the notebook stays free) or when the user calls that ``fit`` directly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch

from .lifecycle import Lifecycle


class ExternalRun:
    """The bridge between another trainer's callbacks and a session's run."""

    def __init__(self, lifecycle: Lifecycle, fit: Callable[[], Any]) -> None:
        self.lifecycle = lifecycle
        self.run = lifecycle.run
        self.run.fit = fit
        self._owns_lifecycle = False  # True when the user called the other trainer's fit directly
        self._keeping: Any = None  # the optimizer step hook that keeps gradients for a health check

    def begin(self, optimizer: torch.optim.Optimizer | None) -> None:
        """The other trainer's fit begins (on this thread): bind its optimizer, start the run, and
        keep the gradients of the steps a health check will read (the trainer may clear them first)."""
        self.run.optimizer = optimizer
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's and Lightning's wrappers
        if isinstance(inner, torch.optim.Optimizer) and self._keeping is None:
            self._keeping = inner.register_step_post_hook(lambda *_: self._keep_gradients())
        if not self.lifecycle.started:
            self.lifecycle.claim(threading.current_thread())
            self.run.controller.begin()
            self.run.loop.recorder.open()
            self._owns_lifecycle = True

    def _keep_gradients(self) -> None:
        """Right after the optimizer step, when a health check is wanted at the coming boundary:
        references to the gradients (no copy), which the trainer's zero_grad would drop."""
        run = self.run
        wanted = run.gradients_wanted()
        run.kept_gradients = {n: p.grad for n, p in run.model.named_parameters() if p.grad is not None} \
            if wanted else None

    def record(self, indices: list[int], outputs: Any, targets: Any) -> None:
        """One training batch done: keep its per-sample values."""
        self.run.loop.external_step(indices, outputs, targets)

    def boundary(self) -> bool:
        """After an optimizer step: pause, step or stop as asked. True means stop."""
        return self.run.controller.at_boundary(self.run.step)

    def epoch_end(self) -> None:
        loop = self.run.loop
        loop.epoch += 1
        self.run.epoch_ended(loop.epoch)
        loop.restart_clock()

    def validated(self, metrics: dict[str, float]) -> None:
        """The other trainer's validation metrics (``val_loss``, ``val_acc``, ...) join the run's."""
        if metrics:
            loss = next((v for k, v in metrics.items() if "loss" in k), None)
            accuracy = next((v for k, v in metrics.items() if "acc" in k), None)
            self.run.record_metrics("validation", {**metrics, "loss": loss, "accuracy": accuracy})

    def end(self, error: BaseException | None) -> None:
        """The other trainer's fit ended; conclude the run if that fit was called directly."""
        if self._keeping is not None:
            self._keeping.remove()
            self._keeping = None
        if not self._owns_lifecycle:
            return
        self._owns_lifecycle = False
        try:
            if error is None:
                self.run.loop.flush()
        except BaseException as exc:  # noqa: BLE001 - a non-finite loss in the last records fails the run
            error = exc
        finally:
            self.lifecycle.conclude(error)
