"""The Session: a model, its data and optimizer, trained on a background thread you steer."""

from __future__ import annotations

import math
import os
import re
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from .data.batches import Unpack, check_loader, default_unpack
from .data.losses import sample_loss
from .errors import ArchiveError, ConfigurationError
from .experts.gate import Mixture
from .experts.workshop import Expert, ForkOptions, Merge, Workshop
from .persist.archive import read_archive, write_archive
from .persist.portable import Snapshot, restore, take_snapshot
from .records.clusters import Clustering, cluster
from .records.features import FeatureBank, PenultimateCapture
from .records.recorder import Recorder
from .records.slices import (
    EXPORT_CHUNK_ROWS,
    Selection,
    apply_query,
    choose_rows,
    export_frame,
    feature_columns,
    referenced,
    store_frame,
)
from .records.store import STEP_COLUMNS, SampleStore, StepHistory
from .run.control import TERMINAL, Controller, RunState, run_into
from .run.determinism import DeterminismReport, enable_deterministic, seed_all
from .run.distributed import PAUSED, Ranks, unwrapped
from .run.evaluation import evaluate
from .run.events import EventLog
from .run.loop import LIVE_FLUSH_SECONDS, Schedule, TrainingLoop
from .steering.checkup import Checkup
from .steering.health import gradient_norms
from .steering.plans import PlanBook, PlanCard, PlanWatch, propose_fork, propose_reweight

if TYPE_CHECKING:
    from .dashboard.bridge import Bridge
    from .dashboard.widget import Dashboard

DEFAULT_WAIT = 60.0
FIRST_CLUSTER_SECONDS = 5.0


class Session:
    """Owns one training run and lets you pause, step, resume, stop and inspect it.

    Training starts with :meth:`start` (``onthefly.Trainer.fit`` calls it) and runs on a
    daemon thread. Every control call takes effect at a step boundary, never mid-step.
    """

    _current: ClassVar[Session | None] = None
    _live: ClassVar[weakref.WeakSet[Session]] = weakref.WeakSet()

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        loss_fn: Any,
        train_loader: DataLoader,
        val_loader: DataLoader | None = None,
        test_loader: DataLoader | None = None,
        *,
        scheduler: Any = None,
        scheduler_interval: str = "epoch",
        device: str | torch.device | None = None,
        max_epochs: int = 1,
        max_steps: int | None = None,
        do_test_after: bool = False,
        stop_on_nan: bool = True,
        unpack: Unpack | None = None,
        project: str = "default",
        run_name: str = "run",
        recluster_seconds: float | None = 30.0,
        health_every: int | None = 500,
        deterministic: bool = False,
        seed: int | None = None,
    ) -> None:
        _check_types(model, optimizer, scheduler, scheduler_interval, max_epochs, max_steps, unpack)
        if health_every is not None and (not isinstance(health_every, int) or health_every < 1):
            raise ConfigurationError(f"health_every must be a number of steps >= 1 or None, got {health_every!r}")
        self.deterministic = deterministic
        if deterministic:  # process-wide, as PyTorch's own switch is
            enable_deterministic(seed)
        elif seed is not None:
            seed_all(seed)
        self.project, self.run_name = project, run_name
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.train_loader = check_loader(train_loader, "train_loader")
        self.val_loader = None if val_loader is None else check_loader(val_loader, "val_loader")
        self.test_loader = None if test_loader is None else check_loader(test_loader, "test_loader")
        self.device = _resolve_device(model, device)
        self.loss_fn = loss_fn
        self._loss = sample_loss(loss_fn)
        self.unpack: Unpack = unpack or default_unpack
        self.schedule = Schedule(max_epochs, max_steps, do_test_after, scheduler_interval)

        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._log = EventLog(on_append=lambda _event: self._changed.set())
        self.store = SampleStore(len(train_loader.dataset))  # type: ignore[arg-type]
        self._history = StepHistory()
        self._metrics: dict[str, list[dict[str, Any]]] = {"validation": [], "test": []}
        self._controller = Controller(self._on_control)
        self._ranks = Ranks.current()  # a torchrun launch: rank 0 keeps the store and the dashboard
        self._lead = self._ranks is None or self._ranks.lead
        capture = _penultimate_capture(model, train_loader.dataset) if self._ranks is None else None
        self._features = None if capture is None else FeatureBank(self.store.size, capture.dims)
        recorder = Recorder(self.store, self._history, self._lock, self._loss.per_sample,
                            stop_on_nonfinite=stop_on_nan, capture=capture, bank=self._features,
                            gather=None if self._ranks is None else self._ranks.gather_visits)
        self._loop = TrainingLoop(
            model=model, optimizer=optimizer, loss=self._loss, train_loader=train_loader,
            scheduler=scheduler, device=self.device, unpack=self.unpack, schedule=self.schedule,
            controller=self._controller, recorder=recorder, on_epoch_end=self._on_epoch_end,
            on_flush=self._after_flush,
        )
        self._controller.on_enter = self._loop.flush
        self._controller.on_leave = self._loop.restart_clock
        if self._ranks is not None:
            self._loop.ranks = self._ranks
            if self._ranks.lead:
                self._controller.heartbeat = lambda: self._ranks.verdict(PAUSED)  # type: ignore[union-attr]
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._error: BaseException | None = None
        self.traceback: str | None = None
        self._fit: Callable[[], Any] | None = None  # another trainer's fit, when one drives this session
        self._bridge: Bridge | None = None
        self._dashboard: Dashboard | None = None
        self.clustering: Clustering | None = None
        self._clustering_job: Future | None = None
        self._recluster_seconds = recluster_seconds
        # the first epoch's end at least FIRST_CLUSTER_SECONDS in clusters, then every recluster_seconds
        self._last_clustered = time.monotonic() - (recluster_seconds or 0.0) + FIRST_CLUSTER_SECONDS
        self._plans = PlanBook(self._log.append, self._controller.submit, lambda: self.global_step)
        self._plans.register("lower_lr", lambda plan: self._scale_lr(plan.params["factor"]))
        self._plans.register("validate_now", lambda _plan: _describe(self._evaluate("validation")))
        self._plans.register("fork", lambda plan: self._fork_cluster(plan))
        self._plans.register("reweight", lambda plan: self._reweight_cluster(plan))
        self._plans.register("merge", self._merge_plan)
        self._plans.register("commit_merge", lambda plan: self._workshop.commit_job(plan.context["merge"])(),
                             on_reject=lambda plan: self._workshop.discard(plan.context["merge"]))
        self._plans.register("clip_gradients", lambda plan: self._clip(plan.params["max_norm"]))
        self._plans.register("health_check", lambda _plan: _health_summary(self._checkup.health()))
        self._watch = PlanWatch(self._plans, self._history, can_validate=self.val_loader is not None,
                                gradient_norm=self._gradient_norm)
        self._workshop = Workshop(self)
        self._checkup = Checkup(self, health_every)
        self.health_report: dict[str, Any] | None = None
        self._selection = np.empty(0, dtype=np.uint32)
        self.selection_version = 0
        self._supersede(model)
        Session._current = self
        Session._live.add(self)

    # ---- lifecycle -------------------------------------------------------------------
    @classmethod
    def current(cls) -> Session | None:
        """The most recently created session, if any."""
        return cls._current

    def start(self, paused: bool = False) -> Session:
        """Start training on a background thread; with ``paused=True`` it waits before step 1."""
        self._check_trainable()
        self._claim(threading.Thread(target=self._train, name=f"onthefly-train-{self.run_name}", daemon=True))
        if paused:
            self._controller.request_pause()
        self._controller.begin()
        self._thread.start()  # type: ignore[union-attr]
        return self

    def run(self) -> Session:
        """Train on the calling thread until the end (what a plain script wants); then like ``wait``.

        Other threads can still pause, step or stop it. Ctrl-C stops the run and propagates.
        """
        self._check_trainable()
        self._claim(threading.current_thread())
        self._controller.begin()
        self._train()
        return self.wait()

    def _check_trainable(self) -> None:
        if self.optimizer is None and self._fit is None:
            raise ConfigurationError("this session has no optimizer to train with: pass optimizer=... "
                                     "(e.g. torch.optim.Adam(model.parameters(), lr=1e-3))")

    def _supersede(self, model: nn.Module) -> None:
        """Stop any unfinished session on the same model (a re-run notebook cell), at a step boundary."""
        for other in list(Session._live):
            if other.model is model and not other.done:
                other._log.append("superseded", other.global_step, by=self.run_name)
                other.stop(timeout=DEFAULT_WAIT)

    def _claim(self, thread: threading.Thread) -> None:
        if self._thread is not None:
            raise RuntimeError(f"session {self.run_name!r} was already started; it is {self.status}.")
        self._thread = thread

    def _train(self) -> None:
        error = None
        try:
            self._loop.recorder.open()
            if self._fit is not None:
                self._fit()
            else:
                self._loop.run()
            self._loop.flush()
            self._loop.finish_alongside()
            if self._controller.state is not RunState.STOPPING and self.schedule.do_test_after \
                    and self.test_loader is not None:
                self._evaluate("test")
        except BaseException as exc:  # noqa: BLE001 - kept, shown, and re-raised by wait()
            error = exc
        finally:
            self._conclude(error)

    def _conclude(self, error: BaseException | None) -> None:
        """End the run: finished, stopped (asked to, or Ctrl-C) or failed with ``error``."""
        end, message = RunState.FINISHED, None
        if isinstance(error, KeyboardInterrupt):
            self._error, end = error, RunState.STOPPED
        elif error is not None:
            self._error = error
            self.traceback = "".join(traceback.format_exception(error))
            end, message = RunState.FAILED, f"{type(error).__name__}: {error}"
        elif self._controller.state is RunState.STOPPING:
            end = RunState.STOPPED
        self._loop.recorder.close()
        self._controller.end(end, message)
        self._done.set()
        if self._bridge is not None:
            self._bridge.stop_soon()

    def wait(self, timeout: float | None = None) -> Session:
        """Block until training ends; re-raises the exception that failed the run."""
        if self._thread is not None and not self._wait_done(timeout):
            raise TimeoutError(f"training still {self.status} after {timeout} s")
        if self._error is not None:
            raise self._error
        return self

    def _wait_done(self, timeout: float | None) -> bool:
        """Wait for the end of the run and, for a background run, for its thread to exit."""
        if not self._done.wait(timeout):
            return False
        thread = self._thread
        if thread is not None and thread.daemon and thread is not threading.current_thread():
            thread.join()
        return True

    @property
    def done(self) -> bool:
        """True once the run has ended (finished, stopped or failed)."""
        return self._done.is_set()

    # ---- control -----------------------------------------------------------------------
    def pause(self, wait: bool = True, timeout: float = DEFAULT_WAIT) -> Session:
        """Pause at the next step boundary (and, by default, wait until paused)."""
        self._controller.request_pause()
        self._wait_for(lambda s: s is RunState.PAUSED or s in TERMINAL, wait, timeout, "pause")
        return self

    def resume(self) -> Session:
        """Continue a paused run (also cancels a pending ``step(n)``)."""
        self._controller.request_resume()
        return self

    def step(self, n: int = 1, wait: bool = True, timeout: float = DEFAULT_WAIT) -> Session:
        """Run ``n`` more steps, then pause."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"step(n) needs a whole number of steps >= 1, got {n!r}")
        target = self._controller.request_steps(n)
        self._wait_for(lambda s: (s is RunState.PAUSED and self.global_step >= target) or s in TERMINAL,
                       wait, timeout, f"step({n})")
        return self

    def stop(self, wait: bool = True, timeout: float = DEFAULT_WAIT) -> Session:
        """Stop at the next step boundary, paused or not (and, by default, wait for the end)."""
        self._controller.request_stop()
        if self._thread is None:
            self._controller.end(RunState.STOPPED)
            self._done.set()
        elif wait and threading.current_thread() is not self._thread:
            self._wait_done(timeout)
        return self

    def _wait_for(self, done: Any, wait: bool, timeout: float, what: str) -> None:
        if not wait or self._thread is None or threading.current_thread() is self._thread:
            return
        if not self._controller.wait_until(done, timeout):
            raise TimeoutError(f"{what} did not take effect within {timeout} s (status: {self.status})")

    def validate(self, wait: bool = True) -> dict[str, Any] | Future:
        """Evaluate on the validation loader at the next step boundary; training then continues."""
        return self._request_evaluation("validation", wait)

    def test(self, wait: bool = True) -> dict[str, Any] | Future:
        """Evaluate on the test loader at the next step boundary; training then continues."""
        return self._request_evaluation("test", wait)

    def _request_evaluation(self, kind: str, wait: bool) -> dict[str, Any] | Future:
        loader = self.val_loader if kind == "validation" else self.test_loader
        if loader is None:
            arg = "val_loader" if kind == "validation" else "test_loader"
            raise ConfigurationError(f"this session has no {arg}; pass {arg}=... to create it.")
        future = self._controller.submit(lambda: self._evaluate(kind))
        return future.result() if wait else future

    def _evaluate(self, kind: str) -> dict[str, Any]:
        loader = self.val_loader if kind == "validation" else self.test_loader
        assert loader is not None
        return self._record_metrics(kind, self._evaluate_model(self.model, loader))

    def _record_metrics(self, kind: str, result: dict[str, Any]) -> dict[str, Any]:
        """Keep a validation or test result (with its loss and accuracy) and log it."""
        result = {"step": self.global_step, "epoch": self.epoch, **result}
        for key in ("loss", "accuracy"):
            result[key] = _finite(result.get(key))
        with self._lock:
            self._metrics[kind].append(result)
        self._log.append(kind, self.global_step, **{k: v for k, v in result.items() if k != "step"})
        if kind == "validation":
            self._watch.validated(self.global_step)
        return result

    def _on_epoch_end(self, epoch: int) -> None:
        self._log.append("epoch_end", self.global_step, epoch=epoch)
        due = self._recluster_seconds is not None and time.monotonic() - self._last_clustered >= self._recluster_seconds
        if due and self._lead and (self._clustering_job is None or self._clustering_job.done()):
            self.cluster(wait=False)
        if self.val_loader is not None:
            self._evaluate("validation")
        if self.scheduler is not None and self.schedule.scheduler_interval == "epoch":
            if not isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step()
            elif self._metrics["validation"] and self._metrics["validation"][-1]["loss"] is not None:
                self.scheduler.step(self._metrics["validation"][-1]["loss"])

    def _on_control(self, kind: str, step: int, data: dict[str, Any]) -> None:
        self._log.append(kind, step, **data)

    def _after_flush(self) -> None:
        """On the trainer thread after each flush: let the plan watcher look, check health when
        due, wake the publisher."""
        if not self._lead:
            return
        self._watch.observe(self.global_step)
        if self._checkup.due(self.global_step):
            self._checkup.health()
        self._changed.set()

    # ---- plans, health and selection ----------------------------------------------------
    @property
    def plans(self) -> list[PlanCard]:
        """Every plan proposed so far (newest last), as dicts (id, kind, title, evidence, params,
        status, result) with ``approve(**params)`` and ``reject()``."""
        return self._plans.cards()

    def approve(self, plan_id: str, wait: bool = False, **params: float) -> str | Future:
        """Approve a proposed plan, with edited ``params``; it runs at the next step boundary.

        Returns a Future of its result, or with ``wait=True`` the result itself.
        """
        future = self._plans.decide(plan_id, "approve", params)
        return future.result() if wait else future

    def reject(self, plan_id: str) -> None:
        """Reject a proposed plan."""
        self._plans.decide(plan_id, "reject")

    def _gradient_norm(self) -> float | None:
        """The total gradient norm of the last step (on the trainer thread, where it is still in .grad)."""
        norms, _unused = gradient_norms(self.model)
        return math.sqrt(sum(n * n for n in norms.values())) if norms else None

    def _clip(self, max_norm: float) -> str:
        """Clip every later step's gradients to ``max_norm`` (torch.nn.utils.clip_grad_norm_)."""
        before = self._loop.clip_norm
        self._loop.clip_norm = max_norm
        self._log.append("clipping", self.global_step, max_norm=max_norm, before=before)
        return f"gradients clipped to norm {max_norm:g} from step {self.global_step + 1}"

    def _scale_lr(self, factor: float) -> str:
        """Multiply every parameter group's learning rate (and the scheduler's base rates) by ``factor``."""
        before = [g["lr"] for g in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group["lr"] = group["lr"] * factor
        if hasattr(self.scheduler, "base_lrs"):
            self.scheduler.base_lrs = [lr * factor for lr in self.scheduler.base_lrs]
        after = [g["lr"] for g in self.optimizer.param_groups]
        self._log.append("lr_changed", self.global_step, before=before, after=after)
        return "lr " + ", ".join(f"{b:.3g} -> {a:.3g}" for b, a in zip(before, after))

    def health(self, wait: bool = True) -> pd.DataFrame | Future:
        """Check the run's health at the next step boundary: loss, weights, gradients (per layer),
        activations and dead units on the last batch, learning rate, loss trend, train/validation
        gap, loader wait, label balance. Returns a DataFrame of pass/warn/fail findings. It also
        runs by itself every ``health_every`` steps."""
        future = self._controller.submit(self._checkup.health)
        return future.result() if wait else future

    def check_determinism(self, wait: bool = True) -> DeterminismReport | Future:
        """Replay the last step twice from the captured state (model, optimizer, RNG, batch) and
        compare loss, gradients and weights bit for bit; the report names what differs."""
        future = self._controller.submit(self._checkup.check_determinism)
        return future.result() if wait else future

    @property
    def selection(self) -> np.ndarray:
        """Dataset indices selected on the dashboard's sample map (sorted); ready for ``slice()``."""
        return self._selection.astype(np.int64)

    def select(self, indices: Any) -> np.ndarray:
        """Set the selection (what a lasso on the sample map does); every dashboard shows it."""
        rows = choose_rows(self.store, np.asarray(indices, dtype=np.int64).reshape(-1))
        self._selection = np.unique(rows).astype(np.uint32)
        self.selection_version += 1
        self._log.append("selected", self.global_step, samples=int(len(self._selection)))
        return self.selection

    @property
    def lineage(self) -> list[dict[str, Any]]:
        """The run and its forks and merges, as tree nodes ``{id, parent, kind, label, step, state}``."""
        return [{"id": self.run_name, "parent": None, "kind": "run", "label": self.run_name,
                 "step": self.global_step, "state": self.status}, *self._workshop.lineage()]

    # ---- experts -----------------------------------------------------------------------------
    def fork(self, slice: Selection, budget: int = 300, lr: float | None = None, name: str | None = None,
             fresh_optimizer: bool = False, general_share: float = 0.0, seed: int = 0,
             adapter_rank: int | None = None, adapter_layers: list[str] | None = None, mode: str = "wait",
             wait: bool = True) -> Expert | Future:
        """Fork a specialist: a copy of the model (and optimizer state, unless ``fresh_optimizer``)
        trained for ``budget`` steps on a slice (a query, dataset indices or ``session.selection``),
        with ``general_share`` of each batch drawn from the whole training set. With
        ``adapter_rank`` only low-rank adapters on the Linear layers (or ``adapter_layers``) are
        trained. It starts at the next step boundary; with ``mode='wait'`` the main run waits
        until it is trained, with ``'alternate'`` the run and the fork take a step each in turn
        (the expert is returned at once, its ``state`` turns ``trained`` at the end)."""
        rows = self._slice_rows(slice)
        description = slice if isinstance(slice, str) else f"{len(rows)} chosen samples"
        options = ForkOptions(budget, lr, fresh_optimizer, general_share, seed, adapter_rank, adapter_layers, mode)
        future = self._controller.submit(self._workshop.fork_job(rows, description, options, name))
        return future.result() if wait else future

    def reweight(self, slice: Selection, factor: float = 3.0, wait: bool = True) -> str | Future:
        """Sample the slice ``factor`` times as often as the rest, from the next epoch on (each
        epoch then draws as many batches, with replacement); ``reweight(None)`` restores the
        loader's own order. Set at the next step boundary."""
        if slice is None:
            rows, description = None, None
        else:
            if isinstance(factor, bool) or not isinstance(factor, int | float) or not 0 < factor < math.inf:
                raise ConfigurationError(f"factor must be a positive number, got {factor!r}")
            rows = self._slice_rows(slice)
            if not len(rows):
                raise ConfigurationError(f"the slice {slice!r} holds no samples; nothing to reweight")
            description = slice if isinstance(slice, str) else f"{len(rows)} chosen samples"
        future = self._controller.submit(lambda: self._reweight(rows, float(factor), description))
        return future.result() if wait else future

    def _reweight(self, rows: np.ndarray | None, factor: float, description: str | None) -> str:
        weights = None
        if rows is not None:
            weights = np.ones(self.store.size)
            weights[rows] = factor
        self._loop.sampler.reweight(weights)
        self._log.append("reweighted", self.global_step, slice=description, samples=0 if rows is None else len(rows),
                         factor=factor if rows is not None else 1.0)
        if rows is None:
            return "sampling restored to the loader's own order from the next epoch"
        return f"{description} ({len(rows)} samples) sampled {factor:g}x as often from the next epoch"

    def _slice_rows(self, slice: Selection) -> np.ndarray:
        if isinstance(slice, str):
            return self.slice(slice, features=False)["index"].to_numpy()
        return np.unique(choose_rows(self.store, slice))

    def _reweight_cluster(self, plan: Any) -> str:
        """The reweight card's executor (on the trainer thread)."""
        return self._reweight(plan.context["rows"], plan.params["factor"], plan.context["slice"])

    def _fork_cluster(self, plan: Any) -> str:
        """The fork plan's executor (on the trainer thread): fork on the planned cluster now."""
        where = plan.context["slice"]
        options = ForkOptions(int(plan.params["budget"]), general_share=plan.params["general_share"])
        expert = self._workshop.fork_job(plan.context["rows"], where, options)()
        return f"{expert.name}: {len(expert.losses)} steps on {where}, final loss {expert.losses[-1]:.4g}"

    def _merge_plan(self, plan: Any) -> str:
        """The merge card's executor: average the expert into candidate weights, then propose committing them."""
        merge = self._workshop.merge([plan.context["expert"]], "swa")
        self._workshop.propose_commit(merge)
        return f"{merge.name}: candidate weights; see its commit card"

    @property
    def experts(self) -> dict[str, Expert]:
        """The specialists forked so far, by name."""
        return dict(self._workshop.experts)

    def compare(self, extra: dict[str, Any] | None = None, wait: bool = True) -> pd.DataFrame | Future:
        """Loss and accuracy of the run, of every expert, and of the ``extra`` models (name ->
        module, mixture or merge) on each fork's slice and on the validation set (evaluated at the
        next step boundary). The dashboard's compare panel shows the latest table."""
        def job() -> pd.DataFrame:
            self._workshop.set_table(self._workshop.compare(extra))
            return self._workshop.table

        future = self._controller.submit(job)
        return future.result() if wait else future

    def merge(self, experts: list[str] | None = None, method: str = "swa", steps: int = 200) -> Merge:
        """Merge trained experts with the run into candidate weights, evaluated before and after
        on the experts' slices and on validation: ``method='swa'`` averages the weights,
        ``'fisher'`` weighs each parameter by its Fisher information in each model (BatchNorm
        statistics recomputed for both), ``'distill'`` trains a copy of the run for ``steps``
        steps on the task loss plus the KL divergence to the gated mixture of the run and the
        experts; ``'adapter'`` adds adapter forks' low-rank deltas to the run's weights. Nothing
        changes until ``commit(merge.name)``."""
        return self._controller.submit(lambda: self._workshop.merge(experts, method, steps)).result()

    def baseline(self, steps: int | None = None, name: str | None = None) -> Expert:
        """The fair comparison for forks: a copy of the run trained on all the data for the same
        number of steps as the forks so far (or ``steps``); ``compare()`` shows it beside them."""
        return self._controller.submit(self._workshop.baseline_job(steps, name)).result()

    def gate(self, experts: list[str] | None = None, epochs: int = 30, features: str = "auto") -> Mixture:
        """A mixture of the run and its experts behind a router trained to send each sample to
        the model with the lowest loss on it, reading the inputs or the run's penultimate
        features (``features='inputs'|'penultimate'``; ``'auto'`` takes the inputs when they are
        small vectors). ``mixture.export(folder, example)`` writes it for use without onthefly_nb."""
        return self._controller.submit(lambda: self._workshop.gate(experts, epochs, features)).result()

    def commit(self, merge: str, wait: bool = True) -> str | Future:
        """Load a merge's weights into the run at the next step boundary."""
        future = self._controller.submit(self._workshop.commit_job(merge))
        return future.result() if wait else future

    def discard(self, merge: str) -> None:
        """Drop a merge's candidate weights."""
        self._workshop.discard(merge)

    def _evaluate_model(self, model: nn.Module, loader: DataLoader) -> dict[str, Any]:
        return evaluate(unwrapped(model), loader, self._loss.evaluate, self.unpack, self.device)

    # ---- state -------------------------------------------------------------------------
    @property
    def status(self) -> str:
        """One of idle, running, paused, stopping, finished, stopped, failed."""
        return str(self._controller.state)

    @property
    def global_step(self) -> int:
        """Optimizer steps completed so far."""
        return self._loop.step

    @property
    def epoch(self) -> int:
        """Epochs completed so far."""
        return self._loop.epoch

    @property
    def samples_per_sec(self) -> float | None:
        return self._loop.samples_per_sec

    @property
    def total_steps(self) -> int:
        """Steps the schedule will run if nobody stops it."""
        total = self.schedule.max_epochs * len(self.train_loader)
        return min(total, self.schedule.max_steps) if self.schedule.max_steps is not None else total

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event so far (numbered, JSON-serialisable), oldest first."""
        return self._log.all()

    @property
    def metrics(self) -> dict[str, list[dict[str, Any]]]:
        """Validation and test results so far, oldest first."""
        with self._lock:
            return {k: list(v) for k, v in self._metrics.items()}

    @property
    def history(self) -> pd.DataFrame:
        """Per-step train loss quantiles (p1..p99, max, mean) from each batch."""
        with self._lock:
            rows = self._history.rows()
        frame = pd.DataFrame(rows, columns=list(STEP_COLUMNS))
        return frame.astype({"step": np.int64, "epoch": np.int64})

    def slice(self, query: Selection = None, features: bool | None = None) -> pd.DataFrame:
        """Per-sample rows as a DataFrame, for a pandas query or a list of dataset indices.

        Queries run over the columns (``loss``, ``hardness``, ``label``, ``margin``, ...)
        and may name the loss quantiles of every sample seen, ``q1`` .. ``q99``:
        ``session.slice("loss > q95")``, ``session.slice("label == 7 and margin < 0")``.
        Without a query every sample seen so far is returned. ``features`` adds the raw
        inputs as columns x0.. for TensorDatasets of small vectors (the default when they
        have at most 64 features).
        """
        rows = choose_rows(self.store, query)
        with self._lock:
            quantiles = self.store.quantiles()
        if isinstance(query, str):  # filter on the columns the query names, then build the rest
            names = referenced(query) | {"index"}
            light = self._frame(rows, quantiles, names, features is not False and any(n[:1] == "x" for n in names))
            columns = list(self._frame(rows[:0], quantiles, None, features).columns)
            rows = rows[apply_query(light, query, quantiles, columns).index.to_numpy()]
        return self._frame(rows, quantiles, None, features)

    def _frame(self, rows: np.ndarray, quantiles: dict[str, float], names: set[str] | None,
               features: bool | None) -> pd.DataFrame:
        """Store columns (all, or those in ``names``), cluster ids and raw features of ``rows``."""
        with self._lock:
            frame = store_frame(self.store, rows, quantiles, names)
        if names is None or "cluster" in names:
            clustering = self.clustering
            frame["cluster"] = -1 if clustering is None else clustering.ids(self.store.size)[rows]
        if features is not False:
            inputs = feature_columns(self.train_loader.dataset, rows)
            if inputs is not None:
                frame = pd.concat([frame, inputs], axis=1)
            elif features:
                raise ConfigurationError("raw feature columns need a TensorDataset of vectors of at most 64 values")
        return frame

    def export_slice(self, path: str, query: Selection = None, features: bool | None = None,
                     chunk_rows: int = EXPORT_CHUNK_ROWS) -> str:
        """Write ``slice(query)`` to ``path`` (.csv, .parquet or .json lines), in chunks; returns the path."""
        return str(export_frame(self.slice(query, features), path, chunk_rows))

    def cluster(self, k: int | None = None, wait: bool = True) -> Clustering | None | Future:
        """Cluster the hard samples now, on a worker thread (training goes on).

        Returns the :class:`Clustering` (or a Future of it with ``wait=False``); its
        ``summary`` is also ``session.clusters``, and ``slice()`` gains a ``cluster`` column.
        """
        step, job = self.global_step, Future()
        self._last_clustered = time.monotonic()
        self._clustering_job = job
        threading.Thread(target=run_into, args=(lambda: self._cluster(step, k), job),
                         name=f"onthefly-cluster-{self.run_name}", daemon=True).start()
        return job.result() if wait else job

    def _cluster(self, step: int, k: int | None) -> Clustering | None:
        """On the clustering thread: snapshot the per-sample rows (under the lock) and cluster them."""
        result = cluster(self.slice(), step, k, self._penultimate_features)
        if result is not None:
            self.clustering = result
            self._log.append("clustered", step, k=len(result.summary), source=result.source,
                             samples=int(len(result.indices)))
            propose_fork(self._plans, result.summary, result.indices, result.labels, step)
            propose_reweight(self._plans, result.summary, result.indices, result.labels, step)
        return result

    # ---- saving and continuing --------------------------------------------------------------
    def export(self, path: str | os.PathLike[str], wait: bool = True) -> str | Future:
        """Save the session to ``path`` (one ``.zip`` file, else a new folder): weights of the
        model and experts (safetensors), optimizer, scheduler and RNG states, the loader's
        position, the per-sample store, events, plans, lineage and configuration, with a manifest
        of versions and checksums. The state is copied at the next step boundary and written on
        another thread; ``Session.load`` continues from it bit for bit."""
        target = Path(path).expanduser()
        if not target.parent.is_dir():
            raise ConfigurationError(f"cannot export to {target}: the folder {target.parent} does not exist")
        if target.suffix != ".zip" and target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise ConfigurationError(f"cannot export to {target}: it exists; name a new folder or a .zip file")
        if wait and self._thread is threading.current_thread() and not self.done:
            raise ConfigurationError("export(wait=True) on the training thread would wait for itself; "
                                     "call export from the notebook, or pass wait=False")
        if self._fit is not None:
            raise ConfigurationError("export saves runs onthefly_nb trains itself; a Lightning or Hugging Face "
                                     "run is saved with that trainer's own checkpoints (session.slice() and "
                                     "export_slice() keep its per-sample records)")
        copied = self._controller.submit(self._snapshot)
        written: Future = Future()

        def write() -> None:
            try:
                snapshot, pause = copied.result()
                started = time.perf_counter()
                write_archive(target, snapshot.contents())
                self._log.append("exported", snapshot.config["position"]["step"], path=str(target),
                                 pause_ms=round(pause * 1e3, 2), write_seconds=round(time.perf_counter() - started, 3))
                written.set_result(str(target))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the export
                self._log.append("export_failed", self.global_step, path=str(target),
                                 reason=f"{type(exc).__name__}: {exc}")
                written.set_exception(exc)

        threading.Thread(target=write, name=f"onthefly-export-{self.run_name}", daemon=True).start()
        return written.result() if wait else written

    def default_export_path(self) -> Path:
        """Where the dashboard's Export button saves: ``<run>-step<N>.zip`` in the working folder."""
        name = re.sub(r"[^\w.-]+", "-", f"{self.project}-{self.run_name}").strip("-")
        return Path.cwd() / f"{name}-step{self.global_step}.zip"

    def bridge(self, port: int | None = None) -> Bridge:
        """Serve the dashboard over a localhost WebSocket: the standalone page at ``bridge.url``,
        VS Code's renderer. Port 47621 by default (the next free one if taken; 0 for any);
        started once, stopped a moment after the run ends."""
        if self._bridge is None:
            from .dashboard.bridge import DEFAULT_PORT, Bridge

            self._bridge = Bridge(self, DEFAULT_PORT if port is None else port).start()
        return self._bridge

    def _snapshot(self) -> tuple[Snapshot, float]:
        started = time.perf_counter()
        snapshot = take_snapshot(self)
        return snapshot, time.perf_counter() - started

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: nn.Module | None = None, optimizer: Any = None,
             loss_fn: Any = None, train_loader: DataLoader | None = None, val_loader: DataLoader | None = None,
             test_loader: DataLoader | None = None, *, factory: Any = None, **options: Any) -> Session:
        """Continue a saved session. Build the model, optimizer (over that model), loss and
        loaders as for the saved run, or pass ``factory(config) -> dict`` of them; the rest comes
        back from the archive, which is verified before anything in it is used. ``options`` (for
        example ``max_epochs``) override the saved configuration. Call ``start()`` or ``run()``."""
        contents = read_archive(path)
        config = contents.documents.get("config")
        if not isinstance(config, dict):
            raise ArchiveError(f"{path} holds no session configuration; it is not a saved session")
        objects = {"model": model, "optimizer": optimizer, "loss_fn": loss_fn, "train_loader": train_loader,
                   "val_loader": val_loader, "test_loader": test_loader}
        if factory is not None:
            objects.update(factory(dict(config)))
        missing = [k for k in ("model", "optimizer", "loss_fn", "train_loader") if objects.get(k) is None]
        if missing:
            raise ConfigurationError(f"Session.load needs {', '.join(missing)}: build them as for the saved run "
                                     f"(a {config['model']} over {config['samples']} samples), or pass factory=...")
        saved = {k: config[k] for k in ("project", "run_name", "max_epochs", "max_steps", "scheduler_interval",
                                         "do_test_after", "stop_on_nan", "health_every", "deterministic")
                 if k in config}
        session = cls(**objects, **{**saved, **options})
        restore(session, contents)
        session._log.append("imported", session.global_step, path=str(path))
        return session

    def report(self, path: str = "run.html") -> str:
        """Write a self-contained offline HTML report (loss quantiles over time, hardest samples
        and clusters, experts and merges, health, lineage, events); returns its path."""
        from .outputs.report import write_report

        return str(write_report(self, path))

    def figure(self, kind: str = "loss", slice: Selection = None) -> Any:
        """A plotly figure: ``"loss"``, ``"history"``, ``"datamap"`` or ``"map"``, for a slice."""
        from .outputs.figures import figure

        return figure(self, kind, slice)

    def _penultimate_features(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(mask, rows) of the captured penultimate features of ``indices``, if any are kept."""
        if self._features is None:
            return None
        with self._lock:
            return self._features.get(indices)

    @property
    def clusters(self) -> pd.DataFrame:
        """Summary of the latest clustering of the hard samples (empty before the first)."""
        return self.clustering.summary if self.clustering is not None else pd.DataFrame()

    def dashboard(self) -> Dashboard:
        """The session's live dashboard widget (one per session, displayable many times)."""
        if not self._lead:
            raise ConfigurationError(f"this is rank {self._ranks.rank} of a torchrun launch; "  # type: ignore[union-attr]
                                     f"rank 0 hosts the dashboard")
        if self._dashboard is None or self._dashboard.comm is None:
            from .dashboard.widget import Dashboard

            self._dashboard = Dashboard(self)
            self._loop.flush_seconds = LIVE_FLUSH_SECONDS
        return self._dashboard

    def snapshot(self, max_rows: int = 1000) -> dict[str, Any]:
        """A consistent copy of what the dashboard shows, taken under the store lock."""
        with self._lock:
            curve = self._history.downsampled(max_rows)
            metrics = {k: list(v) for k, v in self._metrics.items()}
            seen = int(self._loop.recorder.samples)
            counts, edges = self.store.histogram()
            quantiles = self.store.quantiles()
        state = self._controller.state
        rate = self.samples_per_sec if state is RunState.RUNNING else None
        left = max(self.total_steps - self.global_step, 0)
        batch = self.train_loader.batch_size or 1
        return {
            "run": {
                "project": self.project, "run_name": self.run_name, "state": str(state),
                "step": self.global_step, "epoch": self._display_epoch(), "max_epochs": self.schedule.max_epochs,
                "steps_per_epoch": len(self.train_loader), "total_steps": self.total_steps,
                "samples_per_sec": rate, "eta_sec": (left * batch / rate) if rate else None,
                "device": str(self.device), "error": self.traceback,
                "val": _latest(metrics["validation"]), "test": _latest(metrics["test"]),
                "task": "classification" if self.store.is_classification else (
                    "regression" if seen else None),
                "seen": seen, "n_samples": self.store.size,
                "lr": None if self.optimizer is None else _finite(self.optimizer.param_groups[0].get("lr")),
                "deterministic": self.deterministic,
            },
            "curve": curve,
            "val_curve": [[m["step"], m["loss"]] for m in metrics["validation"] if m["loss"] is not None],
            "events": self._log.tail(50),
            "clusters": _cluster_rows(self.clustering),
            "histogram": {"edges": edges.tolist(), "counts": counts.tolist(),
                          "quantiles": {k: _finite(v) for k, v in quantiles.items()}} if seen else None,
            "plans": self._plans.all(),
            "lineage": self.lineage,
            "health": self.health_report,
            "compare": _table_rows(self._workshop.table, self._workshop.table_version),
        }

    def _display_epoch(self) -> int:
        """The epoch under way, counted from 1 (the last one once the run has ended)."""
        if self._controller.state in TERMINAL:
            return self.epoch
        return min(self.epoch + 1, self.schedule.max_epochs)

    def __repr__(self) -> str:
        return (f"<onthefly_nb.Session {self.project}/{self.run_name}: {self.status}, "
                f"step {self.global_step}/{self.total_steps}, epoch {self._display_epoch()}/"
                f"{self.schedule.max_epochs}>")


def _cluster_rows(clustering: Clustering | None) -> list[dict[str, Any]]:
    """The cluster summary as JSON rows for the dashboard."""
    if clustering is None:
        return []

    def counts(value: Any) -> str:
        return ", ".join(f"{k} ({v})" for k, v in value.items()) if isinstance(value, dict) else ""

    return [
        {"cluster": int(cid), "size": int(row["size"]), "mean_loss": _finite(row["mean_loss"]),
         "loss_vs_median": _finite(row["loss_vs_median"]), "top_labels": counts(row.get("top_labels")),
         "top_predictions": counts(row.get("top_predictions"))}
        for cid, row in clustering.summary.iterrows()
    ]


def _table_rows(table: pd.DataFrame | None, version: int) -> dict[str, Any] | None:
    """A comparison DataFrame as ``{version, columns, rows}`` for the dashboard (model name first)."""
    if table is None:
        return None
    rows = [[str(name), *(_finite(v) for v in row)] for name, row in zip(table.index, table.to_numpy().tolist())]
    return {"version": version, "columns": ["model", *map(str, table.columns)], "rows": rows}


def _health_summary(findings: pd.DataFrame) -> str:
    flagged = [f"{row.check}: {row.status} ({row.evidence})" for row in findings.itertuples() if row.status != "pass"]
    return "; ".join(flagged) or "every check passes"


def _describe(result: dict[str, Any]) -> str:
    accuracy = f", accuracy {result['accuracy']:.1%}" if result.get("accuracy") is not None else ""
    return f"validation loss {result['loss']:.4g}{accuracy}"


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _latest(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not results:
        return None
    last = results[-1]
    return {"step": last["step"], "loss": last["loss"], "accuracy": last["accuracy"]}


def _penultimate_capture(model: nn.Module, dataset: Any) -> PenultimateCapture | None:
    """A feature hook for clustering, unless the inputs are small vectors (used as they are)."""
    if feature_columns(dataset, np.arange(0)) is not None:
        return None
    try:
        return PenultimateCapture(model)
    except ValueError:
        return None


def _resolve_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is None:
        first = next(model.parameters(), None)
        return first.device if first is not None else torch.device("cpu")
    resolved = torch.device(device)
    model.to(resolved)
    return resolved


def _check_types(model: Any, optimizer: Any, scheduler: Any, scheduler_interval: str,
                 max_epochs: Any, max_steps: Any, unpack: Any) -> None:
    if not isinstance(model, nn.Module):
        raise ConfigurationError(
            f"model must be a torch.nn.Module, got {type(model).__name__}. Wrap plain functions "
            f"in a Module subclass whose forward() computes the outputs."
        )
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigurationError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}, "
            f"e.g. torch.optim.Adam(model.parameters(), lr=1e-3)."
        )
    if scheduler is not None and not callable(getattr(scheduler, "step", None)):
        raise ConfigurationError(f"scheduler must have a step() method, got {type(scheduler).__name__}.")
    if scheduler_interval not in ("epoch", "step"):
        raise ConfigurationError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}.")
    if not isinstance(max_epochs, int) or isinstance(max_epochs, bool) or max_epochs < 1:
        raise ConfigurationError(f"max_epochs must be a whole number >= 1, got {max_epochs!r}.")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise ConfigurationError(f"max_steps must be None or a whole number >= 1, got {max_steps!r}.")
    if unpack is not None and not callable(unpack):
        raise ConfigurationError(f"unpack must be a callable batch -> (inputs, targets), got {type(unpack).__name__}.")
