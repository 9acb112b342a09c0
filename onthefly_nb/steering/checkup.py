"""A session's health checks (on demand and every ``every`` steps) and its determinism check.

Both run on the trainer thread at a step boundary. The health check is fed a :class:`Probe` of
what the trainer keeps anyway: the last batch, the time spent waiting for the loader since the
previous check, and the labels of recently seen samples. The determinism check replays the last
step twice from the captured state and joins the health findings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from ..errors import StateError
from ..run.determinism import DeterminismReport, replay_step
from ..run.training import Run
from .findings import FAIL, PASS, WARN, Finding, Probe, report
from .health import check_health
from .plans import PlanBook
from .watch import propose_clip, propose_lower_lr

RECENT_STEPS = 50  # the label-balance check looks at the samples seen in this many steps


class Checkup:
    """Health and determinism checks of one run; ``report`` is the latest findings (the dashboard's)."""

    def __init__(self, run: Run, plans: PlanBook, every: int | None, notify: Callable[[], None]) -> None:
        self.run = run
        self.plans = plans
        self.every = every
        self._notify = notify
        self._next_step = every or 0
        self._timing = (0.0, 0.0, 0)  # the loop's wait and busy seconds and step at the last check that saw steps
        self._window = (0.0, 0.0, 0)  # wait and busy seconds and steps between the last two such checks
        self.determinism: DeterminismReport | None = None
        self.report: dict[str, Any] | None = None

    def due(self) -> None:
        """After a flush: run the periodic check when it is due."""
        if self.due_at(self.run.step):
            self.health()

    def due_at(self, step: int) -> bool:
        """Whether the periodic check is due once ``step`` steps have run."""
        return self.every is not None and step >= self._next_step

    def health(self) -> pd.DataFrame:
        """Every health check now (on the trainer thread); the report goes to the dashboard."""
        run = self.run
        with run.records.lock:
            history = run.records.history.rows()
        findings = check_health(run.model, run.optimizer, history, run.metrics.latest("validation"), self._probe())
        run.kept_gradients = None
        if self.determinism is not None:
            findings.append(_determinism_finding(self.determinism))
        self._propose_fixes(findings)
        if self.every is not None:
            self._next_step = run.step + self.every
        self.report = report(findings, run.step)
        worst = FAIL if any(f.status == FAIL for f in findings) else (
            WARN if any(f.status == WARN for f in findings) else PASS)
        run.log.append("health", run.step, status=worst, **{f.check: f.status for f in findings if f.status != PASS})
        return pd.DataFrame(self.report["results"])

    def _propose_fixes(self, findings: list[Finding]) -> None:
        """Plan cards for the findings a card can fix: exploding gradients (clip, lower the
        learning rate), a non-finite loss or a learning rate above 1 (lower it)."""
        step = self.run.step
        by_check = {f.check: f for f in findings}
        exploding = by_check.get("gradients")
        if exploding is not None and exploding.status == FAIL and "NaN" not in exploding.evidence:
            evidence = f"the health check at step {step}: gradients {exploding.evidence}"
            propose_clip(self.plans, evidence, self.run.gradient_norm())
            propose_lower_lr(self.plans, evidence)
        for check, status in (("loss", FAIL), ("learning rate", WARN)):
            finding = by_check.get(check)
            if finding is not None and finding.status == status:
                propose_lower_lr(self.plans, f"the health check at step {step}: {check} {finding.evidence}")

    def _probe(self) -> Probe:
        loop = self.run.loop
        inputs, targets = loop.last_batch if loop.last_batch is not None else (None, None)
        wait, busy = loop.wait_seconds - self._timing[0], loop.busy_seconds - self._timing[1]
        if busy > 0:  # steps ran since the last check: a new window; else (paused) the last one again
            self._window = (wait, busy, loop.step - self._timing[2])
            self._timing = (loop.wait_seconds, loop.busy_seconds, loop.step)
        wait, busy, steps = self._window
        scaler = loop.scaler  # fp16: the GradScaler's scale (one host read, at a check)
        return Probe(inputs, targets, self.run.loss.evaluate, wait if busy > 0 else None, busy if busy > 0 else None,
                     self.run.records.recent_labels(self.run.step - RECENT_STEPS),
                     None if scaler is None else scaler.get_scale(), self.run.kept_gradients, steps or None,
                     loop.nonfinite)

    def check_determinism(self) -> DeterminismReport:
        """Replay the last step twice from the captured state; the result joins the health findings."""
        run = self.run
        if run.loop.last_batch is None:
            raise StateError("no step has run yet: the determinism check replays the last step; run one first")
        inputs, targets = run.loop.last_batch
        result = replay_step(run.model, run.optimizer, run.loss.train, inputs, targets)
        self.determinism = result
        run.log.append("determinism", run.step, passed=result.passed, summary=result.summary())
        finding = _determinism_finding(result).to_json()
        if self.report is not None:
            results = [r for r in self.report["results"] if r["check"] != "determinism"]
            self.report = {**self.report, "results": [*results, finding]}
        else:
            self.report = report([_determinism_finding(result)], run.step)
        self._notify()
        return result

    def state_dict(self) -> dict[str, Any]:
        return {"documents": {"health": self.report}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.report = state["documents"]["health"]


def _determinism_finding(result: DeterminismReport) -> Finding:
    if result.passed:
        return Finding("determinism", PASS, result.summary(), "Replaying the last step from the same state gives "
                       "the same bits: runs from the same seeds can be reproduced exactly.")
    return Finding("determinism", FAIL, result.summary(), "The same step from the same state gave different "
                   "results: turn on deterministic mode (Session(..., deterministic=True)) or find the operation "
                   "that draws from an unseeded source or runs a nondeterministic kernel.")
