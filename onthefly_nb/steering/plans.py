"""Plan cards: actions the session proposes with their evidence, which the user approves, edits or rejects.

A :class:`Plan` is proposed by a watcher (``PlanWatch``) from the per-step loss history, shown
as a card, decided by the user (``PlanBook.decide``) and executed by the trainer at the next step
boundary. Every transition lands in the event log.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import PlanError
from ..records.store import STEP_COLUMNS, StepHistory

SPIKE_WINDOW = 50  # steps of history a spike is measured against
SPIKE_FACTOR = 3.0  # a step whose mean loss exceeds this times the window's median is a spike
SPIKE_MADS = 10.0  # ... and exceeds the median by this many median absolute deviations (batch noise)
SPIKE_ALONE = 10.0  # a single step this many times the median is a spike by itself; else two in a row
SPIKE_COOLDOWN = 200  # steps before another lower-LR card
VALIDATE_IMPROVEMENT = 0.2  # relative drop of the median train loss since the last validation
VALIDATE_MIN_STEPS = 50
CONVERGED = 1e-3  # a train loss below this fraction of its start has converged: no more validate cards

_MEAN = STEP_COLUMNS.index("mean")
_MEDIAN = STEP_COLUMNS.index("p50")
_STEP = STEP_COLUMNS.index("step")

PROPOSED, APPROVED, REJECTED, EXECUTED, FAILED, EXPIRED = (
    "proposed", "approved", "rejected", "executed", "failed", "expired")


@dataclass
class ParamSpec:
    """Bounds of one editable plan parameter."""

    label: str
    min: float
    max: float
    step: float

    def check(self, name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise PlanError(f"plan parameter {name!r} must be a number, got {value!r}")
        if not self.min <= value <= self.max:
            raise PlanError(f"plan parameter {name!r} must lie in [{self.min}, {self.max}], got {value}")
        return float(value)


@dataclass
class Plan:
    """One proposed action and what became of it."""

    id: str
    kind: str
    title: str
    evidence: str
    step: int
    params: dict[str, float] = field(default_factory=dict)
    param_specs: dict[str, ParamSpec] = field(default_factory=dict)
    status: str = PROPOSED
    result: str | None = None
    context: dict[str, Any] = field(default_factory=dict, repr=False)  # what the executor needs; not shown

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["context"]
        return data


PLAN_FIELDS = tuple(f for f in Plan.__dataclass_fields__ if f != "context")  # what to_json gives


class PlanCard(dict):
    """A plan as a dict (id, kind, title, evidence, params, status, ...) that can be decided:
    ``card.approve(budget=300)`` or ``card.reject()``."""

    def __init__(self, data: dict[str, Any], book: PlanBook) -> None:
        super().__init__(data)
        self._book = book

    def approve(self, wait: bool = False, **params: float) -> Any:
        """Approve with edited ``params``; runs at the next step boundary (a Future, or the result with wait)."""
        future = self._book.decide(self["id"], "approve", params)
        return future.result() if wait else future

    def reject(self) -> None:
        self._book.decide(self["id"], "reject")


Execute = Callable[[Plan], str]
Log = Callable[..., Any]


class PlanBook:
    """The session's plans, safe to use from any thread; executors run on the trainer thread."""

    def __init__(self, log: Log, submit: Callable[[Callable[[], Any]], Any], step: Callable[[], int]) -> None:
        self._plans: list[Plan] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._log = log
        self._submit = submit
        self._step = step
        self._executors: dict[str, Execute] = {}
        self._on_reject: dict[str, Callable[[Plan], None]] = {}

    def register(self, kind: str, execute: Execute, on_reject: Callable[[Plan], None] | None = None) -> None:
        """How plans of ``kind`` run once approved (on the trainer thread), and what a rejection does."""
        self._executors[kind] = execute
        if on_reject is not None:
            self._on_reject[kind] = on_reject

    def propose(self, kind: str, title: str, evidence: str, params: dict[str, float] | None = None,
                specs: dict[str, ParamSpec] | None = None, context: dict[str, Any] | None = None) -> Plan:
        step = self._step()
        plan = Plan(f"plan-{next(self._ids)}", kind, title, evidence, step, dict(params or {}), dict(specs or {}),
                    context=dict(context or {}))
        with self._lock:
            self._plans.append(plan)
        self._log("plan_proposed", step, plan=plan.id, plan_kind=kind, title=title)
        return plan

    def open(self, kind: str) -> bool:
        """Whether a plan of ``kind`` is still waiting for a decision."""
        with self._lock:
            return any(p.kind == kind and p.status == PROPOSED for p in self._plans)

    def expire(self, kind: str, reason: str) -> None:
        """Close the undecided plans of ``kind`` that events have made moot."""
        with self._lock:
            stale = [p for p in self._plans if p.kind == kind and p.status == PROPOSED]
            for plan in stale:
                plan.status, plan.result = EXPIRED, reason
        for plan in stale:
            self._log("plan_expired", self._step(), plan=plan.id, plan_kind=kind, reason=reason)

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [p.to_json() for p in self._plans]

    def cards(self) -> list[PlanCard]:
        return [PlanCard(data, self) for data in self.all()]

    def get(self, plan_id: str) -> Plan:
        with self._lock:
            for plan in self._plans:
                if plan.id == plan_id:
                    return plan
            known = ", ".join(p.id for p in self._plans) or "none yet"
        raise PlanError(f"no plan {plan_id!r}; the plans are: {known}")

    def decide(self, plan_id: str, decision: str, params: dict[str, Any] | None = None) -> Any:
        """Approve (with edited ``params``) or reject a proposed plan; an approved plan runs at the
        next step boundary. Returns the Future of its execution, or None for a rejection."""
        if decision not in ("approve", "reject"):
            raise PlanError(f"a plan decision is 'approve' or 'reject', got {decision!r}")
        plan = self.get(plan_id)
        edited = {}
        for name, value in (params or {}).items():
            if name not in plan.param_specs:
                raise PlanError(f"plan {plan_id} ({plan.kind}) has no parameter {name!r}; "
                                f"it has: {', '.join(plan.param_specs) or 'none'}")
            edited[name] = plan.param_specs[name].check(name, value)
        with self._lock:
            if plan.status != PROPOSED:
                raise PlanError(f"plan {plan_id} was already {plan.status}")
            plan.params.update(edited)
            plan.status = APPROVED if decision == "approve" else REJECTED
        self._log(f"plan_{plan.status}", self._step(), plan=plan.id, plan_kind=plan.kind, **plan.params)
        if plan.status == REJECTED:
            if plan.kind in self._on_reject:
                self._on_reject[plan.kind](plan)
            return None
        return self._submit(lambda: self._execute(plan))

    def _execute(self, plan: Plan) -> str:
        try:
            result = self._executors[plan.kind](plan)
        except Exception as exc:
            with self._lock:
                plan.status, plan.result = FAILED, f"{type(exc).__name__}: {exc}"
            self._log("plan_failed", self._step(), plan=plan.id, plan_kind=plan.kind, error=plan.result)
            raise
        with self._lock:
            plan.status, plan.result = EXECUTED, result
        self._log("plan_executed", self._step(), plan=plan.id, plan_kind=plan.kind, result=result)
        return result


class PlanWatch:
    """Proposes plans from the per-step history: lower the learning rate after a loss spike, and
    validate now once the training loss has improved markedly since the last validation."""

    def __init__(self, book: PlanBook, history: StepHistory, can_validate: bool,
                 gradient_norm: Callable[[], float | None] | None = None) -> None:
        self._book = book
        self._gradient_norm = gradient_norm  # the last step's total gradient norm, for a clipping card
        self._history = history
        self._can_validate = can_validate
        self._last_spike = -SPIKE_COOLDOWN
        self._validated_median: float | None = None  # the median train loss at the last validation
        self._validated_step = 0
        self._observed = 0  # history rows looked at so far
        self._was_above = False  # whether the last step looked at was above the spike threshold

    def observe(self, step: int) -> None:
        """Look at the history rows added since the last call (on the trainer thread, after a flush)."""
        total, new = len(self._history), len(self._history) - self._observed
        self._observed = total
        if new <= 0 or total <= SPIKE_WINDOW:
            return
        recent = self._history.last(SPIKE_WINDOW + new)
        self._watch_spike(recent[:-new], recent[-new:], step)
        if self._can_validate and step - self._validated_step >= VALIDATE_MIN_STEPS:
            self._watch_progress(recent, step)

    def _watch_spike(self, before: np.ndarray, new: np.ndarray, step: int) -> None:
        if len(before) < SPIKE_WINDOW // 2:
            return
        means = before[:, _MEAN]
        baseline = float(np.median(means))
        spread = float(np.median(np.abs(means - baseline)))  # batch-to-batch noise (MAD)
        threshold = baseline + max((SPIKE_FACTOR - 1) * baseline, SPIKE_MADS * spread)
        values = np.nan_to_num(new[:, _MEAN], nan=np.inf)
        above = values > threshold
        # one wild step, or two in a row above the threshold: a lone noisy batch is not a spike
        lasting = above[1:] & above[:-1] if len(above) > 1 else np.zeros(0, bool)
        spiked = baseline > 0 and (bool((values > SPIKE_ALONE * baseline).any()) or bool(lasting.any())
                                   or bool(above[0] and self._was_above))
        self._was_above = bool(above[-1])
        worst = int(np.argmax(values))
        latest = float(new[worst, _MEAN])
        if not spiked or step - self._last_spike < SPIKE_COOLDOWN or self._book.open("lower_lr"):
            return
        self._last_spike = step
        evidence = (f"the mean loss of step {int(new[worst, _STEP])} was {latest:.4g}, {latest / baseline:.1f}x the "
                    f"median {baseline:.4g} of the {len(before)} steps before it (noise there: {spread:.2g})")
        propose_lower_lr(self._book, evidence)
        if self._gradient_norm is not None:
            propose_clip(self._book, evidence, self._gradient_norm())
        if not self._book.open("health_check"):
            self._book.propose("health_check", "Run a health check",
                               f"{evidence}; a check of the weights and each layer's gradients tells where it broke")

    def _watch_progress(self, recent: np.ndarray, step: int) -> None:
        if self._book.open("validate_now"):
            return
        median = float(np.median(recent[-10:, _MEDIAN]))
        start = float(np.median(self._history.first(10)[:, _MEDIAN]))
        reference = start if self._validated_median is None else self._validated_median
        converged = reference <= CONVERGED * start  # relative changes of a loss near 0 mean little
        if converged or median >= (1 - VALIDATE_IMPROVEMENT) * reference:
            return
        since = "the start" if self._validated_median is None else f"the last validation at step {self._validated_step}"
        self._book.propose(
            "validate_now", "Run validation now",
            f"the median train loss fell {1 - median / reference:.0%} since {since} "
            f"({reference:.4g} to {median:.4g}); check that validation follows",
        )
        self._validated_step = step

    def validated(self, step: int) -> None:
        """Note a validation, so the next card compares against it; an open card to validate is moot."""
        self._book.expire("validate_now", f"a validation ran at step {step}")
        recent = self._history.last(10)
        if len(recent):
            self._validated_median = float(np.median(recent[:, _MEDIAN]))
        self._validated_step = step


def propose_lower_lr(book: PlanBook, evidence: str) -> Plan | None:
    """A card to scale the learning rate down, unless one is open."""
    if book.open("lower_lr"):
        return None
    return book.propose("lower_lr", "Lower the learning rate", evidence,
                        {"factor": 0.5}, {"factor": ParamSpec("multiply the learning rate by", 0.01, 1.0, 0.05)})


def propose_clip(book: PlanBook, evidence: str, norm: float | None) -> Plan | None:
    """A card to clip gradient norms at half the last one, unless one is open or there is no norm."""
    if book.open("clip_gradients") or norm is None or not math.isfinite(norm) or norm <= 0:
        return None
    return book.propose("clip_gradients", "Clip gradients", f"{evidence}; the last step's gradient norm was {norm:.3g}",
                        {"max_norm": float(f"{norm / 2:.2g}")},
                        {"max_norm": ParamSpec("largest gradient norm", 1e-3, 1e4, 0.1)})


FORK_LOSS_RATIO = 3.0  # a cluster whose mean loss is this many times the median is worth a specialist
FORK_MIN_SIZE = 20


def _standout(summary: Any) -> tuple[int, str] | None:
    """The hardest cluster of a clustering, if it stands out enough to act on, with its evidence."""
    if summary is None or not len(summary):
        return None
    top = summary.iloc[0]
    ratio = float(top["loss_vs_median"])
    if not ratio >= FORK_LOSS_RATIO or int(top["size"]) < FORK_MIN_SIZE:
        return None
    labels = ", ".join(f"{k} ({v})" for k, v in top.get("top_labels", {}).items()) if "top_labels" in top else ""
    evidence = (f"{int(top['size'])} hard samples, mean loss {float(top['mean_loss']):.4g} = {ratio:.1f}x the median"
                + (f"; labels {labels}" if labels else ""))
    return int(summary.index[0]), evidence


def propose_fork(book: PlanBook, summary: Any, indices: np.ndarray, labels: np.ndarray, step: int) -> Plan | None:
    """After a clustering: a card to fork a specialist on the hardest cluster, if it stands out."""
    found = _standout(summary)
    if found is None or book.open("fork"):
        return None
    cluster, evidence = found
    return book.propose(
        "fork", f"Fork a specialist on cluster {cluster}",
        f"cluster {cluster} of the clustering at step {step}: {evidence}",
        {"budget": 300, "general_share": 0.2},
        {"budget": ParamSpec("training steps", 10, 10_000, 10),
         "general_share": ParamSpec("share of general data per batch", 0.0, 0.9, 0.1)},
        context={"rows": indices[labels == cluster], "slice": f"cluster {cluster} (step {step})"},
    )


def propose_reweight(book: PlanBook, summary: Any, indices: np.ndarray, labels: np.ndarray,
                     step: int) -> Plan | None:
    """After a clustering: a card to sample the hardest cluster more often, if it stands out."""
    found = _standout(summary)
    if found is None or book.open("reweight"):
        return None
    cluster, evidence = found
    return book.propose(
        "reweight", f"Sample cluster {cluster} more often",
        f"cluster {cluster} of the clustering at step {step}: {evidence}; from the next epoch its samples are "
        f"drawn 'factor' times as often (with replacement)",
        {"factor": 3.0}, {"factor": ParamSpec("times as often", 1.0, 20.0, 0.5)},
        context={"rows": indices[labels == cluster], "slice": f"cluster {cluster} (step {step})"},
    )
