"""The Session: a model, its data and optimizer, trained on a background thread you steer.

A facade: it builds the components (``Parts``), wires them together and delegates. The run and
its records are ``run/`` and ``records/``; plans and health ``steering/``; experts ``experts/``;
saving ``persist/``; the dashboard ``dashboard/`` (see docs/architecture.md).
"""

from __future__ import annotations

import os
import weakref
from concurrent.futures import Future
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from .dashboard.bridge import Bridge
from .data.batches import Unpack
from .experts.forks import Expert, ForkOptions
from .experts.gate import Mixture
from .experts.merges import Merge
from .persist import saving
from .records.clusters import Clustering
from .records.slices import EXPORT_CHUNK_ROWS, Selection
from .run import hyperparameters
from .run.control import TERMINAL, RunState
from .run.determinism import DeterminismReport
from .run.lifecycle import supersede
from .run.manual import TrackedRun
from .run.settings import Settings
from .wiring import build

DEFAULT_WAIT = 60.0
SUPERSEDE_SECONDS = 60.0  # how long a new session on the same model waits for the old one to stop


class Session:
    """A training run you steer; every control takes effect at a step boundary (parts: the components)."""

    _current: ClassVar[Session | None] = None
    _live: ClassVar[weakref.WeakSet[Session]] = weakref.WeakSet()

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None, loss_fn: Any,
                 train_loader: DataLoader, val_loader: DataLoader | None = None, test_loader: DataLoader | None = None,
                 *, scheduler: Any = None, scheduler_interval: str = "epoch", device: str | torch.device | None = None,
                 max_epochs: int | None = 1, max_steps: int | None = None, do_test_after: bool = False,
                 stop_on_nan: bool = True, unpack: Unpack | None = None, project: str = "default",
                 run_name: str = "run", recluster_seconds: float | None = 30.0, health_every: int | None = 500,
                 deterministic: bool = False, seed: int | None = None, grad_clip_norm: float | None = None,
                 val_every_n_epochs: int = 1, precision: str = "32", accumulate: int = 1) -> None:
        self.settings = Settings(project, run_name, max_epochs, max_steps, scheduler_interval, do_test_after,
                                 stop_on_nan, health_every, deterministic, recluster_seconds, seed, grad_clip_norm,
                                 val_every_n_epochs, precision, accumulate)
        supersede(list(Session._live), model, run_name, SUPERSEDE_SECONDS)  # a re-run notebook cell
        self.parts = build(self.settings, self, model, optimizer, loss_fn, train_loader, val_loader, test_loader,
                           scheduler=scheduler, device=device, unpack=unpack)
        self.event_log = self.parts.log
        Session._current = self
        Session._live.add(self)

    model = property(lambda self: self.parts.run.model, doc="The model being trained.")
    optimizer = property(lambda self: self.parts.run.optimizer, doc="Its optimizer (another trainer's, once bound).")
    scheduler = property(lambda self: self.parts.run.scheduler)
    loss_fn = property(lambda self: self.parts.run.loss_fn)
    unpack = property(lambda self: self.parts.run.unpack, doc="batch -> (inputs, targets)")
    train_loader = property(lambda self: self.parts.run.train_loader)
    val_loader = property(lambda self: self.parts.run.val_loader)
    test_loader = property(lambda self: self.parts.run.test_loader)
    device = property(lambda self: self.parts.run.device)
    project = property(lambda self: self.settings.project)
    run_name = property(lambda self: self.settings.run_name)
    store = property(lambda self: self.parts.records.store, doc="The per-sample store (one row per dataset index).")
    clustering = property(lambda self: self.parts.records.clustering, doc="The latest Clustering, or None.")
    health_report = property(lambda self: self.parts.checkup.report, doc="The latest health findings (dashboard).")
    traceback = property(lambda self: self.parts.lifecycle.traceback, doc="The traceback of a failed run.")
    status = property(lambda self: str(self.parts.run.state), doc="idle, running, paused, stopping, finished...")
    global_step = property(lambda self: self.parts.run.step, doc="Optimizer steps completed so far.")
    epoch = property(lambda self: self.parts.run.loop.epoch, doc="Epochs completed so far.")
    samples_per_sec = property(lambda self: self.parts.run.loop.samples_per_sec)
    total_steps = property(lambda self: self.parts.run.total_steps, doc="Steps the schedule runs if nobody stops it.")
    done = property(lambda self: self.parts.lifecycle.done, doc="True once the run has ended.")
    events = property(lambda self: self.event_log.all(), doc="Every event so far, numbered, oldest first.")
    metrics = property(lambda self: self.parts.run.metrics.all(), doc="Validation and test results, oldest first.")
    scalars = property(lambda self: self.parts.run.scalars.frame(), doc="Measured and logged scalars by step.")
    history = property(lambda self: self.parts.records.history_frame(), doc="Per-step train loss quantiles.")
    plans = property(lambda self: self.parts.plans.cards(), doc="Every plan card (dicts with approve/reject).")
    comparison = property(lambda self: self.parts.workshop.table, doc="The latest compare() table, or None.")
    experts = property(lambda self: dict(self.parts.workshop.experts), doc="The specialists forked, by name.")
    selection = property(lambda self: self.parts.records.selection.astype("int64"), doc="Lassoed dataset indices.")
    lineage = property(lambda self: self.parts.lineage(), doc="The run, its forks and merges, as tree nodes.")
    clusters = property(lambda self: self.parts.records.cluster_summary(), doc="The latest clustering's summary.")
    current = classmethod(lambda cls: cls._current)  # the most recently created session, if any

    def start(self, paused: bool = False) -> Session:
        """Start training on a background thread; with ``paused=True`` it waits before step 1."""
        self.parts.lifecycle.start(paused)
        return self

    def run(self) -> Session:
        """Train on the calling thread until the end (a plain script); then like ``wait``."""
        self.parts.lifecycle.run_here()
        return self.wait()

    def wait(self, timeout: float | None = None) -> Session:
        """Block until training ends; re-raises the exception that failed the run."""
        self.parts.lifecycle.wait(timeout)
        return self

    def wait_for(self, step: int | None = None, state: str | None = None, timeout: float | None = None) -> Session:
        """Block until ``step`` steps are trained, or the run is in ``state`` ("paused", ...), or it ended."""
        self.parts.lifecycle.wait(timeout, lambda: (step is None or self.global_step >= step) and
                                  (state is None or self.status == state))
        return self

    def pause(self, wait: bool = True, timeout: float = DEFAULT_WAIT) -> Session:
        """Pause at the next step boundary (and, by default, wait until paused)."""
        self.parts.run.controller.request_pause()
        self.parts.lifecycle.wait_for(lambda s: s is RunState.PAUSED or s in TERMINAL, wait, timeout, "pause")
        return self

    def resume(self) -> Session:
        """Continue a paused run (also cancels a pending ``step(n)``)."""
        self.parts.run.controller.request_resume()
        return self

    def step(self, n: int = 1, wait: bool = True, timeout: float = DEFAULT_WAIT) -> Session:
        """Run ``n`` more steps, then pause."""
        target = self.parts.run.controller.request_steps(n)
        self.parts.lifecycle.wait_for(lambda s: (s is RunState.PAUSED and self.global_step >= target)
                                      or s in TERMINAL, wait, timeout, f"step({n})")
        return self

    def stop(self, wait: bool = True, timeout: float = DEFAULT_WAIT) -> Session:
        """Stop at the next step boundary, paused or not (and, by default, wait for the end)."""
        self.parts.lifecycle.stop(wait, timeout)
        return self

    def _call(self, action: Any, wait: bool, what: str) -> Any:
        self.parts.lifecycle.check_wait(wait, what)  # then the action runs at the next step boundary
        future = self.parts.run.controller.submit(action)
        return future.result() if wait else future

    def validate(self, wait: bool = True) -> dict[str, Any] | Future:
        """Evaluate on the validation loader at the next step boundary; training then continues."""
        return self._call(self.parts.run.evaluation("validation"), wait, "validate")

    def test(self, wait: bool = True) -> dict[str, Any] | Future:
        """Evaluate on the test loader at the next step boundary; training then continues."""
        return self._call(self.parts.run.evaluation("test"), wait, "test")

    def health(self, wait: bool = True) -> pd.DataFrame | Future:
        """Every health check at the next step boundary (also every ``health_every`` steps): pass/warn/fail rows."""
        return self._call(self.parts.checkup.health, wait, "health")

    def check_determinism(self, wait: bool = True) -> DeterminismReport | Future:
        """Replay the last step twice from the same state and compare it bit for bit."""
        return self._call(self.parts.checkup.check_determinism, wait, "check_determinism")

    def approve(self, plan_id: str, wait: bool = False, **params: float) -> str | Future:
        """Approve a plan (with edited ``params``); it runs at the next step boundary."""
        self.parts.lifecycle.check_wait(wait, "approve")
        future = self.parts.plans.decide(plan_id, "approve", params)
        return future.result() if wait else future

    def reject(self, plan_id: str) -> None:
        self.parts.plans.decide(plan_id, "reject")

    def log(self, **values: float) -> None:
        """Chart scalars by name at the current step: the metrics panel, ``session.scalars``, a saved session."""
        self.parts.run.scalars.log(self.global_step, values)

    def overlay(self, other: Any, name: str | None = None) -> str | None:
        """Draw another run's median loss on this loss chart: a Session, a SavedRun or a saved path (None clears)."""
        return self.parts.overlay(other, name)

    def select(self, indices: Any) -> Any:
        """Set the selection (what a lasso on the sample map does); every dashboard shows it."""
        return self.parts.select(indices)

    def fork(self, slice: Selection, budget: int = 300, lr: float | None = None, name: str | None = None,
             fresh_optimizer: bool = False, general_share: float = 0.0, seed: int = 0,
             adapter_rank: int | None = None, adapter_layers: list[str] | None = None, mode: str = "wait",
             wait: bool = True) -> Expert | Future:
        """Fork a specialist on a slice at the next boundary; the run waits (``mode='wait'``) or alternates."""
        rows = self.parts.records.rows(slice)
        options = ForkOptions(budget, lr, fresh_optimizer, general_share, seed, adapter_rank, adapter_layers, mode)
        job = self.parts.workshop.fork_job(rows, self.parts.records.describe(slice, rows), options, name)
        return self._call(job, wait, "fork")

    def set_hyperparameters(self, lr: float | None = None, weight_decay: float | None = None,
                            momentum: float | None = None, betas: tuple[float, float] | None = None,
                            grad_clip_norm: float | None = None, group: int | None = None,
                            wait: bool = True) -> str | Future:
        """Change them at the next step boundary (every parameter group, or ``group``); an event records it."""
        values = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, betas=betas, grad_clip_norm=grad_clip_norm)
        changes = hyperparameters.checked(self.optimizer, values, group)
        return self._call(lambda: self.parts.run.set_hyperparameters(changes, group), wait, "set_hyperparameters")

    def reweight(self, slice: Selection, factor: float = 3.0, wait: bool = True) -> str | Future:
        """Sample the slice ``factor`` times as often from the next epoch; ``reweight(None)`` undoes it."""
        rows, described = self.parts.records.reweighting(slice, factor)
        return self._call(lambda: self.parts.run.reweight(rows, float(factor), described), wait, "reweight")

    def compare(self, extra: dict[str, Any] | None = None, wait: bool = True) -> pd.DataFrame | Future:
        """Loss and accuracy of the run, every expert and ``extra`` models on each fork's slice and on validation."""
        workshop = self.parts.workshop
        job = lambda: workshop.set_table(workshop.compare(self.parts.merges.resolve(extra)))  # noqa: E731
        return self._call(job, wait, "compare")

    def merge(self, experts: list[str] | None = None, method: str = "swa", steps: int = 200) -> Merge:
        """Candidate weights (``swa``, ``fisher``, ``distill``, ``adapter``) scored before and after; see commit()."""
        return self._call(lambda: self.parts.merges.merge(experts, method, steps), True, "merge")

    def baseline(self, steps: int | None = None, name: str | None = None) -> Expert:
        """The run trained on all the data for as many steps as the forks and routers: their fair comparison."""
        return self._call(self.parts.workshop.baseline_job(steps, name), True, "baseline")

    def gate(self, experts: list[str] | None = None, epochs: int = 30, features: str = "auto") -> Mixture:
        """A mixture of the run and its experts behind a router on the inputs or penultimate features."""
        return self._call(lambda: self.parts.workshop.gate(experts, epochs, features), True, "gate")

    def commit(self, merge: str, wait: bool = True) -> str | Future:
        """Load a merge's weights into the run at the next step boundary."""
        return self._call(self.parts.merges.commit_job(merge), wait, "commit")

    def discard(self, merge: str) -> None:
        self.parts.merges.discard(merge)

    def slice(self, query: Selection = None, features: bool | None = None) -> pd.DataFrame:
        """Per-sample rows for a pandas query (``"loss > q95"``) or dataset indices; README, "Which samples"."""
        return self.parts.records.slice(query, features)

    def suspects(self, threshold: float = 0.5) -> pd.DataFrame:
        """Samples whose label looks wrong, most suspect first (``records/suspects.py``; bench/label_noise.py)."""
        return self.parts.records.suspects(threshold)

    def export_slice(self, path: str, query: Selection = None, features: bool | None = None,
                     chunk_rows: int = EXPORT_CHUNK_ROWS) -> str:
        """Write ``slice(query)`` to ``path`` (.csv, .parquet or .json lines), in chunks; returns the path."""
        return self.parts.records.export_slice(path, query, features, chunk_rows)

    def cluster(self, k: int | None = None, wait: bool = True) -> Clustering | None | Future:
        """Cluster the hard samples now on a worker thread; ``session.clusters`` is its summary."""
        job = self.parts.clusters.cluster(k)
        return job.result() if wait else job

    def export(self, path: str | os.PathLike[str], wait: bool = True) -> str | Future:
        """Save the session to ``path`` (.zip, else a folder) at the next boundary; ``Session.load`` continues it."""
        return self.parts.export(path, wait)

    def default_export_path(self) -> Path:
        return self.parts.default_export_path()

    def track(self) -> TrackedRun:
        """Track your own training loop: ``with session.track() as run:`` (see ``run/manual.py``)."""
        return TrackedRun(self.parts.lifecycle)

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: nn.Module | None = None, optimizer: Any = None,
             loss_fn: Any = None, train_loader: DataLoader | None = None, val_loader: DataLoader | None = None,
             test_loader: DataLoader | None = None, *, factory: Any = None, **options: Any) -> Session:
        """Continue a saved session from the objects built as for it (or ``factory(config)``); then ``start()``."""
        state = saving.read(path)
        given = {"model": model, "optimizer": optimizer, "loss_fn": loss_fn, "train_loader": train_loader,
                 "val_loader": val_loader, "test_loader": test_loader}
        session = cls(**saving.objects(state, given, factory), **{**Settings.from_saved(state["config"]), **options})
        saving.restore(session.parts.components(), state)
        session.event_log.append("imported", session.global_step, path=str(path))
        return session

    def report(self, path: str = "run.html") -> str:
        """Write a self-contained offline HTML report of the run; returns its path."""
        from .outputs.report import write_report  # plotly loads only for a report
        return str(write_report(self, path))

    def figure(self, kind: str = "loss", slice: Selection = None) -> Any:
        """A plotly figure: ``"loss"``, ``"history"``, ``"datamap"`` or ``"map"``, for a slice."""
        from .outputs.figures import figure  # plotly loads only for a figure
        return figure(self, kind, slice)

    def snapshot(self, max_rows: int = 1000) -> dict[str, Any]:
        """A consistent copy of what the dashboard shows."""
        return self.parts.view.snapshot(max_rows)

    def dashboard(self) -> Any:
        """The session's live dashboard widget (one per session, displayable many times)."""
        return self.parts.widget()

    def bridge(self, port: int | None = None) -> Bridge:
        """Serve the dashboard on a localhost WebSocket (page at ``bridge.url``); port 47621 (else the next free)."""
        return self.parts.hosting.bridge(port)

    def __repr__(self) -> str:
        return (f"<onthefly_nb.Session {self.project}/{self.run_name}: {self.status}, step {self.global_step}/"
                f"{self.total_steps or '?'}, epoch {self.parts.run.display_epoch()}/{self.settings.max_epochs or '?'}>")

