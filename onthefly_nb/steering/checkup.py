"""A session's health checks (on demand and every ``every`` steps) and its determinism check.

Both run on the trainer thread at a step boundary. The health check is fed a :class:`Probe` of
what the trainer keeps anyway: the last batch, the time spent waiting for the loader since the
previous check, and the labels of recently seen samples. The determinism check replays the last
step twice from the captured state and joins the health findings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..run.determinism import DeterminismReport, replay_step
from .health import FAIL, PASS, WARN, Finding, Probe, check_health, report
from .plans import propose_clip, propose_lower_lr

if TYPE_CHECKING:
    from ..session import Session

RECENT_STEPS = 50  # the label-balance check looks at the samples seen in this many steps


class Checkup:
    """Health and determinism checks of one session; the latest findings are the dashboard's."""

    def __init__(self, session: Session, every: int | None) -> None:
        self.session = session
        self.every = every
        self._next_step = every or 0
        self._timing = (0.0, 0.0)  # the loop's wait and busy seconds at the last check that saw steps
        self._window = (0.0, 0.0)  # wait and busy seconds of the steps between the last two such checks
        self.determinism: DeterminismReport | None = None

    def due(self, step: int) -> bool:
        """Whether a periodic check is due at ``step``."""
        return self.every is not None and step >= self._next_step

    def health(self) -> pd.DataFrame:
        """Every health check now (on the trainer thread); the report goes to the dashboard."""
        s = self.session
        with s._lock:
            history = s._history.rows()
            validation = s._metrics["validation"][-1] if s._metrics["validation"] else None
        findings = check_health(s.model, s.optimizer, history, validation, self._probe())
        if self.determinism is not None:
            findings.append(_determinism_finding(self.determinism))
        self._propose_fixes(findings)
        if self.every is not None:
            self._next_step = s.global_step + self.every
        s.health_report = report(findings, s.global_step)
        worst = FAIL if any(f.status == FAIL for f in findings) else (
            WARN if any(f.status == WARN for f in findings) else PASS)
        s._log.append("health", s.global_step, status=worst,
                      **{f.check: f.status for f in findings if f.status != PASS})
        return pd.DataFrame(s.health_report["results"])

    def _propose_fixes(self, findings: list[Finding]) -> None:
        """Plan cards for the findings a card can fix: exploding gradients (clip, lower the
        learning rate), a non-finite loss or a learning rate above 1 (lower it)."""
        s = self.session
        by_check = {f.check: f for f in findings}
        exploding = by_check.get("gradients")
        if exploding is not None and exploding.status == FAIL and "NaN" not in exploding.evidence:
            evidence = f"the health check at step {s.global_step}: gradients {exploding.evidence}"
            propose_clip(s._plans, evidence, s._gradient_norm())
            propose_lower_lr(s._plans, evidence)
        for check, status in (("loss", FAIL), ("learning rate", WARN)):
            finding = by_check.get(check)
            if finding is not None and finding.status == status:
                propose_lower_lr(s._plans, f"the health check at step {s.global_step}: {check} {finding.evidence}")

    def _probe(self) -> Probe:
        loop = self.session._loop
        inputs, targets = loop.last_batch if loop.last_batch is not None else (None, None)
        wait, busy = loop.wait_seconds - self._timing[0], loop.busy_seconds - self._timing[1]
        if busy > 0:  # steps ran since the last check: a new window; else (paused) the last one again
            self._timing, self._window = (loop.wait_seconds, loop.busy_seconds), (wait, busy)
        wait, busy = self._window
        return Probe(inputs, targets, self.session._loss.evaluate, wait if busy > 0 else None,
                     busy if busy > 0 else None, self._recent_labels())

    def _recent_labels(self) -> np.ndarray | None:
        store = self.session.store
        if not store.is_classification:
            return None
        with self.session._lock:
            recent = store.last_step.astype(np.int64) > self.session.global_step - RECENT_STEPS
            labels = store.label[recent]
        labels = labels[labels >= 0]
        return labels if len(labels) else None

    def check_determinism(self) -> DeterminismReport:
        """Replay the last step twice from the captured state; the result joins the health findings."""
        s = self.session
        if s._loop.last_batch is None:
            raise RuntimeError("no step has run yet: the determinism check replays the last step; run one first")
        inputs, targets = s._loop.last_batch
        result = replay_step(s.model, s.optimizer, s._loss.train, inputs, targets)
        self.determinism = result
        s._log.append("determinism", s.global_step, passed=result.passed, summary=result.summary())
        if s.health_report is not None:
            results = [r for r in s.health_report["results"] if r["check"] != "determinism"]
            s.health_report = {**s.health_report, "results": results + [_determinism_finding(result).to_json()]}
        else:
            s.health_report = report([_determinism_finding(result)], s.global_step)
        s._changed.set()
        return result


def _determinism_finding(result: DeterminismReport) -> Finding:
    if result.passed:
        return Finding("determinism", PASS, result.summary(), "Replaying the last step from the same state gives "
                       "the same bits: runs from the same seeds can be reproduced exactly.")
    return Finding("determinism", FAIL, result.summary(), "The same step from the same state gave different "
                   "results: turn on deterministic mode (Session(..., deterministic=True)) or find the operation "
                   "that draws from an unseeded source or runs a nondeterministic kernel.")

