"""Plan cards: actions the session proposes with their evidence, which the user approves, edits or rejects.

A :class:`Plan` is proposed (by ``watch.PlanWatch`` from the loss history, by the health check,
after a clustering or a fork), shown as a card, decided by the user (``PlanBook.decide``) and
executed by the trainer at the next step boundary by the :class:`PlanAction` registered for its
kind (``steering/actions.py``, ``experts/actions.py``). Every transition lands in the event log.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import PlanError, StateError

PROPOSED, APPROVED, REJECTED, EXECUTED, FAILED, EXPIRED = (
    "proposed", "approved", "rejected", "executed", "failed", "expired")
LIFETIME_STEPS = 1000  # a card's evidence is about the run as it was: after this many steps it expires


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
    expires: int | None = None  # the step after which the card no longer holds (None: never by age)
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


@dataclass(frozen=True)
class PlanAction:
    """What approving a plan of one kind does (on the trainer thread, returning what happened),
    what rejecting it does besides closing the card, and why its evidence no longer holds (None
    while it does: say, its fork was merged another way)."""

    execute: Callable[[Plan], str]
    on_reject: Callable[[Plan], None] | None = None
    outdated: Callable[[Plan], str | None] | None = None


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
        self._actions: dict[str, PlanAction] = {}

    def register(self, actions: dict[str, PlanAction]) -> None:
        """What plans of each kind do once decided."""
        self._actions.update(actions)

    def propose(self, kind: str, title: str, evidence: str, params: dict[str, float] | None = None,
                specs: dict[str, ParamSpec] | None = None, context: dict[str, Any] | None = None,
                lifetime: int | None = LIFETIME_STEPS) -> Plan:
        """A new card; it expires ``lifetime`` steps from now (None: only when its evidence fails)."""
        step = self._step()
        plan = Plan(f"plan-{next(self._ids)}", kind, title, evidence, step, dict(params or {}), dict(specs or {}),
                    expires=None if lifetime is None else step + lifetime, context=dict(context or {}))
        with self._lock:
            self._plans.append(plan)
        self._log("plan_proposed", step, plan=plan.id, plan_kind=kind, title=title)
        return plan

    def open(self, kind: str) -> bool:
        """Whether a plan of ``kind`` is still waiting for a decision."""
        with self._lock:
            return any(p.kind == kind and p.status == PROPOSED for p in self._plans)

    def expire(self, kind: str, reason: str, when: Callable[[Plan], bool] | None = None) -> None:
        """Close the undecided plans of ``kind`` (those ``when`` picks) that events have made moot."""
        with self._lock:
            stale = [p for p in self._plans if p.kind == kind and p.status == PROPOSED and (when is None or when(p))]
        for plan in stale:
            self._close(plan, reason)

    def sweep(self) -> None:
        """Expire the undecided cards whose evidence no longer holds (after each flush)."""
        with self._lock:
            waiting = [p for p in self._plans if p.status == PROPOSED]
        for plan in waiting:
            reason = self._outdated(plan)
            if reason is not None:
                self._close(plan, reason)

    def _outdated(self, plan: Plan) -> str | None:
        step = self._step()
        if plan.expires is not None and step > plan.expires:
            return f"proposed at step {plan.step}, and the run has moved on to step {step}"
        check = self._actions[plan.kind].outdated if plan.kind in self._actions else None
        return None if check is None else check(plan)

    def _close(self, plan: Plan, reason: str) -> bool:
        """Expire ``plan`` if it is still undecided; whether it was."""
        with self._lock:
            if plan.status != PROPOSED:
                return False
            plan.status, plan.result = EXPIRED, reason
        self._log("plan_expired", self._step(), plan=plan.id, plan_kind=plan.kind, reason=reason)
        return True

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
        reason = self._outdated(plan) if decision == "approve" and plan.status == PROPOSED else None
        if reason is not None and self._close(plan, reason):
            raise StateError(f"plan {plan_id} ({plan.title}) has expired: {reason}; nothing was done")
        with self._lock:
            if plan.status != PROPOSED:
                raise StateError(f"plan {plan_id} was already {plan.status}")
            plan.params.update(edited)
            plan.status = APPROVED if decision == "approve" else REJECTED
        self._log(f"plan_{plan.status}", self._step(), plan=plan.id, plan_kind=plan.kind, **plan.params)
        if plan.status == REJECTED:
            on_reject = self._actions[plan.kind].on_reject
            if on_reject is not None:
                on_reject(plan)
            return None
        return self._submit(lambda: self._execute(plan))

    def _execute(self, plan: Plan) -> str:
        try:
            result = self._actions[plan.kind].execute(plan)
        except Exception as exc:
            with self._lock:
                plan.status, plan.result = FAILED, f"{type(exc).__name__}: {exc}"
            self._log("plan_failed", self._step(), plan=plan.id, plan_kind=plan.kind, error=plan.result)
            raise
        with self._lock:
            plan.status, plan.result = EXECUTED, result
        self._log("plan_executed", self._step(), plan=plan.id, plan_kind=plan.kind, result=result)
        return result

    def state_dict(self) -> dict[str, Any]:
        return {"documents": {"plans": self.all()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Executed, rejected and failed plans come back as they were; the others expire (what they
        would act on was not saved)."""
        plans = []
        for data in state["documents"]["plans"]:
            plan = Plan(**{**data, "param_specs": {k: ParamSpec(**v) for k, v in data["param_specs"].items()}})
            if plan.status in (PROPOSED, APPROVED):
                plan.status, plan.result = EXPIRED, "not carried over by the saved session"
            plans.append(plan)
        with self._lock:
            self._plans = plans
            self._ids = itertools.count(max((int(p.id.rsplit("-", 1)[1]) for p in plans), default=0) + 1)
