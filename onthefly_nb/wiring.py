"""How a session's components are built and wired together (the two flows of docs/architecture.md):
state goes run -> records -> publisher -> transports; commands come back through the controller."""

from __future__ import annotations

import os
import re
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from .dashboard.commands import Steerable
from .dashboard.contract import MAX_OVERLAY_ROWS
from .dashboard.hosting import Hosting
from .dashboard.publisher import Publisher
from .dashboard.state import DashboardState
from .errors import ConfigurationError
from .experts.actions import expert_actions, propose_merge
from .experts.merges import Merges
from .experts.workshop import Workshop
from .outputs.summary import summary_html
from .persist import saving
from .persist.opened import SavedRun
from .records.clustering import ClusterSchedule
from .records.clusters import Clustering
from .records.records import Records
from .run.determinism import enable_deterministic, seed_all
from .run.distributed import Ranks
from .run.events import EventLog
from .run.lifecycle import Lifecycle
from .run.loop import LIVE_FLUSH_SECONDS, QUIET_FLUSH_SECONDS
from .run.output import OutputCapture
from .run.settings import Settings
from .run.training import Run
from .steering.actions import run_actions
from .steering.checkup import Checkup
from .steering.plans import PlanBook
from .steering.watch import PlanWatch, propose_fork, propose_reweight, replaced


@dataclass
class Parts:
    """The components behind a Session (for integrations, tests and the curious)."""

    log: EventLog
    changed: threading.Event  # set whenever the dashboard has something new to show
    run: Run
    lifecycle: Lifecycle
    records: Records
    plans: PlanBook
    checkup: Checkup
    workshop: Workshop
    merges: Merges
    clusters: ClusterSchedule
    view: DashboardState
    publisher: Publisher
    hosting: Hosting
    export_dir: Path | None = None  # where the dashboard's Export button saves (else the working folder)

    def default_export_path(self) -> Path:
        """``<project>-<run>-step<N>.zip`` in ``export_dir`` (made if need be) or the working folder."""
        settings = self.run.settings
        name = re.sub(r"[^\w.-]+", "-", f"{settings.project}-{settings.run_name}").strip("-")
        folder = self.export_dir or Path.cwd()
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}-step{self.run.step}.zip"

    def widget(self) -> Any:
        """The dashboard widget; only rank 0 of a torchrun launch hosts one."""
        if not self.run.lead:
            raise ConfigurationError(f"this is rank {self.run.ranks.rank} of a torchrun launch; rank 0 hosts it")
        return self.hosting.widget()

    def overlay(self, other: Any, name: str | None) -> str | None:
        """Overlay another run on the loss chart: a Session (live), a SavedRun or a saved session's
        path; None removes ``name`` (or every overlay). Returns the overlay's name."""
        view = self.view
        if other is None:
            for shown in [name] if name else list(view.overlays()):
                view.overlay(shown, None)
            self.changed.set()
            return None
        if isinstance(other, str | os.PathLike):
            other = SavedRun(other)
        if isinstance(other, SavedRun):
            rows = other.steps.downsampled(MAX_OVERLAY_ROWS)
            label, source = name or other.name, lambda: rows
        elif hasattr(other, "parts") and hasattr(other.parts, "records"):
            records = other.parts.records

            def source() -> np.ndarray:
                with records.lock:
                    return records.history.downsampled(MAX_OVERLAY_ROWS)

            label = name or f"{other.project}/{other.run_name}"
        else:
            raise ConfigurationError(f"overlay takes a Session, a SavedRun (onthefly_nb.open_saved) or the path of a "
                                     f"saved session, got {type(other).__name__}")
        view.overlay(label, source)
        self.changed.set()
        return label

    def select(self, indices: Any) -> np.ndarray:
        """Set the selection (a lasso on the sample map does); an event says how many."""
        chosen = self.records.select(indices)
        self.log.append("selected", self.run.step, samples=int(len(chosen)))
        return chosen

    def lineage(self) -> list[dict[str, Any]]:
        """The run, its forks and merges, as tree nodes ``{id, parent, kind, label, step, state}``."""
        name = self.run.settings.run_name
        return [{"id": name, "parent": None, "kind": "run", "label": name, "step": self.run.step,
                 "state": str(self.run.state)}, *self.workshop.lineage(), *self.merges.lineage()]

    def export(self, path: str | os.PathLike[str], wait: bool) -> str | Future:
        """Save the session: copied at the next step boundary, written on another thread (``Session.export``)."""
        target = saving.check_target(path)
        if self.run.fit is not None:
            raise ConfigurationError("export saves runs onthefly_nb trains itself; a Lightning or Hugging Face "
                                     "run is saved with that trainer's own checkpoints (session.slice() and "
                                     "export_slice() keep its per-sample records)")
        self.lifecycle.check_wait(wait, "export")

        def copy() -> tuple[saving.State, float]:
            started = time.perf_counter()
            return saving.snapshot(self.components(), self.run.settings.saved()), time.perf_counter() - started

        copied = self.run.controller.submit(copy)
        written = saving.export(target, copied, self.log.append, lambda: self.run.step, self.run.settings.run_name)
        return written.result() if wait else written

    def components(self) -> dict[str, saving.Component]:
        """What a saved session holds, by component."""
        return {"run": self.run, "metrics": self.run.metrics, "scalars": self.run.scalars, "records": self.records,
                "events": self.log, "plans": self.plans, "health": self.checkup, "experts": self.workshop,
                "merges": self.merges}


def build(settings: Settings, session: Steerable, model: Any, optimizer: Any, loss_fn: Any,
          train_loader: DataLoader, val_loader: DataLoader | None, test_loader: DataLoader | None, *,
          scheduler: Any, device: Any, unpack: Any) -> Parts:
    """Every component of a session, wired: hooks at the run's moments, plan actions, watchers."""
    if settings.deterministic:  # process-wide, as PyTorch's own switch is
        enable_deterministic(settings.seed)
    elif settings.seed is not None:
        seed_all(settings.seed)
    changed = threading.Event()
    log = EventLog(on_append=lambda _event: changed.set())
    run = Run(model, optimizer, loss_fn, train_loader, val_loader, test_loader, scheduler=scheduler, device=device,
              unpack=unpack, settings=settings, log=log, ranks=Ranks.current())
    name = settings.run_name
    plans = PlanBook(log.append, run.controller.submit, lambda: run.step)
    checkup = Checkup(run, plans, settings.health_every, changed.set)
    run.gradients_wanted = lambda: run.controller.attention or checkup.due_at(run.step + 1)
    workshop = Workshop(run, plans, name, changed.set)
    merges = Merges(workshop, plans)

    def clustered(result: Clustering) -> None:
        log.append("clustered", result.step, k=len(result.summary), source=result.source,
                   samples=int(len(result.indices)))
        for kind in ("fork", "reweight"):  # a card stays while the new standout is its cluster still
            plans.expire(kind, f"the clustering at step {result.step} no longer finds its cluster",
                         lambda plan: replaced(plan, result.summary, result.indices, result.labels))
        for propose in (propose_fork, propose_reweight):
            propose(plans, result.summary, result.indices, result.labels, result.step)

    def watched(watching: bool) -> None:
        run.loop.flush_seconds = LIVE_FLUSH_SECONDS if watching else QUIET_FLUSH_SECONDS

    lifecycle = Lifecycle(run, name)
    clusters = ClusterSchedule(run.records, lambda: run.step, settings.recluster_seconds, clustered, name)
    parts: Parts
    view = DashboardState(run, plans, workshop, checkup, lambda: parts.lineage(), lambda: lifecycle.traceback)
    publisher = Publisher(view.values, changed, name, on_watched=watched)
    hosting = Hosting(publisher, session, name, lambda: summary_html(view.snapshot()))
    parts = Parts(log, changed, run, lifecycle, run.records, plans, checkup, workshop, merges, clusters, view,
                  publisher, hosting)

    plans.register({**run_actions(run, checkup), **expert_actions(workshop, merges)})
    watch = PlanWatch(plans, run.records.history, can_validate=run.val_loader is not None,
                      gradient_norm=run.gradient_norm)
    if run.lead:
        run.hooks.epoch_end.append(clusters.epoch_ended)
    run.hooks.flush += [lambda: watch.observe(run.step), plans.sweep, checkup.due, changed.set]
    run.hooks.evaluated.append(lambda kind, _result: kind == "validation" and watch.validated(run.step))
    workshop.on_trained.append(lambda expert: propose_merge(plans, workshop, expert))
    capture = OutputCapture(run.output)
    run.output.on_line = changed.set
    lifecycle.on_begin.append(capture.start)
    lifecycle.on_end[:0] = [capture.stop]
    lifecycle.on_end.append(hosting.run_ended)
    return parts
